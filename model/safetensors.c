/* safetensors reader: 8-byte little-endian header length, a JSON header, then the data section.
 * Every field of the header is checked against the file before any byte is read. */
#include <cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ckpt.h"

#define ST_MAX_HEADER (100u << 20)

static const struct { const char *name; StDtype dt; int size; } DTYPES[] = {
    {"F32", ST_F32, 4}, {"F16", ST_F16, 2}, {"BF16", ST_BF16, 2},
};

static int dtype_size(StDtype dt) { return dt == ST_F32 ? 4 : 2; }

static RxStatus read_full(int fd, void *buf, size_t n, uint64_t off, const char *path, RxError *err) {
    uint8_t *p = buf;
    while (n > 0) {
        ssize_t r = pread(fd, p, n, (off_t)off);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return rx_fail(err, RX_ERR_IO, "%s: read failed at byte %llu (%s)", path,
                                   (unsigned long long)off, r < 0 ? strerror(errno) : "unexpected end of file");
        p += r; n -= (size_t)r; off += (uint64_t)r;
    }
    return RX_OK;
}

static int cmp_begin(const void *a, const void *b) {
    const StTensor *x = a, *y = b;
    return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : 0;
}

/* A JSON number that is a whole number in [0, 2^53]. */
static int whole(const cJSON *it, uint64_t *out) {
    if (!cJSON_IsNumber(it) || it->valuedouble < 0 || it->valuedouble > 9007199254740992.0 ||
        it->valuedouble != (double)(uint64_t)it->valuedouble) return 0;
    *out = (uint64_t)it->valuedouble;
    return 1;
}

static RxStatus parse_tensor(StTensor *t, const cJSON *it, const StFile *f, RxError *err) {
    const char *path = f->path;
    if (strlen(it->string) >= sizeof t->name)
        return rx_fail(err, RX_ERR_FORMAT, "%s: tensor name '%.60s...' is too long", path, it->string);
    snprintf(t->name, sizeof t->name, "%s", it->string);
    if (!cJSON_IsObject(it)) return rx_fail(err, RX_ERR_FORMAT, "%s: tensor %s: expected an object", path, t->name);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(it, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(it, "shape");
    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(it, "data_offsets");
    if (!cJSON_IsString(dt)) return rx_fail(err, RX_ERR_FORMAT, "%s: tensor %s: missing \"dtype\"", path, t->name);
    size_t k = 0;
    while (k < sizeof DTYPES / sizeof DTYPES[0] && strcmp(DTYPES[k].name, dt->valuestring)) k++;
    if (k == sizeof DTYPES / sizeof DTYPES[0])
        return rx_fail(err, RX_ERR_FORMAT, "%s: tensor %s: unknown dtype '%s' (expected F32, F16 or BF16)",
                       path, t->name, dt->valuestring);
    t->dtype = DTYPES[k].dt;
    if (!cJSON_IsArray(shape) || cJSON_GetArraySize(shape) > 8)
        return rx_fail(err, RX_ERR_FORMAT, "%s: tensor %s: \"shape\" must be a list of at most 8 sizes", path, t->name);
    t->ndim = 0;
    uint64_t numel = 1;
    const cJSON *d;
    cJSON_ArrayForEach(d, shape) {
        uint64_t v;
        if (!whole(d, &v)) return rx_fail(err, RX_ERR_FORMAT, "%s: tensor %s: bad size in \"shape\"", path, t->name);
        if (v != 0 && numel > UINT64_MAX / 4 / v)
            return rx_fail(err, RX_ERR_FORMAT, "%s: tensor %s: shape overflows", path, t->name);
        numel *= v;
        t->shape[t->ndim++] = (int64_t)v;
    }
    uint64_t b, e;
    if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2 || !whole(cJSON_GetArrayItem(offs, 0), &b) ||
        !whole(cJSON_GetArrayItem(offs, 1), &e) || b > e)
        return rx_fail(err, RX_ERR_FORMAT, "%s: tensor %s: \"data_offsets\" must be [begin, end] with "
                       "0 <= begin <= end", path, t->name);
    uint64_t data_len = f->file_size - f->data_start;
    if (e > data_len)
        return rx_fail(err, RX_ERR_FORMAT, "%s: tensor %s: data_offsets [%llu, %llu] run past the end "
                       "of the data section (%llu bytes; file truncated?)", path, t->name,
                       (unsigned long long)b, (unsigned long long)e, (unsigned long long)data_len);
    if (e - b != numel * (uint64_t)dtype_size(t->dtype))
        return rx_fail(err, RX_ERR_FORMAT, "%s: tensor %s: shape holds %llu values of %s (%llu bytes) "
                       "but data_offsets span %llu bytes", path, t->name, (unsigned long long)numel,
                       DTYPES[k].name, (unsigned long long)(numel * (uint64_t)dtype_size(t->dtype)),
                       (unsigned long long)(e - b));
    t->begin = b;
    t->end = e;
    return RX_OK;
}

RxStatus st_open(StFile *f, const char *path, RxError *err) {
    memset(f, 0, sizeof *f);
    f->fd = -1;
    snprintf(f->path, sizeof f->path, "%s", path);
    f->fd = open(path, O_RDONLY);
    if (f->fd < 0) return rx_fail(err, RX_ERR_IO, "%s: cannot open (%s)", path, strerror(errno));
    struct stat sb;
    if (fstat(f->fd, &sb) != 0) { st_close(f); return rx_fail(err, RX_ERR_IO, "%s: cannot stat", path); }
    f->file_size = (uint64_t)sb.st_size;
    RxStatus rs;
    if (f->file_size < 8) {
        st_close(f);
        return rx_fail(err, RX_ERR_FORMAT, "%s: truncated: %llu bytes, a safetensors file starts with an "
                       "8-byte header length", path, (unsigned long long)sb.st_size);
    }
    uint8_t lenb[8];
    if ((rs = read_full(f->fd, lenb, 8, 0, path, err)) != RX_OK) { st_close(f); return rs; }
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | lenb[i];
    if (hlen > f->file_size - 8 || hlen > ST_MAX_HEADER) {
        st_close(f);
        return rx_fail(err, RX_ERR_FORMAT, "%s: header length %llu runs past the end of the file "
                       "(%llu bytes)", path, (unsigned long long)hlen, (unsigned long long)f->file_size);
    }
    f->data_start = 8 + hlen;
    char *hdr = malloc(hlen + 1);
    if (!hdr) { st_close(f); return rx_fail(err, RX_ERR_NOMEM, "%s: out of memory for the header", path); }
    if ((rs = read_full(f->fd, hdr, hlen, 8, path, err)) != RX_OK) { free(hdr); st_close(f); return rs; }
    hdr[hlen] = '\0';
    cJSON *root = cJSON_ParseWithLength(hdr, hlen);
    free(hdr);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        st_close(f);
        return rx_fail(err, RX_ERR_FORMAT, "%s: the header is not a JSON object", path);
    }
    int n = cJSON_GetArraySize(root);
    f->tensors = calloc((size_t)(n > 0 ? n : 1), sizeof(StTensor));
    const cJSON *it;
    rs = RX_OK;
    cJSON_ArrayForEach(it, root) {
        if (!strcmp(it->string, "__metadata__")) continue;
        if ((rs = parse_tensor(&f->tensors[f->n], it, f, err)) != RX_OK) break;
        f->n++;
    }
    cJSON_Delete(root);
    if (rs != RX_OK) { st_close(f); return rs; }
    /* no two tensors may share bytes */
    StTensor *sorted = malloc((size_t)(f->n > 0 ? f->n : 1) * sizeof(StTensor));
    memcpy(sorted, f->tensors, (size_t)f->n * sizeof(StTensor));
    qsort(sorted, (size_t)f->n, sizeof(StTensor), cmp_begin);
    for (int i = 1; i < f->n; i++)
        if (sorted[i].begin < sorted[i - 1].end && sorted[i].end > sorted[i].begin) {
            rs = rx_fail(err, RX_ERR_FORMAT, "%s: tensors %s [%llu, %llu] and %s [%llu, %llu] overlap",
                         path, sorted[i - 1].name, (unsigned long long)sorted[i - 1].begin,
                         (unsigned long long)sorted[i - 1].end, sorted[i].name,
                         (unsigned long long)sorted[i].begin, (unsigned long long)sorted[i].end);
            break;
        }
    free(sorted);
    if (rs != RX_OK) st_close(f);
    return rs;
}

void st_close(StFile *f) {
    if (f->fd >= 0) close(f->fd);
    free(f->tensors);
    f->tensors = NULL;
    f->fd = -1;
    f->n = 0;
}

const StTensor *st_find(const StFile *f, const char *name) {
    for (int i = 0; i < f->n; i++)
        if (!strcmp(f->tensors[i].name, name)) return &f->tensors[i];
    return NULL;
}

static float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0) {
        if (man == 0) bits = sign;
        else {   /* subnormal: normalise */
            exp = 127 - 15 + 1;
            while (!(man & 0x400)) { man <<= 1; exp--; }
            bits = sign | exp << 23 | (man & 0x3ff) << 13;
        }
    } else if (exp == 31) bits = sign | 0x7f800000 | man << 13;
    else bits = sign | (exp - 15 + 127) << 23 | man << 13;
    float out;
    memcpy(&out, &bits, 4);
    return out;
}

RxStatus st_read_f32(const StFile *f, const StTensor *t, float *out, RxError *err) {
    uint64_t bytes = t->end - t->begin;
    if (t->dtype == ST_F32) return read_full(f->fd, out, bytes, f->data_start + t->begin, f->path, err);
    uint16_t *tmp = malloc(bytes ? bytes : 1);
    if (!tmp) return rx_fail(err, RX_ERR_NOMEM, "%s: out of memory reading %s", f->path, t->name);
    RxStatus rs = read_full(f->fd, tmp, bytes, f->data_start + t->begin, f->path, err);
    size_t n = bytes / 2;
    if (rs == RX_OK) {
        for (size_t i = 0; i < n; i++) {
            if (t->dtype == ST_F16) out[i] = half_to_float(tmp[i]);
            else { uint32_t b = (uint32_t)tmp[i] << 16; memcpy(&out[i], &b, 4); }
        }
    }
    free(tmp);
    return rs;
}

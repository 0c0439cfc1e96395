/* zstd shards (layout in shard.h). */
#include "shard.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

uint64_t fnv1a64(const void *data, size_t n, uint64_t h) {
    const uint8_t *p = data;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

static int grow(uint64_t **a, uint64_t need, uint64_t *cap) {
    if (need <= *cap) return 0;
    uint64_t c = *cap ? *cap * 2 : 64;
    while (c < need) c *= 2;
    uint64_t *p = realloc(*a, c * sizeof *p);
    if (!p) return -1;
    *a = p;
    *cap = c;
    return 0;
}

/* ---- writer ---- */

int shard_writer_open(ShardWriter *w, const char *path, int token_bytes, int level, char *err, size_t errlen) {
    memset(w, 0, sizeof *w);
    snprintf(w->path, sizeof w->path, "%s", path);
    snprintf(w->tmp, sizeof w->tmp, "%s.tmp", path);
    w->token_bytes = token_bytes;
    w->level = level;
    w->f = fopen(w->tmp, "wb");
    if (!w->f) return data_fail(err, errlen, "%s: cannot create (%s)", w->tmp, strerror(errno));
    uint8_t zero[64] = {0};
    fwrite(zero, 1, 64, w->f);   /* header, written at close */
    w->pos = 64;
    w->buf = malloc(SHARD_FRAME_BYTES);
    w->zcap = ZSTD_compressBound(SHARD_FRAME_BYTES);
    w->zbuf = malloc(w->zcap);
    if (!w->buf || !w->zbuf) return data_fail(err, errlen, "out of memory");
    return 0;
}

static int flush_frame(ShardWriter *w, char *err, size_t errlen) {
    if (!w->buf_n) return 0;
    ZSTD_CCtx *c = ZSTD_createCCtx();
    ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, w->level);
    ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, 1);
    size_t z = ZSTD_compress2(c, w->zbuf, w->zcap, w->buf, w->buf_n);
    ZSTD_freeCCtx(c);
    if (ZSTD_isError(z)) return data_fail(err, errlen, "%s: zstd: %s", w->path, ZSTD_getErrorName(z));
    uint64_t need = w->n_frames + 1, cap = w->frames_cap;
    if (grow(&w->frame_off, need, &cap) || (cap = w->frames_cap, grow(&w->frame_zlen, need, &cap)) ||
        (cap = w->frames_cap, grow(&w->frame_first, need, &cap)))
        return data_fail(err, errlen, "out of memory");
    w->frames_cap = cap;
    w->frame_off[w->n_frames] = w->pos;
    w->frame_zlen[w->n_frames] = z;
    w->frame_first[w->n_frames] = w->n_tokens - w->buf_n / (size_t)w->token_bytes;
    w->n_frames++;
    if (fwrite(w->zbuf, 1, z, w->f) != z) return data_fail(err, errlen, "%s: write failed (%s)", w->tmp, strerror(errno));
    w->pos += z;
    w->raw_bytes += w->buf_n;
    w->buf_n = 0;
    return 0;
}

int shard_writer_add(ShardWriter *w, const int32_t *tokens, uint64_t n, char *err, size_t errlen) {
    uint64_t cap = w->docs_cap;
    if (grow(&w->doc_first, w->n_docs + 1, &cap) || (cap = w->docs_cap, grow(&w->doc_len, w->n_docs + 1, &cap)))
        return data_fail(err, errlen, "out of memory");
    w->docs_cap = cap;
    w->doc_first[w->n_docs] = w->n_tokens;
    w->doc_len[w->n_docs] = n;
    w->n_docs++;
    for (uint64_t i = 0; i < n; i++) {
        if (w->token_bytes == 2) { uint16_t v = (uint16_t)tokens[i]; memcpy(w->buf + w->buf_n, &v, 2); }
        else { uint32_t v = (uint32_t)tokens[i]; memcpy(w->buf + w->buf_n, &v, 4); }
        w->buf_n += (size_t)w->token_bytes;
        w->n_tokens++;
        if (w->buf_n + (size_t)w->token_bytes > SHARD_FRAME_BYTES && flush_frame(w, err, errlen)) return -1;
    }
    return 0;
}

static void put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

int shard_writer_close(ShardWriter *w, int ok, char *err, size_t errlen) {
    int rc = ok ? 0 : -1;
    if (!rc) rc = flush_frame(w, err, errlen);
    if (!rc) {
        size_t tn = (size_t)(w->n_frames * 3 + w->n_docs * 2) * 8;
        uint8_t *t = malloc(tn ? tn : 1), *p = t;
        for (uint64_t i = 0; i < w->n_frames; i++) {
            put64(p, w->frame_off[i]); put64(p + 8, w->frame_zlen[i]); put64(p + 16, w->frame_first[i]); p += 24;
        }
        for (uint64_t i = 0; i < w->n_docs; i++) { put64(p, w->doc_first[i]); put64(p + 8, w->doc_len[i]); p += 16; }
        uint8_t h[64] = {0};
        memcpy(h, SHARD_MAGIC, 8);
        uint32_t ver = SHARD_VERSION, tb = (uint32_t)w->token_bytes;
        memcpy(h + 8, &ver, 4); memcpy(h + 12, &tb, 4);
        put64(h + 16, w->n_docs); put64(h + 24, w->n_frames); put64(h + 32, w->n_tokens);
        put64(h + 40, w->pos); put64(h + 48, fnv1a64(t, tn, 1469598103934665603ull));
        if (fwrite(t, 1, tn, w->f) != tn || fseeko(w->f, 0, SEEK_SET) || fwrite(h, 1, 64, w->f) != 64 || fflush(w->f) ||
            fsync(fileno(w->f)))
            rc = data_fail(err, errlen, "%s: write failed (%s)", w->tmp, strerror(errno));
        free(t);
    }
    if (fclose(w->f) && !rc) rc = data_fail(err, errlen, "%s: write failed", w->tmp);
    if (!rc && rename(w->tmp, w->path)) rc = data_fail(err, errlen, "%s: cannot rename into place (%s)", w->path, strerror(errno));
    if (rc) unlink(w->tmp);
    free(w->buf); free(w->zbuf); free(w->frame_off); free(w->frame_zlen); free(w->frame_first);
    free(w->doc_first); free(w->doc_len);
    w->f = NULL;
    return rc;
}

/* ---- reader ---- */

static uint64_t get64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }

static int pread_full(int fd, void *buf, size_t n, uint64_t off) {
    uint8_t *p = buf;
    while (n) {
        ssize_t r = pread(fd, p, n, (off_t)off);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        p += r; n -= (size_t)r; off += (uint64_t)r;
    }
    return 0;
}

int shard_open(ShardReader *r, const char *path, char *err, size_t errlen) {
    memset(r, 0, sizeof *r);
    r->fd = -1;
    r->cached_frame = -1;
    snprintf(r->path, sizeof r->path, "%s", path);
    r->fd = open(path, O_RDONLY);
    if (r->fd < 0) return data_fail(err, errlen, "%s: cannot open (%s)", path, strerror(errno));
    struct stat sb;
    fstat(r->fd, &sb);
    r->file_size = (uint64_t)sb.st_size;
    uint8_t h[64];
    if (r->file_size < 64 || pread_full(r->fd, h, 64, 0)) { shard_close(r); return data_fail(err, errlen, "%s: truncated: %llu bytes, shorter than the 64-byte header", path, (unsigned long long)r->file_size); }
    if (memcmp(h, SHARD_MAGIC, 8)) { shard_close(r); return data_fail(err, errlen, "%s: not a ropex shard (bad magic at byte 0)", path); }
    uint32_t ver, tb;
    memcpy(&ver, h + 8, 4); memcpy(&tb, h + 12, 4);
    if (ver != SHARD_VERSION) { shard_close(r); return data_fail(err, errlen, "%s: shard version %u, expected %d", path, ver, SHARD_VERSION); }
    if (tb != 2 && tb != 4) { shard_close(r); return data_fail(err, errlen, "%s: token size %u at byte 12, expected 2 or 4", path, tb); }
    r->token_bytes = (int)tb;
    r->n_docs = get64(h + 16); r->n_frames = get64(h + 24); r->n_tokens = get64(h + 32);
    uint64_t toff = get64(h + 40), sum = get64(h + 48);
    const uint64_t fsize = r->file_size;
    if (r->n_frames > fsize / 24 || r->n_docs > fsize / 16 || toff < 64 || toff > fsize ||
        (fsize - toff) != r->n_frames * 24 + r->n_docs * 16) {
        shard_close(r);
        return data_fail(err, errlen, "%s: the table at byte %llu does not fit the file (%llu bytes; truncated?)", path,
                    (unsigned long long)toff, (unsigned long long)fsize);
    }
    size_t tn = (size_t)(r->file_size - toff);
    uint8_t *t = malloc(tn ? tn : 1);
    if (!t || pread_full(r->fd, t, tn, toff)) { free(t); shard_close(r); return data_fail(err, errlen, "%s: cannot read the table", path); }
    if (fnv1a64(t, tn, 1469598103934665603ull) != sum) {
        free(t);
        shard_close(r);
        return data_fail(err, errlen, "%s: table checksum mismatch (bytes %llu..%llu corrupt)", path,
                    (unsigned long long)toff, (unsigned long long)fsize);
    }
    r->frame_off = malloc(sizeof(uint64_t) * (r->n_frames + 1));
    r->frame_zlen = malloc(sizeof(uint64_t) * (r->n_frames + 1));
    r->frame_first = malloc(sizeof(uint64_t) * (r->n_frames + 1));
    r->doc_first = malloc(sizeof(uint64_t) * (r->n_docs + 1));
    r->doc_len = malloc(sizeof(uint64_t) * (r->n_docs + 1));
    const uint8_t *p = t;
    for (uint64_t i = 0; i < r->n_frames; i++) { r->frame_off[i] = get64(p); r->frame_zlen[i] = get64(p + 8); r->frame_first[i] = get64(p + 16); p += 24; }
    for (uint64_t i = 0; i < r->n_docs; i++) { r->doc_first[i] = get64(p); r->doc_len[i] = get64(p + 8); p += 16; }
    free(t);
    for (uint64_t i = 0; i < r->n_frames; i++)   /* every frame inside the data section, in order */
        if (r->frame_off[i] < 64 || r->frame_zlen[i] > toff || r->frame_off[i] > toff - r->frame_zlen[i] ||
            (i && r->frame_first[i] <= r->frame_first[i - 1]) || r->frame_first[i] >= r->n_tokens) {
            shard_close(r);
            return data_fail(err, errlen, "%s: frame %llu points outside the data section", path, (unsigned long long)i);
        }
    for (uint64_t i = 0; i < r->n_docs; i++)
        if (r->doc_first[i] > r->n_tokens || r->doc_len[i] > r->n_tokens - r->doc_first[i]) {
            shard_close(r);
            return data_fail(err, errlen, "%s: document %llu points past the last token", path, (unsigned long long)i);
        }
    r->zcap = ZSTD_compressBound(SHARD_FRAME_BYTES);
    r->zbuf = malloc(r->zcap);
    r->cache = malloc(SHARD_FRAME_BYTES);
    return 0;
}

void shard_close(ShardReader *r) {
    if (r->fd >= 0) close(r->fd);
    free(r->frame_off); free(r->frame_zlen); free(r->frame_first); free(r->doc_first); free(r->doc_len);
    free(r->cache); free(r->zbuf);
    memset(r, 0, sizeof *r);
    r->fd = -1;
}

static int load_frame(ShardReader *r, uint64_t i, int64_t doc, char *err, size_t errlen) {
    if ((int64_t)i == r->cached_frame) return 0;
    r->cached_frame = -1;
    if (r->frame_zlen[i] > r->zcap) return data_fail(err, errlen, "%s: frame %llu is larger than any frame ropex writes", r->path, (unsigned long long)i);
    if (pread_full(r->fd, r->zbuf, r->frame_zlen[i], r->frame_off[i]))
        return data_fail(err, errlen, "%s: document %lld: cannot read the frame at byte %llu", r->path, (long long)doc, (unsigned long long)r->frame_off[i]);
    size_t n = ZSTD_decompress(r->cache, SHARD_FRAME_BYTES, r->zbuf, r->frame_zlen[i]);
    uint64_t want = ((i + 1 < r->n_frames ? r->frame_first[i + 1] : r->n_tokens) - r->frame_first[i]) * (uint64_t)r->token_bytes;
    if (ZSTD_isError(n) || n != want)
        return data_fail(err, errlen, "%s: document %lld: frame at byte %llu is corrupt (%s)", r->path, (long long)doc,
                    (unsigned long long)r->frame_off[i], ZSTD_isError(n) ? ZSTD_getErrorName(n) : "wrong length");
    r->cache_n = n;
    r->cached_frame = (int64_t)i;
    return 0;
}

int shard_read(ShardReader *r, uint64_t doc, uint64_t start, uint64_t n, int32_t *out, char *err, size_t errlen) {
    if (doc >= r->n_docs || start > r->doc_len[doc] || n > r->doc_len[doc] - start)
        return data_fail(err, errlen, "%s: document %llu: tokens [%llu, %llu) out of range", r->path,
                    (unsigned long long)doc, (unsigned long long)start, (unsigned long long)(start + n));
    uint64_t g = r->doc_first[doc] + start, end = g + n;
    while (g < end) {
        uint64_t lo = 0, hi = r->n_frames;   /* last frame with first <= g */
        while (hi - lo > 1) { uint64_t mid = (lo + hi) / 2; if (r->frame_first[mid] <= g) lo = mid; else hi = mid; }
        if (load_frame(r, lo, (int64_t)doc, err, errlen)) return -1;
        uint64_t fend = lo + 1 < r->n_frames ? r->frame_first[lo + 1] : r->n_tokens;
        uint64_t take = (end < fend ? end : fend) - g;
        const uint8_t *p = r->cache + (g - r->frame_first[lo]) * (uint64_t)r->token_bytes;
        if (r->token_bytes == 2) for (uint64_t i = 0; i < take; i++) { uint16_t v; memcpy(&v, p + 2 * i, 2); *out++ = v; }
        else for (uint64_t i = 0; i < take; i++) { uint32_t v; memcpy(&v, p + 4 * i, 4); *out++ = (int32_t)v; }
        g += take;
    }
    return 0;
}

int64_t shard_verify(ShardReader *r, char *err, size_t errlen) {
    int64_t bad = 0;
    for (uint64_t i = 0; i < r->n_frames; i++) {
        r->cached_frame = -1;
        /* the first document starting in (or running through) this frame, for the message */
        uint64_t lo = 0, hi = r->n_docs;
        while (hi - lo > 1) { uint64_t mid = (lo + hi) / 2; if (r->doc_first[mid] <= r->frame_first[i]) lo = mid; else hi = mid; }
        if (load_frame(r, i, (int64_t)lo, err, errlen)) bad++;
    }
    return bad;
}

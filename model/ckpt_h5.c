/* ropex checkpoints in HDF5 (layout in ckpt.h). */
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt.h"
#include "fsutil.h"

void train_state_free(TrainState *st) {
    free(st->data_cursor);
    free(st->config_text);
    memset(st, 0, sizeof *st);
}

/* ---- writing ---- */

typedef struct { hid_t file; int bad; } H5W;   /* bad: a call failed; checked once at the end */

static void w_attr(H5W *w, hid_t loc, const char *name, hid_t file_type, hid_t mem_type,
                   int64_t n, const void *data) {
    hsize_t dim = (hsize_t)n;
    hid_t sp = n < 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &dim, NULL);
    hid_t a = H5Acreate2(loc, name, file_type, sp, H5P_DEFAULT, H5P_DEFAULT);
    if (a < 0 || H5Awrite(a, mem_type, data) < 0) w->bad = 1;
    if (a >= 0) H5Aclose(a);
    H5Sclose(sp);
}
static void w_i64(H5W *w, hid_t loc, const char *name, int64_t v) { w_attr(w, loc, name, H5T_STD_I64LE, H5T_NATIVE_INT64, -1, &v); }
static void w_u64(H5W *w, hid_t loc, const char *name, uint64_t v) { w_attr(w, loc, name, H5T_STD_U64LE, H5T_NATIVE_UINT64, -1, &v); }
static void w_f64(H5W *w, hid_t loc, const char *name, double v) { w_attr(w, loc, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, -1, &v); }
static void w_str(H5W *w, hid_t loc, const char *name, const char *s) {
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, strlen(s) ? strlen(s) : 1);
    H5Tset_strpad(t, H5T_STR_NULLPAD);
    w_attr(w, loc, name, t, t, -1, s);
    H5Tclose(t);
}

static void w_data(H5W *w, hid_t loc, const char *name, hid_t file_type, hid_t mem_type, int ndim,
                   const int64_t *shape, const void *data) {
    hsize_t dims[2] = {(hsize_t)shape[0], ndim > 1 ? (hsize_t)shape[1] : 1};
    hid_t sp = H5Screate_simple(ndim, dims, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER);   /* every byte is written right after */
    hid_t d = H5Dcreate2(loc, name, file_type, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    H5Pclose(dcpl);
    if (d < 0 || (dims[0] > 0 && H5Dwrite(d, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)) w->bad = 1;
    if (d >= 0) H5Dclose(d);
    H5Sclose(sp);
}

static void w_tensors(H5W *w, hid_t g, const Model *m, const float *base) {
    for (int i = 0; i < m->table.count; i++) {
        const ParamEntry *e = &m->table.entries[i];
        w_data(w, g, e->name, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, e->ndim, e->shape, base + e->offset);
    }
}

static void w_config(H5W *w, hid_t g, const ModelConfig *c) {
    w_i64(w, g, "vocab_size", c->vocab);
    w_i64(w, g, "hidden_size", c->dim);
    w_i64(w, g, "num_hidden_layers", c->n_layers);
    w_i64(w, g, "num_attention_heads", c->n_heads);
    w_i64(w, g, "num_key_value_heads", c->n_kv_heads);
    w_i64(w, g, "head_dim", c->head_dim);
    w_i64(w, g, "intermediate_size", c->hidden_dim);
    w_f64(w, g, "rms_norm_eps", c->norm_eps);
    w_i64(w, g, "tie_word_embeddings", c->tied);
    for (int i = 0; i < ROPE_NKEYS; i++) {   /* every [rope] key under its HF name */
        const RopeKey *k = &ROPE_KEYS[i];
        const char *f = (const char *)&c->rope + k->offset;
        switch (k->kind) {
        case RK_METHOD: w_str(w, g, k->name, rope_method_name(*(const RopeMethod *)f)); break;
        case RK_DOUBLE: w_f64(w, g, k->name, *(const double *)f); break;
        case RK_INT: w_i64(w, g, k->name, *(const int64_t *)f); break;
        case RK_BOOL: w_i64(w, g, k->name, *(const int *)f); break;
        case RK_LIST: {
            int n = *rope_list_len((RopeConfig *)&c->rope, k);
            w_attr(w, g, k->name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, n, f);
            break;
        }
        }
    }
}

RxStatus ckpt_save(const char *path, const Model *m, const float *adam_m, const float *adam_v,
                   const TrainState *st, const FileBlobs *tok, RxError *err) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    H5W w = {H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), 0};
    if (w.file < 0) return rx_fail(err, RX_ERR_IO, "%s: cannot create (HDF5)", tmp);
    w_str(&w, w.file, "format", CKPT_FORMAT);
    w_i64(&w, w.file, "version", CKPT_VERSION);
    hid_t g = H5Gcreate2(w.file, "config", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    w_config(&w, g, &m->cfg);
    H5Gclose(g);
    g = H5Gcreate2(w.file, "model", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    w_tensors(&w, g, m, m->params);
    H5Gclose(g);
    if (adam_m && adam_v) {
        hid_t o = H5Gcreate2(w.file, "optim", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        g = H5Gcreate2(o, "m", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        w_tensors(&w, g, m, adam_m);
        H5Gclose(g);
        g = H5Gcreate2(o, "v", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        w_tensors(&w, g, m, adam_v);
        H5Gclose(g);
        H5Gclose(o);
    }
    if (st) {
        g = H5Gcreate2(w.file, "state", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        w_i64(&w, g, "step", st->step);
        w_i64(&w, g, "tokens_seen", st->tokens_seen);
        w_u64(&w, g, "rng_state", st->rng_state);
        w_i64(&w, g, "world_size", st->world_size);
        int64_t n = (int64_t)st->data_cursor_len;
        w_data(&w, g, "data_cursor", H5T_STD_U8LE, H5T_NATIVE_UINT8, 1, &n, st->data_cursor);
        n = st->config_text ? (int64_t)strlen(st->config_text) : 0;
        w_data(&w, g, "config.ini", H5T_STD_U8LE, H5T_NATIVE_UINT8, 1, &n, st->config_text);
        H5Gclose(g);
    }
    if (tok && tok->n > 0) {
        g = H5Gcreate2(w.file, "tokenizer", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        for (int i = 0; i < tok->n; i++) {
            int64_t n = (int64_t)tok->items[i].len;
            w_data(&w, g, tok->items[i].name, H5T_STD_U8LE, H5T_NATIVE_UINT8, 1, &n, tok->items[i].data);
        }
        H5Gclose(g);
    }
    if (H5Fflush(w.file, H5F_SCOPE_GLOBAL) < 0) w.bad = 1;
    if (H5Fclose(w.file) < 0) w.bad = 1;
    if (w.bad) {
        remove(tmp);
        return rx_fail(err, RX_ERR_IO, "%s: writing the checkpoint failed (disk full?)", tmp);
    }
    return fs_commit_tmp(tmp, path, err);
}

/* ---- reading ---- */

typedef struct { hid_t file; const char *path; RxError *err; } H5R;

static RxStatus r_open(H5R *r, const char *path, RxError *err) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    r->path = path;
    r->err = err;
    r->file = -1;
    if (!fs_exists(path)) return rx_fail(err, RX_ERR_IO, "%s: no such file", path);
    if (H5Fis_hdf5(path) <= 0)
        return rx_fail(err, RX_ERR_FORMAT, "%s: not an HDF5 file (a ropex checkpoint is HDF5)", path);
    r->file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (r->file < 0) return rx_fail(err, RX_ERR_IO, "%s: HDF5 cannot open it", path);
    return RX_OK;
}

/* A scalar or 1-D numeric attribute read as doubles (n values; *got set to the count). */
static RxStatus r_nums(H5R *r, hid_t loc, const char *where, const char *name, double *out,
                       int cap, int *got, int required) {
    if (H5Aexists(loc, name) <= 0) {
        if (got) *got = 0;
        if (!required) return RX_OK;
        return rx_fail(r->err, RX_ERR_FORMAT, "%s: missing attribute %s/%s", r->path, where, name);
    }
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    hid_t sp = H5Aget_space(a), t = H5Aget_type(a);
    hssize_t n = H5Sget_simple_extent_npoints(sp);
    H5T_class_t cls = H5Tget_class(t);
    RxStatus rs = RX_OK;
    if ((cls != H5T_INTEGER && cls != H5T_FLOAT) || n < 0 || n > cap)
        rs = rx_fail(r->err, RX_ERR_FORMAT, "%s: attribute %s/%s: expected %s", r->path, where, name,
                     cap == 1 ? "one number" : "a list of numbers");
    else if (n > 0 && H5Aread(a, H5T_NATIVE_DOUBLE, out) < 0)
        rs = rx_fail(r->err, RX_ERR_FORMAT, "%s: attribute %s/%s: unreadable", r->path, where, name);
    if (got) *got = (int)n;
    H5Tclose(t); H5Sclose(sp); H5Aclose(a);
    return rs;
}

static RxStatus r_i64(H5R *r, hid_t loc, const char *where, const char *name, int64_t *out) {
    double v = 0;
    RxStatus rs = r_nums(r, loc, where, name, &v, 1, NULL, 1);
    *out = (int64_t)v;
    return rs;
}

static RxStatus r_str(H5R *r, hid_t loc, const char *where, const char *name, char *out, size_t cap) {
    if (H5Aexists(loc, name) <= 0)
        return rx_fail(r->err, RX_ERR_FORMAT, "%s: missing attribute %s/%s", r->path, where, name);
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT), t = H5Aget_type(a);
    RxStatus rs = RX_OK;
    out[0] = 0;
    if (H5Tget_class(t) != H5T_STRING) {
        rs = rx_fail(r->err, RX_ERR_FORMAT, "%s: attribute %s/%s: expected a string", r->path, where, name);
    } else if (H5Tis_variable_str(t) > 0) {
        hid_t mt = H5Tcopy(H5T_C_S1);
        H5Tset_size(mt, H5T_VARIABLE);
        char *s = NULL;
        if (H5Aread(a, mt, &s) >= 0 && s) snprintf(out, cap, "%s", s);
        H5free_memory(s);
        H5Tclose(mt);
    } else {
        size_t n = H5Tget_size(t);
        char *buf = calloc(n + 2, 1);
        hid_t mt = H5Tcopy(H5T_C_S1);
        H5Tset_size(mt, n + 1);   /* room for the terminator of a C string */
        if (buf && H5Aread(a, mt, buf) >= 0) snprintf(out, cap, "%s", buf);
        free(buf);
        H5Tclose(mt);
    }
    H5Tclose(t); H5Aclose(a);
    return rs;
}

static RxStatus r_config(H5R *r, ModelConfig *c) {
    char fmt[64];
    int64_t version = 0;
    RxStatus rs;
    if (H5Aexists(r->file, "format") <= 0)
        return rx_fail(r->err, RX_ERR_FORMAT, "%s: not a ropex checkpoint (no 'format' attribute on "
                       "'/'; written by another program?)", r->path);
    if ((rs = r_str(r, r->file, "", "format", fmt, sizeof fmt)) != RX_OK) return rs;
    if (strcmp(fmt, CKPT_FORMAT))
        return rx_fail(r->err, RX_ERR_FORMAT, "%s: format '%s', expected '%s'", r->path, fmt, CKPT_FORMAT);
    if ((rs = r_i64(r, r->file, "", "version", &version)) != RX_OK) return rs;
    if (version != CKPT_VERSION)
        return rx_fail(r->err, RX_ERR_FORMAT, "%s: checkpoint version %lld, this ropex reads version %d",
                       r->path, (long long)version, CKPT_VERSION);
    if (H5Lexists(r->file, "config", H5P_DEFAULT) <= 0)
        return rx_fail(r->err, RX_ERR_FORMAT, "%s: missing group /config", r->path);
    hid_t g = H5Gopen2(r->file, "config", H5P_DEFAULT);
    memset(c, 0, sizeof *c);
    rope_config_default(&c->rope);
    int64_t tied = 0;
    double eps = 0;
    if ((rs = r_i64(r, g, "/config", "vocab_size", &c->vocab)) != RX_OK ||
        (rs = r_i64(r, g, "/config", "hidden_size", &c->dim)) != RX_OK ||
        (rs = r_i64(r, g, "/config", "num_hidden_layers", &c->n_layers)) != RX_OK ||
        (rs = r_i64(r, g, "/config", "num_attention_heads", &c->n_heads)) != RX_OK ||
        (rs = r_i64(r, g, "/config", "num_key_value_heads", &c->n_kv_heads)) != RX_OK ||
        (rs = r_i64(r, g, "/config", "head_dim", &c->head_dim)) != RX_OK ||
        (rs = r_i64(r, g, "/config", "intermediate_size", &c->hidden_dim)) != RX_OK ||
        (rs = r_nums(r, g, "/config", "rms_norm_eps", &eps, 1, NULL, 1)) != RX_OK ||
        (rs = r_i64(r, g, "/config", "tie_word_embeddings", &tied)) != RX_OK) {
        H5Gclose(g);
        return rs;
    }
    c->norm_eps = eps;
    c->tied = (int)tied;
    for (int i = 0; i < ROPE_NKEYS && rs == RX_OK; i++) {
        const RopeKey *k = &ROPE_KEYS[i];
        char *f = (char *)&c->rope + k->offset;
        double v = 0;
        if (k->kind == RK_METHOD) {
            char name[64];
            if ((rs = r_str(r, g, "/config", k->name, name, sizeof name)) == RX_OK &&
                rope_method_parse(name, (RopeMethod *)f) != 0)
                rs = rx_fail(r->err, RX_ERR_FORMAT, "%s: /config/rope_type = '%s' is unknown", r->path, name);
        } else if (k->kind == RK_LIST) {
            rs = r_nums(r, g, "/config", k->name, (double *)f, ROPE_MAX_PAIRS, rope_list_len(&c->rope, k), 1);
        } else if ((rs = r_nums(r, g, "/config", k->name, &v, 1, NULL, 1)) == RX_OK) {
            if (k->kind == RK_DOUBLE) *(double *)f = v;
            else if (k->kind == RK_INT) *(int64_t *)f = (int64_t)v;
            else *(int *)f = (int)v;
        }
    }
    H5Gclose(g);
    if (rs != RX_OK) return rs;
    RxError verr;
    if (model_config_validate(c, &verr) != RX_OK)
        return rx_fail(r->err, RX_ERR_FORMAT, "%s: /config: %s", r->path, verr.msg);
    return RX_OK;
}

/* Reads /<group>/<name> for every table entry, checking shape and dtype first. */
static RxStatus r_tensors(H5R *r, const char *group, const Model *m, float *base) {
    if (H5Lexists(r->file, group, H5P_DEFAULT) <= 0)
        return rx_fail(r->err, RX_ERR_FORMAT, "%s: missing group %s", r->path, group);
    hid_t g = H5Gopen2(r->file, group, H5P_DEFAULT);
    RxStatus rs = RX_OK;
    for (int i = 0; i < m->table.count && rs == RX_OK; i++) {
        const ParamEntry *e = &m->table.entries[i];
        if (H5Lexists(g, e->name, H5P_DEFAULT) <= 0) {
            rs = rx_fail(r->err, RX_ERR_FORMAT, "%s: missing tensor %s/%s", r->path, group, e->name);
            break;
        }
        hid_t d = H5Dopen2(g, e->name, H5P_DEFAULT);
        hid_t sp = H5Dget_space(d), t = H5Dget_type(d);
        hsize_t dims[8] = {0};
        int nd = H5Sget_simple_extent_ndims(sp);
        if (nd >= 0 && nd <= 8) H5Sget_simple_extent_dims(sp, dims, NULL);
        if (H5Tget_class(t) != H5T_FLOAT || H5Tget_size(t) != 4)
            rs = rx_fail(r->err, RX_ERR_FORMAT, "%s: tensor %s/%s: expected float32 data", r->path, group, e->name);
        else if (nd != e->ndim || (int64_t)dims[0] != e->shape[0] || (nd == 2 && (int64_t)dims[1] != e->shape[1]))
            rs = rx_fail(r->err, RX_ERR_FORMAT, "%s: tensor %s/%s: shape (%lld%s%.0lld), config implies "
                         "(%lld%s%.0lld)", r->path, group, e->name, (long long)dims[0], nd == 2 ? ", " : "",
                         nd == 2 ? (long long)dims[1] : 0LL, (long long)e->shape[0], e->ndim == 2 ? ", " : "",
                         e->ndim == 2 ? (long long)e->shape[1] : 0LL);
        else if (H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, base + e->offset) < 0)
            rs = rx_fail(r->err, RX_ERR_IO, "%s: tensor %s/%s: read failed", r->path, group, e->name);
        H5Tclose(t); H5Sclose(sp); H5Dclose(d);
    }
    H5Gclose(g);
    return rs;
}

/* A 1-D byte dataset into a new buffer (NUL-terminated). */
static RxStatus r_bytes(H5R *r, hid_t g, const char *where, const char *name, uint8_t **out, size_t *len) {
    *out = NULL;
    *len = 0;
    if (H5Lexists(g, name, H5P_DEFAULT) <= 0) return rx_fail(r->err, RX_ERR_FORMAT, "%s: missing %s/%s", r->path, where, name);
    hid_t d = H5Dopen2(g, name, H5P_DEFAULT), sp = H5Dget_space(d), t = H5Dget_type(d);
    hssize_t n = H5Sget_simple_extent_npoints(sp);
    RxStatus rs = RX_OK;
    if (H5Tget_class(t) != H5T_INTEGER || H5Tget_size(t) != 1 || n < 0)
        rs = rx_fail(r->err, RX_ERR_FORMAT, "%s: %s/%s: expected bytes", r->path, where, name);
    else {
        *out = malloc((size_t)n + 1);
        if (!*out) rs = rx_fail(r->err, RX_ERR_NOMEM, "out of memory");
        else if (n > 0 && H5Dread(d, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, *out) < 0)
            rs = rx_fail(r->err, RX_ERR_IO, "%s: %s/%s: read failed", r->path, where, name);
        if (*out) (*out)[n] = 0;
        *len = (size_t)n;
    }
    H5Tclose(t); H5Sclose(sp); H5Dclose(d);
    return rs;
}

RxStatus ckpt_read_config(const char *path, ModelConfig *cfg, RxError *err) {
    H5R r;
    RxStatus rs = r_open(&r, path, err);
    if (rs == RX_OK) rs = r_config(&r, cfg);
    if (r.file >= 0) H5Fclose(r.file);
    return rs;
}

RxStatus ckpt_load(const char *path, Model *m, float **adam_m, float **adam_v, TrainState *st,
                   FileBlobs *tok, RxError *err) {
    H5R r;
    ModelConfig cfg;
    RxStatus rs = r_open(&r, path, err);
    if (rs == RX_OK) rs = r_config(&r, &cfg);
    if (rs == RX_OK) rs = model_init(m, &cfg, err);
    if (rs != RX_OK) { if (r.file >= 0) H5Fclose(r.file); return rs; }
    rs = r_tensors(&r, "model", m, m->params);
    if (rs == RX_OK && adam_m && adam_v) {
        *adam_m = *adam_v = NULL;
        if (H5Lexists(r.file, "optim", H5P_DEFAULT) > 0) {
            *adam_m = calloc(m->table.total, sizeof(float));
            *adam_v = calloc(m->table.total, sizeof(float));
            if (!*adam_m || !*adam_v) rs = rx_fail(err, RX_ERR_NOMEM, "out of memory for AdamW moments");
            if (rs == RX_OK) rs = r_tensors(&r, "optim/m", m, *adam_m);
            if (rs == RX_OK) rs = r_tensors(&r, "optim/v", m, *adam_v);
            if (rs != RX_OK) { free(*adam_m); free(*adam_v); *adam_m = *adam_v = NULL; }
        }
    }
    if (rs == RX_OK && st) {
        memset(st, 0, sizeof *st);
        if (H5Lexists(r.file, "state", H5P_DEFAULT) > 0) {
            hid_t g = H5Gopen2(r.file, "state", H5P_DEFAULT);
            size_t len;
            if ((rs = r_i64(&r, g, "/state", "step", &st->step)) == RX_OK &&
                (rs = r_i64(&r, g, "/state", "tokens_seen", &st->tokens_seen)) == RX_OK &&
                (rs = r_i64(&r, g, "/state", "world_size", &st->world_size)) == RX_OK &&
                (rs = r_bytes(&r, g, "/state", "data_cursor", &st->data_cursor, &st->data_cursor_len)) == RX_OK)
                rs = r_bytes(&r, g, "/state", "config.ini", (uint8_t **)&st->config_text, &len);
            /* rng_state is a full 64-bit value: read it as such, not through double */
            if (rs == RX_OK) {
                if (H5Aexists(g, "rng_state") <= 0) rs = rx_fail(err, RX_ERR_FORMAT, "%s: missing attribute /state/rng_state", path);
                else {
                    hid_t a = H5Aopen(g, "rng_state", H5P_DEFAULT);
                    if (H5Aread(a, H5T_NATIVE_UINT64, &st->rng_state) < 0)
                        rs = rx_fail(err, RX_ERR_FORMAT, "%s: /state/rng_state unreadable", path);
                    H5Aclose(a);
                }
            }
            H5Gclose(g);
        }
    }
    if (rs == RX_OK && tok) {
        memset(tok, 0, sizeof *tok);
        if (H5Lexists(r.file, "tokenizer", H5P_DEFAULT) > 0) {
            hid_t g = H5Gopen2(r.file, "tokenizer", H5P_DEFAULT);
            H5G_info_t info;
            H5Gget_info(g, &info);
            tok->items = calloc(info.nlinks + 1, sizeof(FileBlob));
            for (hsize_t i = 0; i < info.nlinks && rs == RX_OK; i++) {
                FileBlob *b = &tok->items[tok->n];
                if (H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, b->name, sizeof b->name, H5P_DEFAULT) < 0) continue;
                rs = r_bytes(&r, g, "/tokenizer", b->name, &b->data, &b->len);
                tok->n++;
            }
            H5Gclose(g);
        }
    }
    H5Fclose(r.file);
    if (rs != RX_OK) {
        model_free(m);
        if (st) train_state_free(st);
        if (tok) file_blobs_free(tok);
    }
    return rs;
}

/* ropex data prepare: text -> filtered, tokenized, zstd-compressed shards + manifest (data.h). */
#include "data.h"
#include "util.h"

#include <cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <omp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

typedef struct { char *text; size_t len; char origin[300]; } Doc;
typedef struct { Doc *d; size_t n, cap; } Docs;

static int docs_add(Docs *v, char *text, size_t len, const char *origin) {
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 256;
        Doc *p = realloc(v->d, cap * sizeof *p);
        if (!p) return -1;
        v->d = p;
        v->cap = cap;
    }
    v->d[v->n].text = text;
    v->d[v->n].len = len;
    snprintf(v->d[v->n].origin, sizeof v->d[v->n].origin, "%s", origin);
    v->n++;
    return 0;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Files of a directory, sorted, recursively. */
static int list_files(const char *dir, char ***out, size_t *n, size_t *cap) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    struct dirent *e;
    char **names = NULL;
    size_t nn = 0, nc = 0;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        if (nn == nc) { nc = nc ? nc * 2 : 64; names = realloc(names, nc * sizeof *names); }
        size_t l = strlen(dir) + strlen(e->d_name) + 2;
        names[nn] = malloc(l);
        snprintf(names[nn++], l, "%s/%s", dir, e->d_name);
    }
    closedir(d);
    qsort(names, nn, sizeof *names, cmp_str);
    for (size_t i = 0; i < nn; i++) {
        struct stat sb;
        if (stat(names[i], &sb) == 0 && S_ISDIR(sb.st_mode)) { list_files(names[i], out, n, cap); free(names[i]); continue; }
        if (*n == *cap) { *cap = *cap ? *cap * 2 : 64; *out = realloc(*out, *cap * sizeof **out); }
        (*out)[(*n)++] = names[i];
    }
    free(names);
    return 0;
}

static int has_suffix(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

/* Reads one input: JSONL (a document per line, "text" field), a directory (a document per file,
 * or one per directory with aggregate), or a text file (one document). */
static int read_input(const char *in, int aggregate, Docs *docs, char *err, size_t errlen) {
    struct stat sb;
    if (stat(in, &sb) != 0) return data_fail(err, errlen, "%s: no such file or directory", in);
    if (S_ISDIR(sb.st_mode)) {
        char **files = NULL;
        size_t n = 0, cap = 0;
        list_files(in, &files, &n, &cap);
        char *agg = NULL;
        size_t agg_n = 0;
        char agg_dir[1024] = "";
        for (size_t i = 0; i <= n; i++) {
            char dir[1024] = "";
            if (i < n) { snprintf(dir, sizeof dir, "%s", files[i]); char *slash = strrchr(dir, '/'); if (slash) *slash = 0; }
            if (aggregate && agg && (i == n || strcmp(dir, agg_dir))) {   /* a directory ends: one document */
                if (docs_add(docs, agg, agg_n, agg_dir)) return data_fail(err, errlen, "out of memory");
                agg = NULL;
                agg_n = 0;
            }
            if (i == n) break;
            size_t len;
            char *t = data_read_file(files[i], &len);
            if (!t) { data_fail(err, errlen, "%s: cannot read (%s)", files[i], strerror(errno)); free(files[i]); continue; }
            if (!aggregate) { docs_add(docs, t, len, files[i]); free(files[i]); continue; }
            /* files of one directory, in order, each headed by its path (as repository-level code data does) */
            const char *rel = files[i] + strlen(in) + (files[i][strlen(in)] == '/');
            size_t add = strlen(rel) + len + 8;
            agg = realloc(agg, agg_n + add + 1);
            agg_n += (size_t)snprintf(agg + agg_n, add + 1, "%s%s\n", agg_n ? "\n\n" : "", rel);
            memcpy(agg + agg_n, t, len);
            agg_n += len;
            agg[agg_n] = 0;
            snprintf(agg_dir, sizeof agg_dir, "%s", dir);
            free(t);
            free(files[i]);
        }
        free(files);
        return 0;
    }
    size_t len;
    char *t = data_read_file(in, &len);
    if (!t) return data_fail(err, errlen, "%s: cannot read (%s)", in, strerror(errno));
    if (!has_suffix(in, ".jsonl")) return docs_add(docs, t, len, in) ? data_fail(err, errlen, "out of memory") : 0;
    size_t line = 0;
    for (char *p = t; p < t + len;) {
        char *nl = memchr(p, '\n', (size_t)(t + len - p));
        size_t l = nl ? (size_t)(nl - p) : (size_t)(t + len - p);
        line++;
        if (l > 0) {
            cJSON *o = cJSON_ParseWithLength(p, l);
            const char *txt = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "text"));
            if (!txt) { cJSON_Delete(o); free(t); return data_fail(err, errlen, "%s:%zu: expected a JSON object with a \"text\" string", in, line); }
            char origin[300];
            snprintf(origin, sizeof origin, "%s:%zu", in, line);
            docs_add(docs, strdup(txt), strlen(txt), origin);
            cJSON_Delete(o);
        }
        p += l + 1;
    }
    free(t);
    return 0;
}

/* Share of bytes that are not text (control characters other than tab/newline/CR, NUL) and the
 * share of lines that repeat an earlier line of the document: the "incoherent text" heuristic. */
static void text_quality(const char *t, size_t n, double *nontext, double *repeated) {
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)t[i];
        if ((c < 32 && c != '\n' && c != '\t' && c != '\r') || c == 127) bad++;
    }
    *nontext = n ? (double)bad / (double)n : 0;
    size_t lines = 0, rep = 0, cap = 64;
    uint64_t *seen = calloc(cap, sizeof *seen);
    size_t used = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && t[j] != '\n') j++;
        if (j - i >= 8) {   /* short lines (blank, braces) repeat by nature */
            lines++;
            uint64_t h = fnv1a64(t + i, j - i, 1469598103934665603ull) | 1;
            if ((used + 1) * 2 > cap) {
                uint64_t *ns = calloc(cap * 2, sizeof *ns);
                for (size_t q = 0; q < cap; q++) if (seen[q]) { size_t x = seen[q] & (cap * 2 - 1); while (ns[x]) x = (x + 1) & (cap * 2 - 1); ns[x] = seen[q]; }
                free(seen); seen = ns; cap *= 2;
            }
            size_t x = h & (cap - 1);
            while (seen[x] && seen[x] != h) x = (x + 1) & (cap - 1);
            if (seen[x] == h) rep++;
            else { seen[x] = h; used++; }
        }
        i = j + 1;
    }
    free(seen);
    *repeated = lines ? (double)rep / (double)lines : 0;
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Adds or replaces the domain in DIR/manifest.json. */
static int write_manifest(const PrepareConfig *c, const Tokenizer *tok, const char *train, const char *held,
                          uint64_t docs_train, uint64_t docs_held, uint64_t tok_train, uint64_t tok_held,
                          char *err, size_t errlen) {
    char path[1200], tmp[1300];
    snprintf(path, sizeof path, "%s/manifest.json", c->out_dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    size_t n;
    char *text = data_read_file(path, &n);
    cJSON *root = text ? cJSON_Parse(text) : NULL;
    free(text);
    if (!root) {
        root = cJSON_CreateObject();
        cJSON_AddStringToObject(root, "format", "ropex-data");
        cJSON_AddNumberToObject(root, "version", 1);
        cJSON_AddItemToObject(root, "domains", cJSON_CreateArray());
    }
    cJSON_DeleteItemFromObject(root, "tokenizer");
    cJSON_DeleteItemFromObject(root, "vocab_size");
    cJSON_DeleteItemFromObject(root, "bos_id");
    cJSON_DeleteItemFromObject(root, "eos_id");
    cJSON_AddStringToObject(root, "tokenizer", "tokenizer.json");
    cJSON_AddNumberToObject(root, "vocab_size", (double)tokenizer_vocab_size(tok));
    cJSON_AddNumberToObject(root, "bos_id", tokenizer_bos(tok));
    cJSON_AddNumberToObject(root, "eos_id", tokenizer_eos(tok));
    cJSON *doms = cJSON_GetObjectItemCaseSensitive(root, "domains");
    for (int i = cJSON_GetArraySize(doms) - 1; i >= 0; i--) {
        const char *nm = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(doms, i), "name"));
        if (nm && !strcmp(nm, c->domain)) cJSON_DeleteItemFromArray(doms, i);
    }
    cJSON *d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "name", c->domain);
    cJSON *a = cJSON_AddArrayToObject(d, "shards");
    cJSON_AddItemToArray(a, cJSON_CreateString(train));
    a = cJSON_AddArrayToObject(d, "heldout_shards");
    if (docs_held) cJSON_AddItemToArray(a, cJSON_CreateString(held));
    cJSON_AddNumberToObject(d, "documents", (double)docs_train);
    cJSON_AddNumberToObject(d, "tokens", (double)tok_train);
    cJSON_AddNumberToObject(d, "heldout_documents", (double)docs_held);
    cJSON_AddNumberToObject(d, "heldout_tokens", (double)tok_held);
    cJSON_AddItemToArray(doms, d);
    char *out = cJSON_Print(root);
    cJSON_Delete(root);
    FILE *f = fopen(tmp, "wb");
    int rc = !f || fputs(out, f) < 0 || fputc('\n', f) < 0 || fflush(f) || fsync(fileno(f));
    if (f) rc |= fclose(f) != 0;
    free(out);
    if (rc || rename(tmp, path)) return data_fail(err, errlen, "%s: cannot write", path);
    return 0;
}

int data_prepare(const PrepareConfig *c, PrepareSummary *sum, char *err, size_t errlen) {
    memset(sum, 0, sizeof *sum);
    if (mkdir(c->out_dir, 0777) != 0 && errno != EEXIST)
        return data_fail(err, errlen, "%s: cannot create (%s)", c->out_dir, strerror(errno));
    for (const char *p = c->domain; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_' || *p == '-'))
            return data_fail(err, errlen, "--domain %s: use letters, digits, '_' and '-'", c->domain);
    Tokenizer *tok = tokenizer_load(c->tokenizer, err, errlen);
    if (!tok) return -1;
    /* the dataset keeps its tokenizer: a second domain must use the same one */
    char tpath[1200];
    snprintf(tpath, sizeof tpath, "%s/tokenizer.json", c->out_dir);
    size_t n_new, n_old;
    char *t_new = data_read_file(c->tokenizer, &n_new), *t_old = data_read_file(tpath, &n_old);
    int rc = 0;
    if (t_old && (n_old != n_new || memcmp(t_old, t_new, n_new)))
        rc = data_fail(err, errlen, "%s was prepared with another tokenizer (%s differs)", c->out_dir, tpath);
    else if (!t_old) {
        FILE *f = fopen(tpath, "wb");
        if (!f || fwrite(t_new, 1, n_new, f) != n_new) rc = data_fail(err, errlen, "%s: cannot write", tpath);
        if (f) fclose(f);
    }
    free(t_new); free(t_old);
    Docs docs = {0};
    for (int i = 0; i < c->n_inputs && !rc; i++) rc = read_input(c->inputs[i], c->aggregate, &docs, err, errlen);
    if (rc) { tokenizer_free(tok); for (size_t i = 0; i < docs.n; i++) free(docs.d[i].text); free(docs.d); return -1; }
    sum->docs_in = docs.n;

    /* filters in document order: duplicates, incoherent text */
    uint8_t *keep = calloc(docs.n + 1, 1);
    size_t hcap = 64;
    while (hcap < docs.n * 2 + 2) hcap *= 2;
    uint64_t *seen = calloc(hcap, sizeof *seen);
    for (size_t i = 0; i < docs.n; i++) {
        keep[i] = 1;
        if (c->dedup) {
            uint64_t h = fnv1a64(docs.d[i].text, docs.d[i].len, 1469598103934665603ull) | 1;
            size_t x = h & (hcap - 1);
            while (seen[x] && seen[x] != h) x = (x + 1) & (hcap - 1);
            if (seen[x] == h) { keep[i] = 0; sum->dropped_duplicate++; continue; }
            seen[x] = h;
        }
        double nontext, repeated;
        text_quality(docs.d[i].text, docs.d[i].len, &nontext, &repeated);
        if (nontext > c->max_nontext || repeated > c->max_repeated) { keep[i] = 0; sum->dropped_incoherent++; }
    }
    free(seen);

    /* tokenize on every core, in chunks, writing in document order */
    int token_bytes = tokenizer_vocab_size(tok) <= 65536 ? 2 : 4;
    char train_name[200], held_name[200], train_path[1400], held_path[1400];
    snprintf(train_name, sizeof train_name, "%s-train.rxs", c->domain);
    snprintf(held_name, sizeof held_name, "%s-heldout.rxs", c->domain);
    snprintf(train_path, sizeof train_path, "%s/%s", c->out_dir, train_name);
    snprintf(held_path, sizeof held_path, "%s/%s", c->out_dir, held_name);
    ShardWriter wt, wh;
    rc = shard_writer_open(&wt, train_path, token_bytes, c->level, err, errlen);
    if (!rc && (rc = shard_writer_open(&wh, held_path, token_bytes, c->level, err, errlen)) != 0)
        shard_writer_close(&wt, 0, NULL, 0);
    const size_t CHUNK = 64;
    int32_t **ids = calloc(CHUNK, sizeof *ids);
    size_t *caps = calloc(CHUNK, sizeof *caps);
    int64_t *counts = calloc(CHUNK, sizeof *counts);
    double t0 = now_s(), last = t0;
    uint64_t bytes_done = 0, bytes_all = 0;
    for (size_t i = 0; i < docs.n; i++) bytes_all += docs.d[i].len;
    for (size_t base = 0; base < docs.n && !rc; base += CHUNK) {
        size_t m = docs.n - base < CHUNK ? docs.n - base : CHUNK;
        int bad = 0;
        char terr[900] = "";
        #pragma omp parallel for schedule(dynamic, 1)
        for (size_t j = 0; j < m; j++) {
            if (!keep[base + j]) { counts[j] = 0; continue; }
            char e[512];
            counts[j] = tokenizer_encode(tok, docs.d[base + j].text, docs.d[base + j].len, &ids[j], &caps[j], e, sizeof e);
            if (counts[j] < 0) {
                #pragma omp critical
                { bad = 1; snprintf(terr, sizeof terr, "%s: %s", docs.d[base + j].origin, e); }
            }
        }
        if (bad) { rc = data_fail(err, errlen, "%s", terr); break; }
        for (size_t j = 0; j < m && !rc; j++) {
            Doc *d = &docs.d[base + j];
            bytes_done += d->len;
            if (!keep[base + j]) continue;
            if (counts[j] < c->min_tokens) { sum->dropped_short++; continue; }
            int held = c->heldout > 0 &&
                       (double)(fnv1a64(d->text, d->len, 0x9e3779b97f4a7c15ull) % 1000000) < c->heldout * 1e6;
            rc = shard_writer_add(held ? &wh : &wt, ids[j], (uint64_t)counts[j], err, errlen);
            if (held) { sum->docs_heldout++; sum->tokens_heldout += (uint64_t)counts[j]; }
            else { sum->docs_out++; sum->tokens_out += (uint64_t)counts[j]; }
        }
        double now = now_s();
        if (c->progress && (now - last > 2 || base + m == docs.n)) {
            double rate = (double)bytes_done / (now - t0 + 1e-9);
            fprintf(stderr, "\r  %s: %zu/%zu documents, %.1f MB/s, ETA %.0f s   ", c->domain, base + m, docs.n,
                    rate / 1e6, (double)(bytes_all - bytes_done) / (rate + 1e-9));
            last = now;
        }
        for (size_t j = 0; j < m; j++) { free(docs.d[base + j].text); docs.d[base + j].text = NULL; }
    }
    if (c->progress) fprintf(stderr, "\n");
    sum->bytes_in = bytes_all;
    uint64_t raw = 0;
    if (!rc) {
        raw = wt.raw_bytes + wt.buf_n + wh.raw_bytes + wh.buf_n;
        rc = shard_writer_close(&wt, 1, err, errlen);
        if (!rc) rc = shard_writer_close(&wh, 1, err, errlen);
        else shard_writer_close(&wh, 0, NULL, 0);
    } else {
        shard_writer_close(&wt, 0, NULL, 0);
        shard_writer_close(&wh, 0, NULL, 0);
    }
    if (!rc) {
        struct stat a, b;
        stat(train_path, &a);
        stat(held_path, &b);
        sum->bytes_compressed = (uint64_t)a.st_size + (uint64_t)b.st_size;
        sum->bytes_tokens = raw;
        rc = write_manifest(c, tok, train_name, held_name, sum->docs_out, sum->docs_heldout, sum->tokens_out,
                            sum->tokens_heldout, err, errlen);
    }
    for (size_t i = 0; i < docs.n; i++) free(docs.d[i].text);
    free(docs.d);
    for (size_t j = 0; j < CHUNK; j++) free(ids[j]);
    free(ids); free(caps); free(counts); free(keep);
    tokenizer_free(tok);
    return rc;
}

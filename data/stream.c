/* Deterministic, mixed, packed sequence stream with a prefetch thread (stream.h). */
#include "stream.h"
#include "util.h"

#include <cJSON.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "shard.h"

static uint64_t mix64(uint64_t z) {   /* splitmix64 finaliser: a keyed hash */
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static uint64_t key4(uint64_t a, uint64_t b, uint64_t c, uint64_t d) {
    return mix64(mix64(mix64(mix64(a) ^ b) ^ c) ^ d);
}

/* Where a domain's walk stands. */
typedef struct { uint64_t epoch, pos, offset, n_seq; } Cursor;

typedef struct {
    char name[64];
    double weight;
    ShardReader *shards; int n_shards;
    uint64_t n_docs;
    uint64_t *doc_shard, *doc_local;   /* global document -> (shard, document in shard) */
    uint64_t *perm; uint64_t perm_epoch; int has_perm;
    int whole;                         /* documents never cross a sequence boundary (whole_docs) */
} Domain;

typedef struct {
    int32_t *tokens, *docs;
    int domain;
    Cursor cur[STREAM_MAX_DOMAINS];
    uint64_t k;
    int64_t skipped;
    int error;
    char msg[512];
} Slot;

struct Stream {
    StreamConfig cfg;
    Domain dom[STREAM_MAX_DOMAINS];
    int n_dom;
    int32_t bos, eos;
    int64_t vocab;
    uint64_t fingerprint;
    /* producer state */
    Cursor cur[STREAM_MAX_DOMAINS];
    uint64_t k;
    int64_t skipped;
    /* what the consumer has taken: the cursor a checkpoint stores */
    Cursor taken[STREAM_MAX_DOMAINS];
    uint64_t taken_k;
    int64_t taken_skipped;
    /* ring of prepared sequences */
    Slot *ring; int cap, head, count;
    pthread_t thread; int running, stop;
    pthread_mutex_t mu; pthread_cond_t more, room;
    double wait_s;
};

/* ---- documents ---- */

static void make_perm(Stream *s, Domain *d, int di, uint64_t epoch) {
    if (d->has_perm && d->perm_epoch == epoch) return;
    for (uint64_t i = 0; i < d->n_docs; i++) d->perm[i] = i;
    uint64_t st = key4(s->cfg.seed, (uint64_t)di, epoch, 0x5e9);
    for (uint64_t i = d->n_docs; i > 1; i--) {   /* Fisher-Yates with a counter-based RNG */
        uint64_t j = mix64(st + i) % i, t = d->perm[i - 1];
        d->perm[i - 1] = d->perm[j];
        d->perm[j] = t;
    }
    d->perm_epoch = epoch;
    d->has_perm = 1;
}

static uint64_t doc_len(const Domain *d, uint64_t doc) {
    return d->shards[d->doc_shard[doc]].doc_len[d->doc_local[doc]];
}

/* Moves the cursor to a document that the upsampling rule keeps (offset 0 or inside one). */
static void settle(Stream *s, int di, Cursor *c) {
    Domain *d = &s->dom[di];
    for (uint64_t guard = 0;; guard++) {
        if (c->pos >= d->n_docs) { c->epoch++; c->pos = 0; c->offset = 0; }
        make_perm(s, d, di, c->epoch);
        if (c->offset > 0 || s->cfg.upsample_below <= 0 || guard > 4 * d->n_docs) return;
        uint64_t doc = d->perm[c->pos];
        if ((int64_t)doc_len(d, doc) >= s->cfg.upsample_below) return;
        double u = (double)(key4(s->cfg.seed, (uint64_t)di, c->epoch, doc) >> 11) * 0x1.0p-53;
        if (u < s->cfg.upsample_keep) return;
        c->pos++;
    }
}

/* Takes up to n tokens of the domain's stream into out (docs: span ids from *span on). Returns
 * the count; -1 on a read error not skipped. */
static int64_t take(Stream *s, int di, Cursor *c, int32_t *out, int32_t *docs, int32_t *span, int64_t n,
                    Slot *slot) {
    Domain *d = &s->dom[di];
    int64_t got = 0;
    uint64_t skips = 0;
    const int bos = s->cfg.add_bos && s->bos >= 0 && s->bos != s->eos;   /* GPT-2 style: EOS alone */
    while (got < n) {
        settle(s, di, c);
        uint64_t doc = d->perm[c->pos], len = doc_len(d, doc), aug = len + (uint64_t)bos + 1;
        if (d->whole && c->offset == 0 && aug > (uint64_t)(n - got) && aug <= (uint64_t)s->cfg.seq_len) {
            for (; got < n; got++) { out[got] = s->eos; docs[got] = (*span)++; }   /* padding */
            break;
        }
        uint64_t want = aug - c->offset < (uint64_t)(n - got) ? aug - c->offset : (uint64_t)(n - got);
        /* augmented index i: [BOS] tokens... EOS */
        uint64_t i = c->offset, end = c->offset + want;
        if (bos && i == 0 && i < end) { out[got] = s->bos; docs[got++] = *span; i++; }
        uint64_t t0 = i - (uint64_t)bos, t1 = (end < bos + len ? end : bos + len) - (uint64_t)bos;
        if (i < end && t1 > t0) {
            ShardReader *r = &d->shards[d->doc_shard[doc]];
            char msg[400];
            if (shard_read(r, d->doc_local[doc], t0, t1 - t0, out + got, msg, sizeof msg) != 0) {
                if (!s->cfg.skip_corrupt) {
                    slot->error = 1;
                    snprintf(slot->msg, sizeof slot->msg, "%s (set data.on_corrupt = skip to skip it)", msg);
                    return -1;
                }
                fprintf(stderr, "ropex: skipping a corrupt document: %s\n", msg);
                slot->skipped++;
                if (++skips > d->n_docs) {
                    slot->error = 1;
                    snprintf(slot->msg, sizeof slot->msg, "every document of domain %s is corrupt (last: %s)", d->name, msg);
                    return -1;
                }
                c->pos++;
                c->offset = 0;
                continue;
            }
            for (uint64_t q = 0; q < t1 - t0; q++) docs[got + (int64_t)q] = *span;
            got += (int64_t)(t1 - t0);
            i += t1 - t0;
        }
        if (i < end) { out[got] = s->eos; docs[got++] = *span; i++; }
        c->offset = i;
        if (c->offset == aug) { c->pos++; c->offset = 0; (*span)++; }
    }
    return got;
}

/* Sequence k (the producer's next) into slot. */
static void produce(Stream *s, Slot *slot) {
    int best = 0;
    double bv = -1e300;
    for (int d = 0; d < s->n_dom; d++) {
        double v = s->dom[d].weight * (double)(s->k + 1) - (double)s->cur[d].n_seq;
        if (v > bv + 1e-12) { bv = v; best = d; }
    }
    slot->error = 0;
    slot->skipped = 0;
    Cursor *c = &s->cur[best];
    int32_t span = 0;
    const int64_t T = s->cfg.seq_len;
    if (take(s, best, c, slot->tokens, slot->docs, &span, T, slot) == T) {
        Cursor peek = *c;   /* the last target, without consuming it */
        int32_t pspan = span;
        take(s, best, &peek, slot->tokens + T, slot->docs + T, &pspan, 1, slot);
    }
    c->n_seq++;
    s->k++;
    s->skipped += slot->skipped;
    slot->domain = best;
    memcpy(slot->cur, s->cur, sizeof s->cur);
    slot->k = s->k;
}

static void *producer(void *arg) {
    Stream *s = arg;
    pthread_mutex_lock(&s->mu);
    while (!s->stop) {
        if (s->count == s->cap) { pthread_cond_wait(&s->room, &s->mu); continue; }
        Slot *slot = &s->ring[(s->head + s->count) % s->cap];
        pthread_mutex_unlock(&s->mu);
        produce(s, slot);   /* only this thread touches the producer state */
        pthread_mutex_lock(&s->mu);
        s->count++;
        pthread_cond_signal(&s->more);
        if (slot->error) break;   /* hold the error for the consumer */
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

static void stop_producer(Stream *s) {
    if (!s->running) return;
    pthread_mutex_lock(&s->mu);
    s->stop = 1;
    pthread_cond_broadcast(&s->room);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
    s->running = 0;
    s->stop = 0;
    s->count = 0;
    s->head = 0;
}

static void start_producer(Stream *s) {
    pthread_create(&s->thread, NULL, producer, s);
    s->running = 1;
}

/* ---- opening ---- */

Stream *stream_open(const StreamConfig *cfg, char *err, size_t errlen) {
    if (cfg->seq_len <= 0) { data_fail(err, errlen, "data.seq_len must be > 0"); return NULL; }
    char path[1200];
    snprintf(path, sizeof path, "%s/manifest.json", cfg->dir);
    size_t n;
    char *text = data_read_file(path, &n);
    if (!text) { data_fail(err, errlen, "%s: cannot read (prepare the data with `ropex data prepare`)", path); return NULL; }
    cJSON *root = cJSON_ParseWithLength(text, n);
    Stream *s = calloc(1, sizeof *s);
    s->cfg = *cfg;
    if (s->cfg.prefetch < 1) s->cfg.prefetch = 4;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->more, NULL);
    pthread_cond_init(&s->room, NULL);
    int rc = 0;
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(root, "format");
    if (!cJSON_IsString(fmt) || strcmp(fmt->valuestring, "ropex-data"))
        rc = data_fail(err, errlen, "%s: not a ropex dataset manifest (\"format\" must be \"ropex-data\")", path);
    const cJSON *bos = cJSON_GetObjectItemCaseSensitive(root, "bos_id"), *eos = cJSON_GetObjectItemCaseSensitive(root, "eos_id");
    s->bos = cJSON_IsNumber(bos) ? bos->valueint : -1;
    s->eos = cJSON_IsNumber(eos) ? eos->valueint : -1;
    const cJSON *vs = cJSON_GetObjectItemCaseSensitive(root, "vocab_size");
    s->vocab = cJSON_IsNumber(vs) ? (int64_t)vs->valuedouble : 0;
    if (!rc && s->eos < 0) rc = data_fail(err, errlen, "%s: the tokenizer has no EOS token (eos_id), needed between documents", path);
    const cJSON *doms = rc ? NULL : cJSON_GetObjectItemCaseSensitive(root, "domains"), *it;
    cJSON_ArrayForEach(it, doms) {
        const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(it, "name"));
        if (!name) { rc = data_fail(err, errlen, "%s: a domain without \"name\"", path); break; }
        int want = cfg->n_mix == 0;
        double w = 0;
        for (int i = 0; i < cfg->n_mix; i++) if (!strcmp(cfg->mix_name[i], name)) { want = 1; w = cfg->mix_weight[i]; }
        if (!want) continue;
        if (s->n_dom == STREAM_MAX_DOMAINS) { rc = data_fail(err, errlen, "%s: more than %d domains", path, STREAM_MAX_DOMAINS); break; }
        Domain *d = &s->dom[s->n_dom++];
        snprintf(d->name, sizeof d->name, "%s", name);
        const cJSON *shards = cJSON_GetObjectItemCaseSensitive(it, cfg->heldout ? "heldout_shards" : "shards"), *sh;
        d->shards = calloc((size_t)cJSON_GetArraySize(shards) + 1, sizeof(ShardReader));
        cJSON_ArrayForEach(sh, shards) {
            char sp[1300];
            snprintf(sp, sizeof sp, "%s/%s", cfg->dir, cJSON_GetStringValue(sh) ? cJSON_GetStringValue(sh) : "?");
            if ((rc = shard_open(&d->shards[d->n_shards], sp, err, errlen)) != 0) break;
            d->n_docs += d->shards[d->n_shards].n_docs;
            d->n_shards++;
        }
        if (rc) break;
        if (d->n_docs == 0) { rc = data_fail(err, errlen, "%s: domain %s has no %s documents", path, name, cfg->heldout ? "held-out" : "training"); break; }
        d->weight = cfg->n_mix ? w : 0;
        if (!cfg->n_mix) for (int i = 0; i < d->n_shards; i++) d->weight += (double)d->shards[i].n_tokens;
        d->doc_shard = malloc(sizeof(uint64_t) * d->n_docs);
        d->doc_local = malloc(sizeof(uint64_t) * d->n_docs);
        d->perm = malloc(sizeof(uint64_t) * d->n_docs);
        uint64_t g = 0;
        for (int i = 0; i < d->n_shards; i++)
            for (uint64_t j = 0; j < d->shards[i].n_docs; j++) { d->doc_shard[g] = (uint64_t)i; d->doc_local[g++] = j; }
    }
    const char *mix_key = cfg->mix_key ? cfg->mix_key : "data.mix", *wl = cfg->whole_docs ? cfg->whole_docs : "";
    while (!rc && *wl) {   /* whole_docs: names separated by spaces or commas, or * */
        size_t k = strcspn(wl, " ,\t");
        if (k) {   /* a domain of the manifest that this stream's mix leaves out is no error */
            int found = k == 1 && *wl == '*';
            for (int d = 0; d < s->n_dom; d++)
                if (found || (strlen(s->dom[d].name) == k && !strncmp(s->dom[d].name, wl, k))) s->dom[d].whole = 1;
            cJSON_ArrayForEach(it, doms) {
                const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(it, "name"));
                found |= name && strlen(name) == k && !strncmp(name, wl, k);
            }
            if (!found) rc = data_fail(err, errlen, "data.whole_docs names domain '%.*s', which %s does not have", (int)k, wl, path);
        }
        wl += k;
        wl += strspn(wl, " ,\t");
    }
    for (int i = 0; !rc && i < cfg->n_mix; i++) {
        int found = 0;
        for (int d = 0; d < s->n_dom; d++) found |= !strcmp(s->dom[d].name, cfg->mix_name[i]);
        if (!found) rc = data_fail(err, errlen, "%s names domain '%s', which %s does not have", mix_key, cfg->mix_name[i], path);
        if (cfg->mix_weight[i] < 0) rc = data_fail(err, errlen, "%s: weight of %s is negative", mix_key, cfg->mix_name[i]);
    }
    if (!rc && s->n_dom == 0) rc = data_fail(err, errlen, "%s: no domains", path);
    double wsum = 0;
    for (int d = 0; d < s->n_dom; d++) wsum += s->dom[d].weight;
    if (!rc && !(wsum > 0)) rc = data_fail(err, errlen, "%s: the weights sum to 0", mix_key);
    for (int d = 0; d < s->n_dom && !rc; d++) s->dom[d].weight /= wsum;
    /* fingerprint: the manifest and every setting the sequences depend on */
    uint64_t fp = fnv1a64(text, n, 1469598103934665603ull);
    fp = fnv1a64(&cfg->seed, 8, fp);
    fp = fnv1a64(&cfg->seq_len, 8, fp);
    fp = fnv1a64(&cfg->upsample_below, 8, fp);
    fp = fnv1a64(&cfg->upsample_keep, 8, fp);
    fp = fnv1a64(&cfg->add_bos, sizeof cfg->add_bos, fp);
    fp = fnv1a64(&cfg->heldout, sizeof cfg->heldout, fp);
    for (int d = 0; d < s->n_dom; d++) { fp = fnv1a64(s->dom[d].name, strlen(s->dom[d].name), fp); fp = fnv1a64(&s->dom[d].weight, 8, fp); }
    for (int d = 0; d < s->n_dom; d++)   /* only when set: a stream without whole_docs keeps its fingerprint */
        if (s->dom[d].whole) { fp = fnv1a64("whole", 5, fp); fp = fnv1a64(&d, sizeof d, fp); }
    s->fingerprint = fp;
    cJSON_Delete(root);
    free(text);
    if (rc) { stream_close(s); return NULL; }
    s->cap = s->cfg.prefetch;
    s->ring = calloc((size_t)s->cap, sizeof(Slot));
    for (int i = 0; i < s->cap; i++) {
        s->ring[i].tokens = malloc(sizeof(int32_t) * (size_t)(cfg->seq_len + 1));
        s->ring[i].docs = malloc(sizeof(int32_t) * (size_t)(cfg->seq_len + 1));
    }
    start_producer(s);
    return s;
}

void stream_close(Stream *s) {
    if (!s) return;
    stop_producer(s);
    for (int d = 0; d < s->n_dom; d++) {
        for (int i = 0; i < s->dom[d].n_shards; i++) shard_close(&s->dom[d].shards[i]);
        free(s->dom[d].shards); free(s->dom[d].doc_shard); free(s->dom[d].doc_local); free(s->dom[d].perm);
    }
    for (int i = 0; s->ring && i < s->cap; i++) { free(s->ring[i].tokens); free(s->ring[i].docs); }
    free(s->ring);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->more);
    pthread_cond_destroy(&s->room);
    free(s);
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int stream_next(Stream *s, int32_t *tokens, int32_t *docs, int *domain, char *err, size_t errlen) {
    double t0 = now_s();
    pthread_mutex_lock(&s->mu);
    while (s->count == 0) pthread_cond_wait(&s->more, &s->mu);
    Slot *slot = &s->ring[s->head];
    pthread_mutex_unlock(&s->mu);
    s->wait_s += now_s() - t0;
    if (slot->error) return data_fail(err, errlen, "%s", slot->msg);
    size_t n = (size_t)(s->cfg.seq_len + 1);
    memcpy(tokens, slot->tokens, n * sizeof(int32_t));
    if (docs) memcpy(docs, slot->docs, n * sizeof(int32_t));
    if (domain) *domain = slot->domain;
    memcpy(s->taken, slot->cur, sizeof s->taken);
    s->taken_k = slot->k;
    s->taken_skipped += slot->skipped;
    pthread_mutex_lock(&s->mu);
    s->head = (s->head + 1) % s->cap;
    s->count--;
    pthread_cond_signal(&s->room);
    pthread_mutex_unlock(&s->mu);
    return 0;
}

int stream_domains(const Stream *s) { return s->n_dom; }
const char *stream_domain_name(const Stream *s, int d) { return s->dom[d].name; }
double stream_domain_weight(const Stream *s, int d) { return s->dom[d].weight; }
int64_t stream_skipped(const Stream *s) { return s->taken_skipped; }
double stream_wait_seconds(const Stream *s) { return s->wait_s; }
uint64_t stream_fingerprint(const Stream *s) { return s->fingerprint; }
int64_t stream_vocab_size(const Stream *s) { return s->vocab; }
int32_t stream_bos(const Stream *s) { return s->cfg.add_bos && s->bos >= 0 && s->bos != s->eos ? s->bos : -1; }

#define CURSOR_MAGIC "RPXCURS1"

uint8_t *stream_save(const Stream *s, size_t *len) {
    size_t n = 8 + 8 + 8 + 8 + 4 + (size_t)s->n_dom * 32;
    uint8_t *b = malloc(n), *p = b;
    uint32_t nd = (uint32_t)s->n_dom;
    memcpy(p, CURSOR_MAGIC, 8); p += 8;
    memcpy(p, &s->fingerprint, 8); p += 8;
    memcpy(p, &s->taken_k, 8); p += 8;
    memcpy(p, &s->taken_skipped, 8); p += 8;
    memcpy(p, &nd, 4); p += 4;
    for (int d = 0; d < s->n_dom; d++) { memcpy(p, &s->taken[d], 32); p += 32; }
    *len = n;
    return b;
}

int stream_restore(Stream *s, const uint8_t *b, size_t len, char *err, size_t errlen) {
    uint64_t fp, k;
    int64_t skipped;
    uint32_t nd;
    if (len < 36 || memcmp(b, CURSOR_MAGIC, 8)) return data_fail(err, errlen, "data cursor: not a ropex stream cursor");
    memcpy(&fp, b + 8, 8); memcpy(&k, b + 16, 8); memcpy(&skipped, b + 24, 8); memcpy(&nd, b + 32, 4);
    if (fp != s->fingerprint)
        return data_fail(err, errlen, "data cursor: the dataset or the data settings changed since it was saved "
                    "(manifest, seed, seq_len, mix or upsampling); the stream cannot continue exactly");
    if (nd != (uint32_t)s->n_dom || len != 36 + (size_t)nd * 32) return data_fail(err, errlen, "data cursor: wrong size");
    stop_producer(s);
    memcpy(s->cur, b + 36, (size_t)nd * 32);
    memcpy(s->taken, s->cur, sizeof s->taken);
    s->k = s->taken_k = k;
    s->skipped = s->taken_skipped = skipped;
    start_producer(s);
    return 0;
}

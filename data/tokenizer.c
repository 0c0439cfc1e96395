/* tokenizer.json BPE: load, encode, decode (tokenizer.h). */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "tokenizer.h"
#include "util.h"

#include <cJSON.h>
#include <pcre2.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- small containers ---- */

typedef struct { char *key; int32_t id; } StrSlot;
typedef struct { StrSlot *slots; size_t cap, n; } StrMap;   /* open addressing, string -> id */

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;   /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    return h;
}

static int strmap_put(StrMap *m, const char *key, size_t n, int32_t id) {
    if ((m->n + 1) * 2 > m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 1024;
        StrSlot *s = calloc(cap, sizeof *s);
        if (!s) return -1;
        for (size_t i = 0; i < m->cap; i++) {
            if (!m->slots[i].key) continue;
            size_t j = hash_bytes(m->slots[i].key, strlen(m->slots[i].key)) & (cap - 1);
            while (s[j].key) j = (j + 1) & (cap - 1);
            s[j] = m->slots[i];
        }
        free(m->slots);
        m->slots = s;
        m->cap = cap;
    }
    size_t j = hash_bytes(key, n) & (m->cap - 1);
    while (m->slots[j].key) {
        if (strlen(m->slots[j].key) == n && !memcmp(m->slots[j].key, key, n)) { m->slots[j].id = id; return 0; }
        j = (j + 1) & (m->cap - 1);
    }
    m->slots[j].key = malloc(n + 1);
    if (!m->slots[j].key) return -1;
    memcpy(m->slots[j].key, key, n);
    m->slots[j].key[n] = 0;
    m->slots[j].id = id;
    m->n++;
    return 0;
}

static int32_t strmap_get(const StrMap *m, const char *key, size_t n) {
    if (!m->cap) return -1;
    size_t j = hash_bytes(key, n) & (m->cap - 1);
    while (m->slots[j].key) {
        if (!strncmp(m->slots[j].key, key, n) && m->slots[j].key[n] == 0) return m->slots[j].id;
        j = (j + 1) & (m->cap - 1);
    }
    return -1;
}

static void strmap_free(StrMap *m) {
    for (size_t i = 0; i < m->cap; i++) free(m->slots[i].key);
    free(m->slots);
}

typedef struct { uint64_t key; int32_t rank, merged; } PairSlot;
typedef struct { PairSlot *slots; size_t cap; } PairMap;   /* (left id, right id) -> merge */

static uint64_t pair_key(int32_t a, int32_t b) { return (uint64_t)(uint32_t)a << 32 | (uint32_t)b; }
static size_t pair_hash(uint64_t k, size_t cap) { return (size_t)((k * 0x9E3779B97F4A7C15ull) >> 20) & (cap - 1); }

static const PairSlot *pairmap_get(const PairMap *m, int32_t a, int32_t b) {
    uint64_t k = pair_key(a, b);
    for (size_t j = pair_hash(k, m->cap);; j = (j + 1) & (m->cap - 1)) {
        if (m->slots[j].rank < 0) return NULL;
        if (m->slots[j].key == k) return &m->slots[j];
    }
}

/* ---- the tokenizer ---- */

enum { NORM_PREPEND, NORM_REPLACE };
typedef struct { int kind; char *a, *b; } Normalizer;   /* prepend a | replace a by b */

enum { PRE_BYTELEVEL, PRE_METASPACE, PRE_DIGITS, PRE_SPLIT };
typedef struct {
    int kind;
    int add_prefix_space, use_regex;       /* ByteLevel */
    char *replacement; int prepend; int split;   /* Metaspace: prepend 0 never, 1 always, 2 first */
    int individual;                        /* Digits */
    pcre2_code *re;                        /* ByteLevel (use_regex), Digits, Split */
    int behavior, invert;                  /* Split: 0 isolated, 1 removed, 2 merged_with_previous, 3 merged_with_next */
} PreTok;

enum { DEC_BYTELEVEL, DEC_METASPACE, DEC_REPLACE, DEC_BYTEFALLBACK, DEC_FUSE, DEC_STRIP };
typedef struct { int kind; char *a, *b; int start, stop, prepend; } Decoder;

typedef struct { char *content; size_t len; int32_t id; int special, lstrip, rstrip; } Added;

struct Tokenizer {
    char path[1024];
    StrMap vocab;
    char **id_to_token; int64_t n_ids;
    PairMap merges;
    int byte_fallback, fuse_unk, ignore_merges;
    int32_t unk, bos, eos;
    int32_t byte_ids[256];      /* byte-level: id of each byte's character; fallback: <0xXX> */
    Normalizer *norm; int n_norm;
    PreTok *pre; int n_pre;
    Decoder *dec; int n_dec;
    Added *added; int n_added;
    int bytelevel;              /* a ByteLevel pre-tokenizer is present */
};

/* GPT-2's byte <-> printable character map (bytes_to_unicode). */
static uint32_t byte_to_cp(int b) {
    if ((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)) return (uint32_t)b;
    int n = 0;
    for (int x = 0; x < b; x++)
        if (!((x >= '!' && x <= '~') || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE && x <= 0xFF))) n++;
    return 256u + (uint32_t)n;
}

static int utf8_put(char *out, uint32_t cp) {
    if (cp < 0x80) { out[0] = (char)cp; return 1; }
    if (cp < 0x800) { out[0] = (char)(0xC0 | cp >> 6); out[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | cp >> 12); out[1] = (char)(0x80 | ((cp >> 6) & 0x3F)); out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | cp >> 18); out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Length of the valid UTF-8 sequence at s (n bytes left), or 0 if invalid. */
static int utf8_len(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (!len || (size_t)len > n) return 0;
    for (int i = 1; i < len; i++) if ((s[i] & 0xC0) != 0x80) return 0;
    uint32_t cp = len == 1 ? c : len == 2 ? (c & 0x1F) : len == 3 ? (c & 0x0F) : (c & 0x07);
    for (int i = 1; i < len; i++) cp = cp << 6 | (s[i] & 0x3F);
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return len;
}

/* ---- growable byte buffer ---- */
typedef struct { char *p; size_t n, cap; } Buf;
static int buf_add(Buf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) return -1;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
    return 0;
}

/* ---- loading ---- */

static const char *jstr(const cJSON *o, const char *k) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(it) ? it->valuestring : NULL;
}
static int jbool(const cJSON *o, const char *k, int dflt) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsBool(it) ? cJSON_IsTrue(it) : dflt;
}

static pcre2_code *compile_re(const char *pat, char *err, size_t errlen, const char *where) {
    int ec;
    PCRE2_SIZE off;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &ec, &off, NULL);
    if (!re) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(ec, msg, sizeof msg);
        data_fail(err, errlen, "%s: regex does not compile at offset %zu: %s", where, (size_t)off, (char *)msg);
        return NULL;
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);   /* faster when available; optional */
    return re;
}

/* Sets *re to the escaped literal or the regex of a Split/Replace "pattern" object. */
static char *pattern_text(const cJSON *pat, int *is_regex) {
    const char *s = jstr(pat, "String");
    if (s) { *is_regex = 0; return strdup(s); }
    s = jstr(pat, "Regex");
    if (s) { *is_regex = 1; return strdup(s); }
    return NULL;
}

static const char GPT2_PATTERN[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static int load_normalizer(Tokenizer *t, const cJSON *n, char *err, size_t errlen) {
    if (!n || cJSON_IsNull(n)) return 0;
    const char *type = jstr(n, "type");
    if (!type) return data_fail(err, errlen, "%s: normalizer without \"type\"", t->path);
    if (!strcmp(type, "Sequence")) {
        const cJSON *it;
        cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(n, "normalizers"))
            if (load_normalizer(t, it, err, errlen)) return -1;
        return 0;
    }
    Normalizer *nn = realloc(t->norm, sizeof *nn * (size_t)(t->n_norm + 1));
    if (!nn) return data_fail(err, errlen, "out of memory");
    t->norm = nn;
    Normalizer *x = &t->norm[t->n_norm];
    memset(x, 0, sizeof *x);
    if (!strcmp(type, "Prepend") && jstr(n, "prepend")) {
        x->kind = NORM_PREPEND;
        x->a = strdup(jstr(n, "prepend"));
    } else if (!strcmp(type, "Replace")) {
        int is_re = 0;
        x->kind = NORM_REPLACE;
        x->a = pattern_text(cJSON_GetObjectItemCaseSensitive(n, "pattern"), &is_re);
        x->b = jstr(n, "content") ? strdup(jstr(n, "content")) : NULL;
        if (!x->a || !x->b || is_re || !x->a[0])
            return data_fail(err, errlen, "%s: normalizer Replace: only a non-empty String pattern is supported", t->path);
    } else {
        return data_fail(err, errlen, "%s: normalizer \"%s\" is not supported (supported: Prepend, Replace, Sequence)",
                    t->path, type);
    }
    t->n_norm++;
    return 0;
}

static int load_pretok(Tokenizer *t, const cJSON *p, char *err, size_t errlen) {
    if (!p || cJSON_IsNull(p)) return 0;
    const char *type = jstr(p, "type");
    if (!type) return data_fail(err, errlen, "%s: pre_tokenizer without \"type\"", t->path);
    if (!strcmp(type, "Sequence")) {
        const cJSON *it;
        cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(p, "pretokenizers"))
            if (load_pretok(t, it, err, errlen)) return -1;
        return 0;
    }
    PreTok *pp = realloc(t->pre, sizeof *pp * (size_t)(t->n_pre + 1));
    if (!pp) return data_fail(err, errlen, "out of memory");
    t->pre = pp;
    PreTok *x = &t->pre[t->n_pre];
    memset(x, 0, sizeof *x);
    char where[1200];
    snprintf(where, sizeof where, "%s: pre_tokenizer %s", t->path, type);
    if (!strcmp(type, "ByteLevel")) {
        x->kind = PRE_BYTELEVEL;
        x->add_prefix_space = jbool(p, "add_prefix_space", 1);
        x->use_regex = jbool(p, "use_regex", 1);
        if (x->use_regex && !(x->re = compile_re(GPT2_PATTERN, err, errlen, where))) return -1;
        t->bytelevel = 1;
    } else if (!strcmp(type, "Metaspace")) {
        x->kind = PRE_METASPACE;
        x->replacement = strdup(jstr(p, "replacement") ? jstr(p, "replacement") : "\xe2\x96\x81");
        const char *scheme = jstr(p, "prepend_scheme");
        x->prepend = scheme ? (!strcmp(scheme, "always") ? 1 : !strcmp(scheme, "first") ? 2 : 0)
                            : jbool(p, "add_prefix_space", 1);
        x->split = jbool(p, "split", 1);
        char pat[64];
        snprintf(pat, sizeof pat, "\\Q%s\\E", x->replacement);
        if (x->split && !(x->re = compile_re(pat, err, errlen, where))) return -1;
    } else if (!strcmp(type, "Digits")) {
        x->kind = PRE_DIGITS;
        x->individual = jbool(p, "individual_digits", 0);
        if (!(x->re = compile_re(x->individual ? "\\p{N}" : "\\p{N}+", err, errlen, where))) return -1;
    } else if (!strcmp(type, "Split")) {
        x->kind = PRE_SPLIT;
        int is_re = 0;
        char *pat = pattern_text(cJSON_GetObjectItemCaseSensitive(p, "pattern"), &is_re);
        if (!pat) return data_fail(err, errlen, "%s: missing pattern", where);
        const char *beh = jstr(p, "behavior");
        x->behavior = !beh || !strcmp(beh, "Isolated") ? 0 : !strcmp(beh, "Removed") ? 1
                      : !strcmp(beh, "MergedWithPrevious") ? 2 : !strcmp(beh, "MergedWithNext") ? 3 : -1;
        x->invert = jbool(p, "invert", 0);
        if (x->behavior < 0 || x->invert) { free(pat); return data_fail(err, errlen, "%s: behavior '%s'%s is not supported", where, beh, x->invert ? " with invert" : ""); }
        if (!is_re) {   /* a literal: quote it */
            char *q = malloc(strlen(pat) + 5);
            sprintf(q, "\\Q%s\\E", pat);
            free(pat);
            pat = q;
        }
        x->re = compile_re(pat, err, errlen, where);
        free(pat);
        if (!x->re) return -1;
    } else {
        return data_fail(err, errlen, "%s: pre_tokenizer \"%s\" is not supported (supported: ByteLevel, "
                    "Metaspace, Digits, Split, Sequence)", t->path, type);
    }
    if (t->n_pre > 0 && (x->kind == PRE_METASPACE || (x->kind == PRE_BYTELEVEL && x->add_prefix_space)))
        return data_fail(err, errlen, "%s: pre_tokenizer %s after another pre-tokenizer is not supported", t->path, type);
    t->n_pre++;
    return 0;
}

static int load_decoder(Tokenizer *t, const cJSON *d, char *err, size_t errlen) {
    if (!d || cJSON_IsNull(d)) return 0;
    const char *type = jstr(d, "type");
    if (!type) return data_fail(err, errlen, "%s: decoder without \"type\"", t->path);
    if (!strcmp(type, "Sequence")) {
        const cJSON *it;
        cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(d, "decoders"))
            if (load_decoder(t, it, err, errlen)) return -1;
        return 0;
    }
    Decoder *dd = realloc(t->dec, sizeof *dd * (size_t)(t->n_dec + 1));
    if (!dd) return data_fail(err, errlen, "out of memory");
    t->dec = dd;
    Decoder *x = &t->dec[t->n_dec];
    memset(x, 0, sizeof *x);
    if (!strcmp(type, "ByteLevel")) x->kind = DEC_BYTELEVEL;
    else if (!strcmp(type, "ByteFallback")) x->kind = DEC_BYTEFALLBACK;
    else if (!strcmp(type, "Fuse")) x->kind = DEC_FUSE;
    else if (!strcmp(type, "Metaspace")) {
        x->kind = DEC_METASPACE;
        x->a = strdup(jstr(d, "replacement") ? jstr(d, "replacement") : "\xe2\x96\x81");
        const char *scheme = jstr(d, "prepend_scheme");
        x->prepend = scheme ? strcmp(scheme, "never") != 0 : jbool(d, "add_prefix_space", 1);
    } else if (!strcmp(type, "Replace")) {
        int is_re = 0;
        x->kind = DEC_REPLACE;
        x->a = pattern_text(cJSON_GetObjectItemCaseSensitive(d, "pattern"), &is_re);
        x->b = jstr(d, "content") ? strdup(jstr(d, "content")) : NULL;
        if (!x->a || !x->b || is_re || !x->a[0])
            return data_fail(err, errlen, "%s: decoder Replace: only a non-empty String pattern is supported", t->path);
    } else if (!strcmp(type, "Strip")) {
        x->kind = DEC_STRIP;
        x->a = strdup(jstr(d, "content") ? jstr(d, "content") : " ");
        const cJSON *s = cJSON_GetObjectItemCaseSensitive(d, "start"), *e = cJSON_GetObjectItemCaseSensitive(d, "stop");
        x->start = cJSON_IsNumber(s) ? s->valueint : 0;
        x->stop = cJSON_IsNumber(e) ? e->valueint : 0;
    } else {
        return data_fail(err, errlen, "%s: decoder \"%s\" is not supported (supported: ByteLevel, Metaspace, "
                    "Replace, ByteFallback, Fuse, Strip, Sequence)", t->path, type);
    }
    t->n_dec++;
    return 0;
}

static int set_id(Tokenizer *t, const char *tok, int32_t id, char *err, size_t errlen) {
    if (id < 0 || id > 100000000) return data_fail(err, errlen, "%s: token id %d out of range", t->path, id);
    if (id >= t->n_ids) {
        int64_t n = (int64_t)id + 1;
        char **p = realloc(t->id_to_token, sizeof(char *) * (size_t)n);
        if (!p) return data_fail(err, errlen, "out of memory");
        for (int64_t i = t->n_ids; i < n; i++) p[i] = NULL;
        t->id_to_token = p;
        t->n_ids = n;
    }
    free(t->id_to_token[id]);
    t->id_to_token[id] = strdup(tok);
    return 0;
}

static int load_model(Tokenizer *t, const cJSON *model, char *err, size_t errlen) {
    const char *type = jstr(model, "type");
    if (!model || (type && strcmp(type, "BPE")))
        return data_fail(err, errlen, "%s: model.type = \"%s\": only BPE is supported", t->path, type ? type : "?");
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    if (!cJSON_IsObject(vocab)) return data_fail(err, errlen, "%s: model.vocab must be an object", t->path);
    const cJSON *it;
    cJSON_ArrayForEach(it, vocab) {
        if (!cJSON_IsNumber(it)) return data_fail(err, errlen, "%s: model.vocab[\"%s\"] is not an id", t->path, it->string);
        if (set_id(t, it->string, it->valueint, err, errlen) ||
            strmap_put(&t->vocab, it->string, strlen(it->string), it->valueint))
            return -1;
    }
    if (jstr(model, "continuing_subword_prefix") && *jstr(model, "continuing_subword_prefix"))
        return data_fail(err, errlen, "%s: model.continuing_subword_prefix is not supported", t->path);
    if (jstr(model, "end_of_word_suffix") && *jstr(model, "end_of_word_suffix"))
        return data_fail(err, errlen, "%s: model.end_of_word_suffix is not supported", t->path);
    const cJSON *drop = cJSON_GetObjectItemCaseSensitive(model, "dropout");
    if (cJSON_IsNumber(drop) && drop->valuedouble > 0)
        return data_fail(err, errlen, "%s: model.dropout is not supported (encoding would be random)", t->path);
    t->byte_fallback = jbool(model, "byte_fallback", 0);
    t->fuse_unk = jbool(model, "fuse_unk", 0);
    t->ignore_merges = jbool(model, "ignore_merges", 0);
    t->unk = jstr(model, "unk_token") ? strmap_get(&t->vocab, jstr(model, "unk_token"), strlen(jstr(model, "unk_token"))) : -1;
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    int n = cJSON_GetArraySize(merges);
    t->merges.cap = 16;
    while (t->merges.cap < (size_t)n * 2 + 2) t->merges.cap *= 2;
    t->merges.slots = malloc(sizeof(PairSlot) * t->merges.cap);
    if (!t->merges.slots) return data_fail(err, errlen, "out of memory");
    for (size_t i = 0; i < t->merges.cap; i++) t->merges.slots[i].rank = -1;
    int rank = 0;
    cJSON_ArrayForEach(it, merges) {
        char a[512], b[512];
        if (cJSON_IsString(it)) {
            const char *sp = strchr(it->valuestring, ' ');
            if (!sp || (size_t)(sp - it->valuestring) >= sizeof a || strlen(sp + 1) >= sizeof b)
                return data_fail(err, errlen, "%s: model.merges[%d] = \"%.40s\": expected \"left right\"", t->path, rank, it->valuestring);
            snprintf(a, sizeof a, "%.*s", (int)(sp - it->valuestring), it->valuestring);
            snprintf(b, sizeof b, "%s", sp + 1);
        } else if (cJSON_IsArray(it) && cJSON_GetArraySize(it) == 2 && cJSON_IsString(cJSON_GetArrayItem(it, 0)) &&
                   cJSON_IsString(cJSON_GetArrayItem(it, 1))) {
            snprintf(a, sizeof a, "%s", cJSON_GetArrayItem(it, 0)->valuestring);
            snprintf(b, sizeof b, "%s", cJSON_GetArrayItem(it, 1)->valuestring);
        } else {
            return data_fail(err, errlen, "%s: model.merges[%d]: expected \"left right\" or [left, right]", t->path, rank);
        }
        char ab[1024];
        snprintf(ab, sizeof ab, "%s%s", a, b);
        int32_t ia = strmap_get(&t->vocab, a, strlen(a)), ib = strmap_get(&t->vocab, b, strlen(b));
        int32_t iab = strmap_get(&t->vocab, ab, strlen(ab));
        if (ia < 0 || ib < 0 || iab < 0)
            return data_fail(err, errlen, "%s: model.merges[%d] (\"%s\" + \"%s\") uses a token missing from the vocab",
                        t->path, rank, a, b);
        uint64_t k = pair_key(ia, ib);
        size_t j = pair_hash(k, t->merges.cap);
        while (t->merges.slots[j].rank >= 0 && t->merges.slots[j].key != k) j = (j + 1) & (t->merges.cap - 1);
        if (t->merges.slots[j].rank < 0) t->merges.slots[j] = (PairSlot){k, rank, iab};   /* first rank wins */
        rank++;
    }
    return 0;
}

Tokenizer *tokenizer_load(const char *path, char *err, size_t errlen) {
    FILE *f = fopen(path, "rb");
    if (!f) { data_fail(err, errlen, "%s: cannot open the tokenizer", path); return NULL; }
    fseeko(f, 0, SEEK_END);
    long long size = (long long)ftello(f);
    fseeko(f, 0, SEEK_SET);
    if (size < 0 || size > (1ll << 30)) { fclose(f); data_fail(err, errlen, "%s: unreadable size", path); return NULL; }
    char *text = malloc((size_t)size + 1);
    size_t got = text ? fread(text, 1, (size_t)size, f) : 0;
    fclose(f);
    if (!text || got != (size_t)size) { free(text); data_fail(err, errlen, "%s: read error", path); return NULL; }
    Tokenizer *t = tokenizer_parse(path, text, (size_t)size, err, errlen);
    free(text);
    return t;
}

Tokenizer *tokenizer_parse(const char *path, const char *text, size_t size, char *err, size_t errlen) {
    cJSON *root = cJSON_ParseWithLength(text, size);
    Tokenizer *t = calloc(1, sizeof *t);
    if (!t) { cJSON_Delete(root); return NULL; }
    snprintf(t->path, sizeof t->path, "%s", path);
    t->unk = t->bos = t->eos = -1;
    int rc = 0;
    if (!cJSON_IsObject(root)) rc = data_fail(err, errlen, "%s: not a JSON object", path);
    if (!rc) rc = load_model(t, cJSON_GetObjectItemCaseSensitive(root, "model"), err, errlen);
    if (!rc) rc = load_normalizer(t, cJSON_GetObjectItemCaseSensitive(root, "normalizer"), err, errlen);
    if (!rc) rc = load_pretok(t, cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"), err, errlen);
    if (!rc) rc = load_decoder(t, cJSON_GetObjectItemCaseSensitive(root, "decoder"), err, errlen);
    const cJSON *it, *added = rc ? NULL : cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    cJSON_ArrayForEach(it, added) {
        const char *content = jstr(it, "content");
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(it, "id");
        if (!content || !*content || !cJSON_IsNumber(id)) { rc = data_fail(err, errlen, "%s: added_tokens entry without content or id", path); break; }
        Added *a = realloc(t->added, sizeof *a * (size_t)(t->n_added + 1));
        if (!a) { rc = data_fail(err, errlen, "out of memory"); break; }
        t->added = a;
        t->added[t->n_added++] = (Added){strdup(content), strlen(content), id->valueint, jbool(it, "special", 0),
                                         jbool(it, "lstrip", 0), jbool(it, "rstrip", 0)};
        if ((rc = set_id(t, content, id->valueint, err, errlen)) != 0) break;
        strmap_put(&t->vocab, content, strlen(content), id->valueint);
    }
    cJSON_Delete(root);
    if (!rc) {   /* the byte symbols every input reduces to */
        for (int b = 0; b < 256 && !rc; b++) {
            char s[8];
            if (t->bytelevel) s[utf8_put(s, byte_to_cp(b))] = 0;
            else snprintf(s, sizeof s, "<0x%02X>", b);
            t->byte_ids[b] = strmap_get(&t->vocab, s, strlen(s));   /* -1: absent (HF drops it) */
        }
        if (!rc && t->byte_fallback)
            for (int b = 0; b < 256 && !rc; b++)
                if (t->byte_ids[b] < 0) rc = data_fail(err, errlen, "%s: byte_fallback is on but <0x%02X> is not in the vocab", path, b);
    }
    if (rc) { tokenizer_free(t); return NULL; }
    const char *bos[] = {"<s>", "<|begin_of_text|>", "<|im_start|>", "<|endoftext|>"};
    const char *eos[] = {"</s>", "<|end_of_text|>", "<|im_end|>", "<|endoftext|>"};
    for (int i = 0; i < 4 && t->bos < 0; i++) t->bos = strmap_get(&t->vocab, bos[i], strlen(bos[i]));
    for (int i = 0; i < 4 && t->eos < 0; i++) t->eos = strmap_get(&t->vocab, eos[i], strlen(eos[i]));
    return t;
}

void tokenizer_free(Tokenizer *t) {
    if (!t) return;
    strmap_free(&t->vocab);
    for (int64_t i = 0; i < t->n_ids; i++) free(t->id_to_token[i]);
    free(t->id_to_token);
    free(t->merges.slots);
    for (int i = 0; i < t->n_norm; i++) { free(t->norm[i].a); free(t->norm[i].b); }
    for (int i = 0; i < t->n_pre; i++) { free(t->pre[i].replacement); if (t->pre[i].re) pcre2_code_free(t->pre[i].re); }
    for (int i = 0; i < t->n_dec; i++) { free(t->dec[i].a); free(t->dec[i].b); }
    for (int i = 0; i < t->n_added; i++) free(t->added[i].content);
    free(t->norm); free(t->pre); free(t->dec); free(t->added);
    free(t);
}

int64_t tokenizer_vocab_size(const Tokenizer *t) { return t->n_ids; }
int32_t tokenizer_token_id(const Tokenizer *t, const char *tok) { return strmap_get(&t->vocab, tok, strlen(tok)); }
int32_t tokenizer_bos(const Tokenizer *t) { return t->bos; }
int32_t tokenizer_eos(const Tokenizer *t) { return t->eos; }

/* ---- encoding ---- */

typedef struct { int32_t *ids; size_t n, cap; } Ids;
static int ids_push(Ids *v, int32_t id) {
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 256;
        int32_t *p = realloc(v->ids, cap * sizeof *p);
        if (!p) return -1;
        v->ids = p;
        v->cap = cap;
    }
    v->ids[v->n++] = id;
    return 0;
}

/* One symbol of a word during merging: a doubly linked list over an array. */
typedef struct { int32_t id; int32_t prev, next; int alive; } Sym;
typedef struct { int32_t rank, pos, left, right; } Cand;   /* pos: left symbol index */

static int cand_less(const Cand *a, const Cand *b) { return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos; }
static void heap_push(Cand *h, size_t *n, Cand c) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!cand_less(&c, &h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = c;
}
static Cand heap_pop(Cand *h, size_t *n) {
    Cand top = h[0], last = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const Cand *best = &last;
        if (l < *n && cand_less(&h[l], best)) { m = l; best = &h[l]; }
        if (r < *n && cand_less(&h[r], best)) m = r;
        if (m == i) break;
        h[i] = h[m];
        i = m;
    }
    if (*n) h[i] = last;
    return top;
}

static void consider(const Tokenizer *t, Sym *s, Cand *h, size_t *hn, int32_t pos) {
    int32_t nx = s[pos].next;
    if (nx < 0) return;
    const PairSlot *ps = pairmap_get(&t->merges, s[pos].id, s[nx].id);
    if (ps) heap_push(h, hn, (Cand){ps->rank, pos, s[pos].id, s[nx].id});
}

/* BPE over one pre-tokenized piece (bytes already mapped for byte-level). */
static int bpe_word(const Tokenizer *t, const char *w, size_t n, Ids *out) {
    if (t->ignore_merges) {
        int32_t id = strmap_get(&t->vocab, w, n);
        if (id >= 0) return ids_push(out, id);
    }
    Sym *s = malloc(sizeof(Sym) * (n + 1));
    Cand *h = malloc(sizeof(Cand) * (2 * n + 2));
    if (!s || !h) { free(s); free(h); return -1; }
    int32_t ns = 0;
#define PUSH_SYM(ID) do { s[ns] = (Sym){(ID), ns - 1, ns + 1, 1}; ns++; } while (0)
    for (size_t i = 0; i < n;) {
        int len = utf8_len((const unsigned char *)w + i, n - i);
        if (!len) len = 1;
        int32_t id = strmap_get(&t->vocab, w + i, (size_t)len);
        if (id >= 0) PUSH_SYM(id);
        else if (t->byte_fallback)
            for (int b = 0; b < len; b++) PUSH_SYM(t->byte_ids[(uint8_t)w[i + b]]);
        else if (t->unk >= 0) {
            if (!(t->fuse_unk && ns > 0 && s[ns - 1].id == t->unk)) PUSH_SYM(t->unk);
        }
        /* else: a character outside the vocabulary without fallback or unk is dropped, as HF does */
        i += (size_t)len;
    }
#undef PUSH_SYM
    if (ns) s[ns - 1].next = -1;
    size_t hn = 0;
    for (int32_t i = 0; i + 1 < ns; i++) consider(t, s, h, &hn, i);
    while (hn) {
        Cand c = heap_pop(h, &hn);
        Sym *a = &s[c.pos];
        if (!a->alive || a->id != c.left || a->next < 0 || s[a->next].id != c.right) continue;   /* stale */
        const PairSlot *ps = pairmap_get(&t->merges, c.left, c.right);
        Sym *b = &s[a->next];
        a->id = ps->merged;
        b->alive = 0;
        a->next = b->next;
        if (b->next >= 0) s[b->next].prev = c.pos;
        if (a->prev >= 0) consider(t, s, h, &hn, a->prev);
        consider(t, s, h, &hn, c.pos);
    }
    int rc = 0;
    for (int32_t i = ns ? 0 : -1; i >= 0 && !rc; i = s[i].next) rc = ids_push(out, s[i].id);
    free(s);
    free(h);
    return rc;
}

/* Byte-level: the piece's bytes as GPT-2 characters, then BPE. */
static int encode_piece(const Tokenizer *t, const char *p, size_t n, Ids *out, Buf *tmp) {
    if (!t->bytelevel) return bpe_word(t, p, n, out);
    tmp->n = 0;
    for (size_t i = 0; i < n; i++) {
        char c[4];
        if (buf_add(tmp, c, (size_t)utf8_put(c, byte_to_cp((uint8_t)p[i])))) return -1;
    }
    return bpe_word(t, tmp->p, tmp->n, out);
}

/* Pieces as (offset, length) pairs into one string. */
typedef struct { size_t *off, *len; size_t n, cap; } Pieces;
static int pieces_push(Pieces *p, size_t off, size_t len) {
    if (!len) return 0;
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 64;
        size_t *o = realloc(p->off, cap * sizeof *o), *l = o ? realloc(p->len, cap * sizeof *l) : NULL;
        if (!o || !l) { if (o) p->off = o; return -1; }
        p->off = o; p->len = l; p->cap = cap;
    }
    p->off[p->n] = off;
    p->len[p->n++] = len;
    return 0;
}

/* Splits [off, off+len) of s by the regex into out, as HF's SplitDelimiterBehavior. */
static int regex_split(pcre2_code *re, int behavior, const char *s, size_t off, size_t len, Pieces *out) {
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    if (!md) return -1;
    size_t pos = off, end = off + len, last = off;
    size_t pend_off = 0, pend_len = 0;   /* MergedWithNext: a delimiter waiting for what follows */
    int have_pend = 0, rc = 0;
    while (pos <= end) {
        int m = pcre2_match(re, (PCRE2_SPTR)s, end, pos, PCRE2_NO_UTF_CHECK, md, NULL);
        if (m < 0) break;
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        size_t ms = ov[0], me = ov[1];
        if (me == ms) {   /* empty match: step one character */
            pos = ms + 1;
            while (pos < end && ((uint8_t)s[pos] & 0xC0) == 0x80) pos++;
            continue;
        }
        switch (behavior) {
        case 0: rc |= pieces_push(out, last, ms - last); rc |= pieces_push(out, ms, me - ms); break;
        case 1: rc |= pieces_push(out, last, ms - last); break;
        case 2: rc |= pieces_push(out, last, me - last); break;
        case 3:
            if (have_pend) rc |= pieces_push(out, pend_off, ms - pend_off);
            else rc |= pieces_push(out, last, ms - last);
            pend_off = ms; pend_len = me - ms; have_pend = 1;
            break;
        }
        last = pos = me;
    }
    if (behavior == 3 && have_pend) rc |= pieces_push(out, pend_off, end - pend_off);
    else rc |= pieces_push(out, last, end - last);
    (void)pend_len;
    pcre2_match_data_free(md);
    return rc;
}

/* Normalizes one segment (between added tokens) into buf. */
static int normalize(const Tokenizer *t, const char *s, size_t n, Buf *out) {
    out->n = 0;
    if (buf_add(out, s, n)) return -1;
    for (int i = 0; i < t->n_norm; i++) {
        const Normalizer *x = &t->norm[i];
        if (x->kind == NORM_PREPEND) {
            if (!out->n) continue;
            Buf nb = {0};
            if (buf_add(&nb, x->a, strlen(x->a)) || buf_add(&nb, out->p, out->n)) { free(nb.p); return -1; }
            free(out->p);
            *out = nb;
        } else {
            size_t la = strlen(x->a), lb = strlen(x->b);
            Buf nb = {0};
            int rc = buf_add(&nb, "", 0);
            for (size_t j = 0; j < out->n && !rc;) {
                if (j + la <= out->n && !memcmp(out->p + j, x->a, la)) { rc = buf_add(&nb, x->b, lb); j += la; }
                else { rc = buf_add(&nb, out->p + j, 1); j++; }
            }
            if (rc) { free(nb.p); return -1; }
            free(out->p);
            *out = nb;
        }
    }
    return 0;
}

/* Pre-tokenizes text (already normalized) into pieces; may rewrite text (Metaspace, ByteLevel
 * prefix space), so text is a Buf. first: the segment starts the input. */
static int pretokenize(const Tokenizer *t, Buf *text, int first, Pieces *out) {
    Pieces cur = {0}, next = {0};
    int rc = pieces_push(&cur, 0, text->n);
    for (int i = 0; i < t->n_pre && !rc; i++) {
        const PreTok *x = &t->pre[i];
        if (x->kind == PRE_METASPACE || (x->kind == PRE_BYTELEVEL && x->add_prefix_space)) {
            /* these rewrite the string: only valid as the first rewriting step (HF's layouts) */
            Buf nb = {0};
            rc = buf_add(&nb, "", 0);
            if (x->kind == PRE_METASPACE) {
                if (x->prepend == 1 || (x->prepend == 2 && first))
                    if (text->n && strncmp(text->p, x->replacement, strlen(x->replacement)))
                        rc |= buf_add(&nb, x->replacement, strlen(x->replacement));
                for (size_t j = 0; j < text->n && !rc; j++)
                    rc = text->p[j] == ' ' ? buf_add(&nb, x->replacement, strlen(x->replacement)) : buf_add(&nb, text->p + j, 1);
            } else {
                if (text->n && text->p[0] != ' ') rc |= buf_add(&nb, " ", 1);
                rc |= buf_add(&nb, text->p, text->n);
            }
            free(text->p);
            *text = nb;
            cur.n = 0;
            rc |= pieces_push(&cur, 0, text->n);
        }
        if (rc) break;
        /* Metaspace splits before each replacement char (MergedWithNext); ByteLevel without its
         * regex does not split */
        int beh = x->kind == PRE_SPLIT ? x->behavior : x->kind == PRE_METASPACE ? 3 : 0;
        if (!x->re) continue;
        next.n = 0;
        for (size_t j = 0; j < cur.n && !rc; j++) rc = regex_split(x->re, beh, text->p, cur.off[j], cur.len[j], &next);
        Pieces sw = cur; cur = next; next = sw;
    }
    for (size_t j = 0; j < cur.n && !rc; j++) rc = pieces_push(out, cur.off[j], cur.len[j]);
    free(cur.off); free(cur.len); free(next.off); free(next.len);
    return rc;
}

static int encode_segment(const Tokenizer *t, const char *s, size_t n, int first, Ids *out) {
    Buf text = {0}, tmp = {0};
    Pieces pcs = {0};
    int rc = normalize(t, s, n, &text);
    if (!rc) rc = pretokenize(t, &text, first, &pcs);
    for (size_t i = 0; i < pcs.n && !rc; i++) rc = encode_piece(t, text.p + pcs.off[i], pcs.len[i], out, &tmp);
    free(text.p); free(tmp.p); free(pcs.off); free(pcs.len);
    return rc;
}

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

int64_t tokenizer_encode(const Tokenizer *t, const char *text_in, size_t len, int32_t **ids, size_t *cap,
                         char *err, size_t errlen) {
    /* invalid UTF-8 becomes U+FFFD, as text decoded with errors="replace" */
    Buf clean = {0};
    const char *text = text_in;
    for (size_t i = 0; i < len;) {
        int l = utf8_len((const unsigned char *)text_in + i, len - i);
        if (!l) {
            if (!clean.p) { if (buf_add(&clean, text_in, i)) return data_fail(err, errlen, "out of memory"); }
            if (buf_add(&clean, "\xef\xbf\xbd", 3)) { free(clean.p); return data_fail(err, errlen, "out of memory"); }
            i++;
            continue;
        }
        if (clean.p && buf_add(&clean, text_in + i, (size_t)l)) { free(clean.p); return data_fail(err, errlen, "out of memory"); }
        i += (size_t)l;
    }
    if (clean.p) { text = clean.p; len = clean.n; }
    Ids out = {*ids, 0, *cap};
    size_t seg = 0, i = 0;
    int rc = 0;
    while (i < len && !rc) {
        const Added *hit = NULL;
        for (int a = 0; a < t->n_added; a++) {
            const Added *x = &t->added[a];
            if (x->len <= len - i && !memcmp(text + i, x->content, x->len) && (!hit || x->len > hit->len)) hit = x;
        }
        if (!hit) { i++; continue; }
        size_t seg_end = i, after = i + hit->len;
        if (hit->lstrip) while (seg_end > seg && is_space(text[seg_end - 1])) seg_end--;
        if (hit->rstrip) while (after < len && is_space(text[after])) after++;
        if (seg_end > seg) rc = encode_segment(t, text + seg, seg_end - seg, seg == 0, &out);
        if (!rc) rc = ids_push(&out, hit->id);
        seg = i = after;
    }
    if (!rc && len > seg) rc = encode_segment(t, text + seg, len - seg, seg == 0, &out);
    free(clean.p);
    *ids = out.ids;
    *cap = out.cap;
    if (rc) return data_fail(err, errlen, "out of memory while encoding");
    return (int64_t)out.n;
}

/* ---- decoding ---- */

typedef struct { char **s; size_t n; } StrList;

static uint32_t cp_to_byte(uint32_t cp) {   /* inverse of byte_to_cp; 256 when not a byte symbol */
    static int built = 0;
    static uint16_t inv[512];
    if (!built) {
        for (int i = 0; i < 512; i++) inv[i] = 256;
        for (int b = 0; b < 256; b++) inv[byte_to_cp(b)] = (uint16_t)b;
        built = 1;
    }
    return cp < 512 ? inv[cp] : 256;
}

static char *replace_all(const char *s, const char *a, const char *b) {
    Buf o = {0};
    size_t la = strlen(a), lb = strlen(b);
    buf_add(&o, "", 0);
    for (const char *p = s; *p;) {
        if (!strncmp(p, a, la)) { buf_add(&o, b, lb); p += la; }
        else { buf_add(&o, p, 1); p++; }
    }
    return o.p;
}

static int byte_token(const char *s) {   /* "<0xXX>" -> XX, else -1 */
    unsigned v;
    char tail;
    if (strlen(s) == 6 && sscanf(s, "<0x%2X%c", &v, &tail) == 2 && tail == '>') return (int)v;
    return -1;
}

static void apply_decoder(const Decoder *d, StrList *l) {
    if (d->kind == DEC_FUSE || d->kind == DEC_BYTELEVEL) {
        Buf o = {0};
        buf_add(&o, "", 0);
        for (size_t i = 0; i < l->n; i++) {
            if (d->kind == DEC_FUSE) { buf_add(&o, l->s[i], strlen(l->s[i])); continue; }
            const unsigned char *p = (const unsigned char *)l->s[i];
            size_t n = strlen(l->s[i]);
            for (size_t j = 0; j < n;) {
                int len = utf8_len(p + j, n - j);
                if (!len) len = 1;
                uint32_t cp = p[j];
                if (len > 1) {
                    cp = len == 2 ? (p[j] & 0x1F) : len == 3 ? (p[j] & 0x0F) : (p[j] & 0x07);
                    for (int k = 1; k < len; k++) cp = cp << 6 | (p[j + k] & 0x3F);
                }
                uint32_t b = cp_to_byte(cp);
                if (b < 256) { char c = (char)b; buf_add(&o, &c, 1); }
                else buf_add(&o, (const char *)p + j, (size_t)len);
                j += (size_t)len;
            }
        }
        for (size_t i = 0; i < l->n; i++) free(l->s[i]);
        l->s[0] = o.p;
        l->n = 1;
        if (d->kind == DEC_BYTELEVEL) {   /* invalid UTF-8 from split bytes -> U+FFFD, as from_utf8_lossy */
            Buf v = {0};
            buf_add(&v, "", 0);
            for (size_t j = 0; j < o.n;) {
                int len = utf8_len((const unsigned char *)o.p + j, o.n - j);
                if (len) { buf_add(&v, o.p + j, (size_t)len); j += (size_t)len; }
                else { buf_add(&v, "\xef\xbf\xbd", 3); j++; }
            }
            free(o.p);
            l->s[0] = v.p;
        }
        return;
    }
    if (d->kind == DEC_BYTEFALLBACK) {
        StrList nl = {malloc(sizeof(char *) * (l->n + 1)), 0};
        for (size_t i = 0; i < l->n;) {
            if (byte_token(l->s[i]) < 0) { nl.s[nl.n++] = l->s[i++]; continue; }
            Buf bytes = {0};
            size_t j = i;
            for (; j < l->n && byte_token(l->s[j]) >= 0; j++) { char c = (char)byte_token(l->s[j]); buf_add(&bytes, &c, 1); }
            size_t k = 0;
            int valid = 1;
            while (k < bytes.n) { int len = utf8_len((const unsigned char *)bytes.p + k, bytes.n - k); if (!len) { valid = 0; break; } k += (size_t)len; }
            if (valid) nl.s[nl.n++] = bytes.p;
            else {   /* HF: one U+FFFD per byte when the run is not valid UTF-8 */
                Buf r = {0};
                buf_add(&r, "", 0);
                for (size_t b = 0; b < bytes.n; b++) buf_add(&r, "\xef\xbf\xbd", 3);
                free(bytes.p);
                nl.s[nl.n++] = r.p;
            }
            for (size_t q = i; q < j; q++) free(l->s[q]);
            i = j;
        }
        free(l->s);
        *l = nl;
        return;
    }
    for (size_t i = 0; i < l->n; i++) {
        char *s = l->s[i], *r = NULL;
        if (d->kind == DEC_REPLACE) r = replace_all(s, d->a, d->b);
        else if (d->kind == DEC_METASPACE) {
            r = replace_all(s, d->a, " ");
            if (i == 0 && d->prepend && r[0] == ' ') memmove(r, r + 1, strlen(r));
        } else if (d->kind == DEC_STRIP) {
            size_t n = strlen(s), la = strlen(d->a), a = 0, z = n;
            for (int k = 0; k < d->start && a + la <= z && !strncmp(s + a, d->a, la); k++) a += la;
            for (int k = 0; k < d->stop && z >= a + la && !strncmp(s + z - la, d->a, la); k++) z -= la;
            r = malloc(z - a + 1);
            memcpy(r, s + a, z - a);
            r[z - a] = 0;
        }
        if (r) { free(s); l->s[i] = r; }
    }
}

char *tokenizer_decode(const Tokenizer *t, const int32_t *ids, int64_t n, size_t *len, char *err, size_t errlen) {
    StrList l = {malloc(sizeof(char *) * (size_t)(n + 1)), 0};
    for (int64_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= t->n_ids || !t->id_to_token[ids[i]]) {
            for (size_t j = 0; j < l.n; j++) free(l.s[j]);
            free(l.s);
            data_fail(err, errlen, "token id %d is not in the vocabulary", ids[i]);
            return NULL;
        }
        int special = 0;
        for (int a = 0; a < t->n_added; a++) special |= t->added[a].id == ids[i] && t->added[a].special;
        if (!special) l.s[l.n++] = strdup(t->id_to_token[ids[i]]);   /* skip_special_tokens, as HF */
    }
    for (int i = 0; i < t->n_dec; i++) apply_decoder(&t->dec[i], &l);
    Buf o = {0};
    buf_add(&o, "", 0);
    for (size_t i = 0; i < l.n; i++) { buf_add(&o, l.s[i], strlen(l.s[i])); free(l.s[i]); }
    free(l.s);
    *len = o.n;
    return o.p;
}

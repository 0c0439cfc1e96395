/* ropex data prepare | inspect | tokenize */
#include <math.h>
#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../data/data.h"
#include "../data/util.h"
#include "commands.h"

static const char HELP[] =
    "usage: ropex data prepare --tokenizer tokenizer.json --domain NAME INPUT... --out DIR [options]\n"
    "       ropex data inspect DIR\n"
    "       ropex data tokenize --tokenizer tokenizer.json [FILE|-] [--decode]\n"
    "       ropex data synth passkey|kv|repeat|copy|recall --docs N --out FILE.jsonl [--min-chars A] [--max-chars B] [--seed S]\n"
    "                                   [--questions Q] [--depth A..B] [--pairs A..B] [--mixed]\n"
    "                                   [--filler varied|statements]\n"
    "\n"
    "prepare: tokenizes documents into zstd shards of one domain of DIR (adds it to manifest.json,\n"
    "  replacing a domain of the same name). INPUT: a .jsonl file (one document per line, \"text\"),\n"
    "  a directory (one document per file, recursively, in name order) or a text file (one document).\n"
    "  --min-tokens N       drop documents shorter than N tokens (default 1)\n"
    "  --max-nontext F      drop documents whose share of control bytes exceeds F (default 0.01)\n"
    "  --max-repeated F     drop documents whose share of repeated lines (8+ bytes) exceeds F (default 0.5)\n"
    "  --no-dedup           keep exact duplicates (default: drop them)\n"
    "  --aggregate          the files of each directory become one document, in order, each headed\n"
    "                       by its path (files of one repository, chapters of one book)\n"
    "  --heldout F          share of documents kept apart for evaluation (default 0.01)\n"
    "  --level N            zstd level (default 3)\n"
    "inspect: domains, documents, tokens, a length histogram, and every frame's checksum checked.\n"
    "tokenize: the ids of the text as a JSON array; with --decode, a JSON array of ids back to text.\n"
    "synth: synthetic retrieval documents as JSON lines, deterministic in --seed: passkey (a 5-digit key\n"
    "  hidden at a random depth in varied filler, asked for at the end; with --questions Q, asked\n"
    "  Q times through the rest of the filler; --depth A..B: the depth drawn from A..B, shares of\n"
    "  the document, default 0..1; --filler statements, for passkey and recall: half the filler's\n"
    "  sentences \"X is Y.\", so that \"The pass key is\" has look-alikes, as in natural text; default\n"
    "  varied, none with \" is \") or kv (lines of random key: value pairs, then the values of\n"
    "  --questions Q random keys asked for, default 1) or repeat\n"
    "  (lines S|S of 16..64 random letters S: only copying predicts the second half); lengths\n"
    "  --min-chars..--max-chars (default 2000..30000). copy: one line S|S per document, S 8..30\n"
    "  distinct letters and digits (each once, so the copy is unambiguous; lengths do not apply).\n"
    "  recall: --pairs A..B (default 2..52, mostly few) pairs of a distinct letter and a digit\n"
    "  (\"k7 q2 ...\"; --mixed: keys and values from letters and digits), some filler,\n"
    "  then every pair again in a new order (each digit found only by matching its key).\n"
    "  Feed them to prepare as a domain of their own.\n";

static double parse_frac(const char *flag, const char *s) {
    char *end;
    double v = strtod(s, &end);
    if (*s == 0 || *end || v < 0 || v > 1) die("%s expects a number in [0, 1], got '%s'", flag, s);
    return v;
}

/* "A..B" as two numbers (split at "..": strtod alone would read "0..0.3" as "0."); 0, or -1 when
 * either side is missing or not a number. */
static int parse_range(const char *s, double *a, double *b) {
    const char *dots = strstr(s, "..");
    char lo[64], *end1, *end2;
    if (!dots || dots == s || !dots[2] || (size_t)(dots - s) >= sizeof lo) return -1;
    snprintf(lo, sizeof lo, "%.*s", (int)(dots - s), s);
    *a = strtod(lo, &end1);
    *b = strtod(dots + 2, &end2);
    return *end1 || *end2 ? -1 : 0;
}

static int data_prepare_cmd(int argc, char **argv) {
    PrepareConfig c = {.min_tokens = 1, .max_nontext = 0.01, .max_repeated = 0.5, .dedup = 1, .heldout = 0.01,
                       .level = 3, .progress = 1};
    const char **inputs = calloc((size_t)argc + 1, sizeof *inputs);
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        int more = i + 1 < argc;
        if (!strcmp(a, "--tokenizer") && more) c.tokenizer = argv[++i];
        else if (!strcmp(a, "--domain") && more) c.domain = argv[++i];
        else if (!strcmp(a, "--out") && more) c.out_dir = argv[++i];
        else if (!strcmp(a, "--min-tokens") && more) c.min_tokens = parse_positive(a, argv[++i]);
        else if (!strcmp(a, "--max-nontext") && more) c.max_nontext = parse_frac(a, argv[++i]);
        else if (!strcmp(a, "--max-repeated") && more) c.max_repeated = parse_frac(a, argv[++i]);
        else if (!strcmp(a, "--heldout") && more) c.heldout = parse_frac(a, argv[++i]);
        else if (!strcmp(a, "--level") && more) c.level = (int)parse_positive(a, argv[++i]);
        else if (!strcmp(a, "--no-dedup")) c.dedup = 0;
        else if (!strcmp(a, "--aggregate")) c.aggregate = 1;
        else if (a[0] == '-') die("data prepare: unknown or incomplete option '%s' (see ropex data --help)", a);
        else inputs[c.n_inputs++] = a;
    }
    if (!c.tokenizer || !c.domain || !c.out_dir || !c.n_inputs)
        die("data prepare: needs --tokenizer, --domain, --out and at least one INPUT (see ropex data --help)");
    c.inputs = inputs;
    PrepareSummary s;
    char err[1024];
    if (data_prepare(&c, &s, err, sizeof err) != 0) die("%s", err);
    printf("domain %s -> %s\n", c.domain, c.out_dir);
    printf("  documents in        %10llu\n", (unsigned long long)s.docs_in);
    printf("  dropped: duplicate  %10llu\n", (unsigned long long)s.dropped_duplicate);
    printf("  dropped: incoherent %10llu\n", (unsigned long long)s.dropped_incoherent);
    printf("  dropped: too short  %10llu\n", (unsigned long long)s.dropped_short);
    printf("  training            %10llu documents, %llu tokens\n", (unsigned long long)s.docs_out, (unsigned long long)s.tokens_out);
    printf("  held out            %10llu documents, %llu tokens\n", (unsigned long long)s.docs_heldout, (unsigned long long)s.tokens_heldout);
    printf("  text %.1f MB -> tokens %.1f MB -> zstd %.1f MB (ratio %.2f on tokens)\n", s.bytes_in / 1e6,
           s.bytes_tokens / 1e6, s.bytes_compressed / 1e6, s.bytes_compressed ? (double)s.bytes_tokens / (double)s.bytes_compressed : 0);
    free(inputs);
    return 0;
}

static int data_inspect(int argc, char **argv) {
    if (argc != 1) die("data inspect: expected DIR (see ropex data --help)");
    char path[1200];
    snprintf(path, sizeof path, "%s/manifest.json", argv[0]);
    char *text = data_read_file(path, NULL);
    if (!text) die("%s: cannot read (not a dataset made by `ropex data prepare`?)", path);
    cJSON *root = cJSON_Parse(text);
    free(text);
    if (!root) die("%s: not JSON", path);
    printf("dataset %s: vocab %d, bos %d, eos %d\n", argv[0],
           (int)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(root, "vocab_size")),
           (int)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(root, "bos_id")),
           (int)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(root, "eos_id")));
    int64_t bad_total = 0;
    const cJSON *d;
    cJSON_ArrayForEach(d, cJSON_GetObjectItemCaseSensitive(root, "domains")) {
        printf("domain %s\n", cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(d, "name")));
        const char *lists[] = {"shards", "heldout_shards"};
        for (int l = 0; l < 2; l++) {
            const cJSON *sh;
            cJSON_ArrayForEach(sh, cJSON_GetObjectItemCaseSensitive(d, lists[l])) {
                char sp[1400], err[512];
                snprintf(sp, sizeof sp, "%s/%s", argv[0], cJSON_GetStringValue(sh));
                ShardReader r;
                if (shard_open(&r, sp, err, sizeof err) != 0) { printf("  %s\n", err); bad_total++; continue; }
                uint64_t hist[40] = {0}, maxlen = 0;
                for (uint64_t i = 0; i < r.n_docs; i++) {
                    int b = 0;
                    while ((1ull << (b + 1)) <= r.doc_len[i] && b < 39) b++;
                    hist[b]++;
                    if (r.doc_len[i] > maxlen) maxlen = r.doc_len[i];
                }
                int64_t bad = shard_verify(&r, err, sizeof err);
                printf("  %-32s %s: %llu documents, %llu tokens, %llu frames, %d-byte tokens, longest %llu; "
                       "checksums %s\n", cJSON_GetStringValue(sh), l ? "held out" : "training",
                       (unsigned long long)r.n_docs, (unsigned long long)r.n_tokens, (unsigned long long)r.n_frames,
                       r.token_bytes, (unsigned long long)maxlen, bad ? "FAILED" : "ok");
                if (bad) printf("    %lld bad frames; first: %s\n", (long long)bad, err);
                bad_total += bad;
                for (int b = 0; b < 40; b++)
                    if (hist[b]) printf("    length %8llu..%-8llu %8llu documents\n", (unsigned long long)(1ull << b),
                                        (unsigned long long)((1ull << (b + 1)) - 1), (unsigned long long)hist[b]);
                shard_close(&r);
            }
        }
    }
    cJSON_Delete(root);
    if (bad_total) die("%lld shard problems found", (long long)bad_total);
    return 0;
}

static int data_tokenize(int argc, char **argv) {
    const char *tpath = NULL, *file = "-";
    int decode = 0;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--tokenizer") && i + 1 < argc) tpath = argv[++i];
        else if (!strcmp(argv[i], "--decode")) decode = 1;
        else if (argv[i][0] != '-' || !strcmp(argv[i], "-")) file = argv[i];
        else die("data tokenize: unknown option '%s'", argv[i]);
    }
    if (!tpath) die("data tokenize: needs --tokenizer (see ropex data --help)");
    char err[1024];
    Tokenizer *t = tokenizer_load(tpath, err, sizeof err);
    if (!t) die("%s", err);
    FILE *f = strcmp(file, "-") ? fopen(file, "rb") : stdin;
    if (!f) die("%s: cannot open", file);
    size_t cap = 1 << 16, n = 0, r;
    char *text = malloc(cap);
    while ((r = fread(text + n, 1, cap - n, f)) > 0) { n += r; if (n == cap) text = realloc(text, cap *= 2); }
    if (f != stdin) fclose(f);
    if (decode) {
        long long m;
        int32_t *ids = data_parse_ids(file, text, n, tpath, (long long)tokenizer_vocab_size(t), &m, err, sizeof err);
        if (!ids) die("%s", err);
        size_t len;
        char *out = tokenizer_decode(t, ids, m, &len, err, sizeof err);
        if (!out) die("%s", err);
        fwrite(out, 1, len, stdout);
        free(out); free(ids);
    } else {
        int32_t *ids = NULL;
        size_t icap = 0;
        int64_t m = tokenizer_encode(t, text, n, &ids, &icap, err, sizeof err);
        if (m < 0) die("%s", err);
        putchar('[');
        for (int64_t i = 0; i < m; i++) printf(i ? ", %d" : "%d", ids[i]);
        puts("]");
        free(ids);
    }
    free(text);
    tokenizer_free(t);
    return 0;
}

static int data_synth_cmd(int argc, char **argv) {
    SynthConfig c = {.min_chars = 2000, .max_chars = 30000, .seed = 1, .questions = 1, .min_pairs = 2, .max_pairs = 52,
                    .min_depth = 0, .max_depth = 1};
    if (argc < 1 || (strcmp(argv[0], "passkey") && strcmp(argv[0], "kv") && strcmp(argv[0], "repeat") &&
                      strcmp(argv[0], "copy") && strcmp(argv[0], "recall")))
        die("data synth: expected passkey, kv, repeat, copy or recall first (see ropex data --help)");
    c.kind = !strcmp(argv[0], "kv") ? SYNTH_KV : !strcmp(argv[0], "repeat") ? SYNTH_REPEAT
           : !strcmp(argv[0], "copy") ? SYNTH_COPY : !strcmp(argv[0], "recall") ? SYNTH_RECALL : SYNTH_PASSKEY;
    for (int i = 1; i < argc; i++) {
        int more = i + 1 < argc;
        if (!strcmp(argv[i], "--docs") && more) c.docs = parse_positive(argv[i], argv[i + 1]), i++;
        else if (!strcmp(argv[i], "--min-chars") && more) c.min_chars = parse_positive(argv[i], argv[i + 1]), i++;
        else if (!strcmp(argv[i], "--max-chars") && more) c.max_chars = parse_positive(argv[i], argv[i + 1]), i++;
        else if (!strcmp(argv[i], "--seed") && more) c.seed = (uint64_t)parse_positive(argv[i], argv[i + 1]), i++;
        else if (!strcmp(argv[i], "--questions") && more) c.questions = parse_positive(argv[i], argv[i + 1]), i++;
        else if (!strcmp(argv[i], "--pairs") && more) {
            double a, b;
            if (parse_range(argv[i + 1], &a, &b) || !(a >= 2 && a <= b && b <= 52) || a != floor(a) || b != floor(b))
                die("--pairs expects A..B with 2 <= A <= B <= 52, got '%s'", argv[i + 1]);
            c.min_pairs = (int)a, c.max_pairs = (int)b, i++;
            if (c.kind != SYNTH_RECALL) die("data synth %s: --pairs applies to recall only", argv[0]);
        } else if (!strcmp(argv[i], "--depth") && more) {
            double a, b;
            if (parse_range(argv[i + 1], &a, &b) || !(a >= 0 && a <= b && b <= 1))
                die("--depth expects A..B with 0 <= A <= B <= 1, got '%s'", argv[i + 1]);
            c.min_depth = a, c.max_depth = b, i++;
            if (c.kind != SYNTH_PASSKEY) die("data synth %s: --depth applies to passkey only", argv[0]);
        } else if (!strcmp(argv[i], "--mixed")) {
            c.mixed = 1;
            if (c.kind != SYNTH_RECALL) die("data synth %s: --mixed applies to recall only", argv[0]);
        } else if (!strcmp(argv[i], "--filler") && more) {
            if (strcmp(argv[i + 1], "varied") && strcmp(argv[i + 1], "statements"))
                die("--filler expects varied or statements, got '%s'", argv[i + 1]);
            c.statements = !strcmp(argv[++i], "statements");
            if (c.kind != SYNTH_PASSKEY && c.kind != SYNTH_RECALL)
                die("data synth %s: --filler applies to passkey and recall only", argv[0]);
        } else if (!strcmp(argv[i], "--out") && more) c.out = argv[++i];
        else die("data synth: unknown or incomplete option '%s'", argv[i]);
    }
    if (!c.docs || !c.out) die("data synth: needs --docs N and --out FILE.jsonl");
    char err[512];
    if (data_synth(&c, err, sizeof err)) die("%s", err);
    printf("%lld %s documents -> %s\n", (long long)c.docs, argv[0], c.out);
    return 0;
}

int cmd_data(int argc, char **argv) {
    if (argc < 1 || is_help(argv[0])) { fputs(HELP, argc < 1 ? stderr : stdout); return argc < 1 ? 2 : 0; }
    for (int i = 1; i < argc; i++) if (is_help(argv[i])) { fputs(HELP, stdout); return 0; }
    if (!strcmp(argv[0], "prepare")) return data_prepare_cmd(argc - 1, argv + 1);
    if (!strcmp(argv[0], "inspect")) return data_inspect(argc - 1, argv + 1);
    if (!strcmp(argv[0], "tokenize")) return data_tokenize(argc - 1, argv + 1);
    if (!strcmp(argv[0], "synth")) return data_synth_cmd(argc - 1, argv + 1);
    die("data: unknown subcommand '%s' (expected prepare, inspect, tokenize or synth)", argv[0]);
}

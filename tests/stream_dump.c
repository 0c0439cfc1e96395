/* Reads sequences from a prepared dataset and writes them for the Python data tests.
 * usage: stream_dump DIR SEQ_LEN SEED COUNT OUT [--mix name:w,...] [--cursor-in F] [--cursor-out F]
 *                    [--skip-corrupt] [--upsample BELOW:KEEP] [--heldout] [--whole NAMES]
 * OUT: per sequence, i32 domain then (SEQ_LEN + 1) i32 tokens then (SEQ_LEN + 1) i32 document ids. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../data/stream.h"

int main(int argc, char **argv) {
    if (argc < 6) { fprintf(stderr, "usage: stream_dump DIR SEQ_LEN SEED COUNT OUT [options]\n"); return 2; }
    StreamConfig c = {.dir = argv[1], .seq_len = atoll(argv[2]), .seed = strtoull(argv[3], NULL, 10), .add_bos = 1,
                      .prefetch = 4, .upsample_keep = 1};
    long count = atol(argv[4]);
    const char *out = argv[5], *cin = NULL, *cout = NULL;
    for (int i = 6; i < argc; i++) {
        if (!strcmp(argv[i], "--mix") && i + 1 < argc) {
            char *spec = strdup(argv[++i]);
            for (char *tok = strtok(spec, ","); tok; tok = strtok(NULL, ",")) {
                char *colon = strchr(tok, ':');
                if (!colon) { fprintf(stderr, "bad --mix\n"); return 2; }
                *colon = 0;
                snprintf(c.mix_name[c.n_mix], sizeof c.mix_name[0], "%s", tok);
                c.mix_weight[c.n_mix++] = atof(colon + 1);
            }
            free(spec);
        } else if (!strcmp(argv[i], "--cursor-in") && i + 1 < argc) cin = argv[++i];
        else if (!strcmp(argv[i], "--cursor-out") && i + 1 < argc) cout = argv[++i];
        else if (!strcmp(argv[i], "--skip-corrupt")) c.skip_corrupt = 1;
        else if (!strcmp(argv[i], "--heldout")) c.heldout = 1;
        else if (!strcmp(argv[i], "--whole") && i + 1 < argc) c.whole_docs = argv[++i];
        else if (!strcmp(argv[i], "--upsample") && i + 1 < argc) {
            char *spec = argv[++i];
            c.upsample_below = atoll(spec);
            c.upsample_keep = atof(strchr(spec, ':') + 1);
        } else { fprintf(stderr, "unknown option %s\n", argv[i]); return 2; }
    }
    char err[1024];
    Stream *s = stream_open(&c, err, sizeof err);
    if (!s) { fprintf(stderr, "%s\n", err); return 1; }
    if (cin) {
        FILE *f = fopen(cin, "rb");
        uint8_t buf[8192];
        size_t n = f ? fread(buf, 1, sizeof buf, f) : 0;
        if (f) fclose(f);
        if (stream_restore(s, buf, n, err, sizeof err)) { fprintf(stderr, "%s\n", err); return 1; }
    }
    FILE *o = fopen(out, "wb");
    int32_t *tok = malloc(sizeof(int32_t) * (size_t)(c.seq_len + 1)), *doc = malloc(sizeof(int32_t) * (size_t)(c.seq_len + 1));
    for (long k = 0; k < count; k++) {
        int d;
        if (stream_next(s, tok, doc, &d, err, sizeof err)) { fprintf(stderr, "%s\n", err); fclose(o); return 1; }
        int32_t d32 = d;
        fwrite(&d32, 4, 1, o);
        fwrite(tok, 4, (size_t)(c.seq_len + 1), o);
        fwrite(doc, 4, (size_t)(c.seq_len + 1), o);
    }
    fclose(o);
    if (cout) {
        size_t n;
        uint8_t *b = stream_save(s, &n);
        FILE *f = fopen(cout, "wb");
        fwrite(b, 1, n, f);
        fclose(f);
        free(b);
    }
    fprintf(stderr, "skipped %lld\n", (long long)stream_skipped(s));
    free(tok); free(doc);
    stream_close(s);
    return 0;
}

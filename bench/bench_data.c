/* Data pipeline speed: decode + pack throughput of the stream (tokens/s) on a synthetic dataset
 * of zstd shards, and the time a consumer waits for data when it takes a sequence every 20 ms
 * (a trainer far faster than any real step: the demo shape needs about 5 s per 8192 tokens).
 * usage: bench_data [DIR]   (default /tmp/ropex-bench-data; made if missing) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../data/data.h"
#include "../model/rng.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void make_dataset(const char *dir) {
    mkdir(dir, 0777);
    const char *names[3] = {"books", "code", "passkey"};
    int64_t lo[3] = {2000, 300, 1000}, hi[3] = {60000, 8000, 9000};
    Rng r = {3};
    char err[512], path[1200];
    int32_t *tok = malloc(sizeof(int32_t) * 60000);
    for (int d = 0; d < 3; d++) {
        ShardWriter w;
        snprintf(path, sizeof path, "%s/%s-train.rxs", dir, names[d]);
        if (shard_writer_open(&w, path, 2, 3, err, sizeof err)) { fprintf(stderr, "%s\n", err); exit(1); }
        for (int64_t total = 0; total < 4000000;) {   /* ~4M tokens per domain */
            int64_t n = lo[d] + (int64_t)(rng_next(&r) % (uint64_t)(hi[d] - lo[d]));
            /* text-like statistics: a skewed choice over a 32k vocabulary */
            for (int64_t i = 0; i < n; i++) tok[i] = (int32_t)((rng_next(&r) % 180) * (rng_next(&r) % 180) % 32000);
            shard_writer_add(&w, tok, (uint64_t)n, err, sizeof err);
            total += n;
        }
        if (shard_writer_close(&w, 1, err, sizeof err)) { fprintf(stderr, "%s\n", err); exit(1); }
    }
    snprintf(path, sizeof path, "%s/manifest.json", dir);
    FILE *f = fopen(path, "w");
    fprintf(f, "{\"format\": \"ropex-data\", \"version\": 1, \"vocab_size\": 32000, \"bos_id\": 1, \"eos_id\": 2, "
               "\"domains\": [");
    for (int d = 0; d < 3; d++)
        fprintf(f, "%s{\"name\": \"%s\", \"shards\": [\"%s-train.rxs\"], \"heldout_shards\": []}", d ? ", " : "", names[d], names[d]);
    fprintf(f, "]}\n");
    fclose(f);
    free(tok);
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : "/tmp/ropex-bench-data";
    char mpath[1200];
    snprintf(mpath, sizeof mpath, "%s/manifest.json", dir);
    if (access(mpath, R_OK) != 0) make_dataset(dir);
    StreamConfig c = {.dir = dir, .seed = 1, .seq_len = 8192, .n_mix = 3, .add_bos = 1, .prefetch = 4,
                      .upsample_below = 4096, .upsample_keep = 0.1};
    const char *names[3] = {"books", "code", "passkey"};
    double w[3] = {0.4, 0.3, 0.3};
    for (int i = 0; i < 3; i++) { snprintf(c.mix_name[i], sizeof c.mix_name[i], "%s", names[i]); c.mix_weight[i] = w[i]; }
    char err[1024];
    Stream *s = stream_open(&c, err, sizeof err);
    if (!s) { fprintf(stderr, "%s\n", err); return 1; }
    int32_t *tok = malloc(sizeof(int32_t) * 8193), *doc = malloc(sizeof(int32_t) * 8193);
    int dom;
    const int n = 400;
    double t0 = now();
    for (int k = 0; k < n; k++)
        if (stream_next(s, tok, doc, &dom, err, sizeof err)) { fprintf(stderr, "%s\n", err); return 1; }
    double t = now() - t0, tps = (double)n * 8192 / t;
    printf("data: decode + pack %d sequences of 8192 tokens (3 domains, 1 MiB zstd frames, upsampling on): "
           "%.0f tokens/s\n", n, tps);
    double w0 = stream_wait_seconds(s);
    for (int k = 0; k < 50; k++) {
        usleep(20000);   /* the consumer's step */
        if (stream_next(s, tok, doc, &dom, err, sizeof err)) { fprintf(stderr, "%s\n", err); return 1; }
    }
    printf("data: with a 20 ms step the consumer waited %.3f ms per step for data (prefetch %d)\n",
           (stream_wait_seconds(s) - w0) / 50 * 1e3, c.prefetch);
    printf("{\"data_tokens_per_s\": %.1f, \"wait_ms_per_20ms_step\": %.4f}\n", tps, (stream_wait_seconds(s) - w0) / 50 * 1e3);
    stream_close(s);
    free(tok); free(doc);
    return 0;
}

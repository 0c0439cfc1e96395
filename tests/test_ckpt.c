/* Checkpoint tests in C: a training checkpoint (weights, AdamW moments, state, tokenizer files)
 * round-trips bit for bit, and a process killed (SIGKILL) in the middle of saves leaves a
 * loadable checkpoint, the old or the new one, under the real name. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../model/ckpt.h"
#include "../model/util.h"
#include "testutil.h"

static uint64_t seed;

static void small_model(Model *m, int64_t C, int64_t L, float fill) {
    ModelConfig c;
    memset(&c, 0, sizeof c);
    c.vocab = 301; c.dim = C; c.n_layers = L; c.n_heads = 4; c.n_kv_heads = 2; c.hidden_dim = 3 * C;
    c.norm_eps = 1e-5;
    rope_config_default(&c.rope);
    c.rope.method = ROPE_LONGROPE; c.rope.factor = 4; c.rope.original_max_len = 64; c.rope.max_len = 256;
    c.rope.n_short = c.rope.n_long = (int)(C / 4 / 2);
    for (int i = 0; i < c.rope.n_short; i++) { c.rope.short_factor[i] = 1 + i * 0.01; c.rope.long_factor[i] = 2 + i; }
    c.rope.keep_positions = 3;
    RxError err;
    ASSERT(model_init(m, &c, &err) == RX_OK);
    if (fill == 0) model_init_random(m, seed, 0.1f);
    else for (size_t i = 0; i < m->table.total; i++) m->params[i] = fill;
}

static void test_roundtrip(const char *dir) {
    Model m, back;
    small_model(&m, 64, 2, 0);
    size_t n = m.table.total;
    float *am = malloc(n * 4), *av = malloc(n * 4), *bm = NULL, *bv = NULL;
    Rng r = {seed};
    tu_fill(&r, am, n, 1);
    tu_fill(&r, av, n, 1);
    uint8_t cursor[37];
    for (int i = 0; i < 37; i++) cursor[i] = (uint8_t)(i * 7);
    TrainState st = {.step = 123, .tokens_seen = 1 << 20, .rng_state = 0xfedcba9876543210ull,
                     .world_size = 2, .data_cursor = cursor, .data_cursor_len = 37,
                     .config_text = "[train]\nsteps = 40\n"}, st2;
    FileBlob blob = {"tokenizer.json", (uint8_t *)"{\"model\": {}}", 13};
    FileBlobs tok = {&blob, 1}, tok2;
    char path[512];
    snprintf(path, sizeof path, "%s/rt.h5", dir);
    RxError err;
    RxStatus rs = ckpt_save(path, &m, am, av, &st, &tok, &err);
    if (rs != RX_OK) { tu_report(0, "checkpoint round trip", "%s", err.msg); return; }
    rs = ckpt_load(path, &back, &bm, &bv, &st2, &tok2, &err);
    if (rs != RX_OK) { tu_report(0, "checkpoint round trip", "%s", err.msg); return; }
    int ok = back.table.total == n && !memcmp(back.params, m.params, n * 4) && bm && bv &&
             !memcmp(bm, am, n * 4) && !memcmp(bv, av, n * 4) && st2.step == 123 &&
             st2.tokens_seen == 1 << 20 && st2.rng_state == st.rng_state && st2.world_size == 2 &&
             st2.data_cursor_len == 37 && !memcmp(st2.data_cursor, cursor, 37) &&
             !strcmp(st2.config_text, st.config_text) && tok2.n == 1 &&
             !strcmp(tok2.items[0].name, "tokenizer.json") && tok2.items[0].len == 13 &&
             !memcmp(&back.cfg.rope, &m.cfg.rope, sizeof m.cfg.rope) && back.cfg.head_dim == m.cfg.head_dim;
    tu_report(ok, "training checkpoint round trip: weights, AdamW m/v, state, RoPE config, tokenizer bit for bit", NULL);
    free(am); free(av); free(bm); free(bv);
    train_state_free(&st2);
    file_blobs_free(&tok2);
    model_free(&m);
    model_free(&back);
    snprintf(path, sizeof path, "%s/no/such/dir/x.h5", dir);
    small_model(&m, 32, 1, 0);
    rs = ckpt_save(path, &m, NULL, NULL, NULL, NULL, &err);
    tu_report(rs == RX_ERR_IO && strstr(err.msg, "no/such/dir/x.h5.tmp: cannot create"),
              "saving into a missing directory is an error naming the file", "%s", err.msg);
    model_free(&m);
}

/* Child: saves state A and B alternately forever. Parent: kills it at a random moment, then the
 * file under the real name must load and be exactly A or exactly B. */
static void test_crash(const char *dir) {
    char path[512];
    snprintf(path, sizeof path, "%s/crash.h5", dir);
    Model a, b;
    small_model(&a, 256, 4, 1.0f);
    small_model(&b, 256, 4, 2.0f);
    size_t n = a.table.total;
    float *mom = calloc(n, 4);
    RxError err;
    ASSERT(ckpt_save(path, &a, mom, mom, NULL, NULL, &err) == RX_OK);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    ASSERT(ckpt_save(path, &b, mom, mom, NULL, NULL, &err) == RX_OK);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double save_s = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    Rng r = {seed + 9};
    int rounds = 12, good = 0, saw_a = 0, saw_b = 0;
    char why[700] = "";
    for (int k = 0; k < rounds; k++) {
        pid_t pid = fork();
        if (pid == 0) {
            for (int i = 0;; i++) ckpt_save(path, i % 2 ? &a : &b, mom, mom, NULL, NULL, NULL);
        }
        /* kill somewhere inside the first few saves */
        useconds_t delay = (useconds_t)(rng_uniform(&r) * 3.0 * save_s * 1e6);
        usleep(delay);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        Model got;
        if (ckpt_load(path, &got, NULL, NULL, NULL, NULL, &err) != RX_OK) {
            snprintf(why, sizeof why, "round %d (killed after %u us): %s", k, delay, err.msg);
            continue;
        }
        int is_a = !memcmp(got.params, a.params, n * 4), is_b = !memcmp(got.params, b.params, n * 4);
        saw_a += is_a;
        saw_b += is_b;
        if (is_a || is_b) good++;
        else snprintf(why, sizeof why, "round %d: the file holds neither state", k);
        model_free(&got);
    }
    tu_report(good == rounds, "SIGKILL during saves: the real name always holds a whole checkpoint",
              "%d/%d rounds loadable and whole (old %d, new %d), one save %.0f ms%s%s", good, rounds,
              saw_a, saw_b, save_s * 1e3, why[0] ? "; " : "", why);
    free(mom);
    model_free(&a);
    model_free(&b);
}

int main(void) {
    seed = tu_seed(5);
    char dir[] = "/tmp/ropex-ckpt-XXXXXX";
    ASSERT(mkdtemp(dir));
    test_roundtrip(dir);
    test_crash(dir);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return tu_exit();
}

/* ropex train: the training loop, its checkpoints and exact resume. */
#include <cJSON.h>
#include <cblas.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../data/data.h"
#include "../data/util.h"
#include "../model/ckpt.h"
#include "../model/fsutil.h"
#include "../optim/optim.h"
#include "commands.h"
#include "config.h"
#include "dist.h"

static const char HELP[] =
    "usage: ropex train CONFIG.ini [--set section.key=value ...] [--fresh] [--force] [--check]\n"
    "\n"
    "Trains (extends) a model as CONFIG says. Running the same command again with an out_dir that\n"
    "holds a checkpoint continues exactly where the last checkpoint left off (weights, AdamW\n"
    "moments, step, schedule, data position). Ctrl-C (SIGINT), SIGTERM or SIGUSR1 finishes the step,\n"
    "saves, and exits with status 130; rerun the command to continue. Under mpirun send SIGUSR1 to\n"
    "mpirun: Open MPI forwards it to every rank at once, while its SIGTERM reaches the ranks only\n"
    "after odls_base_sigkill_timeout seconds (default 1) and is followed as long after by SIGKILL.\n"
    "  --fresh   start over in an out_dir that already holds a run (deletes its checkpoints)\n"
    "  --force   resume although a key that changes the run (model, rope, data, seed, batch) differs\n"
    "  --check   only validate: read the config, the model's shape, the RoPE and the data (manifest, mixes,\n"
    "            vocabulary), print them, exit\n"
    "\n"
    "Keys (section, name, default, meaning):\n";

static volatile sig_atomic_t stop_requested = 0;
static void on_signal(int sig) { stop_requested = sig; }

/* "books:0.4 code:0.3" (spaces or commas) into the stream config. */
static void parse_mix(const char *mix, StreamConfig *sc) {
    char *copy = strdup(mix), *save = NULL;
    const char *key = sc->mix_key ? sc->mix_key : "data.mix";
    for (char *t = strtok_r(copy, " ,\t", &save); t; t = strtok_r(NULL, " ,\t", &save)) {
        char *colon = strchr(t, ':');
        char *end = NULL;
        double w = colon ? strtod(colon + 1, &end) : -1;
        if (!colon || colon == t || !end || *end || w < 0)
            die("%s: '%s' is not name:weight (e.g. books:0.4 code:0.3 passkey:0.3)", key, t);
        if (sc->n_mix == STREAM_MAX_DOMAINS) die("%s: more than %d domains", key, STREAM_MAX_DOMAINS);
        *colon = 0;
        snprintf(sc->mix_name[sc->n_mix], sizeof sc->mix_name[0], "%s", t);
        sc->mix_weight[sc->n_mix++] = w;
    }
    free(copy);
}

static StreamConfig stream_config(const RunConfig *rc, int heldout) {
    StreamConfig sc = {.dir = rc->data_dir, .seed = (uint64_t)rc->seed, .seq_len = rc->seq_len,
                       .upsample_below = rc->upsample_below, .upsample_keep = rc->upsample_keep,
                       .add_bos = (int)rc->add_bos, .skip_corrupt = !strcmp(rc->on_corrupt, "skip"),
                       .heldout = heldout, .prefetch = 4, .whole_docs = rc->whole_docs};
    if (rc->data_mix[0]) parse_mix(rc->data_mix, &sc);
    return sc;
}

/* The sequence-length warmup's own stream (data.short_mix): short_seq_len-token sequences. */
static StreamConfig short_stream_config(const RunConfig *rc) {
    StreamConfig sc = stream_config(rc, 0);
    sc.seq_len = rc->short_seq_len;
    sc.n_mix = 0;
    sc.mix_key = "data.short_mix";
    parse_mix(rc->short_mix, &sc);
    return sc;
}

/* The run's streams, or dies naming the key: the main one and, when with_short, the warmup's own
 * (data.short_mix); data.dir's ids must fit the model's vocabulary. */
static Stream *open_streams(const RunConfig *rc, int64_t vocab, int with_short, Stream **short_stream) {
    char err[1024];
    StreamConfig sc = stream_config(rc, 0);
    Stream *s = stream_open(&sc, err, sizeof err);
    if (!s) die("%s", err);
    if (vocab < stream_vocab_size(s))
        die("data.dir %s was tokenized with %lld token ids but the model's vocabulary has %lld", rc->data_dir,
            (long long)stream_vocab_size(s), (long long)vocab);
    *short_stream = NULL;
    if (with_short && rc->short_mix[0]) {
        StreamConfig ssc = short_stream_config(rc);
        if (!(*short_stream = stream_open(&ssc, err, sizeof err))) die("%s", err);
    }
    return s;
}

/* One micro-batch: B sequences of T + 1 tokens -> inputs, targets and document ids. A target in
 * the next document is ignored (-1) unless it is that document's BOS: after EOS comes BOS, a
 * certainty the model learns like any other token. Ignoring it too left BOS a class that is never
 * a target, which (tied embeddings, BOS the attention sink of every document) kept a 2-layer model
 * from learning to copy at all: a copy task stayed at chance for 600 steps without the BOS target
 * (ropex, two seeds; PyTorch under the same rule) and was learnt by step 300 with it (README,
 * "Train"; tests/ref/test_train.py's induction check). */
typedef struct { int32_t *seq, *docs_seq, *inp, *tgt, *docs, *pos; } Batch;

static int next_batch(Stream *s, Batch *b, int64_t B, int64_t T, char *err, size_t errlen) {
    const int32_t bos = stream_bos(s);
    for (int64_t r = 0; r < B; r++) {
        int32_t *seq = b->seq + r * (T + 1), *ds = b->docs_seq + r * (T + 1);
        if (stream_next(s, seq, ds, NULL, err, errlen)) return -1;
        for (int64_t t = 0; t < T; t++) {
            b->inp[r * T + t] = seq[t];
            b->tgt[r * T + t] = ds[t + 1] == ds[t] || seq[t + 1] == bos ? seq[t + 1] : -1;
            b->docs[r * T + t] = ds[t];
        }
    }
    return 0;
}

/* Held-out loss over the first eval_sequences sequences of the held-out stream. */
static double evaluate(Model *m, const RunConfig *rc, Batch *b, char *err, size_t errlen) {
    StreamConfig sc = stream_config(rc, 1);
    Stream *s = stream_open(&sc, err, errlen);
    if (!s) return NAN;
    double sum = 0;
    int64_t n = 0;
    RxError e;
    for (int64_t i = 0; i < rc->eval_sequences; i++) {
        if (next_batch(s, b, 1, rc->seq_len, err, errlen)) { stream_close(s); return NAN; }
        m->docs = rc->doc_mask ? b->docs : NULL;
        float loss;
        if (model_forward(m, b->inp, b->tgt, 1, rc->seq_len, &loss, &e) != RX_OK) { snprintf(err, errlen, "%s", e.msg); stream_close(s); return NAN; }
        if (isfinite(loss)) { sum += loss * (double)m->n_counted; n += m->n_counted; }
    }
    stream_close(s);
    return n ? sum / (double)n : NAN;
}

/* Keeps metrics.jsonl lines of steps <= upto (a resumed run redoes the steps after it), and
 * drops a last line cut short by a crash (no newline), which the next line would run on from. */
static void trim_metrics(const char *path, int64_t upto) {
    FILE *f = fopen(path, "r");
    if (!f) return;
    char tmp[CONFIG_PATH_MAX + 64];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *o = fopen(tmp, "w");
    char line[4096];
    while (o && fgets(line, sizeof line, f)) {
        const char *p = strstr(line, "\"step\": ");
        if ((p && atoll(p + 8) > upto) || !strchr(line, '\n')) continue;
        fputs(line, o);
    }
    fclose(f);
    if (o) { fflush(o); fsync(fileno(o)); fclose(o); rename(tmp, path); }
}

static void prune(const char *dir, int64_t keep) {
    DIR *d = opendir(dir);
    if (!d) return;
    int64_t steps[4096];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 4096) {
        long long s;
        char tail[8];
        if (sscanf(e->d_name, "step-%lld.%3s", &s, tail) == 2 && !strcmp(tail, "h5")) steps[n++] = s;
    }
    closedir(d);
    for (int i = 0; i < n; i++) {
        int newer = 0;
        for (int j = 0; j < n; j++) newer += steps[j] > steps[i];
        if (newer >= keep) {
            char p[CONFIG_PATH_MAX + 40];
            snprintf(p, sizeof p, "%s/step-%08lld.h5", dir, (long long)steps[i]);
            unlink(p);
        }
    }
}

typedef struct {
    const RunConfig *rc;
    Model *m;
    float *am, *av;
    Stream *stream, *short_stream;   /* short_stream: data.short_mix's, read by steps < short_steps */
    FileBlobs *tok;
    char *config_text;
} Run;

/* A model trained from scratch keeps the tokenizer of its data (data.dir/tokenizer.json), so that
 * its checkpoints export and evaluate without being told which tokenizer made the ids, and a
 * generation_config.json naming its BOS and EOS ids, which Hugging Face's generate (and ropex
 * eval --generate) stop at and export copies into config.json. bos, eos: where to put the
 * tokenizer's ids, or NULL. */
static void check_data_tokenizer(const RunConfig *rc, int64_t vocab, char *path, size_t pathlen, int64_t *bos,
                                 int64_t *eos) {
    char err[512];
    snprintf(path, pathlen, "%s/tokenizer.json", rc->data_dir);
    Tokenizer *t = tokenizer_load(path, err, sizeof err);
    if (!t) die("%s", err);
    const int64_t v = tokenizer_vocab_size(t);
    if (bos) *bos = tokenizer_bos(t);
    if (eos) *eos = tokenizer_eos(t);
    tokenizer_free(t);
    if (v > vocab)
        die("%s has %lld tokens but the model's vocab_size is %lld: set model.vocab_size >= %lld", path, (long long)v,
            (long long)vocab, (long long)v);
}

static void store_data_tokenizer(const RunConfig *rc, const Model *m, FileBlobs *tok) {
    char path[CONFIG_PATH_MAX + 32];
    int64_t bos, eos;
    check_data_tokenizer(rc, m->cfg.vocab, path, sizeof path, &bos, &eos);
    size_t len;
    char *data = data_read_file(path, &len);
    if (!data) die("%s: cannot read", path);
    tok->items = calloc(2, sizeof(FileBlob));
    if (!tok->items) die("out of memory");
    snprintf(tok->items[0].name, sizeof tok->items[0].name, "tokenizer.json");
    tok->items[0].data = (uint8_t *)data;
    tok->items[0].len = len;
    tok->n = 1;
    if (bos < 0 && eos < 0) return;
    cJSON *g = cJSON_CreateObject();
    if (bos >= 0) cJSON_AddNumberToObject(g, "bos_token_id", (double)bos);
    if (eos >= 0) cJSON_AddNumberToObject(g, "eos_token_id", (double)eos);
    char *text = cJSON_Print(g);
    cJSON_Delete(g);
    if (!text) die("out of memory");
    snprintf(tok->items[1].name, sizeof tok->items[1].name, "generation_config.json");
    tok->items[1].data = (uint8_t *)text;
    tok->items[1].len = strlen(text);
    tok->n = 2;
}

/* Rank 0 writes; every rank's stream is at the same position (each reads every sequence of a step
 * and keeps its own share), so one cursor is every rank's data position. */
static void save_checkpoint(Run *r, int64_t step) {
    if (dist_rank() != 0) return;
    char path[CONFIG_PATH_MAX + 80], latest[CONFIG_PATH_MAX + 80], tmp[CONFIG_PATH_MAX + 96], name[64];
    snprintf(name, sizeof name, "step-%08lld.h5", (long long)step);
    snprintf(path, sizeof path, "%s/%s", r->rc->out_dir, name);
    size_t clen;
    /* the cursor of the stream that the next step reads */
    uint8_t *cursor = stream_save(r->short_stream && step < r->rc->short_steps ? r->short_stream : r->stream, &clen);
    TrainState st = {.step = step, .tokens_seen = step * r->rc->micro_batch * r->rc->grad_accum * r->rc->seq_len,
                     .rng_state = (uint64_t)r->rc->seed, .world_size = dist_size(), .data_cursor = cursor,
                     .data_cursor_len = clen, .config_text = r->config_text};
    RxError e;
    if (ckpt_save(path, r->m, r->am, r->av, &st, r->tok, &e) != RX_OK) die("saving a checkpoint failed: %s", e.msg);
    free(cursor);
    /* `latest` names the newest checkpoint; replaced atomically */
    snprintf(latest, sizeof latest, "%s/latest", r->rc->out_dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", latest);
    FILE *f = fopen(tmp, "w");
    if (!f || fprintf(f, "%s\n", name) < 0 || fflush(f) || fsync(fileno(f)) || fclose(f) || rename(tmp, latest))
        die("%s: cannot update", latest);
    prune(r->rc->out_dir, r->rc->keep_last);
}

/* the command that continues this run: the same arguments without --fresh (which would delete
 * it), each shell-quoted where it holds more than [A-Za-z0-9_./=:,+-]; under mpirun with the same
 * number of ranks (the launcher's own options are not known here) */
static void resume_command(int argc, char **argv, int world, char *out, size_t n) {
    size_t w = world > 1 ? (size_t)snprintf(out, n, "mpirun -np %d ropex train", world)
                         : (size_t)snprintf(out, n, "ropex train");
    for (int i = 0; i < argc && w < n; i++) {
        if (!strcmp(argv[i], "--fresh")) continue;
        int plain = argv[i][0] != 0;
        for (const char *c = argv[i]; *c; c++)
            plain &= (*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') ||
                     strchr("_./=:,+-", *c) != NULL;
        if (plain) { w += (size_t)snprintf(out + w, n - w, " %s", argv[i]); continue; }
        w += (size_t)snprintf(out + w, n - w, " '");
        for (const char *c = argv[i]; *c && w < n; c++)
            w += (size_t)(*c == '\'' ? snprintf(out + w, n - w, "'\\''") : snprintf(out + w, n - w, "%c", *c));
        if (w < n) w += (size_t)snprintf(out + w, n - w, "'");
    }
}

int cmd_train(int argc, char **argv) {
    const char *cfg_path = NULL;
    int fresh = 0, force = 0, check = 0;
    RunConfig rc;
    config_init(&rc);
    char err[2048];
    for (int i = 0; i < argc; i++) {
        if (is_help(argv[i])) { fputs(HELP, stdout); config_print_keys(stdout); return 0; }
        if (!strcmp(argv[i], "--fresh")) fresh = 1;
        else if (!strcmp(argv[i], "--force")) force = 1;
        else if (!strcmp(argv[i], "--check")) check = 1;
        else if (!strcmp(argv[i], "--set")) { if (++i >= argc) die("train: --set needs section.key=value"); }
        else if (argv[i][0] == '-') die("train: unknown option '%s' (see ropex train --help)", argv[i]);
        else if (cfg_path) die("train: more than one CONFIG ('%s')", argv[i]);
        else cfg_path = argv[i];
    }
    if (!cfg_path) die("train: missing CONFIG.ini (see ropex train --help)");
    const int world = dist_init(), rank = dist_rank();
    if (rank > 0 && !freopen("/dev/null", "w", stdout)) die("cannot silence rank %d's output", rank);   /* rank 0 reports */
    if (config_load(&rc, cfg_path, err, sizeof err)) die("%s", err);
    for (int i = 0; i < argc; i++)
        if (!strcmp(argv[i], "--set") && config_set(&rc, argv[++i], err, sizeof err)) die("%s", err);
    if (config_check_train(&rc, err, sizeof err)) die("%s", err);
    if (rc.grad_accum % world)
        die("train.grad_accum = %lld is not a multiple of the %d ranks: each rank takes grad_accum / ranks of every "
            "step's micro-batches (the global batch stays micro_batch x grad_accum sequences whatever the ranks)",
            (long long)rc.grad_accum, world);
    if (rc.threads > 0) { omp_set_num_threads((int)rc.threads); openblas_set_num_threads((int)rc.threads); }
    ModelConfig mc;
    if (config_model(&rc, &mc, err, sizeof err)) die("%s", err);
    if (rope_check_trainable(&mc.rope, err, sizeof err)) die("%s", err);
    if (check) {   /* the data as the run would open it, once data.dir is prepared */
        char manifest[CONFIG_PATH_MAX + 16], tpath[CONFIG_PATH_MAX + 32];
        snprintf(manifest, sizeof manifest, "%s/manifest.json", rc.data_dir);
        if (access(manifest, F_OK)) {
            printf("%s: %s does not exist yet (ropex data prepare makes it): the data keys are checked against it "
                   "once it does\n", cfg_path, manifest);
        } else {
            if (rc.model_preset[0]) check_data_tokenizer(&rc, mc.vocab, tpath, sizeof tpath, NULL, NULL);   /* from scratch */
            Stream *ss, *s = open_streams(&rc, mc.vocab, 1, &ss);
            stream_close(s);
            if (ss) stream_close(ss);
        }
        printf("%s: ok: model V %lld C %lld L %lld NH %lld NKV %lld H %lld, rope %s x%g (%lld -> %lld), "
               "data %s, seq_len %lld, %lld steps of %lld x %lld sequences\n", cfg_path, (long long)mc.vocab,
               (long long)mc.dim, (long long)mc.n_layers, (long long)mc.n_heads, (long long)mc.n_kv_heads,
               (long long)mc.hidden_dim, rope_method_name(mc.rope.method), mc.rope.factor,
               (long long)mc.rope.original_max_len, (long long)mc.rope.max_len, rc.data_dir, (long long)rc.seq_len,
               (long long)rc.steps, (long long)rc.micro_batch, (long long)rc.grad_accum);
        config_free(&rc);
        dist_finalize();
        return 0;
    }
    if (fs_mkdir_p(rc.out_dir)) die("%s: cannot create the run directory (%s)", rc.out_dir, strerror(errno));

    char latest_path[CONFIG_PATH_MAX + 16], metrics_path[CONFIG_PATH_MAX + 16];
    snprintf(latest_path, sizeof latest_path, "%s/latest", rc.out_dir);
    snprintf(metrics_path, sizeof metrics_path, "%s/metrics.jsonl", rc.out_dir);
    Model m;
    float *am = NULL, *av = NULL;
    FileBlobs tok = {0};
    TrainState st = {0};
    int64_t start = 0;
    RxError e;
    /* rank 0 alone clears or trims the run directory; the others wait, then read what is there */
    FILE *lf = rank == 0 ? fopen(latest_path, "r") : NULL;
    if (lf && fresh) {
        fclose(lf);
        lf = NULL;
        DIR *d = opendir(rc.out_dir);
        struct dirent *de;
        while (d && (de = readdir(d)))
            if (!strncmp(de->d_name, "step-", 5) || !strcmp(de->d_name, "latest") || !strcmp(de->d_name, "metrics.jsonl") ||
                !strcmp(de->d_name, "final.h5")) {
                char p[CONFIG_PATH_MAX + 300];
                snprintf(p, sizeof p, "%s/%s", rc.out_dir, de->d_name);
                unlink(p);
            }
        if (d) closedir(d);
        printf("--fresh: removed the previous run's checkpoints and metrics in %s\n", rc.out_dir);
    } else if (rank == 0 && !lf && access(metrics_path, F_OK) == 0) {
        /* stopped before its first checkpoint: nothing to resume, nothing lost by starting over */
        printf("%s has no checkpoint yet: starting from step 0\n", rc.out_dir);
        trim_metrics(metrics_path, 0);
    }
    if (lf) fclose(lf);
    dist_barrier();
    lf = fopen(latest_path, "r");
    if (lf) {   /* resume */
        char name[256] = "", ck[CONFIG_PATH_MAX + 300];
        if (!fgets(name, sizeof name, lf)) name[0] = 0;
        fclose(lf);
        name[strcspn(name, "\n")] = 0;
        snprintf(ck, sizeof ck, "%s/%s", rc.out_dir, name);
        if (ckpt_load(ck, &m, &am, &av, &st, &tok, &e) != RX_OK) die("cannot resume from %s: %s", ck, e.msg);
        if (!am) die("%s has no optimizer state: it cannot be resumed from", ck);
        RunConfig saved;
        config_init(&saved);
        if (!st.config_text || config_load_string(&saved, st.config_text, ck, err, sizeof err))
            die("%s: the stored run config is unreadable: %s", ck, st.config_text ? err : "missing");
        if (config_diff_frozen(&saved, &rc, err, sizeof err) && !force)
            die("cannot resume %s exactly: %s. Use --force to resume anyway, or --fresh to start over", rc.out_dir, err);
        config_free(&saved);
        start = st.step;
        printf("resuming %s from %s at step %lld (saved by %lld rank%s, now %d)\n", rc.out_dir, name, (long long)start,
               (long long)st.world_size, st.world_size == 1 ? "" : "s", world);
        if (rank == 0) trim_metrics(metrics_path, start);
    } else {   /* a new run */
        if (rc.model_preset[0]) {
            if (model_init(&m, &mc, &e) != RX_OK) die("%s", e.msg);
            model_init_random(&m, (uint64_t)rc.init_seed, (float)rc.init_std);
            store_data_tokenizer(&rc, &m, &tok);
        } else if (!strncmp(rc.model_init, "hf:", 3)) {
            if (hf_import(rc.model_init + 3, &m, &tok, &e) != RX_OK) die("%s", e.msg);
        } else if (!strncmp(rc.model_init, "llama2c:", 8)) {
            if (llama2c_import(rc.model_init + 8, &m, &e) != RX_OK) die("%s", e.msg);
        } else if (ckpt_load(rc.model_init, &m, NULL, NULL, NULL, &tok, &e) != RX_OK) {
            die("%s", e.msg);
        }
        m.cfg = mc;   /* the [rope] keys on top of the checkpoint's own */
        am = calloc(m.table.total, sizeof(float));
        av = calloc(m.table.total, sizeof(float));
        if (!am || !av) die("out of memory for AdamW moments");
    }
    m.recompute = !strcmp(rc.recompute, "layer");
    if (model_alloc_grads(&m, &e) != RX_OK) die("%s", e.msg);

    Stream *short_stream, *stream = open_streams(&rc, m.cfg.vocab, start < rc.short_steps, &short_stream);
    if (start > 0 && stream_restore(short_stream ? short_stream : stream, st.data_cursor, st.data_cursor_len, err, sizeof err))
        die("cannot resume the data stream: %s", err);

    const int64_t B = rc.micro_batch, T = rc.seq_len, A = rc.grad_accum, tokens_per_step = B * T * A;
    ModelMemory mm = model_memory(&m.cfg, B, T);
    if (rc.pose_len > T) mm.rope = mm.rope / (size_t)T * (size_t)rc.pose_len;   /* the table covers pose_len positions */
    const double MiB = 1048576.0;
    printf("model: %zu parameters (V %lld, C %lld, L %lld, NH %lld, NKV %lld, H %lld), rope %s x%g (%lld -> %lld)\n",
           m.table.total, (long long)m.cfg.vocab, (long long)m.cfg.dim, (long long)m.cfg.n_layers,
           (long long)m.cfg.n_heads, (long long)m.cfg.n_kv_heads, (long long)m.cfg.hidden_dim,
           rope_method_name(m.cfg.rope.method), m.cfg.rope.factor, (long long)m.cfg.rope.original_max_len,
           (long long)m.cfg.rope.max_len);
    printf("memory: parameters %.1f MiB, gradients %.1f, AdamW %.1f, activations %.1f (recompute %s), scratch %.1f, "
           "attention %.1f; estimate %.1f MiB\n", mm.params / MiB, mm.grads / MiB, 2 * mm.params / MiB,
           (m.recompute ? mm.acts_recompute : mm.acts) / MiB, rc.recompute, mm.scratch / MiB, mm.attn / MiB,
           (4.0 * (double)mm.params + (double)(m.recompute ? mm.acts_recompute : mm.acts) + (double)mm.scratch +
            (double)mm.rope + (double)mm.attn) / MiB);
    printf("data: %s, %d domains (", rc.data_dir, stream_domains(stream));
    for (int d = 0; d < stream_domains(stream); d++)
        printf("%s%s %.3f", d ? ", " : "", stream_domain_name(stream, d), stream_domain_weight(stream, d));
    printf("); %lld tokens per step (%lld x %lld x %lld), %d threads", (long long)tokens_per_step, (long long)A,
           (long long)B, (long long)T, omp_get_max_threads());
    if (world > 1) printf(" per rank, %d ranks of %lld micro-batches each", world, (long long)(A / world));
    printf("\n");
    if (rc.short_steps > 0 && !rc.short_mix[0])
        printf("sequence-length warmup: steps 1-%lld train each sequence as %lld rows of %lld tokens\n",
               (long long)(rc.short_steps < rc.steps ? rc.short_steps : rc.steps), (long long)(T / rc.short_seq_len),
               (long long)rc.short_seq_len);
    if (short_stream) {
        printf("sequence-length warmup: steps 1-%lld read %lld sequences of %lld tokens a micro-batch from their own "
               "stream (", (long long)(rc.short_steps < rc.steps ? rc.short_steps : rc.steps),
               (long long)(B * T / rc.short_seq_len), (long long)rc.short_seq_len);
        for (int d = 0; d < stream_domains(short_stream); d++)
            printf("%s%s %.3f", d ? ", " : "", stream_domain_name(short_stream, d), stream_domain_weight(short_stream, d));
        printf(")\n");
    }
    if (rc.pose_len > 0) {   /* the rows shorter than pose_len: every row, the warmup's, or none */
        const char *which = rc.pose_len > T ? "every row" : rc.short_steps > 0 ? "the warmup's rows" : NULL;
        if (which)
            printf("skip-wise positions (PoSE, data.pose_len): %s (shorter than %lld tokens) take positions reaching it, "
                   "each %s cut and its rest moved on by a random skip\n", which, (long long)rc.pose_len,
                   rc.doc_mask ? "document" : "row");
        else
            printf("skip-wise positions (PoSE, data.pose_len = %lld): no row is shorter, so none\n", (long long)rc.pose_len);
    }

    Batch b;   /* seq, docs_seq: B sequences of T + 1, or the warmup stream's B T / Ts of Ts + 1 */
    const int64_t seq_cap = short_stream ? B * T + B * T / rc.short_seq_len : B * (T + 1);
    b.seq = malloc(sizeof(int32_t) * (size_t)seq_cap);
    b.docs_seq = malloc(sizeof(int32_t) * (size_t)seq_cap);
    b.inp = malloc(sizeof(int32_t) * (size_t)(B * T));
    b.tgt = malloc(sizeof(int32_t) * (size_t)(B * T));
    b.docs = malloc(sizeof(int32_t) * (size_t)(B * T));
    b.pos = malloc(sizeof(int32_t) * (size_t)(B * T));
    OptimRange *ranges = malloc(sizeof(OptimRange) * (size_t)m.table.count);
    for (int i = 0; i < m.table.count; i++) {
        const ParamEntry *pe = &m.table.entries[i];
        int is_embed = !strcmp(pe->name, "model.embed_tokens.weight"), is_norm = pe->ndim == 1;
        int decay = pe->decay || (is_embed && rc.decay_embeddings) || (is_norm && rc.decay_norms);
        ranges[i] = (OptimRange){pe->offset, pe->numel, decay};
    }
    AdamWConfig ac = {rc.beta1, rc.beta2, rc.eps, rc.weight_decay};
    Schedule sched = {!strcmp(rc.schedule, "cosine") ? SCHED_COSINE : !strcmp(rc.schedule, "linear") ? SCHED_LINEAR : SCHED_CONSTANT,
                      rc.lr, rc.warmup_start, rc.min_lr_ratio, rc.warmup_steps, rc.decay_steps ? rc.decay_steps : rc.steps};
    if (rc.decay_steps && rc.decay_steps != rc.steps && sched.kind != SCHED_CONSTANT)
        printf("schedule: %s over %lld steps (optim.decay_steps); the run's %lld steps end at lr %.3e\n", rc.schedule,
               (long long)rc.decay_steps, (long long)rc.steps, schedule_lr(&sched, rc.steps - 1));
    Run run = {&rc, &m, am, av, stream, short_stream, &tok, config_to_ini(&rc)};
    FILE *metrics = fopen(rank == 0 ? metrics_path : "/dev/null", "a");
    if (!metrics) die("%s: cannot open for writing", metrics_path);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGUSR1, on_signal);   /* the one stop signal mpirun forwards at once and without a SIGKILL after it */

    double t_start = now_s(), t_steps[2] = {0, 0};   /* [0] short-row steps, [1] full-length ones */
    const double full_over_short = rc.short_steps > 0 ? model_flops_per_token(&m.cfg, T) /
                                                            model_flops_per_token(&m.cfg, rc.short_seq_len)
                                                      : 1.0;
    int64_t bad = 0, skipped_total = 0, done_here[2] = {0, 0};
    int stop = 0;   /* the stop signal agreed on this step, 0 for none */
    for (int64_t step = start; step < rc.steps; step++) {
        if (short_stream && step >= rc.short_steps) {   /* the warmup is over: its stream is not read again */
            stream_close(short_stream);
            short_stream = run.short_stream = NULL;
        }
        Stream *src = short_stream ? short_stream : stream;
        double t0 = now_s(), w0 = stream_wait_seconds(src);
        model_zero_grad(&m);
        double loss_sum = 0;
        for (int64_t a = 0; a < A; a++) {
            /* sequence-length warmup: the B x T batch, row-major, is read as (B T / Ts) x Ts rows
             * (the same tokens and targets; each row's document ids stay non-decreasing), or with
             * data.short_mix is B T / Ts sequences of Ts tokens from the warmup's own stream */
            const int64_t Ts = step < rc.short_steps ? rc.short_seq_len : T;
            /* micro-batch a belongs to rank a / (A / world): every rank reads it, its owner trains on it */
            if (next_batch(src, &b, short_stream ? B * (T / Ts) : B, short_stream ? Ts : T, err, sizeof err))
                die("data: %s", err);
            if (a / (A / world) != rank) continue;
            m.docs = rc.doc_mask ? b.docs : NULL;
            if (Ts < rc.pose_len) {
                model_pose_positions(b.pos, m.docs, B * (T / Ts), Ts, rc.pose_len, (uint64_t)rc.seed, (uint64_t)step, a * B * (T / Ts));
                m.positions = b.pos; m.pos_len = rc.pose_len;
            }
            float loss;
            RxStatus fb = model_forward_backward(&m, b.inp, b.tgt, B * (T / Ts), Ts, &loss, &e);
            m.positions = NULL;
            if (fb != RX_OK) die("%s", e.msg);
            loss_sum += loss;
        }
        /* the ranks meet first, so that the all-reduce's time is the transfer and not the wait
         * for the slowest rank (shown apart: an imbalance, not a communication cost) */
        double t_sync = now_s();
        dist_barrier();
        t_sync = now_s() - t_sync;
        double t_reduce = now_s();
        dist_sum_floats(m.grads, m.table.total);   /* gradients summed over the ranks, then scaled below */
        dist_sum_doubles(&loss_sum, 1);
        t_reduce = now_s() - t_reduce;
        double loss = loss_sum / (double)A;
        if (A > 1) scale_grads(m.grads, m.table.total, (float)(1.0 / (double)A));
        double norm = clip_grad_norm(m.grads, m.table.total, rc.grad_clip);
        double lr = schedule_lr(&sched, step);
        int ok = isfinite(loss) && isfinite(norm);
        if (ok) { adamw_step(m.params, m.grads, am, av, ranges, m.table.count, &ac, lr, step + 1); bad = 0; }
        else { bad++; skipped_total++; }
        double dt = now_s() - t0, wait = stream_wait_seconds(src) - w0;
        const int full = step >= rc.short_steps;
        t_steps[full] += dt;
        done_here[full]++;
        /* ETA from each phase's mean step time; before a full-length step has run, the short one's
         * scaled by the model FLOPs per token at each length (attention grows with the row length:
         * the demo's 8 x 1024 -> 8192 is 2.72x) */
        const double mean_short = done_here[0] ? t_steps[0] / (double)done_here[0] : 0,
                     mean_full = done_here[1] ? t_steps[1] / (double)done_here[1]
                                              : mean_short * full_over_short;
        const int64_t left_short = rc.short_steps > step + 1 ? rc.short_steps - step - 1 : 0;
        double eta = mean_short * (double)left_short + mean_full * (double)(rc.steps - step - 1 - left_short);
        char el[32], et[32];
        fmt_time(now_s() - t_start, el, sizeof el);
        fmt_time(eta, et, sizeof et);
        char red[80] = "";
        if (world > 1) snprintf(red, sizeof red, "  allreduce %.1f ms (rank wait %.1f ms)", t_reduce * 1e3, t_sync * 1e3);
        printf("step %lld/%lld  loss %.4f  lr %.3e  grad norm %.3f  %.0f tok/s  data wait %.1f ms%s  elapsed %s  ETA %s%s\n",
               (long long)step + 1, (long long)rc.steps, loss, lr, norm, (double)tokens_per_step / dt, wait * 1e3, red, el,
               et, ok ? "" : "  NON-FINITE: update skipped");
        fflush(stdout);
        fprintf(metrics, "{\"step\": %lld, \"loss\": %.9g, \"lr\": %.9g, \"grad_norm\": %.9g, \"tokens_per_s\": %.3f, "
                         "\"data_wait_s\": %.6f, \"step_s\": %.4f, \"tokens\": %lld, \"skipped_update\": %s, "
                         "\"skipped_documents\": %lld, \"ranks\": %d, \"allreduce_s\": %.6f, \"rank_wait_s\": %.6f}\n",
                (long long)step + 1, isfinite(loss) ? loss : -1.0, lr, isfinite(norm) ? norm : -1.0,
                (double)tokens_per_step / dt, wait, dt, (long long)((step + 1) * tokens_per_step), ok ? "false" : "true",
                (long long)stream_skipped(src), world, t_reduce, t_sync);   /* the documents the stream of this step has skipped */
        fflush(metrics);
        if (bad >= rc.max_bad_steps)
            die("%lld non-finite steps in a row (train.max_bad_steps): stopping; the last good checkpoint is %s/latest",
                (long long)bad, rc.out_dir);
        if (rank == 0 && rc.eval_every > 0 && (step + 1) % rc.eval_every == 0 && rc.eval_sequences > 0) {
            double ev = evaluate(&m, &rc, &b, err, sizeof err);
            if (isnan(ev) && err[0]) fprintf(stderr, "ropex: evaluation skipped: %s\n", err);
            printf("eval step %lld: held-out loss %.4f (ppl %.2f) over %lld sequences\n", (long long)step + 1, ev, exp(ev),
                   (long long)rc.eval_sequences);
            fprintf(metrics, "{\"step\": %lld, \"eval_loss\": %.9g}\n", (long long)step + 1, isfinite(ev) ? ev : -1.0);
            fflush(metrics);
        }
        /* read once, agreed on by the ranks (the identity for one process): a signal that arrives
         * after this is this rank's alone and waits for the next step, so every rank stops after
         * the same step */
        stop = (int)dist_max_int(stop_requested);
        if ((step + 1) % rc.save_every == 0 || step + 1 == rc.steps || stop) {
            save_checkpoint(&run, step + 1);
        }
        if (stop) {
            char again[4096];
            resume_command(argc, argv, world, again, sizeof again);
            printf("stopped by signal %d after step %lld (saved). To continue, run:\n  %s\n",
                   stop, (long long)step + 1, again);
            break;
        }
    }
    fclose(metrics);
    int status = 0;
    if (stop) status = 130;
    else if (rank == 0) {   /* the export-ready result: weights, config and tokenizer files, no optimizer state */
        char final_path[CONFIG_PATH_MAX + 16];
        snprintf(final_path, sizeof final_path, "%s/final.h5", rc.out_dir);
        if (ckpt_save(final_path, &m, NULL, NULL, NULL, &tok, &e) != RX_OK) die("%s", e.msg);
        printf("done: %lld steps, %lld updates skipped; final weights %s (ropex export %s --to hf DIR)\n",
               (long long)rc.steps, (long long)skipped_total, final_path, final_path);
    }
    stream_close(stream);
    if (short_stream) stream_close(short_stream);
    free(run.config_text);
    free(am); free(av); free(ranges);
    free(b.seq); free(b.docs_seq); free(b.inp); free(b.tgt); free(b.docs); free(b.pos);
    train_state_free(&st);
    file_blobs_free(&tok);
    model_free(&m);
    config_free(&rc);
    dist_barrier();
    dist_finalize();
    return status;
}

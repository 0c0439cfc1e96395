/* ropex: the command. One binary, subcommands, each with --help. The only place that exits. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <stdarg.h>

#include "../model/model.h"
#include "commands.h"
#include "cpu.h"
#include "dist.h"

#define ROPEX_VERSION "0.1.0"

void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    if (dist_size() > 1) fprintf(stderr, "ropex: rank %d of %d: ", dist_rank(), dist_size());
    else fprintf(stderr, "ropex: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    fflush(stderr);
    dist_abort(2);   /* one rank's error ends every rank instead of leaving them waiting */
    exit(2);
}

double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

void fmt_time(double s, char *out, size_t n) {
    if (!isfinite(s) || s < 0) { snprintf(out, n, "?"); return; }
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(out, n, "%ldh%02ldm", t / 3600, t / 60 % 60);
    else snprintf(out, n, "%ldm%02lds", t / 60, t % 60);
}

int is_help(const char *a) { return strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0; }

int64_t parse_positive(const char *flag, const char *s) {
    char *end;
    long long v = strtoll(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v <= 0) die("%s expects a positive integer, got '%s'", flag, s);
    return v;
}

/* ---- ropex shape ---- */
static const char SHAPE_HELP[] =
    "usage: ropex shape [--preset NAME] [--seq-len T] [--batch B] [--table]\n"
    "\n"
    "Prints a model shape's parameter count and the exact memory a training step of B x T tokens\n"
    "needs (parameters, gradients, AdamW moments, saved activations, scratch).\n"
    "  --preset NAME   tiny (default), smollm-135m, tinyllama-1.1b\n"
    "  --seq-len T     tokens per sequence (default 2048)\n"
    "  --batch B       sequences per micro-batch (default 1)\n"
    "  --table         also list every tensor: Hugging Face name, shape, offset\n";

static int cmd_shape(int argc, char **argv) {
    const char *preset = "tiny";
    int64_t T = 2048, B = 1;
    int table = 0;
    for (int i = 0; i < argc; i++) {
        if (is_help(argv[i])) { fputs(SHAPE_HELP, stdout); return 0; }
        else if (strcmp(argv[i], "--preset") == 0 && i + 1 < argc) preset = argv[++i];
        else if (strcmp(argv[i], "--seq-len") == 0 && i + 1 < argc) T = parse_positive("--seq-len", argv[++i]);
        else if (strcmp(argv[i], "--batch") == 0 && i + 1 < argc) B = parse_positive("--batch", argv[++i]);
        else if (strcmp(argv[i], "--table") == 0) table = 1;
        else die("shape: unknown or incomplete argument '%s' (see ropex shape --help)", argv[i]);
    }
    ModelConfig cfg;
    RxError err;
    if (model_config_preset(&cfg, preset, &err) != RX_OK) die("%s", err.msg);
    ModelMemory mm = model_memory(&cfg, B, T);
    const double MiB = 1048576.0;
    printf("model %s: V %lld, C %lld, L %lld, NH %lld, NKV %lld, HS %lld, H %lld, %s embeddings\n",
           preset, (long long)cfg.vocab, (long long)cfg.dim, (long long)cfg.n_layers,
           (long long)cfg.n_heads, (long long)cfg.n_kv_heads, (long long)cfg.head_dim,
           (long long)cfg.hidden_dim, cfg.tied ? "tied" : "untied");
    printf("parameters   %12zu (%.2f M)\n", mm.params / 4, mm.params / 4 / 1e6);
    printf("memory for B=%lld T=%lld (fp32):\n", (long long)B, (long long)T);
    printf("  parameters  %10.1f MiB\n", mm.params / MiB);
    printf("  gradients   %10.1f MiB\n", mm.grads / MiB);
    printf("  AdamW m, v  %10.1f MiB\n", 2 * mm.params / MiB);
    printf("  activations %10.1f MiB (saved for backward)\n", mm.acts / MiB);
    printf("  scratch     %10.1f MiB (backward buffers, one %d-token chunk of logits)\n",
           mm.scratch / MiB, CE_CHUNK);
    printf("  rope table  %10.1f MiB\n", mm.rope / MiB);
    printf("  attention   %10.1f MiB (per call, at %d threads: dQ per thread, packed blocks)\n", mm.attn / MiB,
           omp_get_max_threads());
    printf("  total       %10.1f MiB\n",
           (4 * mm.params + mm.acts + mm.scratch + mm.rope + mm.attn) / MiB);
    if (table) {
        Model m;
        if (model_init(&m, &cfg, &err) != RX_OK) die("%s", err.msg);
        for (int i = 0; i < m.table.count; i++) {
            const ParamEntry *e = &m.table.entries[i];
            char shape[48];
            if (e->ndim == 2) snprintf(shape, sizeof shape, "(%lld, %lld)", (long long)e->shape[0], (long long)e->shape[1]);
            else snprintf(shape, sizeof shape, "(%lld)", (long long)e->shape[0]);
            printf("  %-50s %-14s offset %zu\n", e->name, shape, e->offset);
        }
        model_free(&m);
    }
    return 0;
}

/* ---- dispatch ---- */
typedef struct { const char *name; int (*run)(int, char **); const char *summary; } Command;
static const Command COMMANDS[] = {
    {"train", cmd_train, "train or extend a model as a config says; rerun to resume exactly"},
    {"eval", cmd_eval, "perplexity vs window length, passkey retrieval, token log-probabilities"},
    {"plot", cmd_plot, "PNG charts: loss vs step, perplexity vs length, passkey heat map (gnuplot)"},
    {"data", cmd_data, "prepare, inspect and tokenize training data (zstd shards, tokenizer.json)"},
    {"import", cmd_import, "Hugging Face directory or llama2.c file -> ropex checkpoint (.h5)"},
    {"export", cmd_export, "ropex checkpoint -> Hugging Face directory (safetensors + config.json)"},
    {"inspect", cmd_inspect, "what a checkpoint, Hugging Face directory or safetensors file holds"},
    {"rope", cmd_rope, "per-dimension table of a scaled RoPE (frequencies, wavelengths, attention factor)"},
    {"shape", cmd_shape, "parameter count and exact memory of a model shape at a sequence length"},
};

static void usage(FILE *f) {
    fprintf(f, "ropex %s: extends the context window of RoPE language models (Llama family)\n\n"
               "usage: ropex COMMAND [ARGS...]   (ropex COMMAND --help for each)\n\ncommands:\n",
            ROPEX_VERSION);
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
        fprintf(f, "  %-8s %s\n", COMMANDS[i].name, COMMANDS[i].summary);
    fprintf(f, "  %-8s %s\n", "version", "print the version and build");
    fprintf(f, "\nThe README lists what works today and what is still being built.\n");
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);   /* progress lines appear as they happen, also through a pipe or in a log */
    cpu_pick_blas_kernels(argv);
    cpu_keep_freed_memory();
    if (argc < 2) { usage(stderr); return 2; }
    if (is_help(argv[1])) { usage(stdout); return 0; }
    if (strcmp(argv[1], "version") == 0 || strcmp(argv[1], "--version") == 0) {
        printf("ropex %s (fp32, OpenMP %d threads max, OpenBLAS %s kernels (%s), MPI: %s)\n", ROPEX_VERSION,
               omp_get_max_threads(), cpu_blas_kernels(), cpu_blas_choice(),
#ifdef ROPEX_MPI
               dist_build()
#else
               "no (make MPI=1 builds with Open MPI)"
#endif
        );
        return 0;
    }
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
        if (strcmp(argv[1], COMMANDS[i].name) == 0) return COMMANDS[i].run(argc - 2, argv + 2);
    fprintf(stderr, "ropex: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}

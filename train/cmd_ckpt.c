/* ropex import / export / inspect: moving checkpoints between ropex, Hugging Face and llama2.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../model/ckpt.h"
#include "commands.h"

static const char IMPORT_HELP[] =
    "usage: ropex import hf HF_DIR OUT.h5\n"
    "       ropex import llama2c FILE.bin OUT.h5\n"
    "\n"
    "Converts a checkpoint into a ropex HDF5 checkpoint (float32 weights under Hugging Face names).\n"
    "  hf       a Hugging Face Llama directory: config.json plus model.safetensors or sharded\n"
    "           model-0000x-of-0000y.safetensors with model.safetensors.index.json; F32, F16 and\n"
    "           BF16 tensors; the tokenizer files beside them are stored too\n"
    "  llama2c  Karpathy's llama2.c .bin (legacy or version 1, float32); Wq/Wk rows are permuted\n"
    "           from interleaved RoPE pairs to Hugging Face's rotate_half\n";

static const char EXPORT_HELP[] =
    "usage: ropex export CHECKPOINT.h5 --to hf OUT_DIR [--dtype f32|bf16]\n"
    "\n"
    "Writes a Hugging Face directory that transformers loads as it is: model.safetensors,\n"
    "config.json (max_position_embeddings = the new length, rope_theta, rope_scaling with both\n"
    "rope_type and type, factor, original_max_position_embeddings and the method's keys) and the\n"
    "tokenizer files stored at import. --dtype bf16 halves the size (round to nearest even).\n";

static const char INSPECT_HELP[] =
    "usage: ropex inspect FILE.h5 | HF_DIR (or hf:HF_DIR) | FILE.safetensors\n"
    "\n"
    "Prints what a checkpoint holds: configuration, RoPE scaling, tensors (name, shape, dtype),\n"
    "optimizer state, training state and tokenizer files.\n";

static int is_dir(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

int cmd_import(int argc, char **argv) {
    for (int i = 0; i < argc; i++) if (is_help(argv[i])) { fputs(IMPORT_HELP, stdout); return 0; }
    if (argc != 3) die("import: expected `hf HF_DIR OUT.h5` or `llama2c FILE.bin OUT.h5` (see ropex import --help)");
    Model m;
    FileBlobs tok = {0};
    RxError err;
    RxStatus rs;
    if (!strcmp(argv[0], "hf")) rs = hf_import(argv[1], &m, &tok, &err);
    else if (!strcmp(argv[0], "llama2c")) rs = llama2c_import(argv[1], &m, &err);
    else die("import: unknown source format '%s' (expected hf or llama2c)", argv[0]);
    if (rs != RX_OK) die("%s", err.msg);
    if (ckpt_save(argv[2], &m, NULL, NULL, NULL, &tok, &err) != RX_OK) die("%s", err.msg);
    printf("imported %s: %zu parameters (%d tensors), %d tokenizer files -> %s\n", argv[1],
           m.table.total, m.table.count, tok.n, argv[2]);
    file_blobs_free(&tok);
    model_free(&m);
    return 0;
}

int cmd_export(int argc, char **argv) {
    const char *src = NULL, *to = NULL, *out = NULL, *dtype = "f32";
    for (int i = 0; i < argc; i++) {
        if (is_help(argv[i])) { fputs(EXPORT_HELP, stdout); return 0; }
        if (!strcmp(argv[i], "--to") && i + 2 < argc) { to = argv[++i]; out = argv[++i]; }
        else if (!strcmp(argv[i], "--dtype") && i + 1 < argc) dtype = argv[++i];
        else if (argv[i][0] != '-' && !src) src = argv[i];
        else die("export: unexpected argument '%s' (see ropex export --help)", argv[i]);
    }
    if (!src || !to) die("export: expected CHECKPOINT --to hf OUT_DIR (see ropex export --help)");
    if (strcmp(to, "hf")) die("export: --to %s: only hf is supported", to);
    if (strcmp(dtype, "f32") && strcmp(dtype, "bf16")) die("export: --dtype %s: expected f32 or bf16", dtype);
    Model m;
    FileBlobs tok = {0};
    RxError err;
    if (ckpt_load(src, &m, NULL, NULL, NULL, &tok, &err) != RX_OK) die("%s", err.msg);
    if (hf_export(out, &m, &tok, !strcmp(dtype, "bf16"), &err) != RX_OK) die("%s", err.msg);
    printf("exported %s -> %s (model.safetensors %s, config.json, %d tokenizer files)\n", src, out, dtype, tok.n);
    file_blobs_free(&tok);
    model_free(&m);
    return 0;
}

static void print_config(const ModelConfig *c) {
    printf("model: V %lld, C %lld, L %lld, NH %lld, NKV %lld, HS %lld, H %lld, eps %g, %s embeddings\n",
           (long long)c->vocab, (long long)c->dim, (long long)c->n_layers, (long long)c->n_heads,
           (long long)c->n_kv_heads, (long long)c->head_dim, (long long)c->hidden_dim, c->norm_eps,
           c->tied ? "tied" : "untied");
    const RopeConfig *r = &c->rope;
    printf("rope: %s, theta %g, factor %g, original length %lld, length %lld\n", rope_method_name(r->method),
           r->theta, r->factor, (long long)r->original_max_len, (long long)r->max_len);
}

static const char *DTYPE_NAMES[] = {"F32", "F16", "BF16"};

static void inspect_st(const char *path) {
    StFile f;
    RxError err;
    if (st_open(&f, path, &err) != RX_OK) die("%s", err.msg);
    printf("%s: %d tensors, %llu bytes\n", path, f.n, (unsigned long long)f.file_size);
    for (int i = 0; i < f.n; i++) {
        const StTensor *t = &f.tensors[i];
        printf("  %-50s %-5s [", t->name, DTYPE_NAMES[t->dtype]);
        for (int d = 0; d < t->ndim; d++) printf("%s%lld", d ? ", " : "", (long long)t->shape[d]);
        printf("]\n");
    }
    st_close(&f);
}

int cmd_inspect(int argc, char **argv) {
    for (int i = 0; i < argc; i++) if (is_help(argv[i])) { fputs(INSPECT_HELP, stdout); return 0; }
    if (argc != 1) die("inspect: expected one FILE or DIR (see ropex inspect --help)");
    const char *p = argv[0];
    if (!strncmp(p, "hf:", 3)) p += 3;   /* the spelling of eval and [model] init */
    RxError err;
    size_t n = strlen(p);
    if (n > 12 && !strcmp(p + n - 12, ".safetensors")) { inspect_st(p); return 0; }
    if (is_dir(p)) {
        ModelConfig c;
        if (hf_config_load(&c, p, &err) != RX_OK) die("%s", err.msg);
        printf("Hugging Face directory %s\n", p);
        print_config(&c);
        char path[4200];
        snprintf(path, sizeof path, "%s/model.safetensors", p);
        struct stat sb;
        if (stat(path, &sb) == 0) inspect_st(path);
        else printf("(sharded or no model.safetensors: see model.safetensors.index.json)\n");
        return 0;
    }
    Model m;
    float *am = NULL, *av = NULL;
    TrainState st;
    FileBlobs tok;
    if (ckpt_load(p, &m, &am, &av, &st, &tok, &err) != RX_OK) die("%s", err.msg);
    printf("ropex checkpoint %s (format version %d)\n", p, CKPT_VERSION);
    print_config(&m.cfg);
    printf("parameters: %zu in %d tensors (float32)\n", m.table.total, m.table.count);
    for (int i = 0; i < m.table.count; i++) {
        const ParamEntry *e = &m.table.entries[i];
        if (e->ndim == 2) printf("  %-50s [%lld, %lld]\n", e->name, (long long)e->shape[0], (long long)e->shape[1]);
        else printf("  %-50s [%lld]\n", e->name, (long long)e->shape[0]);
    }
    printf("optimizer state: %s\n", am ? "AdamW m and v" : "none (weights only)");
    if (st.step || st.config_text)
        printf("training state: step %lld, tokens seen %lld, world size %lld, data cursor %zu bytes\n",
               (long long)st.step, (long long)st.tokens_seen, (long long)st.world_size, st.data_cursor_len);
    else printf("training state: none\n");
    printf("tokenizer files:");
    for (int i = 0; i < tok.n; i++) printf(" %s (%zu bytes)", tok.items[i].name, tok.items[i].len);
    printf("%s\n", tok.n ? "" : " none");
    free(am); free(av);
    train_state_free(&st);
    file_blobs_free(&tok);
    model_free(&m);
    return 0;
}

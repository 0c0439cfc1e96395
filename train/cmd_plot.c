/* ropex plot: PNG charts drawn by gnuplot from a run's metrics.jsonl and `ropex eval --json`
 * results: training and held-out loss against step, perplexity against window length (one line
 * per results file), passkey accuracy as a length x depth heat map. */
#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../data/util.h"
#include "commands.h"

static const char HELP[] =
    "usage: ropex plot RUN_DIR|RESULTS.json [RESULTS.json ...] [--out DIR]\n"
    "\n"
    "Draws PNG charts with gnuplot (Debian's gnuplot-nox; `make deps` installs it):\n"
    "  loss.png      training loss (and its mean over the last 1/50 of the steps) and held-out loss\n"
    "                against step, from RUN_DIR/metrics.jsonl; loss.tsv: the values drawn\n"
    "  ppl.png       perplexity against window length, one line per `ropex eval --json` file\n"
    "  passkey.png   passkey accuracy per (length, depth), one panel per results file with a grid\n"
    "  results.md    the results files as one Markdown table (also printed): perplexity per window,\n"
    "                passkey accuracy within and beyond the model's original length L0, of the cells whose key is more\n"
    "                than L0 tokens back, the worst cell, k_max\n"
    "--out DIR defaults to RUN_DIR, or to the directory of the first results file.\n";

static FILE *gnuplot(void) {
    FILE *g = popen("gnuplot 2>&1", "w");
    if (!g) die("plot: cannot run gnuplot (install gnuplot-nox: make deps)");
    return g;
}

static void finish(FILE *g, const char *what) {
    int rc = pclose(g);
    if (rc != 0) die("plot: gnuplot failed drawing %s (exit %d; is gnuplot-nox installed? make deps)", what, rc);
}

typedef struct { double *step, *val; int n, cap; } Series;

static void series_add(Series *s, double step, double val) {
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 256;
        s->step = realloc(s->step, sizeof(double) * (size_t)s->cap);
        s->val = realloc(s->val, sizeof(double) * (size_t)s->cap);
        if (!s->step || !s->val) die("plot: out of memory");
    }
    s->step[s->n] = step;
    s->val[s->n++] = val;
}

/* The training loss swings from step to step with the documents a step draws (in the demo's long
 * phase, between ~0.16 on a passkey document and ~2.5 on prose), so loss.png also draws the mean
 * of the last w steps, w = about 1/50 of the run (1: no mean line). loss.tsv holds what is drawn. */
static void plot_loss(const char *run, const char *out) {
    char path[1200];
    snprintf(path, sizeof path, "%s/metrics.jsonl", run);
    char *text = data_read_file(path, NULL);
    if (!text) die("plot: %s: cannot read", path);
    Series tr = {0}, ev = {0};
    int lineno = 0;
    for (char *line = text, *next; *line; line = next) {
        next = line + strcspn(line, "\n");
        if (*next) *next++ = 0;
        lineno++;
        if (!*line) continue;
        cJSON *j = cJSON_Parse(line);
        if (!j) die("plot: %s:%d: not a JSON object", path, lineno);
        const cJSON *s = cJSON_GetObjectItemCaseSensitive(j, "step"), *l = cJSON_GetObjectItemCaseSensitive(j, "loss"),
                    *e = cJSON_GetObjectItemCaseSensitive(j, "eval_loss");
        /* -1 marks a non-finite value (a skipped update) */
        if (cJSON_IsNumber(s) && cJSON_IsNumber(l) && l->valuedouble >= 0) series_add(&tr, s->valuedouble, l->valuedouble);
        if (cJSON_IsNumber(s) && cJSON_IsNumber(e) && e->valuedouble >= 0) series_add(&ev, s->valuedouble, e->valuedouble);
        cJSON_Delete(j);
    }
    free(text);
    if (!tr.n) die("plot: %s has no training steps", path);
    const int w = tr.n / 50 > 1 ? tr.n / 50 : 1;
    double *mean = malloc(sizeof(double) * (size_t)tr.n);
    if (!mean) die("plot: out of memory");
    for (int i = 0; i < tr.n; i++) {   /* the mean of the last min(w, i + 1) steps */
        const int from = i + 1 > w ? i + 1 - w : 0;
        double sum = 0;
        for (int k = from; k <= i; k++) sum += tr.val[k];
        mean[i] = sum / (double)(i + 1 - from);
    }
    snprintf(path, sizeof path, "%s/loss.tsv", out);
    FILE *t = fopen(path, "w");
    if (!t) die("plot: %s: cannot write", path);
    fprintf(t, "step\tloss\tloss_mean_%d\teval_loss\n", w);
    for (int i = 0, k = 0; i < tr.n || k < ev.n;) {   /* both series by step; an evaluation on its step's line */
        const int take_tr = i < tr.n && (k >= ev.n || tr.step[i] <= ev.step[k]);
        const double step = take_tr ? tr.step[i] : ev.step[k];
        fprintf(t, "%.17g\t", step);
        if (take_tr) fprintf(t, "%.9g\t%.9g\t", tr.val[i], mean[i]); else fputs("\t\t", t);
        if (k < ev.n && ev.step[k] == step) fprintf(t, "%.9g", ev.val[k++]);
        fputc('\n', t);
        i += take_tr;
    }
    if (fclose(t) != 0) die("plot: %s: cannot write", path);
    FILE *g = gnuplot();
    fprintf(g, "set terminal pngcairo size 900,540\nset output '%s/loss.png'\nset xlabel 'step'\nset ylabel 'loss'\n"
               "set grid\nset title 'ropex training loss'\nset key top right\n$train << EOD\n", out);
    for (int i = 0; i < tr.n; i++) fprintf(g, "%.17g %.9g %.9g\n", tr.step[i], tr.val[i], mean[i]);
    fprintf(g, "EOD\n$eval << EOD\n");
    for (int i = 0; i < ev.n; i++) fprintf(g, "%.17g %.9g\n", ev.step[i], ev.val[i]);
    fprintf(g, "EOD\n");
    if (w > 1)
        fprintf(g, "plot $train using 1:2 with lines lw 1 lc rgb '#c8b4e6' title 'training loss', "
                   "$train using 1:3 with lines lw 2.5 lc rgb '#6a1b9a' title 'training loss, mean of the last %d steps'", w);
    else
        fprintf(g, "plot $train using 1:2 with lines lw 1.5 lc rgb '#6a1b9a' title 'training loss'");
    fprintf(g, "%s\n", ev.n ? ", $eval with linespoints lw 2 pt 7 lc rgb '#009e73' title 'held-out loss'" : "");
    finish(g, "loss.png");
    printf("%s/loss.png: %d steps (mean line over %d), %d evaluations; the values in %s/loss.tsv\n", out, tr.n, w, ev.n, out);
    free(mean);
    free(tr.step); free(tr.val); free(ev.step); free(ev.val);
}

/* A `ropex eval --json` file: an object with a "perplexity" or a "passkey" array. */
static cJSON *load_results(const char *path) {
    char *text = data_read_file(path, NULL);
    cJSON *j = text ? cJSON_Parse(text) : NULL;
    free(text);
    if (!j) die("plot: %s: not a `ropex eval --json` file (not JSON)", path);
    if (!cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(j, "perplexity")) &&
        !cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(j, "passkey")))
        die("plot: %s: not a `ropex eval --json` file (no \"perplexity\" or \"passkey\" results)", path);
    return j;
}

static void plot_results(char **files, int n, const char *out) {
    FILE *g = gnuplot();
    fprintf(g, "set terminal pngcairo size 900,540\nset output '%s/ppl.png'\nset xlabel 'window length (tokens)'\n"
               "set ylabel 'perplexity'\nset logscale y\nset grid\nset title 'perplexity against window length'\n"
               "set key top left\n", out);
    cJSON *grid = NULL;
    int lines = 0;
    char (*labels)[300] = calloc((size_t)n, 300);
    for (int i = 0; i < n; i++) {
        cJSON *j = load_results(files[i]);
        const cJSON *pp = cJSON_GetObjectItemCaseSensitive(j, "perplexity"), *it;
        char *label = labels[i];
        const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "label"));
        const char *rt = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "rope_type"));
        snprintf(label, 300, "%s (%s x%g)", name ? name : files[i], rt ? rt : "?",
                 cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(j, "factor")));
        for (char *c = label; *c; c++) if (*c == '\'' || *c == '_') *c = ' ';
        fprintf(g, "$d%d << EOD\n", i);
        cJSON_ArrayForEach(it, pp) {
            const cJSON *w = cJSON_GetObjectItemCaseSensitive(it, "window"), *p = cJSON_GetObjectItemCaseSensitive(it, "ppl");
            if (cJSON_IsNumber(w) && cJSON_IsNumber(p)) { fprintf(g, "%g %g\n", w->valuedouble, p->valuedouble); lines++; }
        }
        fprintf(g, "EOD\n");
        if (cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(j, "passkey")) > 0) {
            if (!grid) grid = cJSON_CreateArray();
            cJSON *copy = cJSON_Duplicate(j, 1);
            cJSON_AddStringToObject(copy, "plot_label", label);
            cJSON_AddItemToArray(grid, copy);
        }
        cJSON_Delete(j);
    }
    if (lines) {
        fprintf(g, "plot ");
        for (int i = 0; i < n; i++) {
            fprintf(g, "%s$d%d with linespoints lw 2 pt 7 title '%s'", i ? ", " : "", i, labels[i]);
        }
        fprintf(g, "\n");
    } else {
        fprintf(g, "set output\n");
    }
    finish(g, "ppl.png");
    free(labels);
    if (lines) printf("%s/ppl.png: %d files\n", out, n);
    if (!grid) return;
    /* a categorical grid per results file (one panel each, side by side): one cell per
     * (depth, length), in the order the results list them */
    int panels = cJSON_GetArraySize(grid);
    g = gnuplot();
    const cJSON *res;
    int first = 1;
    cJSON_ArrayForEach(res, grid) {
        double depths[64], lengths[64];
        int nd = 0, nl = 0;
        const cJSON *it;
        cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(res, "passkey")) {
            double d = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(it, "depth"));
            double l = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(it, "length"));
            int k = 0;
            while (k < nd && depths[k] != d) k++;
            if (k == nd && nd < 64) depths[nd++] = d;
            k = 0;
            while (k < nl && lengths[k] != l) k++;
            if (k == nl && nl < 64) lengths[nl++] = l;
        }
        if (first) {
            fprintf(g, "set terminal pngcairo size %d,%d\nset output '%s/passkey.png'\n"
                       "set multiplot layout 1,%d title 'passkey retrieval accuracy'\nset cbrange [0:1]\nunset colorbox\n"
                       "set palette defined (0 '#b2182b', 0.5 '#fddbc7', 1 '#2166ac')\n",
                    120 + 100 * nd * panels, 260 + 60 * nl, out, panels);
            first = 0;
        }
        fprintf(g, "set title '%s' noenhanced\nset xlabel 'depth of the key'\nset ylabel 'prompt length (tokens)'\n"
                   "set xrange [-0.5:%g]\nset yrange [-0.5:%g]\nset xtics (",
                cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(res, "plot_label")), nd - 0.5, nl - 0.5);
        for (int k = 0; k < nd; k++) fprintf(g, "%s'%.2f' %d", k ? ", " : "", depths[k], k);
        fprintf(g, ")\nset ytics (");
        for (int k = 0; k < nl; k++) fprintf(g, "%s'%.0f' %d", k ? ", " : "", lengths[k], k);
        fprintf(g, ")\n$g << EOD\n");
        cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(res, "passkey")) {
            double d = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(it, "depth"));
            double l = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(it, "length"));
            int x = 0, y = 0;
            while (depths[x] != d) x++;
            while (lengths[y] != l) y++;
            fprintf(g, "%d %d %g\n", x, y, cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(it, "accuracy")));
        }
        fprintf(g, "EOD\nplot $g using 1:2:3 with image notitle, $g using 1:2:(sprintf('%%.2f',$3)) with labels notitle\n");
    }
    fprintf(g, "unset multiplot\n");
    finish(g, "passkey.png");
    printf("%s/passkey.png: %d panels\n", out, panels);
    cJSON_Delete(grid);
}

static const cJSON *jget(const cJSON *o, const char *k) { return cJSON_GetObjectItemCaseSensitive(o, k); }

/* One Markdown table of several `ropex eval --json` files. */
static void results_table(char **files, int n, const char *out) {
    double windows[32];
    int nw = 0;
    cJSON **js = calloc((size_t)n, sizeof *js);
    for (int i = 0; i < n; i++) {
        js[i] = load_results(files[i]);
        const cJSON *it;
        cJSON_ArrayForEach(it, jget(js[i], "perplexity")) {
            double w = cJSON_GetNumberValue(jget(it, "window"));
            int k = 0;
            while (k < nw && windows[k] != w) k++;
            if (k == nw && nw < 32) windows[nw++] = w;
        }
    }
    char path[1300];
    snprintf(path, sizeof path, "%s/results.md", out);
    FILE *f = fopen(path, "w");
    if (!f) die("plot: %s: cannot create", path);
    for (int pass = 0; pass < 2; pass++) {
        FILE *o = pass ? stdout : f;
        fprintf(o, "| model | rope |");
        for (int k = 0; k < nw; k++) fprintf(o, " ppl %.0f |", windows[k]);
        fprintf(o, " passkey <= %s | passkey > %s | key > %s back | worst cell | k_max |\n| --- | --- |", "L0", "L0", "L0");
        for (int k = 0; k < nw + 5; k++) fprintf(o, " ---: |");
        fprintf(o, "\n");
        for (int i = 0; i < n; i++) {
            const cJSON *j = js[i], *it;
            const char *label = cJSON_GetStringValue(jget(j, "label"));
            const char *rt = cJSON_GetStringValue(jget(j, "rope_type"));
            fprintf(o, "| %s | %s x%g |", label ? label : files[i], rt ? rt : "?", cJSON_GetNumberValue(jget(j, "factor")));
            for (int k = 0; k < nw; k++) {
                double ppl = -1;
                cJSON_ArrayForEach(it, jget(j, "perplexity"))
                    if (cJSON_GetNumberValue(jget(it, "window")) == windows[k] && cJSON_IsNumber(jget(it, "ppl")))
                        ppl = cJSON_GetNumberValue(jget(it, "ppl"));
                if (ppl >= 0) fprintf(o, " %.3f |", ppl); else fprintf(o, " – |");
            }
            /* L0: the length the weights were pretrained at (original_max_len in the JSON; 2048 if absent) */
            double l0 = cJSON_IsNumber(jget(j, "original_max_len")) ? cJSON_GetNumberValue(jget(j, "original_max_len")) : 2048;
            /* by length (cells of prompts longer than L0) and by distance (cells whose key is more
             * than L0 tokens back: key_distance, written by ropex eval since 2026-12-03) */
            double in = 0, in_n = 0, beyond = 0, beyond_n = 0, far = 0, far_n = 0, worst = 2;
            cJSON_ArrayForEach(it, jget(j, "passkey")) {
                double a = cJSON_GetNumberValue(jget(it, "accuracy")), l = cJSON_GetNumberValue(jget(it, "length"));
                if (l <= l0) { in += a; in_n++; } else { beyond += a; beyond_n++; }
                if (cJSON_IsNumber(jget(it, "key_distance")) && cJSON_GetNumberValue(jget(it, "key_distance")) > l0) { far += a; far_n++; }
                if (a < worst) worst = a;
            }
            if (in_n) fprintf(o, " %.0f%% |", 100 * in / in_n); else fprintf(o, " – |");
            if (beyond_n) fprintf(o, " %.0f%% |", 100 * beyond / beyond_n); else fprintf(o, " – |");
            if (far_n) fprintf(o, " %.0f%% |", 100 * far / far_n); else fprintf(o, " – |");
            if (worst <= 1) fprintf(o, " %.0f%% |", 100 * worst); else fprintf(o, " – |");
            if (cJSON_IsNumber(jget(j, "k_max"))) fprintf(o, " %.0f |\n", cJSON_GetNumberValue(jget(j, "k_max")));
            else fprintf(o, " – |\n");
        }
        /* the file is complete before the table goes to stdout (`ropex plot ... | head` ends it there) */
        if (!pass && fclose(f) != 0) die("plot: %s: cannot write", path);
    }
    printf("%s\n", path);
    for (int i = 0; i < n; i++) cJSON_Delete(js[i]);
    free(js);
}

int cmd_plot(int argc, char **argv) {
    const char *out = NULL, *run = NULL;
    for (int i = 0; i < argc; i++) if (is_help(argv[i])) { fputs(HELP, stdout); return 0; }
    char **files = calloc((size_t)argc + 1, sizeof *files);
    int nf = 0;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--out") && i + 1 < argc) { out = argv[++i]; continue; }
        if (argv[i][0] == '-') die("plot: unknown option '%s' (see ropex plot --help)", argv[i]);
        struct stat sb;
        if (stat(argv[i], &sb) != 0) die("plot: %s: no such file or directory", argv[i]);
        if (S_ISDIR(sb.st_mode)) {
            if (run) die("plot: one RUN_DIR at a time");
            run = argv[i];
        } else files[nf++] = argv[i];
    }
    if (!run && !nf) die("plot: expected RUN_DIR or RESULTS.json (see ropex plot --help)");
    char dflt[1200];
    if (!out) {
        if (run) out = run;
        else {
            snprintf(dflt, sizeof dflt, "%s", files[0]);
            char *slash = strrchr(dflt, '/');
            if (slash) *slash = 0; else snprintf(dflt, sizeof dflt, ".");
            out = dflt;
        }
    }
    mkdir(out, 0777);
    if (run) plot_loss(run, out);
    if (nf) { plot_results(files, nf, out); results_table(files, nf, out); }
    free(files);
    return 0;
}

/* INI run configuration (inih) and --set overrides; see config.h. */
#include "config.h"

#include "../model/ckpt.h"

#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void config_init(RunConfig *rc) { memset(rc, 0, sizeof *rc); }

void config_free(RunConfig *rc) {
    for (int i = 0; i < rc->n_rope; i++) free(rc->rope[i].value);
    memset(rc, 0, sizeof *rc);
}

/* One key: checked now, so that the error carries where it came from. */
static int apply(RunConfig *rc, const char *section, const char *key, const char *value,
                 int append, const char *origin, char *err, size_t errlen) {
    char msg[600];
    if (!strcmp(section, "model")) {
        if (!strcmp(key, "init")) snprintf(rc->model_init, sizeof rc->model_init, "%s", value);
        else if (!strcmp(key, "preset")) snprintf(rc->model_preset, sizeof rc->model_preset, "%s", value);
        else {
            snprintf(err, errlen, "%s: unknown key model.%s (expected init or preset)", origin, key);
            return -1;
        }
        snprintf(rc->model_origin, sizeof rc->model_origin, "%s", origin);
        return 0;
    }
    if (!strcmp(section, "rope")) {
        RopeConfig probe;
        rope_config_default(&probe);
        if (rope_config_set(&probe, key, value, 0, msg, sizeof msg) != 0) {
            snprintf(err, errlen, "%s: %s", origin, msg);
            return -1;
        }
        if (rc->n_rope >= CONFIG_MAX_ENTRIES) {
            snprintf(err, errlen, "%s: more than %d [rope] settings", origin, CONFIG_MAX_ENTRIES);
            return -1;
        }
        ConfigEntry *e = &rc->rope[rc->n_rope++];
        snprintf(e->section, sizeof e->section, "%s", section);
        snprintf(e->key, sizeof e->key, "%s", key);
        snprintf(e->origin, sizeof e->origin, "%s", origin);
        e->value = strdup(value);
        e->append = append;
        return 0;
    }
    snprintf(err, errlen, "%s: unknown section [%s] (expected [model] or [rope]; the training "
             "sections come with `ropex train`)", origin, section);
    return -1;
}

typedef struct {
    RunConfig *rc;
    const char *path;
    FILE *f;
    int line;               /* lines read so far: the handler runs right after its line is read */
    char err[900];
    int failed;
    char last_section[32], last_key[64];
} IniCtx;

static char *read_counted_line(char *buf, int size, void *stream) {
    IniCtx *c = stream;
    char *s = fgets(buf, size, c->f);
    if (s) c->line++;
    return s;
}

static int on_key(void *user, const char *section, const char *name, const char *value) {
    IniCtx *c = user;
    if (c->failed) return 1;   /* keep the first error */
    int append = !strcmp(section, c->last_section) && !strcmp(name, c->last_key);
    snprintf(c->last_section, sizeof c->last_section, "%s", section);
    snprintf(c->last_key, sizeof c->last_key, "%s", name);
    char origin[300];
    snprintf(origin, sizeof origin, "%s:%d", c->path, c->line);
    if (apply(c->rc, section, name, value, append, origin, c->err, sizeof c->err) != 0) {
        c->failed = 1;
        return 0;
    }
    return 1;
}

int config_load(RunConfig *rc, const char *path, char *err, size_t errlen) {
    IniCtx c = {.rc = rc, .path = path};
    c.f = fopen(path, "r");
    if (!c.f) { snprintf(err, errlen, "%s: cannot open the config file", path); return -1; }
    int line = ini_parse_stream(read_counted_line, &c, on_key, &c);
    fclose(c.f);
    snprintf(rc->source, sizeof rc->source, "%s", path);
    if (line == 0) return 0;
    if (c.failed) snprintf(err, errlen, "%s", c.err);
    else snprintf(err, errlen, "%s:%d: syntax error (expected [section] or key = value; lines are "
                  "limited to %d characters, so continue long lists on indented lines)",
                  path, line, INI_MAX_LINE);
    return -1;
}

int config_set(RunConfig *rc, const char *assignment, char *err, size_t errlen) {
    char origin[300];
    snprintf(origin, sizeof origin, "--set %s", assignment);
    const char *dot = strchr(assignment, '.'), *eq = strchr(assignment, '=');
    if (!dot || !eq || dot > eq || dot == assignment || eq == dot + 1) {
        snprintf(err, errlen, "%s: expected section.key=value", origin);
        return -1;
    }
    char section[32], key[64];
    snprintf(section, sizeof section, "%.*s", (int)(dot - assignment), assignment);
    snprintf(key, sizeof key, "%.*s", (int)(eq - dot - 1), dot + 1);
    return apply(rc, section, key, eq + 1, 0, origin, err, errlen);
}

int config_model(const RunConfig *rc, ModelConfig *out, char *err, size_t errlen) {
    RxError e;
    if (rc->model_preset[0] && rc->model_init[0]) {
        snprintf(err, errlen, "%s: set either model.init or model.preset, not both", rc->model_origin);
        return -1;
    }
    if (rc->model_preset[0]) {
        if (model_config_preset(out, rc->model_preset, &e) != RX_OK) {
            snprintf(err, errlen, "%s: %s", rc->model_origin, e.msg);
            return -1;
        }
    } else if (!strncmp(rc->model_init, "hf:", 3)) {
        if (hf_config_load(out, rc->model_init + 3, &e) != RX_OK) {
            snprintf(err, errlen, "%s", e.msg);
            return -1;
        }
    } else if (!strncmp(rc->model_init, "llama2c:", 8)) {
        Model m;
        if (llama2c_import(rc->model_init + 8, &m, &e) != RX_OK) {
            snprintf(err, errlen, "%s", e.msg);
            return -1;
        }
        *out = m.cfg;
        model_free(&m);
    } else if (rc->model_init[0]) {
        if (ckpt_read_config(rc->model_init, out, &e) != RX_OK) {
            snprintf(err, errlen, "%s: model.init: %s", rc->model_origin, e.msg);
            return -1;
        }
    } else {
        snprintf(err, errlen, "no model given: set [model] init = CHECKPOINT.h5, hf:DIR or llama2c:FILE, or preset = NAME");
        return -1;
    }
    char msg[600];
    for (int i = 0; i < rc->n_rope; i++) {
        const ConfigEntry *en = &rc->rope[i];
        if (rope_config_set(&out->rope, en->key, en->value, en->append, msg, sizeof msg) != 0) {
            snprintf(err, errlen, "%s: %s", en->origin, msg);
            return -1;
        }
    }
    if (model_config_validate(out, &e) != RX_OK) {
        /* a combination of keys, so no single line: name the file */
        if (rc->source[0]) snprintf(err, errlen, "%s: %s", rc->source, e.msg);
        else snprintf(err, errlen, "%s", e.msg);
        return -1;
    }
    return 0;
}

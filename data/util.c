/* data/util.h */
#include "util.h"

#include <cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <sys/types.h>

int data_fail(char *err, size_t errlen, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    if (err && errlen) vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

char *data_read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseeko(f, 0, SEEK_END);
    off_t sz = ftello(f);
    fseeko(f, 0, SEEK_SET);
    char *t = sz >= 0 ? malloc((size_t)sz + 1) : NULL;
    if (t && fread(t, 1, (size_t)sz, f) != (size_t)sz) { free(t); t = NULL; }
    fclose(f);
    if (t) { t[sz] = 0; if (n) *n = (size_t)sz; }
    return t;
}

int32_t *data_parse_ids(const char *name, const char *text, size_t len, const char *whose, long long vocab,
                        long long *n, char *err, size_t errlen) {
    cJSON *arr = cJSON_ParseWithLength(text, len);
    long long m = cJSON_IsArray(arr) ? cJSON_GetArraySize(arr) : 0, i = 0;
    int32_t *ids = m > 0 ? malloc(sizeof(int32_t) * (size_t)m) : NULL;
    *n = 0;
    if (!ids) {
        data_fail(err, errlen, cJSON_IsArray(arr) ? "%s: no token ids" : "%s: expected a JSON array of token ids", name);
        cJSON_Delete(arr);
        return NULL;
    }
    const cJSON *it;
    cJSON_ArrayForEach(it, arr) {
        double v = cJSON_IsNumber(it) ? it->valuedouble : -1;
        if (!(v >= 0 && v < (double)vocab && v == floor(v))) {
            data_fail(err, errlen, "%s: element %lld is not a token id of %s (an integer 0..%lld)", name, i, whose,
                      vocab - 1);
            free(ids);
            cJSON_Delete(arr);
            return NULL;
        }
        ids[i++] = (int32_t)v;
    }
    cJSON_Delete(arr);
    *n = m;
    return ids;
}

/* data/util.h */
#include "util.h"

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

/* Small helpers shared by data/ (and the commands that read data files). */
#ifndef ROPEX_DATA_UTIL_H
#define ROPEX_DATA_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

/* Writes the message into err (errlen bytes; err may be NULL) and returns -1. */
int data_fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* A whole file into a new NUL-terminated buffer (*n bytes, n may be NULL); NULL if unreadable. */
char *data_read_file(const char *path, size_t *n);

#endif

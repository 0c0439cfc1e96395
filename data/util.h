/* Small helpers shared by data/ (and the commands that read data files). */
#ifndef ROPEX_DATA_UTIL_H
#define ROPEX_DATA_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Writes the message into err (errlen bytes; err may be NULL) and returns -1. */
int data_fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* A whole file into a new NUL-terminated buffer (*n bytes, n may be NULL); NULL if unreadable. */
char *data_read_file(const char *path, size_t *n);
/* The token ids of a JSON array text (len bytes; name and whose, the vocabulary's owner, are used
 * in the messages): each element an integer 0..vocab-1. A new array of *n ids (at least one), or
 * NULL with a message. */
int32_t *data_parse_ids(const char *name, const char *text, size_t len, const char *whose, long long vocab,
                        long long *n, char *err, size_t errlen);

#endif

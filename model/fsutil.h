/* Files written so that a crash never leaves a half file under the real name: write PATH.tmp,
 * fsync it, rename it over PATH, fsync the directory. And whole-file reads with a size cap. */
#ifndef ROPEX_FSUTIL_H
#define ROPEX_FSUTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "model.h"

int fs_exists(const char *path);
/* mkdir -p: 0, or -1 with errno set. */
int fs_mkdir_p(const char *dir);
/* Reads a whole file of at most max bytes into a new buffer (NUL-terminated, len excludes it). */
RxStatus fs_read_file(const char *path, size_t max, uint8_t **data, size_t *len, RxError *err);

typedef struct {
    char path[4096], tmp[4120];
    FILE *f;
} FsWriter;
RxStatus fs_writer_open(FsWriter *w, const char *path, RxError *err);   /* opens PATH.tmp */
RxStatus fs_writer_put(FsWriter *w, const void *data, size_t n, RxError *err);
/* With status == RX_OK: flush, fsync, rename over PATH, fsync the directory. Otherwise removes
 * the temporary file. Returns the first failure. */
RxStatus fs_writer_commit(FsWriter *w, RxStatus status, RxError *err);
/* Makes PATH.tmp durable and renames it over PATH (for files written by other libraries). */
RxStatus fs_commit_tmp(const char *tmp, const char *path, RxError *err);
RxStatus fs_write_atomic(const char *path, const void *data, size_t n, RxError *err);

#endif

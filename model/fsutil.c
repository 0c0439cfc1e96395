/* Crash-safe file writes and capped whole-file reads (fsutil.h). */
#include "fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int fs_exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

int fs_mkdir_p(const char *dir) {
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s", dir) >= (int)sizeof tmp) { errno = ENAMETOOLONG; return -1; }
    for (char *p = tmp + 1; *p; p++)
        if (*p == '/') { *p = 0; if (mkdir(tmp, 0777) && errno != EEXIST) return -1; *p = '/'; }
    return mkdir(tmp, 0777) && errno != EEXIST ? -1 : 0;
}

RxStatus fs_read_file(const char *path, size_t max, uint8_t **data, size_t *len, RxError *err) {
    *data = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return rx_fail(err, RX_ERR_IO, "%s: cannot open (%s)", path, strerror(errno));
    /* sized by the file (a stream of unknown size reads up to max): never max bytes up front */
    struct stat st;
    size_t want = max;
    if (fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode)) {
        if ((uint64_t)st.st_size > (uint64_t)max) {
            fclose(f);
            return rx_fail(err, RX_ERR_FORMAT, "%s: larger than %zu bytes", path, max);
        }
        want = (size_t)st.st_size;
    }
    uint8_t *buf = malloc(want + 1);
    size_t n = buf ? fread(buf, 1, want + 1, f) : 0;
    int bad = ferror(f);
    fclose(f);
    if (!buf) return rx_fail(err, RX_ERR_NOMEM, "%s: out of memory", path);
    if (bad) { free(buf); return rx_fail(err, RX_ERR_IO, "%s: read error", path); }
    if (n > want && want < max) { free(buf); return rx_fail(err, RX_ERR_IO, "%s: changed while being read", path); }
    if (n > max) { free(buf); return rx_fail(err, RX_ERR_FORMAT, "%s: larger than %zu bytes", path, max); }
    buf[n] = 0;
    *data = buf;
    *len = n;
    return RX_OK;
}

static RxStatus fsync_path(const char *path, int dir, RxError *err) {
    int fd = open(path, dir ? O_RDONLY | O_DIRECTORY : O_RDONLY);
    if (fd < 0) return rx_fail(err, RX_ERR_IO, "%s: cannot open to sync (%s)", path, strerror(errno));
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    if (rc != 0 && !(dir && e == EINVAL))   /* some file systems cannot sync directories */
        return rx_fail(err, RX_ERR_IO, "%s: fsync failed (%s)", path, strerror(e));
    return RX_OK;
}

RxStatus fs_commit_tmp(const char *tmp, const char *path, RxError *err) {
    RxStatus rs = fsync_path(tmp, 0, err);
    if (rs != RX_OK) { unlink(tmp); return rs; }
    if (rename(tmp, path) != 0) {
        rs = rx_fail(err, RX_ERR_IO, "%s: cannot rename %s over it (%s)", path, tmp, strerror(errno));
        unlink(tmp);
        return rs;
    }
    char copy[4096];
    snprintf(copy, sizeof copy, "%s", path);
    return fsync_path(dirname(copy), 1, err);
}

RxStatus fs_writer_open(FsWriter *w, const char *path, RxError *err) {
    memset(w, 0, sizeof *w);
    snprintf(w->path, sizeof w->path, "%s", path);
    snprintf(w->tmp, sizeof w->tmp, "%s.tmp", path);
    w->f = fopen(w->tmp, "wb");
    if (!w->f) return rx_fail(err, RX_ERR_IO, "%s: cannot create (%s)", w->tmp, strerror(errno));
    return RX_OK;
}

RxStatus fs_writer_put(FsWriter *w, const void *data, size_t n, RxError *err) {
    if (n && fwrite(data, 1, n, w->f) != n)
        return rx_fail(err, RX_ERR_IO, "%s: write failed (%s)", w->tmp, strerror(errno));
    return RX_OK;
}

RxStatus fs_writer_commit(FsWriter *w, RxStatus status, RxError *err) {
    if (fclose(w->f) != 0 && status == RX_OK)
        status = rx_fail(err, RX_ERR_IO, "%s: write failed (%s)", w->tmp, strerror(errno));
    w->f = NULL;
    if (status != RX_OK) { unlink(w->tmp); return status; }
    return fs_commit_tmp(w->tmp, w->path, err);
}

RxStatus fs_write_atomic(const char *path, const void *data, size_t n, RxError *err) {
    FsWriter w;
    RxStatus rs = fs_writer_open(&w, path, err);
    if (rs != RX_OK) return rs;
    return fs_writer_commit(&w, fs_writer_put(&w, data, n, err), err);
}

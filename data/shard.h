/* Shards: tokenized documents compressed with zstd, readable document by document.
 *
 * File layout (little-endian), version 1:
 *   [0, 64)      header: "RPXSHARD" | u32 version | u32 token bytes (2: u16, 4: u32) |
 *                u64 documents | u64 frames | u64 tokens | u64 table offset | u64 table checksum |
 *                8 bytes zero
 *   [64, table)  zstd frames, each holding about SHARD_FRAME_TOKENS_BYTES of tokens, compressed
 *                independently with zstd's content checksum on (a flipped bit is detected, not
 *                decoded into wrong tokens); documents run on across frame boundaries
 *   [table, end) frame table: per frame u64 file offset, u64 compressed bytes, u64 first token;
 *                then the document index: per document u64 first token, u64 token count.
 *                The table's FNV-1a 64 checksum is in the header.
 * Token positions are global within the shard, so a document is found by binary search over the
 * frames' first tokens and read without decompressing its neighbours.
 */
#ifndef ROPEX_SHARD_H
#define ROPEX_SHARD_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define SHARD_MAGIC "RPXSHARD"
#define SHARD_VERSION 1
#define SHARD_FRAME_BYTES (1u << 20)   /* uncompressed bytes per frame */

typedef struct {
    FILE *f;
    char path[1024], tmp[1040];
    int token_bytes;
    uint8_t *buf; size_t buf_n;        /* tokens of the frame being filled */
    uint8_t *zbuf; size_t zcap;
    uint64_t *frame_off, *frame_zlen, *frame_first; uint64_t n_frames, frames_cap;
    uint64_t *doc_first, *doc_len; uint64_t n_docs, docs_cap;
    uint64_t n_tokens, pos;
    int level;
    uint64_t raw_bytes;                /* uncompressed bytes written, for the ratio */
} ShardWriter;

int shard_writer_open(ShardWriter *w, const char *path, int token_bytes, int level, char *err, size_t errlen);
int shard_writer_add(ShardWriter *w, const int32_t *tokens, uint64_t n, char *err, size_t errlen);
/* Writes the table and header, fsyncs and renames into place. Always frees. */
int shard_writer_close(ShardWriter *w, int ok, char *err, size_t errlen);

typedef struct {
    char path[1024];
    int fd;
    int token_bytes;
    uint64_t file_size, n_docs, n_frames, n_tokens;
    uint64_t *frame_off, *frame_zlen, *frame_first;   /* n_frames */
    uint64_t *doc_first, *doc_len;                    /* n_docs */
    /* one decompressed frame kept, since neighbouring reads often share a frame */
    int64_t cached_frame; uint8_t *cache; size_t cache_n;
    uint8_t *zbuf; size_t zcap;
} ShardReader;

/* Opens and validates header and table (sizes, offsets, checksum). */
int shard_open(ShardReader *r, const char *path, char *err, size_t errlen);
void shard_close(ShardReader *r);
/* Copies tokens [start, start + n) of document doc into out. -1 with "FILE: document D: frame at
 * byte B: ..." in err when a frame is corrupt. */
int shard_read(ShardReader *r, uint64_t doc, uint64_t start, uint64_t n, int32_t *out, char *err, size_t errlen);
/* Decompresses and checks every frame; returns the number of bad frames (messages to err). */
int64_t shard_verify(ShardReader *r, char *err, size_t errlen);

uint64_t fnv1a64(const void *data, size_t n, uint64_t h);

#endif

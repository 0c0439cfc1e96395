/* Stream: packed training sequences from a prepared dataset (ropex data prepare), mixed across
 * domains, decompressed ahead on a background thread.
 *
 * The stream is a pure function of (seed, manifest fingerprint, weights, seq_len, upsampling,
 * BOS choice) and the sequence index k:
 *   - sequence k's domain: Megatron's greedy rule, argmax_d (w_d * (k + 1) - n_d), n_d = sequences
 *     given to d so far (ties: the first domain), so every prefix is within a sequence of the weights;
 *   - each domain walks its documents in an order shuffled per epoch by a keyed RNG (seed, domain,
 *     epoch); a document shorter than upsample_below tokens is kept with probability upsample_keep
 *     (decided by a hash of seed, domain, epoch, document: long-document upsampling);
 *   - documents are packed into sequences as [BOS] doc EOS, running on into the domain's next
 *     sequence; a sequence holds seq_len tokens plus one more (the last target), and the next
 *     sequence of the domain starts at that last token;
 *   - in a domain named by whole_docs, a document that fits in seq_len tokens but not in the rest
 *     of the sequence starts the domain's next sequence instead, and the rest is padding: EOS
 *     tokens, each its own document (so no target reaches one and none is counted), so that a
 *     retrieval document keeps its key and its question in one sequence.
 * So the data is the same whatever the number of readers, and a resume needs only the cursor
 * (a few integers per domain) plus the fingerprint, which is checked.
 */
#ifndef ROPEX_STREAM_H
#define ROPEX_STREAM_H

#include <stddef.h>
#include <stdint.h>

#define STREAM_MAX_DOMAINS 32

typedef struct {
    const char *dir;               /* dataset directory (manifest.json) */
    uint64_t seed;
    int64_t seq_len;
    int n_mix;                     /* 0: every domain, weighted by its tokens */
    char mix_name[STREAM_MAX_DOMAINS][64];
    double mix_weight[STREAM_MAX_DOMAINS];
    int64_t upsample_below;        /* 0: off */
    double upsample_keep;          /* probability of keeping a short document */
    int add_bos;                   /* prepend the tokenizer's BOS to each document (when it has
                                    * one distinct from EOS) */
    int skip_corrupt;              /* 1: log and skip a corrupt document; 0: stop with the error */
    int heldout;                   /* 1: read the held-out split instead of train */
    int prefetch;                  /* sequences prepared ahead (>= 1) */
    const char *mix_key;           /* the mix's name in messages (NULL: "data.mix") */
    const char *whole_docs;        /* NULL/"": none; "*": every domain; else domain names of the
                                    * manifest separated by spaces or commas (those not in the mix
                                    * are ignored) */
} StreamConfig;

typedef struct Stream Stream;

Stream *stream_open(const StreamConfig *cfg, char *err, size_t errlen);
void stream_close(Stream *s);
/* Next sequence: tokens (seq_len + 1) and document index of each token within the sequence
 * (non-decreasing, for document masks); *domain set to its domain's index. -1 on error. */
int stream_next(Stream *s, int32_t *tokens, int32_t *docs, int *domain, char *err, size_t errlen);

int stream_domains(const Stream *s);
const char *stream_domain_name(const Stream *s, int d);
double stream_domain_weight(const Stream *s, int d);
int64_t stream_skipped(const Stream *s);        /* corrupt documents skipped so far */
double stream_wait_seconds(const Stream *s);    /* time stream_next spent waiting for data */
uint64_t stream_fingerprint(const Stream *s);
int64_t stream_vocab_size(const Stream *s);      /* the tokenizer's, from the manifest */
int32_t stream_bos(const Stream *s);             /* the BOS id it starts documents with; -1: none */

/* The cursor after the last sequence returned, as a small blob (malloc'd). */
uint8_t *stream_save(const Stream *s, size_t *len);
/* Continues after a saved cursor; refuses a cursor from another dataset/config. */
int stream_restore(Stream *s, const uint8_t *blob, size_t len, char *err, size_t errlen);

#endif

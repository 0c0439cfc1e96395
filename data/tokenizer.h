/* Tokenizer: a Hugging Face tokenizer.json with a BPE model, encoding and decoding exactly as the
 * `tokenizers` library does (add_special_tokens = false: no template BOS/EOS; the data pipeline
 * adds those itself). Two families:
 *   byte-level BPE (GPT-2, SmolLM, Llama 3): ByteLevel pre-tokenizer with its Unicode regex
 *     (PCRE2 with Unicode properties), optional Digits / Split pre-tokenizers;
 *   SentencePiece-style BPE (Llama 2, TinyLlama, Mistral): Prepend/Replace normalizers or the
 *     Metaspace pre-tokenizer with '▁', byte_fallback to <0xXX> tokens.
 * Added and special tokens are matched in the raw text first. Merges apply by rank with a heap
 * over adjacent pairs: O(n log n) per word, also for a whole document as one word.
 * Anything else in the file is refused by name at load.
 */
#ifndef ROPEX_TOKENIZER_H
#define ROPEX_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

typedef struct Tokenizer Tokenizer;

/* Loads path; NULL on error with a message naming the file and field in err. */
Tokenizer *tokenizer_load(const char *path, char *err, size_t errlen);
/* The same from the file's text already in memory (size bytes; name is used in the messages). */
Tokenizer *tokenizer_parse(const char *name, const char *text, size_t size, char *err, size_t errlen);
void tokenizer_free(Tokenizer *t);

int64_t tokenizer_vocab_size(const Tokenizer *t);   /* 1 + the largest id */
/* Id of a token string, or -1. */
int32_t tokenizer_token_id(const Tokenizer *t, const char *token);
int32_t tokenizer_bos(const Tokenizer *t);   /* -1 when the tokenizer has none */
int32_t tokenizer_eos(const Tokenizer *t);

/* Encodes len bytes of UTF-8 text. *ids is grown with realloc (*cap entries); returns the count
 * or -1 with a message (invalid UTF-8 is encoded as the library does: replacement bytes). */
int64_t tokenizer_encode(const Tokenizer *t, const char *text, size_t len, int32_t **ids, size_t *cap,
                         char *err, size_t errlen);
/* Decodes ids to UTF-8 text (malloc'd, NUL-terminated, *len bytes); NULL on an unknown id. */
char *tokenizer_decode(const Tokenizer *t, const int32_t *ids, int64_t n, size_t *len, char *err, size_t errlen);

#endif

/* Synthetic retrieval documents for long-context training (data.h): passkeys hidden in filler,
 * key-value lookups and repeated strings, deterministic in the seed, as JSON lines for `ropex data prepare`. */
#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data.h"
#include "util.h"

static uint64_t next(uint64_t *s) {   /* splitmix64 */
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Varied filler, so that the model cannot learn one fixed sentence as in the evaluation prompt. */
static const char *const SUBJECTS[] = {"The river", "A small town", "The old library", "Every morning the baker",
                                       "The mountain path", "Our neighbour", "The northern wind", "A quiet garden",
                                       "The night train", "The teacher"};
static const char *const VERBS[] = {"runs past", "looks over", "waits near", "remembers", "follows", "drifts toward",
                                    "opens onto", "calls to", "circles", "rests beside"};
static const char *const OBJECTS[] = {"the green fields.", "the harbour at dawn.", "a row of tall trees.",
                                      "the market square.", "an empty bridge.", "the distant hills.",
                                      "a field of wheat.", "the stone wall.", "the sleeping village.", "the open sea."};

/* Statements "X is Y.", half the sentences of the statements filler: every one holds " is ", as
 * natural text does, and several end their subject as "key" does ("... y is "), so the key's
 * "The pass key is" has look-alikes to tell it from (the varied filler holds no " is ") */
static const char *const NOUNS[] = {"The sky", "The valley", "The city", "The ferry", "The old key",
                                    "The house", "The bakery", "Our street", "The library", "The day"};
static const char *const STATES[] = {"is quiet.", "is far from here.", "is older than it looks.", "is grey today.",
                                     "is closed on Sundays.", "is full of light.", "is the last stop.",
                                     "is warm in summer.", "is easy to find.", "is green again."};

static void filler(char *buf, size_t *n, size_t cap, uint64_t *rng, size_t chars, int statements) {
    while (*n < chars && *n + 96 < cap) {
        if (statements && next(rng) % 2)
            *n += (size_t)snprintf(buf + *n, cap - *n, " %s %s", NOUNS[next(rng) % 10], STATES[next(rng) % 10]);
        else
            *n += (size_t)snprintf(buf + *n, cap - *n, " %s %s %s", SUBJECTS[next(rng) % 10], VERBS[next(rng) % 10],
                                   OBJECTS[next(rng) % 10]);
    }
}

int data_synth(const SynthConfig *c, char *err, size_t errlen) {
    int64_t floor_chars = c->kind == SYNTH_RECALL ? 0 : 100;   /* recall: 0 allows bare lists */
    if (c->max_chars < c->min_chars || c->min_chars < floor_chars)
        return data_fail(err, errlen, "synth: expected %lld <= --min-chars <= --max-chars", (long long)floor_chars);
    if (c->questions < 1) return data_fail(err, errlen, "synth: expected --questions >= 1");
    if (!(c->min_depth >= 0 && c->min_depth <= c->max_depth && c->max_depth <= 1))
        return data_fail(err, errlen, "synth: expected --depth A..B with 0 <= A <= B <= 1");
    if (c->kind == SYNTH_RECALL && (c->min_pairs < 2 || c->max_pairs < c->min_pairs || c->max_pairs > 52))
        return data_fail(err, errlen, "synth: expected --pairs A..B with 2 <= A <= B <= 52");
    FILE *f = fopen(c->out, "w");
    if (!f) return data_fail(err, errlen, "%s: cannot create", c->out);
    uint64_t rng = c->seed * 0x2545F4914F6CDD1Dull + 1;
    size_t cap = (size_t)c->max_chars + 4096;
    char *buf = malloc(cap), *tail = malloc(cap);
    for (int64_t d = 0; d < c->docs; d++) {
        size_t chars = (size_t)c->min_chars + (size_t)(next(&rng) % (uint64_t)(c->max_chars - c->min_chars + 1));
        size_t n = 0, tn = 0;
        if (c->kind == SYNTH_PASSKEY) {
            int key = 10000 + (int)(next(&rng) % 90000);
            double depth = c->min_depth + (c->max_depth - c->min_depth) * (double)(next(&rng) % 1001) / 1000.0;
            size_t before = (size_t)(depth * (double)chars);
            filler(buf, &n, cap, &rng, before, c->statements);
            n += (size_t)snprintf(buf + n, cap - n, " The pass key is %05d. Remember it. %05d is the pass key.", key, key);
            /* the rest of the filler in `questions` parts, each followed by the question and
             * its answer (one question: the evaluation's layout) */
            size_t rest = chars > n ? chars - n : 0;
            for (int64_t q = 0; q < c->questions && n + 128 < cap; q++) {
                filler(buf, &n, cap, &rng, n + rest / (size_t)c->questions, c->statements);
                n += (size_t)snprintf(buf + n, cap - n, " What is the pass key? The pass key is %05d.", key);
            }
        } else if (c->kind == SYNTH_COPY) {
            /* one line "S|S" of 8..30 distinct symbols (letters and digits): each occurs once
             * in S, so the earlier occurrence of the current symbol says exactly which comes
             * next (the cleanest induction task; digits in it so that the copy also covers
             * passkeys; --min-chars/--max-chars do not apply) */
            char s[63] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
            int len = 8 + (int)(next(&rng) % 23);
            for (int i = 0; i < len; i++) {   /* the first len of a Fisher-Yates shuffle */
                int j = i + (int)(next(&rng) % (uint64_t)(62 - i));
                char t = s[i]; s[i] = s[j]; s[j] = t;
            }
            s[len] = 0;
            n += (size_t)snprintf(buf + n, cap - n, "%s|%s", s, s);
        } else if (c->kind == SYNTH_RECALL) {
            /* associative recall: pairs "k7" of distinct letter keys and digit values (mixed: both
             * from letters and digits), filler, then every key again in a new order with its
             * value. Only content matching answers (find this key's earlier occurrence, take the
             * symbol after it): the order changes, so no offset does, and every answer is one
             * dense example of the induction that passkey retrieval needs */
            static const char SYMBOLS[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
            char keys[63];
            memcpy(keys, SYMBOLS, sizeof keys);
            const char *vals = c->mixed ? SYMBOLS : SYMBOLS + 52;   /* all 62, or the digits */
            int nkeys = c->mixed ? 62 : 52, nvals = c->mixed ? 62 : 10;
            char val[52];
            /* min..max pairs (default 2..52), most of them few (min + (max - min) u^8: with 2..52,
             * 61% two and 70% four or fewer): few pairs in short documents are what teaches the
             * match (measured, 2-layer model, 2,048 packed tokens a step: two-pair lists learnt by
             * step 200; the 2..52 mix of the same documents not by step 500), and it then carries
             * to the longer lists */
            double u = (double)(next(&rng) >> 11) * 0x1.0p-53, u2 = u * u, u4 = u2 * u2;
            int pairs = c->min_pairs + (int)((double)(c->max_pairs - c->min_pairs) * u4 * u4);
            for (int i = 0; i < pairs; i++) {
                int j = i + (int)(next(&rng) % (uint64_t)(nkeys - i));
                char t = keys[i]; keys[i] = keys[j]; keys[j] = t;
                val[i] = vals[next(&rng) % (uint64_t)nvals];
                n += (size_t)snprintf(buf + n, cap - n, "%s%c%c", i ? " " : "", keys[i], val[i]);
            }
            /* filler until the document reaches w^2 of the drawn length, less the pairs (often none) */
            double w = (double)(next(&rng) >> 11) * 0x1.0p-53;
            filler(buf, &n, cap, &rng,
                   chars > 4 * (size_t)pairs + 8 ? (size_t)((double)(chars - 4 * (size_t)pairs - 8) * w * w) : 0,
                   c->statements);
            int order[52];
            for (int i = 0; i < pairs; i++) order[i] = i;
            for (int i = pairs - 1; i > 0; i--) {
                int j = (int)(next(&rng) % (uint64_t)(i + 1));
                int t = order[i]; order[i] = order[j]; order[j] = t;
            }
            for (int i = 0; i < pairs; i++)
                n += (size_t)snprintf(buf + n, cap - n, "%s%c%c", i ? " " : "\n", keys[order[i]], val[order[i]]);
        } else if (c->kind == SYNTH_REPEAT) {
            /* lines "S|S" of 16..64 random letters: only copying the first half (an induction
             * head: find the earlier occurrence of this letter, take the one after it) predicts
             * the second */
            while (n < chars && n + 2 * 64 + 3 < cap) {
                char s[65];
                int len = 16 + (int)(next(&rng) % 49);
                for (int i = 0; i < len; i++) s[i] = (char)('a' + next(&rng) % 26);
                s[len] = 0;
                n += (size_t)snprintf(buf + n, cap - n, "%s%s|%s", n ? "\n" : "", s, s);
            }
        } else {
            /* key-value lookup: lines of random keys and values, then `questions` questions about
             * keys drawn from the list (each answered: a copy from far back in the document) */
            int64_t pairs = (int64_t)(chars / 24) > 1 ? (int64_t)(chars / 24) : 2;
            char (*kv)[2][8] = malloc(sizeof *kv * (size_t)pairs);
            for (int64_t p = 0; p < pairs && n + 64 < cap; p++) {
                snprintf(kv[p][0], 8, "%06llx", (unsigned long long)(next(&rng) & 0xffffff));
                snprintf(kv[p][1], 8, "%06llx", (unsigned long long)(next(&rng) & 0xffffff));
                n += (size_t)snprintf(buf + n, cap - n, "%s%s: %s", p ? "\n" : "", kv[p][0], kv[p][1]);
            }
            for (int64_t q = 0; q < c->questions; q++) {
                int64_t ask = (int64_t)(next(&rng) % (uint64_t)pairs);
                tn = (size_t)snprintf(tail, cap, "\nWhat is the value of %s? The value of %s is %s.", kv[ask][0],
                                      kv[ask][0], kv[ask][1]);
                if (n + tn + 1 < cap) { memcpy(buf + n, tail, tn + 1); n += tn; }
            }
            free(kv);
        }
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "text", buf);
        char *line = cJSON_PrintUnformatted(o);
        fprintf(f, "%s\n", line);
        free(line);
        cJSON_Delete(o);
    }
    free(buf);
    free(tail);
    if (fclose(f)) return data_fail(err, errlen, "%s: write failed", c->out);
    return 0;
}

#!/bin/sh
# Builds the demo corpus into DIR (default data/demo) from files Debian installs and from ropex's
# own synthetic generator; deterministic: the same Debian packages give the same shards.
#   prose    the Python 3.11 documentation's reStructuredText sources (package python3.11-doc,
#            PSF License) and the licence texts of /usr/share/common-licenses (base-files;
#            verbatim copies are permitted by each licence)
#   code     the Python 3.11 standard library (package libpython3.11-stdlib, PSF License), one
#            document per package directory (its files in order, each headed by its path) or
#            per top-level module; tests, idlelib and lib2to3 left out
#   passkey, kv          synthetic retrieval documents that fit in 2048 tokens (fixture pretraining);
#                        kv documents are short lists followed by 16 questions (each answer a copy
#                        from far back), so that the model learns to retrieve early in pretraining
#   repeat               lines "S|S" of random letters: only copying predicts the second half
#   copy                 one line "S|S" a document, S distinct letters and digits: the unambiguous copy task on
#                        which the fixture first learns to copy (an induction head)
#   recall, recall2k     2..52 pairs "k7" of distinct letter keys and digit values, filler, then every
#                        pair again in a new order: dense practice in finding a token's earlier
#                        occurrence and copying what follows it (the induction that passkey retrieval
#                        needs; the copy task's S|S lines can be solved by position instead); recall
#                        documents are 2..4 pairs (mostly two) with at most a little filler (up to 40 characters),
#                        recall2k 2..52 pairs (mostly few) in up to 2000
#   passkeyq, passkeys   passkey documents with the key asked four times through the filler (passkeys:
#                        short, 100-500 characters: dense answers, where the fixture learns to copy digits)
#   passkeyfar           passkeys in the first quarter of 1000-2000 characters (retrieval from far back)
#   passkeyend           passkeys in the first fifth of 1700-1900 characters (from 1,400-2,000 tokens back)
#   passkeyedge          passkeys in the first twentieth of 1850-1945 characters (documents of at most 2,042
#                        characters: from 1,760-2,020 tokens back, as far as a 2048-token window reaches)
#   passkey8k, kv8k, recall8k   the same kinds up to LONG_CHARS characters (default 8000; the 2048 -> 8192 extension)
# The tokenizer is data/byte-tokenizer.json (one token per byte) unless TOKENIZER names another
# (a real checkpoint's tokenizer.json). Usage: [TOKENIZER=FILE] scripts/demo-data.sh [DIR]
set -eu
cd "$(dirname "$0")/.."
ROPEX=${ROPEX:-build/ropex}
OUT=${1:-data/demo}
TOK=${TOKENIZER:-data/byte-tokenizer.json}
LONG_CHARS=${LONG_CHARS:-8000}   # longest passkey8k / kv8k document (a BPE tokenizer: about 4 characters a token)
DOCS=/usr/share/doc/python3.11/html/_sources
LIB=/usr/lib/python3.11
for p in "$DOCS" "$LIB"; do
    [ -d "$p" ] || { echo "demo-data: $p is missing: run 'make deps' (installs python3.11-doc)" >&2; exit 2; }
done
[ -x "$ROPEX" ] || { echo "demo-data: $ROPEX is missing: run 'make'" >&2; exit 2; }

STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT INT TERM
mkdir -p "$STAGE/prose/licenses" "$STAGE/code"
cp -R "$DOCS/." "$STAGE/prose/"
for l in Apache-2.0 Artistic GFDL-1.3 GPL-2 GPL-3 LGPL-2.1 LGPL-3 MPL-1.1 MPL-2.0; do
    cp -L "/usr/share/common-licenses/$l" "$STAGE/prose/licenses/$l.txt"
done
(cd "$LIB" && find . -name '*.py' \
     -not -path './test/*' -not -path '*/tests/*' -not -path './idlelib/*' -not -path './lib2to3/*' \
     -not -path './site-packages/*' -not -path './dist-packages/*' -not -path './config-*' | LC_ALL=C sort) |
while read -r f; do
    d=$(dirname "$f")
    if [ "$d" = . ]; then d=$(basename "$f" .py); fi   # a top-level module is its own document
    mkdir -p "$STAGE/code/$d"
    cp "$LIB/$f" "$STAGE/code/$d/"
done

rm -rf "$OUT"
prep() { "$ROPEX" data prepare --tokenizer "$TOK" --out "$OUT" "$@"; }
prep --domain prose "$STAGE/prose" --min-tokens 512 --heldout 0.04
prep --domain code "$STAGE/code" --aggregate --min-tokens 512 --heldout 0.04
"$ROPEX" data synth passkey --docs 8000 --min-chars 300 --max-chars 1900 --seed 1 --out "$STAGE/passkey.jsonl"
"$ROPEX" data synth kv --docs 6000 --min-chars 200 --max-chars 900 --questions 16 --seed 2 --out "$STAGE/kv.jsonl"
"$ROPEX" data synth repeat --docs 6000 --min-chars 300 --max-chars 1900 --seed 5 --out "$STAGE/repeat.jsonl"
"$ROPEX" data synth copy --docs 60000 --seed 6 --out "$STAGE/copy.jsonl"
"$ROPEX" data synth passkey --docs 3000 --min-chars 2000 --max-chars "$LONG_CHARS" --seed 3 --out "$STAGE/passkey8k.jsonl"
"$ROPEX" data synth kv --docs 1000 --min-chars 2000 --max-chars "$LONG_CHARS" --questions 8 --seed 4 --out "$STAGE/kv8k.jsonl"
"$ROPEX" data synth recall --docs 40000 --min-chars 100 --max-chars 2000 --seed 11 --out "$STAGE/recall2k.jsonl"
"$ROPEX" data synth passkey --docs 20000 --min-chars 200 --max-chars 2000 --questions 4 --seed 12 --out "$STAGE/passkeyq.jsonl"
"$ROPEX" data synth passkey --docs 40000 --min-chars 100 --max-chars 500 --questions 4 --seed 15 --out "$STAGE/passkeys.jsonl"
"$ROPEX" data synth passkey --docs 12000 --min-chars 1000 --max-chars 2000 --depth 0..0.25 --seed 16 --out "$STAGE/passkeyfar.jsonl"
"$ROPEX" data synth passkey --docs 8000 --min-chars 1700 --max-chars 1900 --depth 0..0.2 --seed 17 --out "$STAGE/passkeyend.jsonl"
"$ROPEX" data synth passkey --docs 4000 --min-chars 1850 --max-chars 1945 --depth 0..0.05 --seed 18 --out "$STAGE/passkeyedge.jsonl"
"$ROPEX" data synth recall --docs 250000 --pairs 2..4 --min-chars 1 --max-chars 40 --seed 14 --out "$STAGE/recall.jsonl"
"$ROPEX" data synth recall --docs 3000 --min-chars 2000 --max-chars "$LONG_CHARS" --seed 13 --out "$STAGE/recall8k.jsonl"
for d in passkey kv repeat copy passkey8k kv8k recall2k passkeyq passkeys passkeyfar passkeyend passkeyedge recall recall8k; do prep --domain $d "$STAGE/$d.jsonl" --heldout 0.01; done
"$ROPEX" data inspect "$OUT"

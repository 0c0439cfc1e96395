#!/usr/bin/env bash
# The ropex command: every subcommand answers --help, errors exit non-zero with a message.
set -u
ropex=$1
check() {   # check NAME EXPECTED_RC EXPECTED_TEXT COMMAND...
  local name=$1 want_rc=$2 want=$3; shift 3
  local out rc
  out=$("$@" 2>&1); rc=$?
  if [ "$rc" -eq "$want_rc" ] && grep -qF -- "$want" <<<"$out"; then echo "PASS $name"
  else echo "FAIL $name: rc $rc (want $want_rc), output: $(head -c 300 <<<"$out")"; fi
}
check "ropex --help lists commands" 0 "commands:" "$ropex" --help
check "ropex with no command fails with usage" 2 "usage: ropex COMMAND" "$ropex"
check "unknown command is named" 2 "unknown command 'frobnicate'" "$ropex" frobnicate
check "ropex version" 0 "ropex 0." "$ropex" version
check "ropex version says OPENBLAS_CORETYPE chose the kernels" 0 "OpenBLAS Haswell kernels (set by OPENBLAS_CORETYPE" \
  env OPENBLAS_CORETYPE=Haswell "$ropex" version
for cmd in $("$ropex" --help | awk '/^commands:/{on=1;next} on && /^  [a-z]/ {print $1}'); do
  [ "$cmd" = version ] && continue
  check "ropex $cmd --help" 0 "usage: ropex $cmd" "$ropex" "$cmd" --help
done
check "shape smollm-135m prints the parameter count" 0 "134515008" "$ropex" shape --preset smollm-135m --seq-len 8192
check "shape: unknown preset is named" 2 "unknown model preset 'gpt5'" "$ropex" shape --preset gpt5
check "shape: bad --seq-len" 2 "--seq-len expects a positive integer" "$ropex" shape --seq-len -3
check "inspect reads a Hugging Face directory" 0 "model: V 258, C 256, L 4" "$ropex" inspect models/tiny-2k
check "inspect takes the hf:DIR spelling of eval and [model] init" 0 "Hugging Face directory models/tiny-2k" "$ropex" inspect hf:models/tiny-2k
# eval: bad input is named before any work (the committed fixture loads in a moment)
fx=hf:models/tiny-2k
tmpd=$(mktemp -d)
echo '[72, 2.5]' >"$tmpd/frac.json"; echo '{"ids": [72]}' >"$tmpd/object.json"; echo '[72, 258]' >"$tmpd/big.json"; echo '[]' >"$tmpd/empty.json"
python3 -c "print([72, 101, 108, 108, 111, 32] * 3)" >"$tmpd/dyn.json"
echo '{"domains": [{"name": "prose", "heldout_shards": []}]}' >"$tmpd/manifest.json"
check "eval: a length that is not an integer is named" 2 "'2048.5' in '1024,2048.5' is not an integer" "$ropex" eval $fx --lengths 1024,2048.5
check "eval: a depth outside 0..1 is named" 2 "'1.5' in '0,1.5' is not in 0..1" "$ropex" eval $fx --depths 0,1.5
check "eval: more than 16 lengths are refused" 2 "at most 16 values" "$ropex" eval $fx --lengths $(seq -s, 100 100 1700)
check "eval: a passkey length too short for the prompt is refused" 2 "length 100 is too short" "$ropex" eval $fx --passkey --lengths 2048,100
check "eval: an unknown --domains name is named" 2 "no domain 'cdoe' (--domains prose,cdoe)" "$ropex" eval $fx --data "$tmpd" --domains prose,cdoe
check "eval --tokens: a fractional id is refused" 2 "element 1 is not a token id of this model (an integer 0..257)" "$ropex" eval $fx --tokens "$tmpd/frac.json"
check "eval --tokens: an id outside the vocabulary is refused" 2 "element 1 is not a token id" "$ropex" eval $fx --tokens "$tmpd/big.json"
check "eval --tokens: a JSON object is refused" 2 "expected a JSON array of token ids" "$ropex" eval $fx --tokens "$tmpd/object.json"
check "eval --tokens: an empty array is refused" 2 "no token ids" "$ropex" eval $fx --tokens "$tmpd/empty.json"
# dynamic NTK past its original length: every new length has other frequencies, so each token
# is computed as --generate 1 (one forward) on the sequence so far would (an original length of
# 16 and factor 16 move the base a lot between lengths: keys kept from another length would show)
dyn="--set rope.rope_type=dynamic --set rope.factor=16 --set rope.original_max_position_embeddings=16"
gen=$("$ropex" eval $fx --tokens "$tmpd/dyn.json" --generate 6 $dyn 2>&1)
cp "$tmpd/dyn.json" "$tmpd/grow.json"; one=""
for i in 1 2 3 4 5 6; do
  t=$("$ropex" eval $fx --tokens "$tmpd/grow.json" --generate 1 $dyn 2>&1 | tr -d '[]')
  one="$one${one:+, }$t"
  python3 -c "import json,sys; p=sys.argv[1]; a=json.load(open(p)); a.append(int(sys.argv[2])); json.dump(a, open(p,'w'))" "$tmpd/grow.json" "$t"
done
rm "$tmpd/grow.json"
if [ "$gen" = "[$one]" ]; then echo "PASS eval --generate 6 under dynamic NTK past 16 equals six --generate 1: $gen"
else echo "FAIL eval --generate 6 under dynamic NTK past 16: $gen, one at a time [$one]"; fi
pr=$("$ropex" eval $fx --passkey --lengths 200,300 --depths 0,1 --trials 2 --progress 0 2>&1 >/dev/null)
if grep -q "^eval: 100%  passkey at 300 4/4  elapsed .*  ETA 0m00s$" <<<"$pr" && [ "$(grep -c '^eval: ' <<<"$pr")" -eq 9 ] &&
   tail -1 <<<"$pr" | grep -q "^eval: done in "; then
  echo "PASS eval: a progress line on stderr after each of 8 trials (--progress 0), the planned work reaching 100% on the last, then the time taken"
else echo "FAIL eval: progress lines: $(tr '\n' '|' <<<"$pr" | head -c 600)"; fi
check "eval: a bad --eos is named" 2 "--eos: '258' is not none or a token id in 0..257" "$ropex" eval $fx --tokens "$tmpd/dyn.json" --generate 2 --eos 258
check "eval: --eos without --generate is refused" 2 "--eos goes with --generate N" "$ropex" eval $fx --tokens "$tmpd/dyn.json" --eos 257
check "eval: a bad --progress is named" 2 "--progress expects seconds >= 0, got '-1'" "$ropex" eval $fx --progress -1
check "data tokenize --decode: a fractional id is refused" 2 "element 1 is not a token id of data/byte-tokenizer.json" \
  "$ropex" data tokenize --tokenizer data/byte-tokenizer.json --decode "$tmpd/frac.json"
n_before=$(ls /tmp | grep -c '^ropex-eval-tokenizer-')
check "eval --passkey reads the tokenizer stored with the checkpoint" 0 "k_max 200" \
  env TMPDIR="$tmpd" "$ropex" eval $fx --passkey --lengths 200 --depths 1 --trials 1
n_tmp=$(find "$tmpd" -newer "$tmpd/manifest.json" -type f | wc -l)
n_after=$(ls /tmp | grep -c '^ropex-eval-tokenizer-')
if [ "$n_tmp" -eq 0 ] && [ "$n_after" -eq "$n_before" ]; then echo "PASS eval --passkey leaves no temporary file"
else echo "FAIL eval --passkey leaves no temporary file: $n_tmp in TMPDIR, /tmp $n_before -> $n_after"; fi
mkdir "$tmpd/fx"; cp models/tiny-2k/* "$tmpd/fx/"; echo '{"eos_token_id": [1e30]}' >"$tmpd/fx/generation_config.json"
check "eval --generate: a bad eos_token_id in generation_config.json is named" 2 \
  "generation_config.json: eos_token_id is not a token id in 0..257 (pass --eos ID or --eos none)" \
  "$ropex" eval "hf:$tmpd/fx" --tokens "$tmpd/dyn.json" --generate 2
mkdir "$tmpd/run"; printf '{"step": 1, "loss": 3.5}\n{"step": 2, "lo\n' >"$tmpd/run/metrics.jsonl"
check "plot: a bad metrics.jsonl line is named by its number" 2 "metrics.jsonl:2: not a JSON object" "$ropex" plot "$tmpd/run"
echo '{"label": "x", "step": 3}' >"$tmpd/notresults.json"
check "plot: a JSON file without eval results is refused by name" 2 \
  "notresults.json: not a \`ropex eval --json\` file (no \"perplexity\" or \"passkey\" results)" \
  "$ropex" plot "$tmpd/notresults.json" --out "$tmpd/plots"
rm -rf "$tmpd"
# The README's commands install what is missing before anything compiles: on a machine without
# the libraries (a pkg-config that finds none), `make demo`, `make demo-yarn` and `make test` must
# reach scripts/setup.sh first (make -n shows it), not stop at the Makefile's library check;
# `make` alone stops there and names `make deps`.
nolib=$(mktemp -d); printf '#!/bin/sh\nexit 1\n' >"$nolib/pkg-config"; chmod +x "$nolib/pkg-config"
for goal in demo demo-yarn test; do
  first=$(env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL PATH="$nolib:$PATH" make -n --no-print-directory "$goal" 2>&1 | head -n 1)
  if [ "$first" = scripts/setup.sh ]; then echo "PASS make $goal without the libraries runs scripts/setup.sh first"
  else echo "FAIL make $goal without the libraries runs scripts/setup.sh first: its first line is '$first'"; fi
done
check "make without the libraries names them and make deps" 2 "missing libraries: openblas" \
  env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL PATH="$nolib:$PATH" make -n --no-print-directory all
rm -rf "$nolib"

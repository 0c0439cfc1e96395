#!/bin/sh
# make fixture: pretrains the demo's tiny fixture from scratch at 2048 tokens with plain RoPE in
# four stages (configs/fixture-2k-stage1.ini: recall lists alone, where the match is learnt;
# configs/fixture-2k-stage2.ini: short passkey documents, where it is turned to the key's digits;
# configs/fixture-2k-stage3.ini: the mixed corpus; configs/fixture-2k.ini: keys from far back;
# about 50 minutes on 2 cores), evaluates its passkey retrieval inside
# 2048 tokens, and exports it to models/tiny-2k (bf16 weights, config.json, tokenizer.json,
# generation_config.json) with
# its training log. Usage: scripts/fixture.sh
set -eu
cd "$(dirname "$0")/.."
R=build/ropex
RUN=runs/fixture-2k
[ -f data/demo/manifest.json ] || scripts/demo-data.sh data/demo
mkdir -p runs
rm -f runs/fixture-2k.ok   # written when every stage and the evaluation succeeded (a pipe hides their status)
# the log names each stage and the CPU (runs on other CPUs round differently and part after a
# few dozen steps)
{ echo "== $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), $(nproc) cores"
  n=0
  for c in configs/fixture-2k-stage1.ini configs/fixture-2k-stage2.ini configs/fixture-2k-stage3.ini configs/fixture-2k.ini; do
      n=$((n + 1))
      echo "== stage $n: ropex train $c"
      $R train "$c" --fresh || exit 1
  done
  echo "== ropex eval (scripts/fixture.sh)"
  $R eval "$RUN/final.h5" --data data/demo --domains prose,code --lengths 1024,2048 --max-windows 8 \
      --passkey --depths 0,0.25,0.5,0.75,1 --trials 10 --label fixture --json "$RUN/eval.json" || exit 1
  touch runs/fixture-2k.ok
} 2>&1 | tee runs/fixture-2k.log
[ -f runs/fixture-2k.ok ] || { echo "fixture: a stage failed (runs/fixture-2k.log)" >&2; exit 1; }
rm -rf models/tiny-2k
$R export "$RUN/final.h5" --to hf models/tiny-2k --dtype bf16
cp runs/fixture-2k.log models/tiny-2k/train.log
cp "$RUN/metrics.jsonl" models/tiny-2k/metrics.jsonl
cp "$RUN/eval.json" models/tiny-2k/eval.json
echo "fixture: models/tiny-2k"

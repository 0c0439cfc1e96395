#!/bin/sh
# make fixture: pretrains the demo's tiny fixture from scratch at 2048 tokens with plain RoPE in
# six stages (configs/fixture-2k-stage1.ini: recall lists alone, where the match is learnt;
# -stage2.ini: short passkey documents, where it is turned to the key's digits; -stage3.ini: the
# mixed corpus; -stage4.ini: keys from far back; -stage5.ini: a long language-model stage, from
# stage 4's weights rounded to bf16; configs/fixture-2k.ini: the keys brought back; about 88
# minutes on a 2-core Zen 4), evaluates its passkey retrieval inside 2048 tokens, and exports it to
# models/tiny-2k (bf16 weights, config.json, tokenizer.json, generation_config.json) with its
# training log. Usage: scripts/fixture.sh [FIRST_STAGE]   (from FIRST_STAGE on, the earlier
# stages' weights in runs/ as an earlier run left them; the log is appended to)
set -eu
cd "$(dirname "$0")/.."
R=build/ropex
RUN=runs/fixture-2k
FIRST=${1:-1}
case $FIRST in [1-6]) ;; *) echo "fixture: FIRST_STAGE must be 1-6, not '$FIRST'" >&2; exit 2 ;; esac
if [ "$FIRST" -gt 1 ]; then
    prev=runs/fixture-2k-stage$((FIRST - 1))/final.h5
    [ -f "$prev" ] || { echo "fixture: stage $FIRST starts from $prev, which is missing (run the earlier stages first)" >&2; exit 2; }
fi
[ -f data/demo/manifest.json ] || scripts/demo-data.sh data/demo
mkdir -p runs
rm -f runs/fixture-2k.ok   # written when every stage and the evaluation succeeded (a pipe hides their status)
TEE="tee"
[ "$FIRST" -gt 1 ] && TEE="tee -a"
# the log names each stage and the CPU (runs on other CPUs round differently and part after a
# few dozen steps)
{ echo "== $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), $(nproc) cores, $(date +%Y-%m-%d)"
  n=0
  for c in configs/fixture-2k-stage1.ini configs/fixture-2k-stage2.ini configs/fixture-2k-stage3.ini \
           configs/fixture-2k-stage4.ini configs/fixture-2k-stage5.ini configs/fixture-2k.ini; do
      n=$((n + 1))
      [ "$n" -lt "$FIRST" ] && continue
      if [ "$n" -eq 5 ]; then   # stage 5 was measured from stage 4 as once committed: in bf16
          echo "== stage 4's weights in bf16: ropex export runs/fixture-2k-stage4/final.h5 --to hf runs/fixture-2k-stage4/hf"
          rm -rf runs/fixture-2k-stage4/hf
          $R export runs/fixture-2k-stage4/final.h5 --to hf runs/fixture-2k-stage4/hf --dtype bf16 || exit 1
      fi
      echo "== stage $n: ropex train $c"
      $R train "$c" --fresh || exit 1
  done
  echo "== ropex eval (scripts/fixture.sh)"
  $R eval "$RUN/final.h5" --data data/demo --domains prose,code --lengths 1024,2048 --max-windows 8 \
      --passkey --depths 0,0.25,0.5,0.75,1 --trials 10 --label fixture --json "$RUN/eval.json" || exit 1
  touch runs/fixture-2k.ok
} 2>&1 | $TEE runs/fixture-2k.log
[ -f runs/fixture-2k.ok ] || { echo "fixture: a stage failed (runs/fixture-2k.log)" >&2; exit 1; }
rm -rf models/tiny-2k
$R export "$RUN/final.h5" --to hf models/tiny-2k --dtype bf16
cp runs/fixture-2k.log models/tiny-2k/train.log
cp "$RUN/metrics.jsonl" models/tiny-2k/metrics.jsonl
cp "$RUN/eval.json" models/tiny-2k/eval.json
echo "fixture: models/tiny-2k"

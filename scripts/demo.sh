#!/bin/sh
# The demo (make demo; make demo-yarn runs it with configs/demo-yarn.ini): builds the demo corpus
# if it is missing, evaluates the embedded fixture (models/tiny-2k, 2048 tokens) as it is and
# with the config's RoPE scaling but no training, extends it to 8192 tokens as CONFIG says,
# evaluates the result, and draws the pictures and the results table into the run directory.
# Usage: scripts/demo.sh [CONFIG]   (default configs/demo.ini)
set -eu
cd "$(dirname "$0")/.."
CONFIG=${1:-configs/demo.ini}
R=build/ropex
FIXTURE=hf:models/tiny-2k
val() { sed -n "s/^$1 *= *\([^ ;]*\).*/\1/p" "$CONFIG" | head -1; }
RUN=$(val out_dir)
RT=$(val rope_type)
FACTOR=$(val factor)
[ -n "$RUN" ] && [ -n "$RT" ] && [ -n "$FACTOR" ] || { echo "demo: $CONFIG needs out_dir, rope_type and factor" >&2; exit 2; }
start=$(date +%s)
stage() { echo; echo "== $1 ($(( $(date +%s) - start )) s)"; }

[ -f data/demo/manifest.json ] || { stage "building the demo corpus"; scripts/demo-data.sh data/demo; }
if [ ! -f models/tiny-2k/config.json ]; then   # committed; rebuilt here only if it was removed
    stage "models/tiny-2k is missing: pretraining the fixture first (configs/fixture-2k-stage1.ini ... -stage5.ini, then fixture-2k.ini; about 88 minutes on a 2-core Zen 4)"
    scripts/fixture.sh
fi
mkdir -p "$RUN"
# passkeys: 5 keys a cell before training (enough to show what is lost), 20 for the trained model,
# whose every cell must reach 90% (with 5, one miss in 75 trials is a cell at 80%)
EVAL="--data data/demo --domains prose,code --lengths 2048,4096,8192 --stride 512 --max-windows 16
      --passkey --depths 0,0.25,0.5,0.75,1"
SCALE="--set rope.rope_type=$RT --set rope.factor=$FACTOR --set rope.original_max_position_embeddings=2048
       --set rope.max_position_embeddings=8192"
stage "base model (2048 tokens, plain RoPE) at 2048, 4096, 8192"
# shellcheck disable=SC2086
$R eval $FIXTURE $EVAL --trials 5 --label "base" --json "$RUN/eval-base.json"
stage "$RT x$FACTOR without training"
# shellcheck disable=SC2086
$R eval $FIXTURE $EVAL --trials 5 $SCALE --label "$RT, no training" --json "$RUN/eval-untrained.json"
stage "extending to 8192 with $RT ($CONFIG)"
$R train "$CONFIG" --fresh
stage "$RT x$FACTOR trained"
# shellcheck disable=SC2086
$R eval "$RUN/final.h5" $EVAL --trials 20 --label "$RT, trained" --json "$RUN/eval-trained.json"
stage "pictures and table"
$R plot "$RUN" "$RUN/eval-base.json" "$RUN/eval-untrained.json" "$RUN/eval-trained.json" --out "$RUN"
echo
echo "Position Interpolation's findings, at this scale (from $RUN/results.md):"
# rows: base, untrained, trained; columns: | model | rope | ppl 2048 | ppl 4096 | ppl 8192 | pk<=L0 | pk>L0 | key>L0 back | worst | k_max |
awk -F'|' 'NR > 2 { gsub(/[ %]/, ""); r++; p2[r] = $4; p8[r] = $6; far[r] = $9; worst[r] = $10 }
  function say(ok, text) { printf "  %-4s %s\n", ok ? "yes" : "NO", text }
  END {
    say(p8[1] >= 5 * p2[1], sprintf("base model at 8192 without scaling: perplexity %.2f >= 5 x its %.2f at 2048", p8[1], p2[1]))
    say(far[1] <= 20, sprintf("base model: passkey accuracy at distances beyond 2048 (keys more than 2048 tokens back) is %s%% (<= 20%%)", far[1]))
    say(p8[3] <= p2[1], sprintf("after training: perplexity at 8192 %.2f <= the base model'"'"'s %.2f at 2048", p8[3], p2[1]))
    say(p2[3] <= 1.05 * p2[1], sprintf("after training: perplexity at 2048 %.2f within 5%% of the base model'"'"'s %.2f (%+.1f%%)", p2[3], p2[1], 100 * (p2[3] / p2[1] - 1)))
    say(worst[3] >= 90, sprintf("after training: passkey accuracy >= 90%% in every (length <= 8192, depth) cell (worst %s%%)", worst[3]))
  }' "$RUN/results.md"
echo "demo done in $(( $(date +%s) - start )) s: $RUN/loss.png $RUN/ppl.png $RUN/passkey.png $RUN/results.md"

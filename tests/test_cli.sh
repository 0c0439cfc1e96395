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

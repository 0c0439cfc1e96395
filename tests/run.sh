#!/usr/bin/env bash
# Runs ropex's tests and prints one closing line "N passed, N failed" (", N skipped" when some are).
# usage: tests/run.sh [--fast] BUILD_DIR [MPI_BUILD_DIR]
# Every test program prints "PASS name" / "FAIL name: why" lines ("SKIP name: why" for a check
# that cannot run yet, listed and counted apart); a program that exits non-zero
# without printing a FAIL line counts as one failure. --fast skips the slow end-to-end group.
set -u
fast=0
[ "${1:-}" = "--fast" ] && { fast=1; shift; }
build=${1:-build}
mpi_build=${2:-}              # the MPI=1 build (make test passes build-mpi); without it the MPI group is left out
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
py=/usr/bin/python3          # Debian's python with python3-torch / numpy / h5py
logdir=$(mktemp -d)
passed=0 failed=0 skipped=0

run() {   # run NAME COMMAND...
  local name=$1; shift
  local log="$logdir/$name.log" t0=$SECONDS
  "$@" >"$log" 2>&1
  local rc=$?
  local p f s
  p=$(grep -c '^PASS ' "$log"); f=$(grep -c '^FAIL ' "$log"); s=$(grep -c '^SKIP ' "$log")
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; echo "FAIL $name: exited $rc" >>"$log"; fi
  passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
  printf '%-14s %3d passed, %d failed%s  (%ds)\n' "$name" "$p" "$f" "$([ "$s" -gt 0 ] && echo ", $s skipped")" $((SECONDS - t0))
  grep '^SKIP ' "$log" | sed 's/^/    /'
  if [ "$f" -ne 0 ]; then grep -E '^(FAIL|!!)' "$log" | sed 's/^/    /'; tail -n 5 "$log" | sed 's/^/    | /'; fi
}

run ops        "$build/tests/test_ops"
run model      "$build/tests/test_model"
run rope       "$build/tests/test_rope"
run rope-ref   "$py" tests/ref/test_rope.py "$build"
run ckpt       "$build/tests/test_ckpt"
run ckpt-ref   "$py" tests/ref/test_ckpt.py "$build"
run cli        tests/test_cli.sh "$build/ropex"
run parity     "$py" tests/ref/test_parity.py "$build"
# the tokenizer oracle: Hugging Face's tokenizers from the npm registry (tests/js/package.json)
if [ ! -d tests/js/node_modules/tokenizers ]; then
  (cd tests/js && npm install --no-audit --no-fund --no-package-lock --loglevel=error >/dev/null)
fi
run data       "$py" tests/ref/test_data.py "$build"
run optim      "$py" tests/ref/test_optim.py "$build"
run bench      "$py" tests/ref/test_bench.py "$build"
if [ "$fast" -eq 0 ]; then   # the slow end-to-end group
  run train      "$py" tests/ref/test_train.py "$build"
  run eval       "$py" tests/ref/test_eval.py "$build"
  run demo       "$py" tests/ref/test_demo.py "$build"
  if [ -n "$mpi_build" ]; then
    run mpi        "$py" tests/ref/test_mpi.py "$build" "$mpi_build"
  fi
fi
rm -rf "$logdir"
if [ "$skipped" -gt 0 ]; then echo "$passed passed, $failed failed, $skipped skipped"; else echo "$passed passed, $failed failed"; fi
[ "$failed" -eq 0 ]

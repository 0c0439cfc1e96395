"""`make bench`'s driver (bench/run.py): the processes it measures run without the variables that
force OpenBLAS's kernels (OPENBLAS_CORETYPE, OPENBLAS_L2_SIZE) unless --keep-blas-env, its kernel
line says which of them the shell had and what was done with them, and its command line refuses
what it does not know. The timings themselves are `make bench`'s, never a test's.

usage: test_bench.py BUILD_DIR
"""
import importlib.util
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
RUN_PY = os.path.join(ROOT, "bench", "run.py")
results = {"passed": 0, "failed": 0}


def report(ok, name, detail=""):
    print(("PASS " if ok else "FAIL ") + name + (": " + detail if detail else ""), flush=True)
    results["passed" if ok else "failed"] += 1


def main():
    spec = importlib.util.spec_from_file_location("bench_run", RUN_PY)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    shell = {"OPENBLAS_CORETYPE": "Haswell", "OPENBLAS_L2_SIZE": "512", "PATH": "/usr/bin", "OMP_NUM_THREADS": "7"}

    env = bench.measured_env(shell, keep=False)
    report("OPENBLAS_CORETYPE" not in env and "OPENBLAS_L2_SIZE" not in env and env["PATH"] == "/usr/bin"
           and env["OMP_NUM_THREADS"] == str(bench.THREADS),
           "measured processes run without the shell's OpenBLAS kernel variables, with the bench's threads", str(env))
    env = bench.measured_env(shell, keep=True)
    report(env.get("OPENBLAS_CORETYPE") == "Haswell" and env.get("OPENBLAS_L2_SIZE") == "512",
           "--keep-blas-env passes them through", str(env))
    report(shell["OPENBLAS_CORETYPE"] == "Haswell", "the caller's environment is left as it was")

    note = bench.blas_env_note(shell, keep=False)
    report("OPENBLAS_CORETYPE=Haswell" in note and "OPENBLAS_L2_SIZE=512" in note and "removed" in note
           and "BENCH_BLAS_ENV=keep" in note, "the kernel line names what it removed and how to keep it", note)
    note = bench.blas_env_note(shell, keep=True)
    report("OPENBLAS_CORETYPE=Haswell" in note and "kept" in note, "the kernel line says what it kept", note)
    note = bench.blas_env_note({"PATH": "/usr/bin"}, keep=False)
    report(note == "OPENBLAS_CORETYPE unset", "the kernel line of a shell without them", note)

    r = subprocess.run([sys.executable, RUN_PY, sys.argv[1] if len(sys.argv) > 1 else "build", "--qiuck"],
                       capture_output=True, text=True)
    report(r.returncode == 2 and "unknown argument --qiuck" in r.stderr and "usage:" in r.stderr,
           "an unknown option is refused with its name and the usage", f"rc {r.returncode}: {r.stderr.strip()}")
    r = subprocess.run([sys.executable, RUN_PY, "build", "other"], capture_output=True, text=True)
    report(r.returncode == 2 and "unknown argument other" in r.stderr, "a second build directory is refused",
           f"rc {r.returncode}: {r.stderr.strip()}")
    r = subprocess.run([sys.executable, RUN_PY, "--help"], capture_output=True, text=True)
    report(r.returncode == 0 and "--keep-blas-env" in r.stdout and "OPENBLAS_CORETYPE" in r.stdout,
           "--help prints the usage and what it does with the kernel variables", f"rc {r.returncode}")
    print(f"{results['passed']} passed, {results['failed']} failed")
    return 1 if results["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())

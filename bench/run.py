"""`make bench`: training-step throughput of ropex against the PyTorch reference, same shape, same
thread count, in one run; each measurement in its own process so that peak RSS is its own.
Prints a table with ratios and writes every figure to build/bench-results.json.

usage: run.py [BUILD_DIR] [--quick] [--keep-blas-env] [--help]   (--quick: the demo shape only)
OpenBLAS's kernels: the measured processes (both peers) run without OPENBLAS_CORETYPE and
OPENBLAS_L2_SIZE, so each library runs the kernels it and ropex pick on this CPU, whatever the
calling shell forces; --keep-blas-env (make bench BENCH_BLAS_ENV=keep) passes them through.
Model FLOPs per token: 6 * N_matmul + 6 * L * T * C (matrix weights incl. the LM head, and causal
attention's QK^T and PV, forward and backward); MFU is against the FMA peak measured by the bench.
"""
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
THREADS = int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1))

# (shape, T, ropex steps, ropex recompute, torch steps): timed steps after one warmup step, their
# mean reported. On this shared 2-core machine a single short step moves by 30%, so the short ones
# get several (tiny 2048: ropex 0.5 s a step, PyTorch 2.3 s; tiny 8192: 4 s and 36 s); PyTorch's
# SmolLM-135M step at 2048 takes about a minute and gets one.
RUNS = [("tiny", 2048, 10, 0, 3), ("tiny", 8192, 4, 0, 2),
        ("smollm-135m", 2048, 2, 0, 1), ("smollm-135m", 8192, 1, 1, 1)]


BLAS_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
OPTIONS = ("--quick", "--keep-blas-env")


def measured_env(environ, keep):
    """the environment of a measured process: the caller's, with THREADS threads and, unless keep,
    without the variables that force OpenBLAS's kernels"""
    env = dict(environ, OMP_NUM_THREADS=str(THREADS))
    if not keep:
        for k in BLAS_ENV:
            env.pop(k, None)
    return env


def blas_env_note(environ, keep):
    """what the kernel line says of the shell's OpenBLAS variables"""
    shell = " ".join(f"{k}={environ[k]}" for k in BLAS_ENV if k in environ)
    if not shell:
        return "OPENBLAS_CORETYPE unset"
    if keep:
        return shell + " kept from the environment"
    return shell + " removed for the measured processes; make bench BENCH_BLAS_ENV=keep keeps them"


def run(cmd, keep):
    r = subprocess.run(cmd, capture_output=True, text=True, env=measured_env(os.environ, keep))
    line = [l for l in r.stdout.splitlines() if l.startswith("{")]
    if r.returncode != 0 or not line:
        return {"error": (r.stderr or r.stdout).strip()[-300:]}
    return json.loads(line[-1])


def cpu_name():
    """the CPU as /proc/cpuinfo names it (model name, family, model): the ratios depend on it"""
    info = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                k, _, v = line.partition(":")
                info.setdefault(k.strip(), v.strip())
    except OSError:
        return "unknown"
    return f"{info.get('model name', 'unknown')} (family {info.get('cpu family', '?')}, model {info.get('model', '?')})"


def main():
    if "--help" in sys.argv[1:] or "-h" in sys.argv[1:]:
        print(__doc__.strip())
        return 0
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    opts = [a for a in sys.argv[1:] if a.startswith("--")]
    bad = [a for a in opts if a not in OPTIONS]
    if bad or len(args) > 1:
        print(f"run.py: unknown argument {(bad + args[1:])[0]}\n{__doc__.split(chr(10) * 2)[1]}", file=sys.stderr)
        return 2
    build = args[0] if args else "build"
    keep = "--keep-blas-env" in opts
    runs = RUNS[:2] if "--quick" in opts else RUNS
    rows = []
    cpu = cpu_name()
    print(f"training step (forward, backward, AdamW), micro-batch 1, {THREADS} threads; CPU: {cpu}")
    for shape, T, steps, rec, tsteps in runs:
        ours = run([os.path.join(ROOT, build, "bench", "bench_train"), shape, str(T), str(steps), str(rec)], keep)
        peer = run(["/usr/bin/python3", os.path.join(ROOT, "tests", "ref", "bench_torch.py"), shape, str(T),
                    str(tsteps), str(THREADS)], keep)
        rows.append({"shape": shape, "T": T, "steps": {"ropex": steps, "pytorch": tsteps}, "ropex": ours,
                     "pytorch": peer})
        print(f"  done {shape} T={T}", file=sys.stderr, flush=True)
    hdr = (f"{'shape':12s} {'T':>5s} {'recompute':>9s} {'tokens/s':>9s} {'GFLOP/tok':>9s} {'GFLOP/s':>8s} "
           f"{'MFU':>6s} {'RSS MiB':>8s} | {'torch tok/s':>11s} {'torch RSS':>9s} | {'speed x':>7s} {'memory':>7s} "
           f"{'5x needs':>8s}")
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        o, p = r["ropex"], r["pytorch"]
        if "error" in o:
            print(f"{r['shape']:12s} {r['T']:5d}  ropex failed: {o['error']}")
            continue
        if "tokens_per_s" in p:
            ptxt = f"{p['tokens_per_s']:11.1f} {p['peak_rss_mib']:9.0f}"
            # the model FLOP rate that 5x PyTorch's tokens/s would take, against this process's FMA peak
            need = 5.0 * p["tokens_per_s"] * o["flops_per_token"] / 1e9
            r["five_x_needs_gflops"], r["five_x_needs_of_peak"] = need, need / o["peak_gflops"]
            ratio = (f"{o['tokens_per_s'] / p['tokens_per_s']:7.1f} {o['peak_rss_mib'] / p['peak_rss_mib']:7.3f} "
                     f"{100 * need / o['peak_gflops']:7.0f}%")
        else:
            ptxt = f"{'n/a':>11s} {'n/a':>9s}"
            ratio = f"{'':7s} {'':7s} {'':8s}"
        print(f"{r['shape']:12s} {r['T']:5d} {('layer' if o['recompute'] else 'none'):>9s} {o['tokens_per_s']:9.1f} "
              f"{o['flops_per_token'] / 1e9:9.3f} {o['gflops']:8.1f} {100 * o['mfu']:5.1f}% {o['peak_rss_mib']:8.0f} | "
              f"{ptxt} | {ratio}")
        if "skipped" in p:
            print(f"{'':19s}PyTorch: {p['skipped']}")
        if "error" in p:
            print(f"{'':19s}PyTorch failed: {p['error']}")
    peak = next((r["ropex"]["peak_gflops"] for r in rows if "peak_gflops" in r["ropex"]), 0)
    kernels = {who: sorted({r[who]["blas"] for r in rows if "blas" in r[who]}) for who in ("ropex", "pytorch")}
    print(f"OpenBLAS kernels: ropex {'/'.join(kernels['ropex']) or '?'}, PyTorch {'/'.join(kernels['pytorch']) or '?'} "
          f"({blas_env_note(os.environ, keep)})")
    print("tokens/s: the mean of the timed steps after one warmup step (ropex "
          + "/".join(str(r["steps"]["ropex"]) for r in rows) + ", PyTorch "
          + "/".join(str(r["steps"]["pytorch"]) for r in rows) + " steps, in the rows' order)")
    print(f"FMA peak measured: {peak:.1f} GFLOP/s on {THREADS} threads; speed x = ropex tokens/s / PyTorch's; "
          f"memory = ropex peak RSS / PyTorch's;\n5x needs = the model FLOP rate that 5x PyTorch's tokens/s takes, "
          f"in % of the FMA peak (over 100%: no kernel can reach it on this machine)")
    out = os.path.join(ROOT, build, "bench-results.json")
    with open(out, "w") as f:
        json.dump({"threads": THREADS, "cpu": cpu, "fma_peak_gflops": peak, "blas_env_kept": keep,
                   "blas_env_of_shell": {k: os.environ[k] for k in BLAS_ENV if k in os.environ},
                   "runs": rows}, f, indent=2)
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

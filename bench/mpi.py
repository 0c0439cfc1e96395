"""`make bench` (MPI part): data-parallel scaling on this machine, and a model of the all-reduce
cost for SmolLM-135M on clusters.

1. The demo shape (the tiny fixture's shape, T = 8192, global batch 2 sequences) trained by
   `ropex train` for a few steps as 1 rank x 2 threads and as 2 ranks x 1 thread (mpirun,
   loopback): tokens/s, the time each step spends in MPI_Allreduce and the time a rank waits for
   the other before it, medians over the steps after the first.
2. Ring all-reduce of the fp32 gradients: every rank sends and receives 2 (N - 1) / N x 4 P bytes
   per step; printed for SmolLM-135M at 8 and 64 ranks over 10 and 100 Gb/s links, beside the
   compute time of a step at an assumed per-rank throughput.

usage: mpi.py BUILD_DIR MPI_BUILD_DIR DATA_DIR
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile

MPIRUN = ["mpirun", "--allow-run-as-root", "--oversubscribe", "--mca", "btl", "self,vader,tcp",
          "--mca", "btl_tcp_if_include", "lo", "--mca", "oob_tcp_if_include", "lo"]
CONFIG = """[model]
preset = tiny
vocab_size = 258
[rope]
rope_type = linear
factor = 4
original_max_position_embeddings = 2048
max_position_embeddings = 8192
[data]
dir = {data}
mix = prose:0.5 code:0.5
seq_len = 8192
[optim]
lr = 1e-4
warmup_steps = 1
[train]
steps = {steps}
micro_batch = 1
grad_accum = 2
out_dir = {out}
save_every = 1000
eval_every = 0
threads = {threads}
"""


def measure(ropex, data, tmp, ranks, threads, steps=6):
    out = os.path.join(tmp, f"r{ranks}t{threads}")
    cfg = out + ".ini"
    with open(cfg, "w") as f:
        f.write(CONFIG.format(data=data, out=out, steps=steps, threads=threads))
    cmd = ([*MPIRUN, "-np", str(ranks), "--bind-to", "core"] if ranks > 1 else []) + [ropex, "train", cfg, "--fresh"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        sys.exit("bench mpi: " + r.stderr[-400:])
    with open(os.path.join(out, "metrics.jsonl")) as f:
        m = [j for j in map(json.loads, f) if "loss" in j][1:]   # the first step warms up
    med = lambda key: statistics.median(j.get(key, 0) for j in m)
    return med("tokens_per_s"), med("allreduce_s"), med("step_s"), med("rank_wait_s")


def main():
    build, mpi_build, data = sys.argv[1:4]
    with tempfile.TemporaryDirectory() as tmp:
        one = measure(os.path.join(build, "ropex"), data, tmp, 1, 2)
        two = measure(os.path.join(mpi_build, "ropex"), data, tmp, 2, 1)
    print("\ndata parallel, demo shape (tiny, T 8192, 2 sequences per step), this machine:")
    print(f"{'layout':>22} {'tokens/s':>9} {'step s':>7} {'allreduce ms':>13} {'share':>6} {'rank wait ms':>13}")
    for name, (tps, red, st, wait) in [("1 rank x 2 threads", one), ("2 ranks x 1 thread", two)]:
        print(f"{name:>22} {tps:9.0f} {st:7.2f} {red * 1e3:13.1f} {red / st:6.2%} {wait * 1e3:13.1f}")
    print("(allreduce: the gradient sum alone, after a barrier; rank wait: time at that barrier for the slower rank)")
    print(f"2 ranks / 1 rank tokens/s: {two[0] / one[0]:.2f}")

    P = 134515008   # SmolLM-135M parameters
    flop_tok = 6 * (P - 0) + 6 * 30 * 8192 * 576   # matmul weights incl. the tied head + causal attention, fwd+bwd
    print("\nring all-reduce model, SmolLM-135M (fp32 gradients, 538 MB), 8192-token sequences, one sequence per rank per step:")
    print(f"{'ranks':>5} {'link':>8} {'bytes/rank':>11} {'all-reduce s':>13} {'compute s @1 TFLOP/s':>21} {'comm share':>10}")
    for n in (8, 64):
        for gbit in (10, 100):
            sent = 2 * (n - 1) / n * 4 * P
            t = sent / (gbit * 1e9 / 8) + 2 * (n - 1) * 20e-6   # bandwidth term + 20 us latency per ring step
            comp = 8192 * flop_tok / 1e12
            print(f"{n:5d} {gbit:5d} Gb {sent / 1e6:9.0f} MB {t:13.3f} {comp:21.1f} {t / (t + comp):10.1%}")


if __name__ == "__main__":
    main()

"""Data parallelism over MPI (issue 9), on a tiny model and tiny shards, 2 ranks of 1 thread.

1. `mpirun -np 2` over 20 steps against one process with the same global batch (grad_accum 2):
   the step-1 loss is bit-identical (same sequences, same forward; with data.pose_len too, the
   same skip-wise positions); later losses and the final weights agree within 1e-5 (the one
   process accumulates the second micro-batch's gradient into the first inside sgemm, the two
   ranks add two finished gradients: a different rounding order).
2. The checkpoint records the world size; grad_accum not divisible by the ranks is refused.
3. A rank killed with SIGKILL ends the job within seconds with the rank named; the same command
   resumes from the last checkpoint and ends bit-identical to an uninterrupted 2-rank run.
   SIGUSR1 to mpirun stops every rank after the same step, saved; the printed command resumes it.
4. A 2-rank checkpoint resumes in one process (the stream is defined by the global batch).
5. The build without MPI refuses to run under mpirun instead of training twice.

usage: test_mpi.py BUILD_DIR MPI_BUILD_DIR
"""
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time

import h5py
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import test_data  # noqa: E402  (dataset helpers)

results = {"passed": 0, "failed": 0}
TMP = None
MPIRUN = ["mpirun", "--allow-run-as-root", "--oversubscribe", "--mca", "btl", "self,vader,tcp",
          "--mca", "btl_tcp_if_include", "lo", "--mca", "oob_tcp_if_include", "lo", "--bind-to", "none"]
ENV = dict(os.environ, OMPI_MCA_rmaps_base_oversubscribe="1")

CONFIG = """[model]
preset = tiny
vocab_size = 258
hidden_size = 64
num_hidden_layers = 2
num_attention_heads = 4
num_key_value_heads = 2
intermediate_size = 128
init_std = 0.05
[data]
dir = {data}
mix = books:0.5 code:0.3 passkey:0.2
seq_len = 256
[optim]
lr = 3e-3
warmup_steps = 3
schedule = cosine
[train]
steps = {steps}
grad_accum = 2
micro_batch = 2
out_dir = {out}
save_every = 5
eval_every = 0
threads = 1
"""


def report(ok, name, detail=""):
    print(("PASS " if ok else "FAIL ") + name + (": " + detail if detail else ""), flush=True)
    results["passed" if ok else "failed"] += 1


def config(name, data, steps=20):
    out = os.path.join(TMP, name)
    p = os.path.join(TMP, name + ".ini")
    with open(p, "w") as f:
        f.write(CONFIG.format(data=data, out=out, steps=steps))
    return p, out


def train(ropex, cfg, ranks=1, *extra):
    cmd = ([*MPIRUN, "-np", str(ranks)] if ranks > 1 else []) + [ropex, "train", cfg, *extra]
    return subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=300)


def losses(out):
    with open(os.path.join(out, "metrics.jsonl")) as f:
        return {j["step"]: j["loss"] for j in map(json.loads, f) if "loss" in j}


def weights(path):
    with h5py.File(path, "r") as f:
        return {k: f["model"][k][()] for k in f["model"]}


def max_diff(a, b):
    return max(float(np.abs(a[k] - b[k]).max()) for k in a)


def main():
    global TMP
    build, mpi_build = sys.argv[1], sys.argv[2]
    one, par = os.path.join(build, "ropex"), os.path.join(mpi_build, "ropex")
    with tempfile.TemporaryDirectory() as tmp:
        TMP = test_data.TMP = tmp
        test_data.BUILD = build
        data = test_data.make_dataset(os.path.join(ROOT, "data", "byte-tokenizer.json"))

        v = subprocess.run([par, "version"], capture_output=True, text=True).stdout
        report("MPI: Open MPI" in v and "MPI: no" in subprocess.run([one, "version"], capture_output=True, text=True).stdout,
               "ropex version says which build it is", v.strip())

        # 1. two ranks == one process with the same global batch
        c1, o1 = config("one", data)
        c2, o2 = config("two", data)
        r1, r2 = train(one, c1), train(par, c2, 2)
        if r1.returncode or r2.returncode:
            report(False, "2 ranks vs 1 process", (r1.stderr + r2.stderr).strip()[-400:])
            return finish()
        l1, l2 = losses(o1), losses(o2)
        w1, w2 = weights(os.path.join(o1, "final.h5")), weights(os.path.join(o2, "final.h5"))
        dl = max(abs(l1[s] - l2[s]) / abs(l1[s]) for s in l1)
        dw = max_diff(w1, w2)
        report(l1[1] == l2[1], "step 1: the 2-rank loss is bit-identical to one process's", f"{l1[1]!r} vs {l2[1]!r}")
        report(len(l1) == len(l2) == 20 and dl <= 1e-5 and dw <= 1e-5,
               "mpirun -np 2 (1 thread each) == 1 process with grad_accum 2 over 20 steps, within 1e-5",
               f"max relative loss diff {dl:.2e}, max |weight diff| {dw:.2e}")
        with open(os.path.join(o2, "metrics.jsonl")) as f:
            steps = [j for j in map(json.loads, f) if "loss" in j]
        ok = all(j.get("ranks") == 2 and 0 <= j.get("allreduce_s", -1) < j["step_s"] and
                 0 <= j.get("rank_wait_s", -1) < j["step_s"] for j in steps)
        report(ok and len(steps) == 20 and "allreduce" in r2.stdout and "rank wait" in r2.stdout,
               "each 2-rank step reports its all-reduce time and its wait for the other rank apart",
               f"median all-reduce {sorted(j['allreduce_s'] for j in steps)[10] * 1e3:.2f} ms, "
               f"rank wait {sorted(j['rank_wait_s'] for j in steps)[10] * 1e3:.2f} ms" if ok and steps else "missing")
        # skip-wise positions (data.pose_len) are drawn per global micro-batch row: the ranks draw
        # what one process draws, so step 1 stays bit-identical (and differs from step 1 without them)
        pose = ("--set", "data.pose_len=1024", "--set", "train.steps=1")
        r1 = train(one, c1, 1, "--fresh", *pose, "--set", "train.out_dir=" + os.path.join(TMP, "pose1"))
        r2 = train(par, c2, 2, "--fresh", *pose, "--set", "train.out_dir=" + os.path.join(TMP, "pose2"))
        if r1.returncode or r2.returncode:
            report(False, "data.pose_len: 2 ranks vs 1 process", (r1.stderr + r2.stderr).strip()[-400:])
        else:
            p1, p2 = losses(os.path.join(TMP, "pose1")), losses(os.path.join(TMP, "pose2"))
            report(p1[1] == p2[1] and p1[1] != l1[1], "data.pose_len: the 2-rank step-1 loss is bit-identical to one process's",
                   f"{p1[1]!r} vs {p2[1]!r} (without PoSE {l1[1]!r})")
        r = subprocess.run([*MPIRUN, "-np", "2", par, "train", c2, "--fresh", "--set", "train.steps=1", "--set",
                            "train.out_dir=" + os.path.join(TMP, "ws")], capture_output=True, text=True, env=ENV)
        with h5py.File(os.path.join(TMP, "ws", "final.h5"), "r") as f:
            final_has_state = "state" in f
        with h5py.File(os.path.join(o2, "step-00000020.h5"), "r") as f:
            ws = int(f["state"].attrs["world_size"])
        report(ws == 2 and not final_has_state and r.returncode == 0, "the checkpoint records the world size", f"world_size {ws}")
        r = train(par, c2, 2, "--set", "train.grad_accum=3", "--fresh")
        report(r.returncode != 0 and "train.grad_accum = 3 is not a multiple of the 2 ranks" in r.stderr,
               "grad_accum not divisible by the ranks is refused, naming the key",
               next((l for l in r.stderr.splitlines() if "grad_accum" in l), r.stderr[-200:]).strip()[:160])

        # 3. kill one rank mid-run: the job ends within seconds naming it; rerun resumes exactly
        c3, o3 = config("killed", data, steps=400)
        cs, os_ = config("straight", data, steps=400)
        rs = train(par, cs, 2)
        p = subprocess.Popen([*MPIRUN, "-np", "2", par, "train", c3], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, env=ENV)
        for line in p.stdout:   # past the first checkpoint
            if line.startswith("step 12/"):
                break
        ranks = subprocess.run(["pgrep", "-f", f"^{par} train {c3}"], capture_output=True, text=True).stdout.split()
        victim = int(sorted(map(int, ranks))[-1]) if ranks else None
        t0 = time.time()
        if victim:
            os.kill(victim, signal.SIGKILL)
        try:
            out = p.communicate(timeout=30)[0]
        except subprocess.TimeoutExpired:
            p.kill()
            out = p.communicate()[0]
        dt = time.time() - t0
        named = "process rank 1" in out or "process rank 0" in out
        report(victim is not None and dt < 10 and p.returncode != 0 and named,
               "a rank killed with SIGKILL: the job stops within seconds, naming the rank",
               f"{dt:.1f} s, exit {p.returncode}: " + next((l.strip() for l in out.splitlines() if "rank" in l and "noticed" in l), "?"))
        r = train(par, c3, 2)
        resumed = "resuming" in r.stdout
        same = rs.returncode == 0 and r.returncode == 0 and max_diff(weights(os.path.join(os_, "final.h5")),
                                                                     weights(os.path.join(o3, "final.h5"))) == 0
        report(resumed and same, "rerunning resumes from the last checkpoint; final weights bit-identical to an uninterrupted run",
               next((l for l in r.stdout.splitlines() if l.startswith("resuming")), r.stderr.strip()[-200:]))

        # 3b. SIGUSR1 to mpirun, which Open MPI forwards to every rank at once: the ranks agree on
        # the step, save, rank 0 prints the command that resumes (mpirun and the rank count
        # included), and that command ends bit-identical to the uninterrupted run. (SIGTERM or
        # Ctrl-C to mpirun is its abort: SIGCONT, 1 s, SIGTERM, 1 s, SIGKILL, and while it waits it
        # relays no output, so a rank that prints blocks: a graceful stop only by luck. README.)
        c5, o5 = config("stopped", data, steps=400)
        p = subprocess.Popen([*MPIRUN, "-np", "2", par, "train", c5, "--fresh"], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, env=ENV)
        text = ""
        for line in p.stdout:
            text += line
            if line.startswith("step 5/"):
                p.send_signal(signal.SIGUSR1)
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
        lines = text.splitlines()
        at = [i for i, l in enumerate(lines) if l.endswith("To continue, run:")]
        again = shlex.split(lines[at[0] + 1]) if at and at[0] + 1 < len(lines) else []
        stopped_at = int(lines[at[0]].split(" after step ")[1].split(" ")[0]) if at else -1
        latest = open(os.path.join(o5, "latest")).read().strip() if os.path.exists(os.path.join(o5, "latest")) else ""
        report(len(at) == 1 and p.returncode == 130 and latest == f"step-{stopped_at:08d}.h5" and
               again == ["mpirun", "-np", "2", "ropex", "train", c5],
               "SIGUSR1 to mpirun: the ranks stop after one step, save it, exit 130, and the resume command names mpirun -np 2",
               (f"stopped after step {stopped_at}, latest {latest}, exit {p.returncode}: " +
                (lines[at[0] + 1].strip() if at and at[0] + 1 < len(lines) else text.strip()[-200:]))[:200])
        r = train(par, c5, 2)
        same = rs.returncode == 0 and r.returncode == 0 and max_diff(weights(os.path.join(os_, "final.h5")),
                                                                     weights(os.path.join(o5, "final.h5"))) == 0
        report("resuming" in r.stdout and same, "that command resumes and ends bit-identical to the uninterrupted run",
               next((l for l in r.stdout.splitlines() if l.startswith("resuming")), r.stderr.strip()[-200:]))

        # 4. a 2-rank checkpoint continues in one process
        c4, o4 = config("switch", data)
        train(par, c4, 2)   # then roll it back to its step-10 checkpoint, as if it had stopped there
        with open(os.path.join(o4, "latest"), "w") as f:
            f.write("step-00000010.h5\n")
        for n in ("step-00000015.h5", "step-00000020.h5", "final.h5"):
            os.remove(os.path.join(o4, n))
        r = train(one, c4)
        l4 = losses(o4)
        ok = r.returncode == 0 and "resuming" in r.stdout and "(saved by 2 ranks, now 1)" in r.stdout
        d4 = max(abs(l4[s] - l2[s]) / abs(l2[s]) for s in l4) if ok else float("inf")
        report(ok and d4 <= 1e-5, "a 2-rank run resumes in 1 process with the same global batches",
               f"max relative loss diff against the 2-rank run {d4:.2e}")

        # 5. the build without MPI under mpirun
        r = subprocess.run([*MPIRUN, "-np", "2", one, "train", c1, "--fresh"], capture_output=True, text=True, env=ENV)
        report(r.returncode != 0 and "built without MPI" in r.stderr, "the build without MPI refuses to run under mpirun",
               next((l for l in r.stderr.splitlines() if "built without MPI" in l), r.stderr[-200:]).strip()[:160])
    return finish()


def finish():
    print(f"{results['passed']} passed, {results['failed']} failed")
    return 1 if results["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())

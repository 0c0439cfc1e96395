"""`ropex train` end to end on a tiny model and tiny shards.

1. The headline test: 40 steps straight; then the same run SIGKILLed at several moments (right
   after a step that saves a checkpoint, so during the save, and at random times) and rerun with
   the same command until it finishes: final weights and every step's loss bit-identical.
2. Loss decreases; metrics.jsonl is valid JSON per line; the final checkpoint exports; steps
   21-30 of the run recomputed by the PyTorch reference from the step-20 checkpoint agree.
3. SIGINT finishes the step, saves, exits 130 and says how to resume; a resume with a changed
   seed is refused naming the key; --fresh starts over.
4. optim.decay_steps: a run that stops part way down a longer schedule equals that run's start.
5. Sequence-length warmup: rows of the run's sequences, or (data.short_mix) a stream of its own,
   resumed exactly on both sides of the switch; its rows with skip-wise positions (data.pose_len),
   resumed exactly.
6. Config errors, table-driven, each with its exact message.

usage: test_train.py BUILD_DIR
"""
import json
import os
import random
import shlex
import shutil
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
BUILD = TMP = None

CONFIG = """[model]
preset = tiny
vocab_size = 640
hidden_size = 96
num_hidden_layers = 2
num_attention_heads = 4
num_key_value_heads = 2
intermediate_size = 192
init_std = 0.05
[rope]
scaling = linear
factor = 2
original_max_len = 128
max_len = 256
[data]
dir = {data}
mix = books:0.5 code:0.3 passkey:0.2
seq_len = 256
[optim]
lr = 3e-3
warmup_steps = 5
schedule = cosine
[train]
steps = 40
grad_accum = 2
micro_batch = 2
out_dir = {out}
save_every = 10
eval_every = 20
threads = 2
"""


def report(ok, name, detail=""):
    print(("PASS " if ok else "FAIL ") + name + (": " + detail if detail else ""), flush=True)
    results["passed" if ok else "failed"] += 1


def ropex(*args):
    return subprocess.run([os.path.join(BUILD, "ropex"), *args], capture_output=True, text=True)


def write_config(name, data, **over):
    out = os.path.join(TMP, name)
    text = CONFIG.format(data=data, out=out)
    p = os.path.join(TMP, name + ".ini")
    with open(p, "w") as f:
        f.write(text)
    return p, out


def losses(out):
    steps = {}
    with open(os.path.join(out, "metrics.jsonl")) as f:
        for line in f:
            j = json.loads(line)
            if "loss" in j:
                steps[j["step"]] = j["loss"]
    return steps


def weights(path):
    with h5py.File(path, "r") as f:
        return {k: f["model"][k][()] for k in f["model"]}


def run_killed(cfg, kill_at_save=False, kill_at=None):
    """Starts ropex train; kills it with SIGKILL right after it reports a step that saves a
    checkpoint (so during the save), or after kill_at seconds. True if it was killed."""
    p = subprocess.Popen([os.path.join(BUILD, "ropex"), "train", cfg], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True)
    t0 = time.time()
    if kill_at_save:
        for line in p.stdout:
            if line.startswith("step ") and int(line.split()[1].split("/")[0]) % 10 == 0:
                p.send_signal(signal.SIGKILL)
                break
    else:
        while p.poll() is None and time.time() - t0 < kill_at:
            time.sleep(0.005)
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
    p.wait()
    return p.returncode == -signal.SIGKILL


def test_headline(data):
    cfg, out = write_config("straight", data)
    t0 = time.time()
    r = ropex("train", cfg)
    dur = time.time() - t0
    if r.returncode != 0:
        report(False, "straight 40-step run", r.stderr.strip()[-300:])
        return
    straight_losses, straight_w = losses(out), weights(os.path.join(out, "final.h5"))
    rng = random.Random(int(os.environ.get("ROPEX_TEST_SEED", "3")))
    kills = 0
    cfg2, out2 = write_config("killed", data)
    # alternate: during a save, then at a random moment early in the resumed run
    plan = [(True, None), (False, rng.uniform(0.1, dur / 5))] * 3
    for at_save, at in plan:
        kills += run_killed(cfg2, kill_at_save=at_save, kill_at=at)
    with open(os.path.join(out2, "metrics.jsonl"), "a") as f:
        f.write('{"ste')   # a line cut short by a crash: the resume must drop it, not run on from it
    r = ropex("train", cfg2)
    rounds = 0
    while r.returncode == 0 and "done:" not in r.stdout and rounds < 5:
        r = ropex("train", cfg2)
        rounds += 1
    if r.returncode != 0:
        report(False, "killed run resumes", r.stderr.strip()[-300:])
        return
    bad = []
    with open(os.path.join(out2, "metrics.jsonl")) as f:
        for line in f:
            try:
                json.loads(line)
            except ValueError:
                bad.append(line.strip()[:80])
    report(not bad, "a resumed run drops a metrics.jsonl line cut short by a crash", f"bad lines: {bad}" if bad else "")
    if bad:
        return
    got_losses, got_w = losses(out2), weights(os.path.join(out2, "final.h5"))
    same_w = got_w.keys() == straight_w.keys() and all(np.array_equal(got_w[k], straight_w[k]) for k in got_w)
    same_l = got_losses == straight_losses and len(got_losses) == 40
    report(same_w and same_l and kills >= 3,
           "SIGKILL at several moments (during saves, and at random), rerun: final weights and all 40 "
           "losses bit-identical to a straight run",
           f"{kills} kills; straight run {dur:.1f} s; losses {'identical' if same_l else 'DIFFER'}, weights "
           f"{'identical' if same_w else 'DIFFER'}")
    first, last = np.mean([straight_losses[s] for s in range(1, 6)]), np.mean([straight_losses[s] for s in range(36, 41)])
    report(last < first - 0.3, "loss decreases", f"mean of steps 1-5 {first:.3f}, of steps 36-40 {last:.3f}")
    ok = True
    with open(os.path.join(out, "metrics.jsonl")) as f:
        lines = f.readlines()
    for line in lines:
        try:
            json.loads(line)
        except ValueError:
            ok = False
    evals = [json.loads(l) for l in lines if "eval_loss" in l]
    report(ok and len(evals) == 2 and len(lines) == 42, "metrics.jsonl: one valid JSON object per line, steps and evals",
           f"{len(lines)} lines, evals at {[e['step'] for e in evals]}")
    exported = os.path.join(TMP, "exports", "run", "final")   # parents created as with mkdir -p
    r = ropex("export", os.path.join(out, "final.h5"), "--to", "hf", exported)
    cfgj = json.load(open(os.path.join(exported, "config.json"))) if r.returncode == 0 else {}
    report(r.returncode == 0 and cfgj.get("max_position_embeddings") == 256 and
           cfgj.get("rope_scaling", {}).get("rope_type") == "linear",
           "the final checkpoint exports to a new nested Hugging Face directory with the run's RoPE",
           r.stderr.strip()[:200])
    # a model trained from scratch names its data tokenizer's BOS and EOS ids for Hugging Face:
    # in generation_config.json (generate stops at its eos_token_id) and in config.json
    man = json.load(open(os.path.join(data, "manifest.json")))
    gen_path = os.path.join(exported, "generation_config.json")
    genj = json.load(open(gen_path)) if os.path.exists(gen_path) else {}
    want = {"bos_token_id": man["bos_id"], "eos_token_id": man["eos_id"]}
    got = ({k: genj.get(k) for k in want}, {k: cfgj.get(k) for k in want})
    report(got == (want, want), "the exported from-scratch model names its tokenizer's BOS and EOS ids "
           "(generation_config.json and config.json)", f"{got}, want {want}")


def test_trajectory(data):
    """The training loop against PyTorch: from the straight run's step-20 checkpoint (weights and
    AdamW moments), the float64 reference trains steps 21-30 on the same sequences (stream_dump
    with the run's seed and mix), with the same accumulation (2 x 2), document masks, linear RoPE,
    clipping at 1.0 and AdamW (lr per step from metrics.jsonl: the schedule has its own test).
    Every loss within LOSS_RTOL of ropex's and the step-30 weights within W_ATOL: ropex is
    float32, so the two drift apart by rounding only (measured on a copy task: losses equal to
    6 digits, weights within 3e-7 after 10 steps); a wrong gradient, a missed zeroing or a
    mis-scaled accumulation moves them by orders of magnitude more."""
    import torch
    import llama_ref
    LOSS_RTOL, W_ATOL = 1e-5, 1e-5
    out = os.path.join(TMP, "straight")
    ck = {s: os.path.join(out, f"step-{s:08d}.h5") for s in (20, 30)}
    if not all(os.path.exists(c) for c in ck.values()):
        report(False, "training steps 21-30 against PyTorch", "the straight run's step-20/30 checkpoints are missing")
        return
    T, B, A = 256, 2, 2
    (_, toks, docs), err = test_data.dump(data, T, 1, 30 * A * B, "--mix", "books:0.5,code:0.3,passkey:0.2")
    with h5py.File(ck[20], "r") as f:
        p = {k: torch.tensor(f["model"][k][()], dtype=torch.float64, requires_grad=True) for k in f["model"]}
        m = {k: torch.tensor(f["optim/m"][k][()], dtype=torch.float64) for k in f["model"]}
        v = {k: torch.tensor(f["optim/v"][k][()], dtype=torch.float64) for k in f["model"]}
    cfg = dict(vocab=640, dim=96, layers=2, heads=4, kv_heads=2, head_dim=24, hidden=192, tied=True, eps=1e-5,
               theta=10000.0)
    inv_freq = llama_ref.default_inv_freq(24, 10000.0) / 2   # linear x2
    with open(os.path.join(out, "metrics.jsonl")) as f:
        steps = {j["step"]: j for j in map(json.loads, f) if "loss" in j}
    with open(os.path.join(data, "manifest.json")) as f:
        bos = json.load(f).get("bos_id")
    bos = -2 if bos is None else bos
    worst_l = 0.0
    for step in range(21, 31):
        for q in p.values():
            q.grad = None
        total = 0.0
        for a in range(A):
            i = ((step - 1) * A + a) * B
            t, d = torch.tensor(toks[i:i + B], dtype=torch.long), torch.tensor(docs[i:i + B])
            tgt = t[:, 1:].clone()   # a target in the next document is ignored unless it is its BOS
            tgt[(d[:, 1:] != d[:, :-1]) & (tgt != bos)] = -1
            _, loss, _ = llama_ref.forward(p, cfg, t[:, :-1], tgt, inv_freq=inv_freq, docs=d[:, :-1])
            (loss / A).backward()
            total += loss.item() / A
        worst_l = max(worst_l, abs(total - steps[step]["loss"]) / abs(total))
        torch.nn.utils.clip_grad_norm_(list(p.values()), 1.0)
        lr, b1, b2, eps = steps[step]["lr"], 0.9, 0.95, 1e-8
        with torch.no_grad():
            for k, q in p.items():
                m[k].mul_(b1).add_((1 - b1) * q.grad)
                v[k].mul_(b2).add_((1 - b2) * q.grad * q.grad)
                q -= lr / (1 - b1 ** step) * m[k] / (v[k].sqrt() / (1 - b2 ** step) ** 0.5 + eps)
    got = weights(ck[30])
    worst_w = max(float(np.abs(got[k] - p[k].detach().numpy()).max()) for k in p)
    report(worst_l <= LOSS_RTOL and worst_w <= W_ATOL,
           "training steps 21-30 (accumulation, document masks, clipping, AdamW) against PyTorch from the same checkpoint",
           f"worst loss rel diff {worst_l:.1e} (tol {LOSS_RTOL:g}), worst weight diff {worst_w:.1e} (tol {W_ATOL:g})")


TWO_LAYER = """[model]
preset = tiny
vocab_size = 258
hidden_size = 128
num_hidden_layers = 2
num_attention_heads = 4
num_key_value_heads = 4
intermediate_size = 512
[rope]
rope_type = default
max_position_embeddings = 2048
"""   # the small byte-level model of the two in-context tests below

INDUCTION = TWO_LAYER + """[data]
dir = {data}
seq_len = 256
doc_mask = true
[optim]
lr = 1e-3
warmup_steps = 50
weight_decay = 0.1
[train]
steps = {steps}
micro_batch = 16
out_dir = {out}
save_every = 1000
eval_every = 1000
seed = 1
threads = 2
"""

RECALL = TWO_LAYER + """[data]
dir = {data}
seq_len = 512
doc_mask = true
[optim]
lr = 2e-3
warmup_steps = 50
warmup_start = 0.01
schedule = constant
betas = 0.9 0.95
weight_decay = 0.1
grad_clip = 1.0
[train]
steps = {steps}
micro_batch = 4
out_dir = {out}
save_every = 1000
eval_every = 1000
seed = 1
threads = 2
"""


def train_byte_model(name, src, config):
    """Prepares the JSON lines src with the byte tokenizer, trains config (300 steps) on them and
    returns (a function giving log p(ids[i] | ids[:i]) for each id of a list from the final
    checkpoint, None) or (None, the error)."""
    data = os.path.join(TMP, name + "data")
    tok = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "data", "byte-tokenizer.json")
    r = ropex("data", "prepare", "--tokenizer", tok, "--domain", name, src, "--out", data, "--no-dedup")
    if r.returncode != 0:
        return None, r.stderr.strip()[:200]
    out, cfg = os.path.join(TMP, name + "run"), os.path.join(TMP, name + ".ini")
    with open(cfg, "w") as f:
        f.write(config.format(data=data, out=out, steps=300))
    train = ropex("train", cfg)

    def logprobs(ids):
        p = os.path.join(TMP, name + "probe.json")
        with open(p, "w") as f:
            json.dump(ids, f)
        e = ropex("eval", os.path.join(out, "final.h5"), "--tokens", p)
        if e.returncode != 0:
            raise RuntimeError((train.stderr + e.stderr).strip()[-300:])
        return json.loads(e.stdout)   # lp[i] = log p(ids[i] | ids[:i]); lp[0] is null
    return logprobs, None


def test_induction():
    """Learning to copy, end to end: documents "S|S" (S 8..26 distinct random letters, one per
    document, byte tokens, document masks) whose second half only copying predicts (an
    induction head). A 2-layer model trained by ropex must get the second half's mean loss
    under 1.0 nats by step 300 (without copying it stays near 3, ln 26 = 3.3; measured: 0.14 at
    step 300; ignoring the BOS target after each EOS kept it at 3.2 for 600 steps)."""
    name = "a 2-layer model learns to copy (induction) in 300 steps"
    rng = random.Random(7)
    src = os.path.join(TMP, "copy.jsonl")
    with open(src, "w") as f:
        for _ in range(30000):
            s = "".join(rng.sample("abcdefghijklmnopqrstuvwxyz", rng.randint(8, 26)))
            f.write(json.dumps({"text": s + "|" + s}) + "\n")
    logprobs, err = train_byte_model("copy", src, INDUCTION)
    probe = [rng.sample("abcdefghijklmnopqrstuvwxyz", 20) for _ in range(4)]
    try:
        scores = []
        for s in probe if logprobs else []:
            lp = logprobs([256] + [ord(c) for c in s] + [ord("|")] + [ord(c) for c in s])
            scores.append(-sum(lp[22:]) / len(lp[22:]))   # the second half
    except RuntimeError as e:
        err = str(e)
    if err:
        report(False, name, err)
        return
    loss = sum(scores) / len(scores)
    report(loss < 1.0, name, f"second-half loss {loss:.3f} nats/token (copying: < 1.0; none: about 3)")


def test_recall():
    """Content-based induction, end to end: associative recall lists of two pairs ("k7 Q2" then
    the pairs again in a new order; `ropex data synth recall --pairs 2..2`), where only matching
    the key to its earlier occurrence gives the digit after it (no position does: the order
    changes). A 2-layer model trained by ropex, 2,048 packed tokens a step, must give the asked
    digits a mean log-probability above -1.2 by step 300 on fresh lists (none: ln 1/10 = -2.30;
    measured: -0.55 at step 300; mixed with longer lists the same model stays at -2.30)."""
    name = "a 2-layer model learns associative recall (content induction) in 300 steps"
    src, probe = os.path.join(TMP, "recall.jsonl"), os.path.join(TMP, "recallprobe.jsonl")
    for docs, seed, out in (("40000", "21", src), ("40", "999", probe)):
        ropex("data", "synth", "recall", "--docs", docs, "--pairs", "2..2", "--min-chars", "1", "--max-chars", "1",
              "--seed", seed, "--out", out)
    logprobs, err = train_byte_model("recall", src, RECALL)
    vals = []
    try:
        for line in open(probe) if logprobs else []:
            t = json.loads(line)["text"].encode()
            lp = logprobs([256] + list(t))   # ids[i] = t[i - 1]
            q = t.index(b"\n")
            vals += [lp[i + 1] for i in range(q + 2, len(t), 3)]   # after "\n": key, digit, space, ...
    except RuntimeError as e:
        err = str(e)
    if err:
        report(False, name, err)
        return
    mean = sum(vals) / len(vals)
    report(len(vals) == 80 and mean > -1.2, name, f"asked digits: mean log p {mean:.3f} over {len(vals)} (none: -2.30)")


def test_nan_guard(data, final):
    """A checkpoint with a NaN weight: every step's loss is non-finite, each update is skipped and
    logged, and max_bad_steps in a row stop the run with an error."""
    bad = os.path.join(TMP, "nan.h5")
    subprocess.run(["cp", final, bad], check=True)
    with h5py.File(bad, "r+") as f:
        w = f["model/model.norm.weight"]
        x = w[()]
        x[3] = np.nan
        w[...] = x
    text = CONFIG.format(data=data, out=os.path.join(TMP, "nanrun"))
    head, rest = text.split("[rope]", 1)
    text = "[model]\ninit = " + bad + "\n[rope]" + rest + "max_bad_steps = 3\n"
    p = os.path.join(TMP, "nan.ini")
    with open(p, "w") as f:
        f.write(text)
    r = ropex("train", p)
    skipped = r.stdout.count("NON-FINITE: update skipped")
    report(r.returncode == 2 and skipped == 3 and "3 non-finite steps in a row" in r.stderr,
           "numerical guard: non-finite steps skip the update, are logged, and 3 in a row stop the run",
           f"{skipped} skipped; {r.stderr.strip()[:160]}")


def test_signals(data):
    cfg, out = write_config("sigint", data)
    odd = os.path.join(TMP, "sig int's.ini")   # a name the resume command must shell-quote
    shutil.copy(cfg, odd)
    p = subprocess.Popen([os.path.join(BUILD, "ropex"), "train", odd, "--fresh", "--set", "train.keep_last=4"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    text = ""
    for line in p.stdout:
        text += line
        if line.startswith("step 3/"):
            p.send_signal(signal.SIGINT)
    p.wait()
    saved = os.path.exists(os.path.join(out, "latest"))
    # the resume command repeats the run's arguments but --fresh (which would delete the run),
    # quoted so that a shell reads them back as they were
    lines = text.splitlines()
    at = [i for i, l in enumerate(lines) if l.endswith("To continue, run:")]
    cont = lines[at[0] + 1] if at and at[0] + 1 < len(lines) else ""
    again = shlex.split(cont) if cont.startswith("  ropex train ") else []
    report(p.returncode == 130 and again == ["ropex", "train", odd, "--set", "train.keep_last=4"] and saved,
           "SIGINT: finish the step, save, print the command that resumes, exit 130",
           text.strip().splitlines()[-1][:160])
    r = ropex("train", cfg, "--set", "train.seed=2")
    report(r.returncode == 2 and "train.seed: was '1', now '2'" in r.stderr and "--force" in r.stderr,
           "resume with a changed seed is refused, naming the key", r.stderr.strip()[:200])
    r = ropex("train", cfg, "--set", "train.steps=5")
    report(r.returncode == 0 and "resuming" in r.stdout and "step 5/5" in r.stdout,
           "changing train.steps is allowed on resume", r.stderr.strip()[:200])
    r = ropex("train", cfg, "--set", "train.steps=3", "--fresh")
    report(r.returncode == 0 and "--fresh: removed" in r.stdout and "step 1/3" in r.stdout, "--fresh starts over",
           r.stderr.strip()[:200])


def train_runs(prefix, texts):
    """Writes each (name, config text with {out}) and trains it afresh: {name: (out_dir, stdout, ini)},
    or None after reporting the first failure."""
    runs = {}
    for name, text in texts:
        out = os.path.join(TMP, f"{prefix}-{name}")
        p = os.path.join(TMP, f"{prefix}-{name}.ini")
        with open(p, "w") as f:
            f.write(text.replace("{out}", out))
        r = ropex("train", p, "--fresh")
        if r.returncode != 0:
            report(False, prefix, f"{name}: {r.stderr.strip()[-300:]}")
            return None
        runs[name] = (out, r.stdout, p)
    return runs


def test_short_sequences(data):
    """Sequence-length warmup (data.short_seq_len, data.short_steps): a 256-token run whose first
    3 steps cut each sequence into 4 rows of 64 equals, on those steps, a run of 4 x 64-token
    sequences (one domain, so the stream's 64-token sequences are the same tokens; the stream
    packs a sequence's last target as the next one's first token): losses and step-3 weights
    bit-identical; from step 4 on it trains the whole 256 tokens, so its loss there differs."""
    one = CONFIG.format(data=data, out="{out}").replace("mix = books:0.5 code:0.3 passkey:0.2", "mix = books:1.0") \
        .replace("steps = 40", "steps = 5").replace("grad_accum = 2", "grad_accum = 1").replace("save_every = 10", "save_every = 3")
    runs = train_runs("short", (("warm", one.replace("micro_batch = 2", "micro_batch = 1").replace("seq_len = 256", "seq_len = 256\nshort_seq_len = 64\nshort_steps = 3")),
                                ("rows", one.replace("micro_batch = 2", "micro_batch = 4").replace("seq_len = 256", "seq_len = 64"))))
    if runs is None:
        return
    (ow, say, _), (orr, _, _) = runs["warm"], runs["rows"]
    lw, ww = losses(ow), weights(os.path.join(ow, "step-00000003.h5"))
    lr, wr = losses(orr), weights(os.path.join(orr, "step-00000003.h5"))
    same_w = ww.keys() == wr.keys() and all(np.array_equal(ww[k], wr[k]) for k in ww)
    same_l = all(lw[s] == lr[s] for s in (1, 2, 3))
    report(same_l and same_w and lw[4] != lr[4] and "steps 1-3 train each sequence as 4 rows of 64 tokens" in say,
           "sequence-length warmup: steps 1-3 bit-identical to 4 x 64-token rows of the same data, step 4 on 256",
           f"losses 1-3 {'identical' if same_l else 'DIFFER'}, step-3 weights {'identical' if same_w else 'DIFFER'}, "
           f"step 4 {lw[4]:.6f} (rows: {lr[4]:.6f})")


def test_decay_steps(data):
    """optim.decay_steps: a 6-step run whose cosine spans 12 steps is the first 6 steps of the
    12-step run (losses, learning rates and step-6 weights bit-identical); without it the 6-step
    run's own cosine gives other learning rates from step 6 (after its 5 warmup steps)."""
    one = CONFIG.format(data=data, out="{out}").replace("save_every = 10", "save_every = 6").replace("eval_every = 20", "eval_every = 0")
    runs = train_runs("decay", (("part", one.replace("steps = 40", "steps = 6").replace("schedule = cosine", "schedule = cosine\ndecay_steps = 12")),
                                ("long", one.replace("steps = 40", "steps = 12")),
                                ("own", one.replace("steps = 40", "steps = 6"))))
    if runs is None:
        return
    def lrs(out):
        with open(os.path.join(out, "metrics.jsonl")) as f:
            return {j["step"]: j["lr"] for j in map(json.loads, f) if "loss" in j}
    (op, say, _), (ol, _, _), (oo, _, _) = runs["part"], runs["long"], runs["own"]
    wp, wl = weights(os.path.join(op, "final.h5")), weights(os.path.join(ol, "step-00000006.h5"))
    same_w = wp.keys() == wl.keys() and all(np.array_equal(wp[k], wl[k]) for k in wp)
    lp, ll = losses(op), losses(ol)
    rp, rl, ro = lrs(op), lrs(ol), lrs(oo)
    same = all(lp[s] == ll[s] and rp[s] == rl[s] for s in range(1, 7))
    report(same and same_w and ro[6] < rp[6] and "schedule: cosine over 12 steps (optim.decay_steps)" in say,
           "optim.decay_steps: a 6-step run on a 12-step cosine is bit-identical to the 12-step run's first 6 steps",
           f"losses and lr 1-6 {'identical' if same else 'DIFFER'}, step-6 weights {'identical' if same_w else 'DIFFER'}, "
           f"step-6 lr {rp[6]:.4e} (its own 6-step cosine: {ro[6]:.4e})")


def test_short_mix(data):
    """data.short_mix: the warmup's steps read a stream of their own (short_seq_len-token sequences
    of that mix): steps 1-3 bit-identical to a run of 4 x 64-token sequences of that mix; the
    later steps read data.mix from its start; a run stopped before or after the switch and resumed
    ends bit-identical to the straight run (the checkpoint holds the cursor of the stream its next
    step reads)."""
    one = CONFIG.format(data=data, out="{out}").replace("mix = books:0.5 code:0.3 passkey:0.2", "mix = books:1.0") \
        .replace("steps = 40", "steps = 6").replace("grad_accum = 2", "grad_accum = 1") \
        .replace("save_every = 10", "save_every = 2\nkeep_last = 10")
    warm = one.replace("micro_batch = 2", "micro_batch = 1").replace(
        "seq_len = 256", "seq_len = 256\nshort_seq_len = 64\nshort_steps = 3\nshort_mix = code:0.6 passkey:0.4\n"
                         "whole_docs = passkey")
    rows = one.replace("micro_batch = 2", "micro_batch = 4").replace("seq_len = 256", "seq_len = 64\nwhole_docs = passkey") \
        .replace("mix = books:1.0", "mix = code:0.6 passkey:0.4")
    runs = train_runs("shortmix", (("warm", warm), ("rows", rows)))
    if runs is None:
        return
    (ow, say, pw), (orr, _, _) = runs["warm"], runs["rows"]
    lw, lr, fw = losses(ow), losses(orr), os.path.join(ow, "final.h5")
    same_l = all(lw[s] == lr[s] for s in (1, 2, 3))
    report(same_l and lw[4] != lr[4] and "steps 1-3 read 4 sequences of 64 tokens a micro-batch from their own stream (code 0.600, passkey 0.400)" in say,
           "data.short_mix: steps 1-3 bit-identical to 4 x 64-token sequences of that mix (with its whole_docs), step 4 on data.mix",
           f"losses 1-3 {'identical' if same_l else 'DIFFER'}, step 4 {lw[4]:.6f} (rows: {lr[4]:.6f})")
    straight = weights(fw)
    bad = []
    for at in (2, 4):   # the step-2 checkpoint holds the warmup stream's cursor, step 4 the main one's
        with open(os.path.join(ow, "latest"), "w") as f:
            f.write(f"step-{at:08d}.h5\n")
        os.remove(fw)
        r = ropex("train", pw)
        again = weights(fw) if os.path.exists(fw) else {}
        if r.returncode != 0 or not (again.keys() == straight.keys() and all(np.array_equal(again[k], straight[k]) for k in again)):
            bad.append(f"from step {at}: {r.stderr.strip()[-160:] or 'weights differ'}")
        elif losses(ow) != lw:
            bad.append(f"from step {at}: losses differ")
    report(not bad, "data.short_mix: resumed from step 2 (warmup stream) and from step 4 (main stream), bit-identical to the straight run",
           "; ".join(bad))


def test_pose(data):
    """data.pose_len (skip-wise positions, PoSE): the warmup's 64-token rows take positions that
    reach 256. Step 1 starts from the same weights and tokens as the run without it, so a loss
    that differs there shows the positions reach the model; the 256-token steps after the warmup
    keep 0..255. The positions are drawn from (seed, step, row), so a run resumed inside the
    warmup ends bit-identical to the straight run. With data.seq_len 64 and pose_len 256 every
    step's rows take them."""
    one = CONFIG.format(data=data, out="{out}").replace("mix = books:0.5 code:0.3 passkey:0.2", "mix = books:1.0") \
        .replace("steps = 40", "steps = 5").replace("grad_accum = 2", "grad_accum = 1").replace("micro_batch = 2", "micro_batch = 1") \
        .replace("save_every = 10", "save_every = 2\nkeep_last = 10")
    warm = one.replace("seq_len = 256", "seq_len = 256\nshort_seq_len = 64\nshort_steps = 3\nshort_mix = code:0.6 passkey:0.4")
    runs = train_runs("pose", (("plain", warm), ("pose", warm.replace("seq_len = 256", "seq_len = 256\npose_len = 256")),
                               ("every", one.replace("seq_len = 256", "seq_len = 64\npose_len = 256"))))
    if runs is None:
        return
    (op, _, _), (oq, say, pq), (_, say_every, _) = runs["plain"], runs["pose"], runs["every"]
    lp, lq = losses(op), losses(oq)
    report(lp[1] != lq[1] and "the warmup's rows (shorter than 256 tokens) take positions reaching it, each document cut" in say
           and "every row (shorter than 256 tokens) take positions reaching it" in say_every,
           "data.pose_len: the warmup's rows train with skip-wise positions (step 1 differs from the same run without)",
           f"step 1 {lq[1]:.6f} (without: {lp[1]:.6f})")
    fq = os.path.join(oq, "final.h5")
    straight = weights(fq)
    with open(os.path.join(oq, "latest"), "w") as f:
        f.write("step-00000002.h5\n")
    os.remove(fq)
    r = ropex("train", pq)
    again = weights(fq) if os.path.exists(fq) else {}
    same = r.returncode == 0 and again.keys() == straight.keys() and all(np.array_equal(again[k], straight[k]) for k in again)
    report(same and losses(oq) == lq, "data.pose_len: resumed inside the warmup (step 2), bit-identical to the straight run",
           r.stderr.strip()[-200:])


def test_config_errors(data):
    base = CONFIG.format(data=data, out=os.path.join(TMP, "errs"))
    cases = [
        ("unknown key", base.replace("steps = 40", "stepz = 40"), ":24: unknown key train.stepz (expected one of: steps"),
        ("unknown section", base + "[logging]\nlevel = 1\n", ":32: unknown section [logging] (expected [model], [rope], [data], [optim] or [train])"),
        ("wrong type", base.replace("lr = 3e-3", "lr = fast"), ":20: optim.lr = 'fast': expected a number in [0, 10]"),
        ("out of range", base.replace("grad_accum = 2", "grad_accum = 0"), ":25: train.grad_accum = '0': expected a whole number in 1..1048576"),
        ("bad enum", base.replace("schedule = cosine", "schedule = cosin"), ":22: optim.schedule = 'cosin': expected one of constant|cosine|linear"),
        ("bad pair", base.replace("warmup_steps = 5", "warmup_steps = 5\nbetas = 0.9"), ":22: optim.betas = '0.9': expected two numbers in [0, 1]"),
        ("missing required", base.replace("seq_len = 256\n", ""), ": data.seq_len is required"),
        ("dynamic rope refused", base.replace("scaling = linear", "scaling = dynamic"), "rope.rope_type = dynamic is an inference-time method"),
        ("bad mix", base.replace("books:0.5", "books=0.5"), "data.mix: 'books=0.5' is not name:weight"),
        ("unknown domain", base.replace("books:0.5", "novels:0.5"), "data.mix names domain 'novels'"),
        ("short rows do not divide", base.replace("seq_len = 256", "seq_len = 256\nshort_seq_len = 100\nshort_steps = 5"),
         ": data.short_seq_len = 100 must divide data.seq_len = 256 and be smaller (data.short_steps = 5)"),
        ("short rows without steps", base.replace("seq_len = 256", "seq_len = 256\nshort_seq_len = 64"),
         ": data.short_seq_len is set but data.short_steps is 0 (the steps that use it)"),
        ("short mix without steps", base.replace("seq_len = 256", "seq_len = 256\nshort_mix = code:1"),
         ": data.short_mix is set but data.short_steps is 0 (the steps that read it)"),
        ("short mix unknown domain", base.replace("seq_len = 256", "seq_len = 256\nshort_seq_len = 64\nshort_steps = 2\nshort_mix = novels:1"),
         "data.short_mix names domain 'novels', which"),
        ("pose_len shorter than the sequences", base.replace("seq_len = 256", "seq_len = 256\npose_len = 100"),
         ": data.pose_len = 100 must be 0 (off) or at least data.seq_len = 256"),
        ("whole_docs unknown domain", base.replace("seq_len = 256", "seq_len = 256\nwhole_docs = code novels"),
         "data.whole_docs names domain 'novels', which"),
        ("vocab too small", base.replace("vocab_size = 640", "vocab_size = 100"), "tokenizer.json has 610 tokens but the model's vocab_size is 100: set model.vocab_size >= 610"),
    ]
    for name, text, want in cases:
        p = os.path.join(TMP, "err.ini")
        with open(p, "w") as f:
            f.write(text)
        r = ropex("train", p, "--fresh")
        report(r.returncode == 2 and want in r.stderr, f"config error: {name}", r.stderr.strip()[:220])
        r = ropex("train", p, "--check")   # --check finds what the run would (the data keys included)
        report(r.returncode == 2 and want in r.stderr, f"config error: {name}, found by --check", r.stderr.strip()[:220])
    r = ropex("train", os.path.join(TMP, "err.ini"), "--set", "train.steps")
    report(r.returncode == 2 and "--set train.steps: expected section.key=value" in r.stderr, "config error: malformed --set",
           r.stderr.strip()[:200])


def main():
    global BUILD, TMP
    BUILD = sys.argv[1] if len(sys.argv) > 1 else "build"
    with tempfile.TemporaryDirectory() as tmp:
        TMP = tmp
        test_data.BUILD, test_data.TMP = BUILD, tmp
        with open(os.path.join(tmp, "corpus.txt"), "w") as f:
            f.write(test_data.corpus_text())
        tok = os.path.join(tmp, "bytelevel.json")
        subprocess.run(["node", os.path.join(test_data.JS, "oracle.js"), "train", os.path.join(tmp, "corpus.txt"), tok],
                       check=True)
        data = test_data.make_dataset(tok)
        test_headline(data)
        test_trajectory(data)
        test_induction()
        test_recall()
        test_nan_guard(data, os.path.join(TMP, "straight", "final.h5"))
        test_signals(data)
        test_short_sequences(data)
        test_decay_steps(data)
        test_short_mix(data)
        test_pose(data)
        test_config_errors(data)
    print(f"{results['passed']} passed, {results['failed']} failed")
    return 1 if results["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())

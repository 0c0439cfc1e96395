"""Model-level parity: ropex (C, float32) against the independent PyTorch reference (float64).

For each configuration the C program tests/parity_dump builds a random model, runs forward and
backward, and dumps logits, loss, per-layer hidden states and every parameter gradient; this test
recomputes all of them with tests/ref/llama_ref.py and autograd and compares elementwise with
|a - b| <= atol + rtol * |b| (b = reference, atol scaled to the tensor: ATOL_REL * max|b|).
The worst element of every tensor is printed.
It then corrupts one gradient element by 1% and checks that the comparison catches it.

usage: test_parity.py BUILD_DIR   (prints PASS/FAIL lines; exits non-zero on any failure)
"""
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llama_ref  # noqa: E402
import tensor_dump  # noqa: E402

# Tolerances, float32 C against a float64 oracle, weights ~N(0, 0.3), up to three layers. The
# errors of correct code are fp32 rounding: measured at most ~3.5e-6 of the tensor's largest
# magnitude (hidden states, logits), so an absolute floor of 2e-5 x max|b| plus 1e-4 relative
# keeps every correct tensor at err/tol 0.3 or below (printed by every run), while a single gradient
# element off by 1% gives err/tol > 50.
ATOL_REL, RTOL = 2e-5, 1e-4

CONFIGS = [
    # name,                  V,   C,  L, NH, NKV, H,  tied, B, T, skip-wise positions up to (0: 0..T-1)
    ("GQA NH=4 NKV=2 tied",   97, 48, 2, 4, 2, 80, 1, 2, 67, 0),
    ("GQA NH=4 NKV=2 untied", 97, 48, 2, 4, 2, 80, 0, 2, 67, 0),
    ("MHA NH=3 untied",       61, 36, 3, 3, 3, 52, 0, 2, 67, 0),
    ("MQA NH=6 NKV=1 tied",   50, 60, 1, 6, 1, 70, 1, 2, 67, 0),
    ("GQA tied, PoSE positions to 3000", 97, 48, 2, 4, 2, 80, 1, 2, 67, 3000),
]

results = {"passed": 0, "failed": 0}


def report(ok, name, detail=""):
    print(("PASS " if ok else "FAIL ") + name + (": " + detail if detail else ""), flush=True)
    results["passed" if ok else "failed"] += 1


def compare(name, got, ref):
    """Returns (ok, line) for one tensor."""
    got = np.asarray(got, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if got.shape != ref.shape:
        return False, f"{name}: shape {got.shape} vs reference {ref.shape}"
    err = np.abs(got - ref)
    atol = ATOL_REL * max(float(np.abs(ref).max()), 1e-30)
    ratio = err / (atol + RTOL * np.abs(ref))
    i = int(np.argmax(ratio))
    worst = float(ratio.flat[i])
    line = (f"{name:55s} max|err| {err.max():.3e}  worst err/tol {worst:.3f} at {np.unravel_index(i, ref.shape)}"
            f" (ropex {got.flat[i]:.7g}, torch {ref.flat[i]:.7g})")
    return worst <= 1.0, line


def reference(d):
    V, C, L, NH, NKV, HS, H, tied, _ = (int(x) for x in d["config"])
    theta, eps = (float(x) for x in d["theta_eps"])
    cfg = dict(vocab=V, dim=C, layers=L, heads=NH, kv_heads=NKV, head_dim=HS, hidden=H,
               tied=bool(tied), eps=float(np.float32(1e-5)), theta=theta)
    names = [k for k in d if k.startswith("model.") or k == "lm_head.weight"]
    p = {k: torch.tensor(d[k], dtype=torch.float64, requires_grad=True) for k in names}
    tokens = torch.tensor(d["tokens"], dtype=torch.long)
    targets = torch.tensor(d["targets"], dtype=torch.long)
    positions = torch.tensor(d["positions"], dtype=torch.long) if "positions" in d else None
    logits, loss, hidden = llama_ref.forward(p, cfg, tokens, targets, positions=positions)
    loss.backward()
    B, T = tokens.shape
    ref = {"logits": logits.detach().reshape(B * T, V).numpy(), "loss": np.array([loss.item()])}
    for l in range(L + 1):
        ref[f"hidden.{l}"] = hidden[l].detach().reshape(B * T, C).numpy()
    ref["hidden.final_norm"] = hidden[L + 1].detach().reshape(B * T, C).numpy()
    for k in names:
        ref["grad." + k] = p[k].grad.numpy()
    return ref


def check(d, ref, verbose=True):
    ok_all = True
    lines = []
    for name in ref:
        ok, line = compare(name, d[name], ref[name])
        ok_all &= ok
        lines.append(("   " if ok else "!! ") + line)
    if verbose:
        print("\n".join(lines))
    return ok_all


def main():
    build = sys.argv[1] if len(sys.argv) > 1 else "build"
    exe = os.path.join(build, "tests", "parity_dump")
    seed = int(os.environ.get("ROPEX_TEST_SEED", "7"))
    print(f"seed {seed} (replay with ROPEX_TEST_SEED={seed})")
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, V, C, L, NH, NKV, H, tied, B, T, pos_len) in enumerate(CONFIGS):
            path = os.path.join(tmp, f"dump{i}.bin")
            args = [exe, path] + [str(x) for x in (V, C, L, NH, NKV, H, tied, B, T, seed + i, pos_len)]
            r = subprocess.run(args, capture_output=True, text=True)
            if r.returncode != 0:
                report(False, f"parity {name}", f"parity_dump failed: {r.stderr.strip()}")
                continue
            d = tensor_dump.read(path)
            ref = reference(d)
            print(f"-- {name}: V={V} C={C} L={L} NH={NH} NKV={NKV} H={H} B={B} T={T}"
                  + (f", positions {d['positions'][:, [0, -1]].tolist()} (first, last of each row)" if pos_len else ""))
            report(check(d, ref), f"parity with PyTorch: logits, loss, hidden states, all gradients ({name})")
            if i == 0:
                # The comparison must catch a broken gradient: scale one element of one gradient.
                g = d["grad.model.layers.0.self_attn.q_proj.weight"]
                j = int(np.argmax(np.abs(g)))
                g.flat[j] *= 1.01
                caught = not check(d, ref, verbose=False)
                report(caught, "parity comparison catches a gradient element off by 1%")
    print(f"{results['passed']} passed, {results['failed']} failed")
    return 1 if results["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())

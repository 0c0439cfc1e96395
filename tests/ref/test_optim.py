"""AdamW + learning-rate schedule + gradient clipping against torch.optim.AdamW,
torch.nn.utils.clip_grad_norm_ and the schedule written out here, over 20 steps on random
parameters and gradients (tests/optim_dump.c).

Tolerance: both sides are float32 with the same formulas; after 20 steps the parameters agree to
rtol 1e-5 / atol 1e-6 (measured worst err/tol is printed). usage: test_optim.py BUILD_DIR"""
import math
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch

N, STEPS = 1000, 20
LR, WARM, WSTART, MINR = 1e-2, 5, 0.1, 0.1


def schedule(t):   # linear warmup from 10% over 5 steps, cosine to 10% at the last step
    if t < WARM:
        return LR * (WSTART + (1 - WSTART) * t / WARM)
    p = (t - WARM) / (STEPS - 1 - WARM)
    return LR * MINR + (LR - LR * MINR) * 0.5 * (1 + math.cos(math.pi * p))


def main():
    build = sys.argv[1] if len(sys.argv) > 1 else "build"
    seed = int(os.environ.get("ROPEX_TEST_SEED", "4"))
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "o.bin")
        subprocess.run([os.path.join(build, "tests", "optim_dump"), out, str(seed)], check=True)
        raw = np.fromfile(out, dtype=np.float32)
    p0 = raw[:N]
    rec = raw[N:].reshape(STEPS, N + 2 + N)
    decay = torch.zeros(N, dtype=torch.bool)
    decay[0:300] = True
    decay[500:1000] = True
    pd = torch.nn.Parameter(torch.tensor(p0[decay.numpy()]))
    pn = torch.nn.Parameter(torch.tensor(p0[~decay.numpy()]))
    opt = torch.optim.AdamW([{"params": [pd], "weight_decay": 0.1}, {"params": [pn], "weight_decay": 0.0}],
                            lr=LR, betas=(0.9, 0.95), eps=1e-8)
    worst, worst_lr, worst_norm = 0.0, 0.0, 0.0
    for t in range(STEPS):
        g = torch.tensor(rec[t, :N])
        pd.grad, pn.grad = g[decay].clone(), g[~decay].clone()
        norm = torch.nn.utils.clip_grad_norm_([pd, pn], 1.0)
        for grp in opt.param_groups:
            grp["lr"] = schedule(t)
        opt.step()
        lr_c, norm_c = rec[t, N], rec[t, N + 1]
        worst_lr = max(worst_lr, abs(lr_c - schedule(t)) / schedule(t))
        worst_norm = max(worst_norm, abs(norm_c - float(norm)) / float(norm))
        got = rec[t, N + 2:]
        want = np.empty(N, dtype=np.float32)
        want[decay.numpy()] = pd.detach().numpy()
        want[~decay.numpy()] = pn.detach().numpy()
        worst = max(worst, float(np.max(np.abs(got - want) / (1e-6 + 1e-5 * np.abs(want)))))
    ok = worst <= 1 and worst_lr < 1e-6 and worst_norm < 1e-5
    print(("PASS" if ok else "FAIL") + " AdamW + cosine schedule with warmup + clipping equal torch over 20 steps: "
          f"params worst err/tol {worst:.3f}, lr rel err {worst_lr:.1e}, grad norm rel err {worst_norm:.1e}")
    print(f"{int(ok)} passed, {int(not ok)} failed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

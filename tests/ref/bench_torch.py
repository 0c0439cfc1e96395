"""PyTorch peer for `make bench`: one training step (forward, backward, AdamW) of the reference
model in tests/ref/llama_ref.py, float32, at a shape and length, with the given thread count.
Prints one JSON line: tokens/s, step time, peak RSS. Shapes whose attention matrices cannot fit
in this machine's memory are reported as skipped, not run.

usage: bench_torch.py SHAPE T STEPS THREADS
"""
import json
import os
import resource
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llama_ref  # noqa: E402

SHAPES = {   # as model_config_preset in model/model.c
    "tiny": dict(vocab=1024, dim=256, layers=4, heads=4, kv_heads=2, hidden=768, tied=True),
    "smollm-135m": dict(vocab=49152, dim=576, layers=30, heads=9, kv_heads=3, hidden=1536, tied=True),
}
MEMORY_LIMIT = 20 * 2**30   # of this machine's 24 GiB, leaving room for the OS


def blas_kernels():
    """the kernels of the OpenBLAS this process loaded (PyTorch's BLAS here), or what it loaded"""
    import ctypes
    try:
        with open("/proc/self/maps") as f:
            libs = sorted({l.split()[-1] for l in f if "openblas" in l and ".so" in l})
    except OSError:
        return "unknown"
    for lib in libs:
        try:
            get = ctypes.CDLL(lib).openblas_get_corename
            get.restype = ctypes.c_char_p
            return get().decode()
        except (OSError, AttributeError):
            continue
    return "not OpenBLAS"


def main():
    shape, T, steps, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    torch.set_num_threads(threads)
    cfg = dict(SHAPES[shape], eps=1e-5, theta=10000.0)
    cfg["head_dim"] = cfg["dim"] // cfg["heads"]
    # autograd keeps, per layer, the scores, the masked scores and the probabilities (T x T x NH)
    att_bytes = 3 * T * T * cfg["heads"] * 4 * cfg["layers"]
    if att_bytes > MEMORY_LIMIT:
        print(json.dumps({"impl": "pytorch", "shape": shape, "T": T, "skipped":
                          f"needs about {att_bytes / 2**30:.0f} GiB for attention matrices alone "
                          f"(machine: 24 GiB)"}))
        return 0
    g = torch.Generator().manual_seed(1)
    V, C, L, H = cfg["vocab"], cfg["dim"], cfg["layers"], cfg["hidden"]
    QD, KD = cfg["heads"] * cfg["head_dim"], cfg["kv_heads"] * cfg["head_dim"]
    shapes = {"model.embed_tokens.weight": (V, C), "model.norm.weight": (C,)}
    for l in range(L):
        pre = f"model.layers.{l}."
        shapes.update({pre + "input_layernorm.weight": (C,), pre + "self_attn.q_proj.weight": (QD, C),
                       pre + "self_attn.k_proj.weight": (KD, C), pre + "self_attn.v_proj.weight": (KD, C),
                       pre + "self_attn.o_proj.weight": (C, QD), pre + "post_attention_layernorm.weight": (C,),
                       pre + "mlp.gate_proj.weight": (H, C), pre + "mlp.up_proj.weight": (H, C),
                       pre + "mlp.down_proj.weight": (C, H)})
    p = {k: (torch.ones(s) if len(s) == 1 else torch.randn(*s, generator=g) * 0.02).requires_grad_()
         for k, s in shapes.items()}
    opt = torch.optim.AdamW(p.values(), lr=1e-5, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.0)
    tokens = torch.randint(0, V, (1, T), generator=g)
    targets = torch.cat((tokens[:, 1:], torch.full((1, 1), -1)), dim=1)
    inv = llama_ref.default_inv_freq(cfg["head_dim"], cfg["theta"]).to(torch.float32)
    times = []
    for s in range(steps + 1):   # the first step warms up
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        _, loss, _ = llama_ref.forward(p, cfg, tokens, targets, inv_freq=inv)
        loss.backward()
        opt.step()
        if s:
            times.append(time.perf_counter() - t0)
    step = sum(times) / len(times)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps({"impl": "pytorch", "shape": shape, "T": T, "tokens_per_s": T / step, "step_s": step,
                      "peak_rss_mib": rss, "threads": threads, "torch": torch.__version__,
                      "blas": blas_kernels()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

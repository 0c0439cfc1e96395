"""Independent numpy oracle of the RoPE scaling methods, written from the formulas in
../shared/REFERENCES.md (which follow Hugging Face transformers' modeling_rope_utils.py), in
float64. Returns (inv_freq, attention_factor, keep_positions) for one configuration."""
import math

import numpy as np


def base_inv_freq(dim, theta):
    return 1.0 / (theta ** (np.arange(0, dim, 2, dtype=np.float64) / dim))


def get_mscale(scale, m=1.0):
    return 1.0 if scale <= 1 else 0.1 * m * math.log(scale) + 1.0


def yarn_range(dim, theta, L0, beta_fast=32.0, beta_slow=1.0, truncate=True):
    def corr(n):
        return dim * math.log(L0 / (n * 2 * math.pi)) / (2 * math.log(theta))
    low, high = corr(beta_fast), corr(beta_slow)
    if truncate:
        low, high = math.floor(low), math.ceil(high)
    return max(low, 0), min(high, dim - 1)


def compute(k, dim, seq_len):
    """k: dict of HF rope keys plus rope_theta; dim: head_dim."""
    t = k.get("rope_type", "default")
    theta = float(k.get("rope_theta", 10000.0))
    s = float(k.get("factor", 1.0))
    L0 = k.get("original_max_position_embeddings")
    inv = base_inv_freq(dim, theta)
    af, keep = 1.0, 0
    if t == "linear":
        inv = inv / s
    elif t == "ntk":
        inv = base_inv_freq(dim, theta * s ** (dim / (dim - 2)))
    elif t == "dynamic":
        L = max(seq_len, L0)
        inv = base_inv_freq(dim, theta * ((s * L / L0) - (s - 1)) ** (dim / (dim - 2)))
    elif t == "yarn":
        low, high = yarn_range(dim, theta, L0, k.get("beta_fast", 32.0), k.get("beta_slow", 1.0),
                               k.get("truncate", True))
        if low == high:
            high += 0.001
        ramp = np.clip((np.arange(dim // 2, dtype=np.float64) - low) / (high - low), 0, 1)
        inv = (inv / s) * ramp + inv * (1 - ramp)
        if k.get("attention_factor"):
            af = k["attention_factor"]
        elif k.get("mscale") and k.get("mscale_all_dim"):
            af = get_mscale(s, k["mscale"]) / get_mscale(s, k["mscale_all_dim"])
        else:
            af = get_mscale(s)
    elif t == "longrope":
        ext = np.array(k["long_factor"] if seq_len > L0 else k["short_factor"], dtype=np.float64)
        inv = 1.0 / (ext * theta ** (np.arange(0, dim, 2, dtype=np.float64) / dim))
        if k.get("attention_factor"):
            af = k["attention_factor"]
        elif s > 1:
            af = math.sqrt(1 + math.log(s) / math.log(L0))
        keep = k.get("keep_positions", 0)
    elif t == "llama3":
        lo, hi = k.get("low_freq_factor", 1.0), k.get("high_freq_factor", 4.0)
        out = []
        for f in inv:
            wl = 2 * math.pi / f
            if wl < L0 / hi:
                out.append(f)
            elif wl > L0 / lo:
                out.append(f / s)
            else:
                sm = (L0 / wl - lo) / (hi - lo)
                out.append((1 - sm) * f / s + sm * f)
        inv = np.array(out)
    elif t != "default":
        raise ValueError(t)
    if k.get("trunc_b"):
        a, b = k.get("trunc_a", 0.0), k["trunc_b"]
        rho = k.get("trunc_rho") or b
        inv = np.where(inv >= b, inv, np.where(inv > a, rho, 0.0))
    return inv, af, keep

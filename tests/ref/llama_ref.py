"""Independent PyTorch reference of a Llama-family decoder (Hugging Face semantics), for tests.

Written from the model's definition with plain torch ops (full T x T attention with a mask,
repeat_interleave for grouped-query heads, rotate_half RoPE), not from ropex's C code. Runs in
float64 so that it is an oracle for ropex's float32 results (and in float32 as the bench's peer).
"""
import math

import torch
import torch.nn.functional as F


def rms_norm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def default_inv_freq(head_dim, theta):
    return 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))


def forward(p, cfg, tokens, targets=None, inv_freq=None, attention_factor=1.0, docs=None, positions=None):
    """p: dict HF name -> tensor; cfg: dict with vocab, dim, layers, heads, kv_heads, head_dim,
    hidden, tied, eps, theta. tokens, targets: (B, T) long, -1 = ignored target.
    docs: (B, T) document ids or None; with them a token attends only within its document.
    positions: (B, T) position ids (HF's position_ids) or None for 0..T-1.
    Returns (logits (B, T, V), loss or None, hidden states list: input of each layer, then the
    last layer's output, then the final norm's output)."""
    B, T = tokens.shape
    NH, NKV, HS = cfg["heads"], cfg["kv_heads"], cfg["head_dim"]
    eps = cfg["eps"]
    if inv_freq is None:
        inv_freq = default_inv_freq(HS, cfg["theta"])
    pos = torch.arange(T, dtype=torch.float64) if positions is None else positions.to(torch.float64)
    ang = pos[..., None] * inv_freq.to(torch.float64)   # (T, HS/2) or (B, T, HS/2)
    emb = torch.cat((ang, ang), dim=-1)
    cos, sin = emb.cos() * attention_factor, emb.sin() * attention_factor
    if positions is not None:   # (B, 1, T, HS): broadcast over the heads
        cos, sin = cos[:, None], sin[:, None]
    causal = torch.ones(T, T, dtype=torch.bool).triu(1)
    if docs is not None:   # (B, 1, T, T): masked where the key is in the future or in another document
        causal = causal[None, None] | (docs[:, None, :, None] != docs[:, None, None, :])

    x = p["model.embed_tokens.weight"][tokens]
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)   # angles in float64, applied in the model's dtype
    hidden = [x]
    for l in range(cfg["layers"]):
        pre = f"model.layers.{l}."
        h = rms_norm(x, p[pre + "input_layernorm.weight"], eps)
        q = (h @ p[pre + "self_attn.q_proj.weight"].T).view(B, T, NH, HS).transpose(1, 2)
        k = (h @ p[pre + "self_attn.k_proj.weight"].T).view(B, T, NKV, HS).transpose(1, 2)
        v = (h @ p[pre + "self_attn.v_proj.weight"].T).view(B, T, NKV, HS).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(NH // NKV, dim=1)
        v = v.repeat_interleave(NH // NKV, dim=1)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(HS)
        att = torch.softmax(scores.masked_fill(causal, float("-inf")), dim=-1) @ v
        att = att.transpose(1, 2).reshape(B, T, NH * HS)
        x = x + att @ p[pre + "self_attn.o_proj.weight"].T
        h = rms_norm(x, p[pre + "post_attention_layernorm.weight"], eps)
        mlp = F.silu(h @ p[pre + "mlp.gate_proj.weight"].T) * (h @ p[pre + "mlp.up_proj.weight"].T)
        x = x + mlp @ p[pre + "mlp.down_proj.weight"].T
        hidden.append(x)
    x = rms_norm(x, p["model.norm.weight"], eps)
    hidden.append(x)
    head = p["model.embed_tokens.weight"] if cfg["tied"] else p["lm_head.weight"]
    logits = x @ head.T
    loss = None
    if targets is not None:
        loss = F.cross_entropy(logits.reshape(B * T, -1), targets.reshape(-1), ignore_index=-1)
    return logits, loss, hidden

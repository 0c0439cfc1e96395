"""Writes Hugging Face style Llama directories for tests: config.json and safetensors (single or
sharded with model.safetensors.index.json), F32/F16/BF16, written here byte by byte from the
safetensors specification (8-byte little-endian header length, JSON header, data)."""
import json
import os
import struct

import torch

DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16"}


def tensor_bytes(t):
    t = t.contiguous()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().tobytes()
    return t.numpy().tobytes()


def write_safetensors(path, tensors, header_extra=None):
    header, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
    for name, t in tensors.items():
        b = tensor_bytes(t)
        header[name] = {"dtype": DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    if header_extra:
        header.update(header_extra)
    h = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def read_safetensors(path):
    """Independent reader: name -> torch tensor in the stored dtype."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack_from("<Q", data, 0)
    header = json.loads(data[8:8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        raw = bytearray(data[8 + n + b:8 + n + e])
        dt = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}[info["dtype"]]
        if dt == torch.bfloat16:
            t = torch.frombuffer(raw, dtype=torch.int16).view(torch.bfloat16)
        else:
            t = torch.frombuffer(raw, dtype=dt)
        out[name] = t.reshape(info["shape"]).clone()
    return out, header


def random_llama(cfg, seed, dtype=torch.float32, std=0.3):
    """HF-named random weights for cfg (vocab, dim, layers, heads, kv_heads, head_dim, hidden, tied)."""
    g = torch.Generator().manual_seed(seed)
    V, C, L, H = cfg["vocab"], cfg["dim"], cfg["layers"], cfg["hidden"]
    QD, KD = cfg["heads"] * cfg["head_dim"], cfg["kv_heads"] * cfg["head_dim"]

    def r(*shape):
        return (torch.randn(*shape, generator=g) * std).to(dtype)

    def norm(n):
        return (0.5 + torch.rand(n, generator=g)).to(dtype)
    p = {"model.embed_tokens.weight": r(V, C)}
    for l in range(L):
        pre = f"model.layers.{l}."
        p[pre + "input_layernorm.weight"] = norm(C)
        p[pre + "self_attn.q_proj.weight"] = r(QD, C)
        p[pre + "self_attn.k_proj.weight"] = r(KD, C)
        p[pre + "self_attn.v_proj.weight"] = r(KD, C)
        p[pre + "self_attn.o_proj.weight"] = r(C, QD)
        p[pre + "post_attention_layernorm.weight"] = norm(C)
        p[pre + "mlp.gate_proj.weight"] = r(H, C)
        p[pre + "mlp.up_proj.weight"] = r(H, C)
        p[pre + "mlp.down_proj.weight"] = r(C, H)
    p["model.norm.weight"] = norm(C)
    if not cfg["tied"]:
        p["lm_head.weight"] = r(V, C)
    return p


def config_json(cfg, rope_scaling=None, max_pos=2048, theta=10000.0):
    return {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": cfg["vocab"],
            "hidden_size": cfg["dim"], "intermediate_size": cfg["hidden"],
            "num_hidden_layers": cfg["layers"], "num_attention_heads": cfg["heads"],
            "num_key_value_heads": cfg["kv_heads"], "head_dim": cfg["head_dim"], "hidden_act": "silu",
            "rms_norm_eps": 1e-5, "rope_theta": theta, "max_position_embeddings": max_pos,
            "rope_scaling": rope_scaling, "tie_word_embeddings": cfg["tied"], "attention_bias": False}


def write_hf_dir(d, cfg, tensors, shards=1, rope_scaling=None, max_pos=2048, theta=10000.0, extra_files=True):
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(config_json(cfg, rope_scaling, max_pos, theta), f, indent=2)
    if extra_files:
        with open(os.path.join(d, "tokenizer.json"), "w") as f:
            json.dump({"version": "1.0", "model": {"type": "BPE", "vocab": {"a": 0}}}, f)
        with open(os.path.join(d, "generation_config.json"), "w") as f:
            json.dump({"bos_token_id": 1}, f)
    names = list(tensors)
    if shards == 1:
        write_safetensors(os.path.join(d, "model.safetensors"), tensors)
        return
    per = (len(names) + shards - 1) // shards
    weight_map = {}
    for s in range(shards):
        fn = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        part = {n: tensors[n] for n in names[s * per:(s + 1) * per]}
        write_safetensors(os.path.join(d, fn), part)
        weight_map.update({n: fn for n in part})
    with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {}, "weight_map": weight_map}, f)

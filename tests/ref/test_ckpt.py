"""Checkpoint import/export against independent Python: Hugging Face directories written here
(random Llama, GQA, F32/BF16, single file and sharded, tied and untied) go through
`ropex import hf` and `ropex export` and must come back bit for bit; the exported directory,
loaded by the PyTorch reference, must compute ropex's logits (also with yarn and linear
rope_scaling); a llama2.c file must give the logits of a llama2.c-layout reference; and every
kind of bad input must give its error message, never a crash.

usage: test_ckpt.py BUILD_DIR
"""
import json
import math
import os
import struct
import subprocess
import sys
import tempfile

import h5py
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hf_write  # noqa: E402
import llama_ref  # noqa: E402
import rope_ref  # noqa: E402
import tensor_dump  # noqa: E402

# Logits: float32 C against float64 torch, same criterion and reasons as test_parity.py.
ATOL_REL, RTOL = 2e-5, 1e-4

results = {"passed": 0, "failed": 0}
BUILD = TMP = None


def report(ok, name, detail=""):
    print(("PASS " if ok else "FAIL ") + name + (": " + detail if detail else ""), flush=True)
    results["passed" if ok else "failed"] += 1


def ropex(*args):
    return subprocess.run([os.path.join(BUILD, "ropex"), *args], capture_output=True, text=True)


def worst_ratio(got, ref):
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    atol = ATOL_REL * max(float(np.abs(ref).max()), 1e-30)
    return float(np.max(np.abs(got - ref) / (atol + RTOL * np.abs(ref))))


def ropex_logits(h5, B, T, seed):
    out = os.path.join(TMP, "logits.bin")
    r = subprocess.run([os.path.join(BUILD, "tests", "ckpt_logits"), h5, out, str(B), str(T), str(seed)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(r.stderr)
    d = tensor_dump.read(out)
    return d["tokens"], d["logits"]


def ref_logits_from_hf_dir(d, tokens):
    """The PyTorch reference on an exported directory: weights, config.json and rope_scaling."""
    with open(os.path.join(d, "config.json")) as f:
        c = json.load(f)
    t, _ = hf_write.read_safetensors(os.path.join(d, "model.safetensors"))
    p = {k: v.to(torch.float64) for k, v in t.items()}
    HS = c.get("head_dim") or c["hidden_size"] // c["num_attention_heads"]
    cfg = dict(vocab=c["vocab_size"], dim=c["hidden_size"], layers=c["num_hidden_layers"],
               heads=c["num_attention_heads"], kv_heads=c["num_key_value_heads"], head_dim=HS,
               hidden=c["intermediate_size"], tied=c["tie_word_embeddings"], eps=c["rms_norm_eps"],
               theta=c["rope_theta"])
    rs = c.get("rope_scaling") or {}
    keys = dict(rs, rope_theta=c["rope_theta"])
    keys.setdefault("original_max_position_embeddings", c["max_position_embeddings"])
    keys["rope_type"] = rs.get("rope_type", rs.get("type", "default"))
    inv, af, _ = rope_ref.compute(keys, HS, tokens.shape[1])
    logits, _, _ = llama_ref.forward(p, cfg, torch.tensor(tokens, dtype=torch.long),
                                     inv_freq=torch.tensor(inv), attention_factor=af)
    return logits.reshape(-1, cfg["vocab"]).detach().numpy()


CFG_GQA = dict(vocab=83, dim=48, layers=2, heads=4, kv_heads=2, head_dim=12, hidden=72, tied=False)


def test_roundtrips():
    variants = [("fp32 single untied", torch.float32, 1, False), ("bf16 single tied", torch.bfloat16, 1, True),
                ("fp32 sharded tied", torch.float32, 3, True), ("bf16 sharded untied", torch.bfloat16, 2, False),
                ("f16 single untied", torch.float16, 1, False)]
    for i, (name, dt, shards, tied) in enumerate(variants):
        cfg = dict(CFG_GQA, tied=tied)
        src = os.path.join(TMP, f"src{i}")
        tensors = hf_write.random_llama(cfg, 100 + i, dt)
        hf_write.write_hf_dir(src, cfg, tensors, shards=shards, theta=5e5)
        h5 = os.path.join(TMP, f"rt{i}.h5")
        out = os.path.join(TMP, f"out{i}")
        r1 = ropex("import", "hf", src, h5)
        dtype = "bf16" if dt == torch.bfloat16 else "f32"
        r2 = ropex("export", h5, "--to", "hf", out, "--dtype", dtype) if r1.returncode == 0 else r1
        if r2.returncode != 0:
            report(False, f"round trip {name}", (r1.stderr + r2.stderr).strip())
            continue
        got, hdr = hf_write.read_safetensors(os.path.join(out, "model.safetensors"))
        want = {k: (v if dt != torch.float16 else v.to(torch.float32)) for k, v in tensors.items()}
        same = set(got) == set(want) and all(
            got[k].dtype == want[k].dtype and torch.equal(got[k].view(-1).view(torch.int16 if got[k].dtype == torch.bfloat16 else got[k].dtype),
                                                         want[k].view(-1).view(torch.int16 if want[k].dtype == torch.bfloat16 else want[k].dtype))
            for k in want)
        with open(os.path.join(out, "config.json")) as f:
            c = json.load(f)
        src_cfg = hf_write.config_json(cfg, theta=5e5)
        keys = ["vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                "num_key_value_heads", "head_dim", "rms_norm_eps", "rope_theta", "max_position_embeddings",
                "tie_word_embeddings"]
        kept = all(c[k] == src_cfg[k] for k in keys) and c["architectures"] == ["LlamaForCausalLM"]
        kept = kept and c.get("bos_token_id") == 1   # from the generation_config.json hf_write writes
        tok = all(os.path.exists(os.path.join(out, n)) for n in ("tokenizer.json", "generation_config.json"))
        report(same and kept and tok, f"HF {name} -> import -> export ({dtype}): tensors bitwise, config.json keys and tokenizer files kept",
               f"tensors {'same' if same else 'DIFFER'}, config {'kept' if kept else 'changed: ' + json.dumps(c)}")
    # bf16 export of an fp32 checkpoint rounds exactly as torch does (nearest even)
    h5 = os.path.join(TMP, "rt0.h5")
    out = os.path.join(TMP, "out0_bf16")
    r = ropex("export", h5, "--to", "hf", out, "--dtype", "bf16")
    ok = r.returncode == 0
    if ok:
        got, _ = hf_write.read_safetensors(os.path.join(out, "model.safetensors"))
        src = hf_write.random_llama(CFG_GQA, 100, torch.float32)
        ok = all(torch.equal(got[k].view(torch.int16), src[k].to(torch.bfloat16).view(torch.int16)) for k in src)
    report(ok, "export --dtype bf16 rounds float32 exactly as torch's .to(bfloat16)", r.stderr.strip())
    # the h5 is plain HDF5 that h5py reads, with HF names
    with h5py.File(os.path.join(TMP, "rt0.h5"), "r") as f:
        fmt = f.attrs["format"]
        fmt = fmt.decode() if isinstance(fmt, bytes) else str(fmt)
        ok = fmt == "ropex" and "model.layers.1.self_attn.k_proj.weight" in f["model"] and \
            f["model/model.layers.1.self_attn.k_proj.weight"].shape == (24, 48) and \
            f["config"].attrs["num_key_value_heads"] == 2
    report(ok, "ropex checkpoint is HDF5 that h5py reads: format attribute, /config, /model/<HF name>")


def test_meaning():
    for name, rs, max_pos in [("plain", None, 2048),
                              ("yarn", {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64}, 256),
                              ("linear", {"type": "linear", "factor": 2.0}, 64)]:
        cfg = dict(CFG_GQA, tied=True)
        src = os.path.join(TMP, f"mean_{name}")
        hf_write.write_hf_dir(src, cfg, hf_write.random_llama(cfg, 7, torch.float32), rope_scaling=rs, max_pos=max_pos)
        h5, out = os.path.join(TMP, f"mean_{name}.h5"), os.path.join(TMP, f"mean_{name}_out")
        r = ropex("import", "hf", src, h5)
        r = ropex("export", h5, "--to", "hf", out) if r.returncode == 0 else r
        if r.returncode != 0:
            report(False, f"exported {name} model computes ropex's logits", r.stderr.strip())
            continue
        tokens, logits = ropex_logits(h5, 2, 67, 3)
        ref = ref_logits_from_hf_dir(out, tokens)
        w = worst_ratio(logits, ref)
        with open(os.path.join(out, "config.json")) as f:
            c = json.load(f)
        report(w <= 1, f"PyTorch reference on the exported {name} directory computes ropex's logits",
               f"worst err/tol {w:.3f}; rope_scaling {json.dumps(c['rope_scaling'])}, max_position_embeddings {c['max_position_embeddings']}")


# ---- llama2.c ----

def llama2c_reference(w, cfg, tokens):
    """llama2.c's run.c forward in torch float64: interleaved RoPE pairs (2p, 2p+1)."""
    C, NH, NKV, HS = cfg["dim"], cfg["heads"], cfg["kv_heads"], cfg["dim"] // cfg["heads"]
    T = len(tokens)
    d = {k: torch.tensor(v, dtype=torch.float64) for k, v in w.items()}

    def rms(x, g):
        return x / torch.sqrt((x * x).mean(-1, keepdim=True) + 1e-5) * g
    freq = 1.0 / (10000.0 ** (torch.arange(0, HS, 2, dtype=torch.float64) / HS))
    ang = torch.arange(T, dtype=torch.float64)[:, None] * freq[None, :]
    cos, sin = ang.cos(), ang.sin()

    def rot(x):  # (T, heads, HS), pairs (2p, 2p+1)
        x = x.reshape(T, x.shape[1], HS // 2, 2)
        a, b = x[..., 0], x[..., 1]
        return torch.stack((a * cos[:, None] - b * sin[:, None], a * sin[:, None] + b * cos[:, None]), -1).reshape(T, -1, HS)
    x = d["emb"][torch.tensor(tokens)]
    mask = torch.ones(T, T, dtype=torch.bool).triu(1)
    for l in range(cfg["layers"]):
        xb = rms(x, d["rms_att"][l])
        q = rot((xb @ d["wq"][l].T).reshape(T, NH, HS))
        k = rot((xb @ d["wk"][l].T).reshape(T, NKV, HS))
        v = (xb @ d["wv"][l].T).reshape(T, NKV, HS)
        out = torch.zeros(T, NH, HS, dtype=torch.float64)
        for h in range(NH):
            s = (q[:, h] @ k[:, h // (NH // NKV)].T) / math.sqrt(HS)
            out[:, h] = torch.softmax(s.masked_fill(mask, float("-inf")), -1) @ v[:, h // (NH // NKV)]
        x = x + out.reshape(T, NH * HS) @ d["wo"][l].T
        xb = rms(x, d["rms_ffn"][l])
        h1, h3 = xb @ d["w1"][l].T, xb @ d["w3"][l].T
        x = x + (h1 * torch.sigmoid(h1) * h3) @ d["w2"][l].T
    x = rms(x, d["rms_final"])
    return (x @ (d["emb"] if cfg["shared"] else d["wcls"]).T).numpy()


def write_llama2c(path, cfg, seed, version):
    rng = np.random.default_rng(seed)
    C, H, L, NH, NKV, V, S = cfg["dim"], cfg["hidden"], cfg["layers"], cfg["heads"], cfg["kv_heads"], cfg["vocab"], cfg["seq_len"]
    HS, KD = C // NH, C // NH * NKV

    def r(*s):
        return (rng.standard_normal(s) * 0.3).astype(np.float32)
    w = {"emb": r(V, C), "rms_att": (0.5 + rng.random((L, C))).astype(np.float32), "wq": r(L, C, C),
         "wk": r(L, KD, C), "wv": r(L, KD, C), "wo": r(L, C, C),
         "rms_ffn": (0.5 + rng.random((L, C))).astype(np.float32), "w1": r(L, H, C), "w2": r(L, C, H),
         "w3": r(L, H, C), "rms_final": (0.5 + rng.random(C)).astype(np.float32), "wcls": r(V, C)}
    with open(path, "wb") as f:
        if version == 0:
            f.write(struct.pack("<7i", C, H, L, NH, NKV, V if cfg["shared"] else -V, S))
            for k in ("emb", "rms_att", "wq", "wk", "wv", "wo", "rms_ffn", "w1", "w2", "w3", "rms_final"):
                f.write(w[k].tobytes())
            f.write(np.zeros((2, S, HS // 2), np.float32).tobytes())   # freq_cis real, imag
        else:
            hdr = struct.pack("<Ii7iB", 0x616b3432, 1, C, H, L, NH, NKV, V, S, int(cfg["shared"]))
            f.write(hdr + b"\0" * (256 - len(hdr)))
            for k in ("rms_att", "rms_ffn", "rms_final", "emb", "wq", "wk", "wv", "wo", "w1", "w2", "w3"):
                f.write(w[k].tobytes())
        if not cfg["shared"]:
            f.write(w["wcls"].tobytes())
    return w


def test_llama2c():
    for version, shared in [(0, True), (0, False), (1, False)]:
        cfg = dict(dim=32, hidden=56, layers=2, heads=4, kv_heads=2, vocab=71, seq_len=64, shared=shared)
        path = os.path.join(TMP, f"l2c_{version}_{int(shared)}.bin")
        w = write_llama2c(path, cfg, 31 + version, version)
        h5 = path + ".h5"
        r = ropex("import", "llama2c", path, h5)
        if r.returncode != 0:
            report(False, "llama2c import", r.stderr.strip())
            continue
        tokens, logits = ropex_logits(h5, 1, 41, 8)
        ref = llama2c_reference(w, cfg, tokens[0].tolist())
        wr = worst_ratio(logits, ref)
        report(wr <= 1, f"llama2.c {'legacy' if version == 0 else 'version 1'} ({'shared' if shared else 'separate'} classifier) "
               "import gives the llama2.c-layout reference's logits", f"worst err/tol {wr:.3f}")


# ---- bad input ----

def write_raw_st(path, header, data):
    h = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + data)


def bad_dir(name, mutate):
    cfg = dict(CFG_GQA, layers=1)
    d = os.path.join(TMP, "bad_" + name)
    tensors = hf_write.random_llama(cfg, 5, torch.float32)
    hf_write.write_hf_dir(d, cfg, tensors, extra_files=False)
    mutate(d, tensors)
    return d


def expect(name, args, want):
    r = ropex(*args)
    crashed = r.returncode < 0 or r.returncode > 2 or "Sanitizer" in r.stderr or "runtime error" in r.stderr
    ok = r.returncode == 2 and want in r.stderr and not crashed
    report(ok, f"bad input: {name}", f"rc {r.returncode}: {r.stderr.strip()[:240]}")


def test_bad_input():
    st = "model.safetensors"

    def truncate(d, t):
        p = os.path.join(d, st)
        size = os.path.getsize(p)
        with open(p, "r+b") as f:
            f.truncate(size // 2)
    expect("truncated safetensors", ["import", "hf", bad_dir("trunc", truncate), os.path.join(TMP, "x.h5")],
           "run past the end of the data section")

    def header_past_end(d, t):
        with open(os.path.join(d, st), "wb") as f:
            f.write(struct.pack("<Q", 1 << 40) + b"{}")
    expect("header length past end of file", ["import", "hf", bad_dir("hlen", header_past_end), os.path.join(TMP, "x.h5")],
           "header length 1099511627776 runs past the end of the file")

    def tiny(d, t):
        with open(os.path.join(d, st), "wb") as f:
            f.write(b"\x01\x02")
    expect("file shorter than the length field", ["import", "hf", bad_dir("tiny", tiny), os.path.join(TMP, "x.h5")],
           "truncated: 2 bytes")

    def not_json(d, t):
        with open(os.path.join(d, st), "wb") as f:
            f.write(struct.pack("<Q", 5) + b"[1, 2")
    expect("header that is not JSON", ["import", "hf", bad_dir("nojson", not_json), os.path.join(TMP, "x.h5")],
           "the header is not a JSON object")

    def overlap(d, t):
        write_raw_st(os.path.join(d, st), {"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
                                           "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}}, b"\0" * 24)
    expect("overlapping offsets", ["import", "hf", bad_dir("overlap", overlap), os.path.join(TMP, "x.h5")],
           "tensors a [0, 16] and b [8, 24] overlap")

    def out_of_range(d, t):
        write_raw_st(os.path.join(d, st), {"a": {"dtype": "F32", "shape": [4], "data_offsets": [1000, 1016]}}, b"\0" * 16)
    expect("offsets out of range", ["import", "hf", bad_dir("range", out_of_range), os.path.join(TMP, "x.h5")],
           "tensor a: data_offsets [1000, 1016] run past the end of the data section (16 bytes")

    def dtype(d, t):
        write_raw_st(os.path.join(d, st), {"a": {"dtype": "I64", "shape": [2], "data_offsets": [0, 16]}}, b"\0" * 16)
    expect("unknown dtype", ["import", "hf", bad_dir("dtype", dtype), os.path.join(TMP, "x.h5")],
           "tensor a: unknown dtype 'I64' (expected F32, F16 or BF16)")

    def product(d, t):
        write_raw_st(os.path.join(d, st), {"a": {"dtype": "F32", "shape": [3, 4], "data_offsets": [0, 40]}}, b"\0" * 40)
    expect("shape/size mismatch", ["import", "hf", bad_dir("product", product), os.path.join(TMP, "x.h5")],
           "tensor a: shape holds 12 values of F32 (48 bytes) but data_offsets span 40 bytes")

    def missing(d, t):
        t = dict(t)
        del t["model.layers.0.mlp.up_proj.weight"]
        hf_write.write_safetensors(os.path.join(d, st), t)
    expect("missing tensor", ["import", "hf", bad_dir("missing", missing), os.path.join(TMP, "x.h5")],
           "missing tensor model.layers.0.mlp.up_proj.weight")

    def wrong_shape(d, t):
        t = dict(t)
        t["model.layers.0.self_attn.k_proj.weight"] = torch.zeros(12, 48)
        hf_write.write_safetensors(os.path.join(d, st), t)
    expect("tensor shape against config.json", ["import", "hf", bad_dir("shape", wrong_shape), os.path.join(TMP, "x.h5")],
           "tensor model.layers.0.self_attn.k_proj.weight has shape [12, 48], config.json implies [24, 48]")

    def extra(d, t):
        t = dict(t)
        t["model.layers.0.self_attn.q_proj.bias"] = torch.zeros(48)
        hf_write.write_safetensors(os.path.join(d, st), t)
    expect("unexpected tensor", ["import", "hf", bad_dir("extra", extra), os.path.join(TMP, "x.h5")],
           "tensor model.layers.0.self_attn.q_proj.bias is not part of a Llama model")

    def no_key(d, t):
        p = os.path.join(d, "config.json")
        c = json.load(open(p))
        del c["num_attention_heads"]
        json.dump(c, open(p, "w"))
    expect("config.json missing a required key", ["import", "hf", bad_dir("cfgkey", no_key), os.path.join(TMP, "x.h5")],
           'config.json: missing required key "num_attention_heads"')

    def huge_config(d, t):   # read sized by the file, so the 16 MiB limit is checked before reading
        with open(os.path.join(d, "config.json"), "a") as f:
            f.write(" " * (17 << 20))
    expect("config.json over its size limit", ["import", "hf", bad_dir("cfgsize", huge_config), os.path.join(TMP, "x.h5")],
           "config.json: larger than 16777216 bytes")

    other = os.path.join(TMP, "other.h5")
    with h5py.File(other, "w") as f:
        f["data"] = np.arange(10)
    expect("HDF5 file from another program", ["inspect", other], "not a ropex checkpoint (no 'format' attribute")
    expect("HDF5 file from another program (export)", ["export", other, "--to", "hf", os.path.join(TMP, "o")],
           "not a ropex checkpoint")
    junk = os.path.join(TMP, "junk.h5")
    with open(junk, "wb") as f:
        f.write(b"\x89PNG not hdf5" * 10)
    expect("a file that is not HDF5", ["inspect", junk], "not an HDF5 file")
    trunc = os.path.join(TMP, "trunc.h5")
    with open(os.path.join(TMP, "rt0.h5"), "rb") as f:
        data = f.read()
    with open(trunc, "wb") as f:
        f.write(data[:len(data) // 2])
    r = ropex("inspect", trunc)
    report(r.returncode == 2 and "Sanitizer" not in r.stderr, "bad input: truncated ropex checkpoint is an error",
           r.stderr.strip()[:200])


def main():
    global BUILD, TMP
    BUILD = sys.argv[1] if len(sys.argv) > 1 else "build"
    with tempfile.TemporaryDirectory() as tmp:
        TMP = tmp
        test_roundtrips()
        test_meaning()
        test_llama2c()
        test_bad_input()
    print(f"{results['passed']} passed, {results['failed']} failed")
    return 1 if results["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())

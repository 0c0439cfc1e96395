"""RoPE scaling: `ropex rope --json` against the independent numpy oracle (rope_ref.py) for every
method at several (head_dim, theta, factor, original length) combinations, the worked values of
REFERENCES.md, bad-input messages, and INI config handling (file:line errors).

usage: test_rope.py BUILD_DIR
"""
import json
import math
import os
import random
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rope_ref  # noqa: E402

# The bound: inverse frequencies within 1e-6 relative, attention factor within 1e-6.
# ropex computes in double as the oracle does; differences are last-bit rounding (~1e-15).
INV_RTOL, AF_ATOL = 1e-6, 1e-6

results = {"passed": 0, "failed": 0}
ROPEX = None
TMP = None


def report(ok, name, detail=""):
    print(("PASS " if ok else "FAIL ") + name + (": " + detail if detail else ""), flush=True)
    results["passed" if ok else "failed"] += 1


def hf_dir(name, dim, theta, L0, rope_scaling=None, max_pos=None):
    d = os.path.join(TMP, name)
    os.makedirs(d, exist_ok=True)
    cfg = {"architectures": ["LlamaForCausalLM"], "vocab_size": 100, "hidden_size": 2 * dim,
           "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1,
           "intermediate_size": 64, "rms_norm_eps": 1e-5, "rope_theta": theta,
           "max_position_embeddings": max_pos or L0, "rope_scaling": rope_scaling,
           "hidden_act": "silu", "tie_word_embeddings": False}
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f)
    return d


def ropex(*args):
    return subprocess.run([ROPEX, "rope", *args], capture_output=True, text=True)


def fmt(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list):
        return ",".join(repr(float(x)) for x in v)
    return str(v) if isinstance(v, str) else repr(v)


def run_case(dim, theta, L0, keys, seq_len):
    d = hf_dir(f"m{dim}_{int(theta)}_{L0}", dim, theta, L0)
    args = [d, "--json", "--seq-len", str(seq_len)]
    for k, v in keys.items():
        args += ["--set", f"rope.{k}={fmt(v)}"]
    r = ropex(*args)
    if r.returncode != 0:
        return None, r.stderr.strip()
    return json.loads(r.stdout), None


def monotone_factors(rng, n, top):
    xs = sorted(1 + rng.random() * (top - 1) for _ in range(n))
    return xs


def cases():
    rng = random.Random(int(os.environ.get("ROPEX_TEST_SEED", "11")))
    shapes = [(64, 1e4, 2048), (128, 1e4, 4096), (96, 5e5, 2048), (128, 1e6, 8192)]
    for dim, theta, L0 in shapes:
        for s in (2.0, 4.0, 16.0):
            yield "default", dim, theta, L0, {}, L0
            yield "linear", dim, theta, L0, {"rope_type": "linear", "factor": s}, L0
            yield "ntk", dim, theta, L0, {"rope_type": "ntk", "factor": s}, L0
            for T in (L0 // 2, 3 * L0):
                yield "dynamic", dim, theta, L0, {"rope_type": "dynamic", "factor": s}, T
            yield "yarn", dim, theta, L0, {"rope_type": "yarn", "factor": s}, L0
            yield "yarn", dim, theta, L0, {"rope_type": "yarn", "factor": s, "mscale": 0.707,
                                          "mscale_all_dim": 1.0}, L0
            yield "yarn", dim, theta, L0, {"rope_type": "yarn", "factor": s, "attention_factor": 0.9,
                                          "truncate": False, "beta_fast": 16.0, "beta_slow": 2.0}, L0
            short = monotone_factors(rng, dim // 2, 1.5)
            long_ = monotone_factors(rng, dim // 2, s * 2)
            lr = {"rope_type": "longrope", "factor": s, "short_factor": short, "long_factor": long_,
                  "keep_positions": 4}
            yield "longrope", dim, theta, L0, dict(lr), L0
            yield "longrope", dim, theta, L0, dict(lr), L0 + 1
            yield "longrope", dim, theta, L0, dict(lr, attention_factor=1.2), 4 * L0
            yield "llama3", dim, theta, L0, {"rope_type": "llama3", "factor": s}, L0
            yield "llama3", dim, theta, L0, {"rope_type": "llama3", "factor": s,
                                            "low_freq_factor": 2.0, "high_freq_factor": 8.0}, L0
            inv = rope_ref.base_inv_freq(dim, theta) / s
            # thresholds halfway (geometrically) between two frequencies, never on one: a frequency
            # equal to a threshold would be kept or not depending on its last bit, which differs
            # between numpy and C by an ulp depending on how pow() was compiled
            b = float(np.sqrt(inv[dim // 4] * inv[dim // 4 + 1]))
            yield "base truncation", dim, theta, L0, {"rope_type": "linear", "factor": s,
                                                     "trunc_a": float(np.sqrt(inv[-3] * inv[-4])), "trunc_b": b,
                                                     "trunc_rho": b / 2}, L0


def test_methods():
    stats = {}
    for method, dim, theta, L0, keys, T in cases():
        st = stats.setdefault(method, {"n": 0, "inv": 0.0, "af": 0.0, "fail": None})
        st["n"] += 1
        out, err = run_case(dim, theta, L0, keys, T)
        if out is None:
            st["fail"] = st["fail"] or f"ropex failed: {err}"
            continue
        want_inv, want_af, want_keep = rope_ref.compute(dict(keys, rope_theta=theta,
                                                             original_max_position_embeddings=L0), dim, T)
        got = np.array(out["inv_freq"], dtype=np.float64)
        nz = want_inv != 0
        rel = np.max(np.abs(got[nz] - want_inv[nz]) / np.abs(want_inv[nz])) if nz.any() else 0.0
        if np.any(got[~nz] != 0):
            rel = math.inf
        af = abs(out["attention_factor"] - want_af)
        st["inv"] = max(st["inv"], rel)
        st["af"] = max(st["af"], af)
        keep = out["position_rules"].get("keep_positions", 0)
        if (rel > INV_RTOL or af > AF_ATOL or keep != want_keep) and not st["fail"]:
            st["fail"] = (f"dim {dim} theta {theta:g} L0 {L0} T {T} keys {keys}: inv rel err {rel:.3g}, "
                          f"attention factor {out['attention_factor']} vs {want_af}, keep {keep} vs {want_keep}")
    for method, st in stats.items():
        report(st["fail"] is None, f"rope {method} equals the numpy oracle",
               st["fail"] or f"{st['n']} configurations, worst inv_freq rel err {st['inv']:.2e}, "
                             f"attention factor err {st['af']:.2e}")


def test_reference_values():
    # YaRN, dim 128 / theta 1e4 / L 4096: correction range 20..46; factor 16: attention 1.277259
    low, high = rope_ref.yarn_range(128, 1e4, 4096)
    out, err = run_case(128, 1e4, 4096, {"rope_type": "yarn", "factor": 16.0}, 4096)
    ratio = np.array(out["inv_freq_original"]) / np.array(out["inv_freq"])
    ok = (low, high) == (20, 46) and np.allclose(ratio[:21], 1, rtol=1e-12, atol=0) \
        and np.allclose(ratio[46:], 16, rtol=1e-12, atol=0) and np.all((ratio[21:46] > 1) & (ratio[21:46] < 16)) \
        and abs(out["attention_factor"] - 1.277259) < 1e-6
    report(ok, "yarn dim 128 theta 1e4 L 4096: pairs 0..20 unscaled, 46.. divided by 16, attention factor 1.277259",
           f"oracle range {low}..{high}, attention factor {out['attention_factor']:.7f}")
    # NTK: s = 2, dim 128 -> theta' = 20221.3
    out, err = run_case(128, 1e4, 2048, {"rope_type": "ntk", "factor": 2.0}, 2048)
    theta_new = (1.0 / out["inv_freq"][1]) ** (128 / 2)
    report(abs(theta_new - 20221.3) < 0.05, "ntk s=2 dim 128: base 10000 becomes 20221.3", f"{theta_new:.2f}")


def test_json_rope_scaling():
    # rope_scaling inside config.json takes the same path as --set (HF semantics for lengths)
    d = hf_dir("yarn_json", 64, 1e4, 2048, rope_scaling={"rope_type": "yarn", "type": "yarn", "factor": 4.0,
                                                       "original_max_position_embeddings": 2048}, max_pos=8192)
    r = ropex(d, "--json")
    out = json.loads(r.stdout) if r.returncode == 0 else None
    want, af, _ = rope_ref.compute({"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 2048}, 64, 8192)
    ok = out is not None and np.allclose(out["inv_freq"], want, rtol=INV_RTOL, atol=0) \
        and out["max_position_embeddings"] == 8192 and out["original_max_position_embeddings"] == 2048
    report(ok, "config.json rope_scaling (yarn, lengths 2048 -> 8192) read as Hugging Face does",
           r.stderr.strip())
    d = hf_dir("linear_json", 64, 1e4, 2048, rope_scaling={"type": "linear", "factor": 4.0})
    r = ropex(d, "--json")
    out = json.loads(r.stdout) if r.returncode == 0 else None
    ok = out is not None and out["original_max_position_embeddings"] == 2048 and out["max_position_embeddings"] == 8192
    report(ok, "legacy rope_scaling.type without original length: max_position_embeddings is the original",
           r.stderr.strip())


def expect_error(name, args, want):
    r = ropex(*args)
    ok = r.returncode != 0 and want in r.stderr
    report(ok, name, f"rc {r.returncode}, stderr: {r.stderr.strip()[:300]}")


def test_errors():
    d = hf_dir("err", 64, 1e4, 2048)
    expect_error("unknown method is an error naming the key", [d, "--set", "rope.rope_type=magic"],
                 "rope.rope_type = 'magic': unknown method (expected one of: none, linear, ntk, dynamic, yarn, longrope, llama3)")
    expect_error("yarn without the original length names the key",
                 [d, "--set", "rope.rope_type=yarn", "--set", "rope.factor=4", "--set",
                  "rope.original_max_position_embeddings=0"],
                 "rope.original_max_position_embeddings is required for this method")
    expect_error("longrope factor list of the wrong length names the key and the expected length",
                 [d, "--set", "rope.rope_type=longrope", "--set", "rope.factor=4", "--set",
                  "rope.short_factor=1,1,1", "--set", "rope.long_factor=" + ",".join(["2"] * 32)],
                 "rope.short_factor has 3 values: expected head_dim/2 = 32")
    expect_error("factor < 1 is refused", [d, "--set", "rope.rope_type=linear", "--set", "rope.factor=0.5"],
                 "rope.factor = 0.5: expected a factor >= 1")
    expect_error("a non-number names the key", [d, "--set", "rope.factor=four"],
                 "rope.factor = 'four': expected a number")
    expect_error("unknown rope key is named", [d, "--set", "rope.fctor=4"], "rope.fctor: unknown key")
    expect_error("malformed --set", [d, "--set", "rope-factor=4"], "--set rope-factor=4: expected section.key=value")
    bad = os.path.join(TMP, "bad.json")
    with open(bad, "w") as f:
        f.write('{"vocab_size": 10, "hidden_size": 8,')
    expect_error("truncated config.json names the file", [bad], f"{bad}: not a JSON object")
    with open(bad, "w") as f:
        json.dump({"vocab_size": 10, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 8}, f)
    expect_error("config.json missing hidden_size names the key", [bad],
                 f'{bad}: missing required key "hidden_size"')
    with open(bad, "w") as f:
        json.dump({"architectures": ["Qwen2ForCausalLM"], "vocab_size": 10, "hidden_size": 8,
                   "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 8}, f)
    expect_error("unsupported architecture is refused by name", [bad], 'architectures[0] = "Qwen2ForCausalLM" is not supported')


def write(name, text):
    p = os.path.join(TMP, name)
    with open(p, "w") as f:
        f.write(text)
    return p


def test_ini():
    p = write("ok.ini", "[model]\npreset = tiny\n\n[rope]\nscaling = longrope   ; inline comment\nfactor = 4\n"
                        "original_max_len = 2048\nmax_len = 8192\n"
                        "short_factor = " + ", ".join(["1.0"] * 16) + "\n  " + ", ".join(["1.0"] * 16) + "\n"
                        "long_factor = " + ", ".join(["2.0"] * 16) + "\n  " + ", ".join(["4.0"] * 16) + "\n")
    r = ropex(p, "--json")
    out = json.loads(r.stdout) if r.returncode == 0 else None
    ok = out is not None and out["rope_type"] == "longrope" and out["seq_len"] == 8192 and \
        np.allclose(np.array(out["inv_freq_original"]) / np.array(out["inv_freq"]), [2.0] * 16 + [4.0] * 16)
    report(ok, "INI config with DESIGN.md names, inline comments and a list continued on indented lines",
           r.stderr.strip())
    r = ropex(p, "--json", "--set", "rope.factor=8")
    report(r.returncode == 0 and json.loads(r.stdout)["factor"] == 8, "--set overrides the config file", r.stderr.strip())
    p = write("bad1.ini", "[model]\npreset = tiny\n[rope]\nscaling = yarn\nfactr = 4\n")
    expect_error("INI: unknown key named with file:line", [p], f"{p}:5: rope.factr: unknown key")
    p = write("bad2.ini", "[model]\npreset = tiny\n[optimizer]\nlr = 1\n")
    expect_error("INI: unknown section named with file:line", [p], f"{p}:4: unknown section [optimizer]")
    p = write("bad3.ini", "[model]\npreset = tiny\n[rope]\nfactor = lots\n")
    expect_error("INI: bad value named with file:line", [p], f"{p}:4: rope.factor = 'lots': expected a number")
    p = write("bad4.ini", "[model]\npreset = tiny\n[rope]\nthis line has no equals sign\n")
    expect_error("INI: syntax error named with file:line", [p], f"{p}:4: syntax error")
    p = write("bad5.ini", "[model]\npreset = tiny\n[rope]\nscaling = yarn\nfactor = 4\noriginal_max_len = 0\n")
    expect_error("INI: a combination the method cannot use names the file and key", [p],
                 f"{p}: rope.original_max_position_embeddings is required")
    expect_error("a missing checkpoint is named", ["run/x.h5"], "run/x.h5: no such file")


def main():
    global ROPEX, TMP
    build = sys.argv[1] if len(sys.argv) > 1 else "build"
    ROPEX = os.path.join(build, "ropex")
    print(f"seed {os.environ.get('ROPEX_TEST_SEED', '11')} (replay with ROPEX_TEST_SEED=N)")
    with tempfile.TemporaryDirectory() as tmp:
        TMP = tmp
        test_methods()
        test_reference_values()
        test_json_rope_scaling()
        test_errors()
        test_ini()
    print(f"{results['passed']} passed, {results['failed']} failed")
    return 1 if results["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())

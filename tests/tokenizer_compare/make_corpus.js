// Writes the tokenizer comparison corpus (2,400 entries): a deterministic mix (fixed-seed PRNG) of the
// text a tokenizer must get right. Format: one entry per line, escapes \n \t \r \\ and
// \xHH (raw byte, used for ill-formed UTF-8), as read by compare.js and test_tokenizer.c.
// usage: node make_corpus.js > testdata/tokenizer_corpus.txt (test_tokenizer_compare does this)
"use strict";
let seed = 20261123;
function rnd(n) { seed = (seed * 1103515245 + 12345) % 2147483648; return Math.floor(seed / 65536) % n; }
function pick(a) { return a[rnd(a.length)]; }

const words = ("the a of and to in is that it was for on are as with his they at be this from I have or by " +
  "one had not but what all were when we there can an your which their said if do will each about how up out " +
  "them then she many some so these would other into has more her two like him see time could no make than first " +
  "been its who now people my made over did down only way find use may water long little very after words called " +
  "just where most know photograph image picture describe assistant question answer model tokenizer server " +
  "don't it's we're they've I'm you'll he'd CAPITALS MixedCase camelCase snake_case kebab-case").split(" ");
const code = [
  "int main(int argc, char **argv) { return 0; }", "for (size_t i = 0; i < n; i++) sum += x[i] * y[i];",
  "def f(x):\\n    return x ** 2 + 3*x - 1", "const y = arr.map((v) => v * 2).filter(Boolean);",
  "if (a != b && c >= d || !e) { printf(\"%d\\n\", a); }", "SELECT id, name FROM users WHERE age > 30;",
  "#include <stdio.h>\\n#define MAX(a, b) ((a) > (b) ? (a) : (b))", "    \\tindented\\tcode();  // comment",
  "let mut v: Vec<u32> = Vec::with_capacity(16);", "x = {\"key\": [1, 2.5, -3e10, null, true]}",
  "https://example.com/path?query=1&other=%20two#frag", "user@example.org <mailto:user@example.org>",
];
const scripts = [
  "日本語のテキストです。東京は晴れています。", "中文文本测试，今天天气很好。我们去公园散步吧！",
  "한국어 문장입니다. 안녕하세요!", "Привет, как дела? Москва — столица России.",
  "مرحبا بك في العالم العربي. كيف حالك اليوم؟", "नमस्ते, आप कैसे हैं? यह हिंदी में एक वाक्य है।",
  "Ελληνικά: Καλημέρα κόσμε", "עברית: שלום עולם", "ไทย: สวัสดีครับ", "Tiếng Việt: Xin chào thế giới",
  "Türkçe: Günaydın, İstanbul", "Deutsch: Größe, Straße, Übermäßig", "Français : déjà-vu, où, naïve, cœur",
  "Español: ¿Dónde está la biblioteca? ¡Olé!", "Português: ação, coração, pão",
];
const emoji = [
  "😀", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "❤️", "🇯🇵", "🧑🏿‍💻", "👩‍❤️‍💋‍👨", "1️⃣", "🤖✨🚀", "☕", "🫠",
];
const combining = [
  "e\u0301", "a\u0308", "n\u0303", "Cafe\u0301 cre\u0300me bru\u0302le\u0301e", "\u1100\u1161\u11a8",
  "o\u0323\u0302", "Z\u0351\u0368\u0368a\u0352l\u0347g\u0334o\u0358", "\u212b ohm \u2126 fi\ufb01 ﬀ", "ｆｕｌｌｗｉｄｔｈ ＡＢＣ １２３",
  "\u00c5ngstr\u00f6m vs A\u030angstro\u0308m",
];
const specials = [
  "<s>", "</s>", "<unk>", "<image>", "<pad>", "<|im_start|>", "<|im_end|>", "<|endoftext|>",
  "<|vision_start|><|image_pad|><|vision_end|>", "<think>", "</think>", "<tool_call>", "<0x41>",
  // added tokens with lstrip / rstrip / single_word / normalized in the test's "flags" tokenizer
  "  <mask>", "<sep>  ", " \t<both>\n ", " cat ", "concatenate", "cat's", "dog house", "dog  house", "a dog house!",
];
const bad = [
  "\\xff", "\\xfe\\xff", "\\xc3", "\\xe2\\x82", "\\xf0\\x9f\\x98", "\\xed\\xa0\\x80", "\\xc0\\xaf", "\\x80\\x80",
  "\\xf4\\x90\\x80\\x80", "\\x00", "\\x01\\x1b[31m", "\\x7f",
];
const spaces = [" ", "  ", "   ", "\\t", "\\n", "\\n\\n", " \\n ", "\\r\\n", "\\t\\t", "        ", "\u00a0", "\u3000", "\u2003", "\u200b"];

function sentence() {
  const n = 3 + rnd(14);
  const w = [];
  for (let i = 0; i < n; i++) w.push(pick(words));
  let s = w.join(" ");
  s = s[0].toUpperCase() + s.slice(1);
  return s + pick([".", "!", "?", ",", ";", ":", "...", ""]);
}
function number() {
  return pick([String(rnd(100000)), (rnd(1000000) / 100).toFixed(2), "-" + rnd(999), "1,234,567", "3.14159265358979",
               "0x" + rnd(65535).toString(16), "2026-11-23", "12:34:56", "1e-9", "100%", "$" + rnd(5000), "#" + rnd(99)]);
}

const gens = [
  () => sentence(), () => sentence() + " " + sentence(), () => pick(code), () => number() + " " + number(),
  () => pick(scripts), () => pick(scripts) + " " + sentence(), () => sentence() + " " + pick(emoji) + pick(emoji),
  () => pick(combining) + " " + pick(words), () => pick(specials) + sentence() + pick(specials),
  () => sentence() + " " + pick(specials) + " " + pick(words), () => pick(words) + pick(bad) + pick(words),
  () => pick(spaces) + pick(words) + pick(spaces) + pick(words) + pick(spaces),
  () => pick(words) + pick(spaces) + pick(spaces) + number(), () => pick(emoji).repeat(1 + rnd(4)),
  () => "x".repeat(1 + rnd(60)), () => " ".repeat(1 + rnd(20)) + pick(words), () => "=".repeat(rnd(30)) + "-".repeat(rnd(10)),
  () => pick(scripts) + pick(bad) + pick(emoji), () => "USER: <image>\\n" + sentence() + " ASSISTANT:",
  () => "<|im_start|>user\\n" + sentence() + "<|im_end|>\\n<|im_start|>assistant\\n",
  // Long entries: SentencePiece-style files have no pre-tokenizer, so BPE sees them whole.
  () => (rnd(8) ? "" : Array.from({ length: 20 + rnd(40) }, () => sentence()).join(pick([" ", "\\n", "  "]))),
  () => (rnd(8) ? "" : pick(scripts).repeat(5 + rnd(20))),
];

const out = [];
// Fixed edge cases first, then generated lines.
out.push("", " ", "  ", "\\n", "\\t", "a", "▁", "▁▁hello", "<s>", "<s><s>", " <s> ", "</s>hello", "hello<unk>world");
for (const s of [...scripts, ...emoji, ...combining, ...specials, ...bad, ...code]) out.push(s);
while (out.length < 2400) out.push(gens[rnd(gens.length)]());
process.stdout.write(out.join("\n") + "\n");

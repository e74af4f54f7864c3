"""Text for the tokenizer reference tests (test_tokenizers.py, test_chat_templates.py).

A deterministic mix (seeded random.Random) of what a tokenizer must get right: prose
with contractions in both cases, many scripts (Latin with accents, CJK, Arabic,
Devanagari, Cyrillic, Greek, Hebrew, Thai), emoji with ZWJ sequences, skin tones, flags
and keycaps, combining marks (NFC), code, whitespace runs, tabs, newlines, \r\n, digit
runs, the test tokenizers' added tokens embedded with and without spaces around them,
and ill-formed UTF-8. Entries are bytes; ill-formed ones are marked so the tests can
report them apart.

Corpus file format (what `modserve tokenize --file` and `modserve bench tokenizer`
read): one entry per line, escapes \\n \\t \\r \\\\ and \\xHH (one raw byte).
"""
import random

WORDS = (
    "the a of and to in is that it was for on are as with his they at be this from I have or by one had not but "
    "what all were when we there can an your which their said if do will each about how up out them then she many "
    "some so these would other into has more her two like him see time could no make than first been its who now "
    "people my made over did down only way find use may water long little very after words called just where most "
    "know photograph image picture describe assistant question answer model tokenizer server cat dog house "
    "CAPITALS MixedCase camelCase snake_case kebab-case naïve café façade résumé Zürich Ærøskøbing"
).split()
CONTRACTIONS = ["don't", "it's", "we're", "they've", "I'm", "you'll", "he'd", "DON'T", "IT'S", "We'Re", "I'M",
                "YOU'LL", "She'D", "o'clock", "rock'n'roll", "'s", "''", "'"]
SCRIPTS = [
    "日本語のテキストです。東京は晴れています。", "中文文本测试，今天天气很好。我们去公园散步吧！",
    "한국어 문장입니다. 안녕하세요!", "Привет, как дела? Москва — столица России.",
    "مرحبا بك في العالم العربي. كيف حالك اليوم؟", "नमस्ते, आप कैसे हैं? यह हिंदी में एक वाक्य है।",
    "Ελληνικά: Καλημέρα κόσμε", "עברית: שלום עולם", "ไทย: สวัสดีครับ", "Tiếng Việt: Xin chào thế giới",
    "Türkçe: Günaydın, İstanbul", "Deutsch: Größe, Straße, Übermäßig", "Français : déjà-vu, où, naïve, cœur",
    "Español: ¿Dónde está la biblioteca? ¡Olé!", "Português: ação, coração, pão", "Українська: Добрий день",
    "اللغة العربية ١٢٣٤٥٦٧٨٩٠", "देवनागरी ०१२३४५६७८९ अंक", "漢字かな交じり文ｶﾀｶﾅ", "𠀀𠀁𪚥 (supplementary CJK)",
]
EMOJI = ["😀", "👍🏽", "👍🏿", "👨‍👩‍👧‍👦", "🏳️‍🌈", "❤️", "🇯🇵", "🇺🇸🇫🇷", "🧑🏿‍💻", "👩‍❤️‍💋‍👨", "1️⃣", "#️⃣",
         "🤖✨🚀", "☕", "🫠", "👋🏻👋🏼👋🏽👋🏾👋🏿", "🧔‍♀️", "🏴‍☠️"]
COMBINING = ["e\u0301", "a\u0308", "n\u0303", "Cafe\u0301 cre\u0300me bru\u0302le\u0301e", "\u1100\u1161\u11a8",
             "o\u0323\u0302", "Z\u0351\u0368\u0368a\u0352l\u0347g\u0334o\u0358", "\u212b ohm \u2126 fi\ufb01 \ufb00",
             "ｆｕｌｌｗｉｄｔｈ ＡＢＣ １２３", "\u00c5ngstr\u00f6m vs A\u030angstro\u0308m", "\u0915\u094d\u0937"]
CODE = [
    "int main(int argc, char **argv) { return 0; }", "for (size_t i = 0; i < n; i++) sum += x[i] * y[i];",
    "def f(x):\n    return x ** 2 + 3*x - 1", "const y = arr.map((v) => v * 2).filter(Boolean);",
    'if (a != b && c >= d || !e) { printf("%d\\n", a); }', "SELECT id, name FROM users WHERE age > 30;",
    "#include <stdio.h>\n#define MAX(a, b) ((a) > (b) ? (a) : (b))", "    \tindented\tcode();  // comment",
    "let mut v: Vec<u32> = Vec::with_capacity(16);", 'x = {"key": [1, 2.5, -3e10, null, true]}',
    "https://example.com/path?query=1&other=%20two#frag", "user@example.org <mailto:user@example.org>",
    "\tif x:\n\t\tpass\r\n", "a\\b\\\\c \\n \\x41 \\", "```python\nprint('hi')\n```",
]
SPACES = [" ", "  ", "   ", "\t", "\n", "\n\n", " \n ", "\r\n", "\t\t", "        ", "\u00a0", "\u3000", "\u2003",
          "\u200b", " \t \n", "\n\n\n   "]
# Ill-formed UTF-8: lone continuation bytes, truncated sequences, surrogates, overlongs,
# past U+10FFFF, bytes that never occur; and valid control bytes.
BAD = [b"\xff", b"\xfe\xff", b"\xc3", b"\xe2\x82", b"\xf0\x9f\x98", b"\xed\xa0\x80", b"\xc0\xaf", b"\x80\x80",
       b"\xf4\x90\x80\x80", b"\xf8\x88\x80\x80\x80", b"\xe0\x80\x80", b"\xc3\x28", b"\x01\x1b[31m", b"\x7f",
       b"\x00"]
# The added tokens of the test tokenizers (some are plain text for the others).
ADDED = ["<s>", "</s>", "<unk>", "<image>", "<pad>", "<|im_start|>", "<|im_end|>", "<|endoftext|>",
         "<|vision_start|><|image_pad|><|vision_end|>", "<|begin_of_text|>", "<mask>", "<sep>", "<both>",
         "cat", "dog house", "<0x41>", "\u2581", "\u2581\u2581hello"]
ADDED_CONTEXTS = ["{t}", " {t}", "{t} ", "  {t}  ", "\t{t}\n", "x{t}y", "x {t} y", "{t}{t}", "{t} {t}",
                  "concatenate", "cat's", "a cat.", "Cats", "dog  house", "hot dog house!", "\n{t}\n\n"]


def sentence(r):
    n = 3 + r.randrange(14)
    w = [r.choice(WORDS + CONTRACTIONS) if r.randrange(4) else r.choice(CONTRACTIONS) for _ in range(n)]
    s = " ".join(w)
    return s[0].upper() + s[1:] + r.choice([".", "!", "?", ",", ";", ":", "...", ""])


def number(r):
    return r.choice([str(r.randrange(100000)), f"{r.randrange(1000000) / 100:.2f}", f"-{r.randrange(999)}",
                     "1,234,567", "3.14159265358979", hex(r.randrange(65535)), "2026-11-23", "12:34:56", "1e-9",
                     "100%", f"${r.randrange(5000)}", "".join(r.choice("0123456789") for _ in range(r.randrange(1, 30)))])


def added(r):
    return r.choice(ADDED_CONTEXTS).format(t=r.choice(ADDED))


GENERATORS = [
    lambda r: sentence(r), lambda r: sentence(r) + " " + sentence(r), lambda r: r.choice(CODE),
    lambda r: number(r) + " " + number(r), lambda r: r.choice(SCRIPTS), lambda r: r.choice(SCRIPTS) + " " + sentence(r),
    lambda r: sentence(r) + " " + r.choice(EMOJI) + r.choice(EMOJI), lambda r: r.choice(COMBINING) + " " + r.choice(WORDS),
    lambda r: added(r) + sentence(r) + added(r), lambda r: sentence(r) + " " + added(r) + " " + r.choice(WORDS),
    lambda r: r.choice(SPACES) + r.choice(WORDS) + r.choice(SPACES) + r.choice(WORDS) + r.choice(SPACES),
    lambda r: r.choice(WORDS) + r.choice(SPACES) + r.choice(SPACES) + number(r), lambda r: r.choice(EMOJI) * (1 + r.randrange(4)),
    lambda r: "x" * (1 + r.randrange(60)), lambda r: " " * (1 + r.randrange(20)) + r.choice(WORDS),
    lambda r: "=" * r.randrange(30) + "-" * r.randrange(10), lambda r: "USER: <image>\n" + sentence(r) + " ASSISTANT:",
    lambda r: "<|im_start|>user\n" + sentence(r) + "<|im_end|>\n<|im_start|>assistant\n",
    lambda r: r.choice(CONTRACTIONS) + " " + r.choice(CONTRACTIONS).upper() + r.choice(SPACES) + r.choice(CONTRACTIONS),
    lambda r: r.choice(SCRIPTS) + r.choice(SPACES) + r.choice(EMOJI) + number(r),
    # Long entries: SentencePiece-style files have no pre-tokenizer, so BPE sees them whole.
    lambda r: "" if r.randrange(8) else r.choice([" ", "\n", "  "]).join(sentence(r) for _ in range(20 + r.randrange(30))),
    lambda r: "" if r.randrange(8) else r.choice(SCRIPTS) * (3 + r.randrange(10)),
]


def corpus(n=5200, seed=20261207):
    """n entries (bytes); about 1 in 12 holds ill-formed UTF-8."""
    r = random.Random(seed)
    fixed = ["", " ", "  ", "\n", "\t", "a", "\u2581", "\u2581\u2581hello", "<s>", "<s><s>", " <s> ", "</s>hello",
             "hello<unk>world"] + SCRIPTS + EMOJI + COMBINING + CODE + SPACES + ADDED
    out = [s.encode() for s in fixed]
    out += [b"ab" + b + b"cd" for b in BAD]
    while len(out) < n:
        if r.randrange(12) == 0:
            out.append(r.choice(WORDS).encode() + r.choice(BAD) + r.choice(SCRIPTS + EMOJI).encode() + r.choice(BAD))
        else:
            out.append(r.choice(GENERATORS)(r).encode())
    return out


def training_text(n=1500, seed=7):
    """Valid text to train the test tokenizers on (no added tokens, no bad bytes)."""
    r = random.Random(seed)
    gens = GENERATORS[:8] + GENERATORS[10:16] + GENERATORS[18:20]
    return [r.choice(gens)(r) for _ in range(n)]


def escape(entry: bytes) -> bytes:
    """One corpus line: \\n \\t \\r \\\\ escaped, every other control byte and every byte of
    ill-formed UTF-8 as \\xHH, valid non-ASCII text as it is."""
    out = []
    for ch in entry.decode("utf-8", errors="surrogateescape"):
        c = ord(ch)
        if ch == "\\":
            out.append("\\\\")
        elif ch in "\n\t\r":
            out.append({"\n": "\\n", "\t": "\\t", "\r": "\\r"}[ch])
        elif 0xDC80 <= c <= 0xDCFF:  # a byte of ill-formed UTF-8
            out.append(f"\\x{c - 0xDC00:02x}")
        elif c < 0x20 or c == 0x7F:
            out.append(f"\\x{c:02x}")
        else:
            out.append(ch)
    return "".join(out).encode()


def write_corpus(path, entries):
    with open(path, "wb") as f:
        for e in entries:
            f.write(escape(e) + b"\n")

"""modserve's tokenizer against Hugging Face `tokenizers` (the library itself).

Trains small tokenizers with the library (one per pipeline family modserve supports),
saves each as tokenizer.json + tokenizer_config.json, and compares on a generated
corpus of 5,000+ lines (tokenizer_corpus.py):
  - encode: `modserve tokenize --model DIR --file CORPUS --jsonl` ids vs
    Tokenizer.encode(text, add_special_tokens=True); ill-formed UTF-8 lines go to
    modserve as bytes and to the library as bytes.decode("utf-8", errors="replace")
    (modserve replaces each maximal ill-formed subpart with U+FFFD, as Python does);
  - decode: `modserve tokenize --decode-file` on the library's ids of every line and on
    random id sequences (byte-fallback pieces, special and unknown ids) vs
    Tokenizer.decode(ids, skip_special_tokens=False and True);
  - streaming: modserve's incremental decode of the same ids, pieces joined, vs the
    library's full decode: exactly equal (U+0000 aside, as in decode). A byte-fallback
    run that is well-formed at its start and ill-formed at its end is the case to
    watch: full decode turns every byte of it into U+FFFD, and the stream holds such a
    run until it is known how it ends (llm/tokenizer.h).
Tokenizers:
  llama2           SentencePiece-style BPE, byte fallback, Llama-2's normalizer
                   (Prepend + Replace), no pre-tokenizer, decoder Replace/ByteFallback/
                   Fuse/Strip, BOS post-processor; added tokens with lstrip / rstrip /
                   single_word / normalized flags
  llama2-metaspace the same model with transformers' non-legacy Llama conversion
                   (Metaspace pre-tokenizer, prepend_scheme first, no split)
  metaspace-split  the same model, Metaspace pre-tokenizer (always, split) and a
                   ByteFallback + Metaspace decoder
  gpt2             byte-level BPE, ByteLevel pre-tokenizer with GPT-2's regex
  llama3           byte-level BPE, Split on Llama-3's regex + ByteLevel, ignore_merges,
                   <|begin_of_text|> post-processor
  qwen2            byte-level BPE, NFC, Split on Qwen2's regex + ByteLevel, ChatML and
                   vision special tokens, added tokens with flags
  tiny             the tokenizer `modserve model init --preset tiny` writes (not trained
                   by the library: it checks that the library reads modserve's file alike)
Known differences (KNOWN below, also in docs/tokenizer.md) are counted apart; any
other mismatch fails the test. Exit 0 only when every comparison ran and matched.
Usage: test_tokenizers.py --modserve BIN --source DIR --work DIR [--keep N]
"""
import argparse
import json
import os
import random
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tokenizer_corpus  # noqa: E402
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers  # noqa: E402
from tokenizers import processors, trainers  # noqa: E402

GPT2_PATTERN = None  # ByteLevel(use_regex=True) carries GPT-2's regex itself
LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
                  r"\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
                 r"\s*[\r\n]+|\s+(?!\S)|\s+")

# Added tokens with every matching flag the library has (content, special, lstrip, rstrip,
# single_word, normalized).
FLAGGED = [("<mask>", True, True, False, False, False), ("<sep>", True, False, True, False, False),
           ("<both>", True, True, True, False, False), ("cat", False, False, False, True, False),
           ("dog house", False, False, False, False, True)]

# Known differences, each also in docs/tokenizer.md: name -> (test on a mismatch, reason).
# A mismatch is "known" only when the test says the reason explains it exactly.
def nul_dropped(hf, ours, ids, tok):
    """modserve's decoded text is a C string: U+0000 is dropped from it (HF keeps it)."""
    return "\x00" in hf and hf.replace("\x00", "") == ours


KNOWN = {"decode": [("nul-dropped", nul_dropped)],
         "stream": [("nul-dropped", nul_dropped)]}


def added(content, special=True, lstrip=False, rstrip=False, single_word=False, normalized=False):
    return AddedToken(content, special=special, lstrip=lstrip, rstrip=rstrip, single_word=single_word,
                      normalized=normalized)


def add_flagged(tok):
    for c, special, lstrip, rstrip, single_word, normalized in FLAGGED:
        t = added(c, special, lstrip, rstrip, single_word, normalized)
        (tok.add_special_tokens if special else tok.add_tokens)([t])


def sentencepiece_style(train, metaspace, split=False):
    """Llama-2's layout: <unk> <s> </s>, <0x00>..<0xFF> as ids 3..258, then BPE pieces."""
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
    # Scripts from Devanagari on (Indic, Thai, CJK, Hangul; emoji kept) stay out of the
    # vocabulary, so the corpus reaches them through byte fallback. (The trainer's
    # limit_alphabet would do it too, but breaks ties between equally frequent
    # characters at random: the vocabulary would change from run to run.)
    train = [t for t in train if all(ord(ch) < 0x0900 or ord(ch) >= 0x1F000 for ch in t)]
    tok.train_from_iterator(train, trainers.BpeTrainer(vocab_size=1200, show_progress=False,
                                                       special_tokens=["<unk>", "<s>", "</s>"]))
    spec = json.loads(tok.to_str())
    trained = sorted(spec["model"]["vocab"].items(), key=lambda kv: kv[1])
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = len(vocab)
    for piece, _ in trained:
        vocab.setdefault(piece, len(vocab))
    spec["model"]["vocab"] = vocab
    spec["added_tokens"] = [dict(id=i, content=c, single_word=False, lstrip=False, rstrip=False, normalized=False,
                                 special=True) for i, c in enumerate(["<unk>", "<s>", "</s>"])]
    tok = Tokenizer.from_str(json.dumps(spec))
    if split:  # Metaspace on both sides, splitting at each space (older conversions)
        tok.normalizer = None
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
    elif metaspace:  # transformers' LlamaConverter with legacy=False
        tok.normalizer = None
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first", split=False)
    else:  # Llama-2's tokenizer.json (legacy)
        tok.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")])
        tok.pre_tokenizer = None
    tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    if split:
        tok.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Metaspace(
            replacement="\u2581", prepend_scheme="always", split=True)])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                       special_tokens=[("<s>", 1)])
    tok.add_special_tokens([added("<image>"), added("<pad>")])
    if not metaspace:
        add_flagged(tok)
    return tok, {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"}


def byte_level(train, kind):
    tok = Tokenizer(models.BPE())
    if kind == "gpt2":
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    else:
        pattern = LLAMA3_PATTERN if kind == "llama3" else QWEN2_PATTERN
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False)])
    if kind == "qwen2":
        tok.normalizer = normalizers.NFC()
    first = {"gpt2": ["<|endoftext|>"], "llama3": [], "qwen2": []}[kind]
    tok.train_from_iterator(train, trainers.BpeTrainer(vocab_size=1500, show_progress=False, special_tokens=first,
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.decoder = decoders.ByteLevel()
    if kind == "llama3":
        spec = json.loads(tok.to_str())
        spec["model"]["ignore_merges"] = True
        tok = Tokenizer.from_str(json.dumps(spec))
        tok.add_special_tokens([added("<|begin_of_text|>"), added("<|end_of_text|>"),
                                added("<|reserved_special_token_0|>"), added("<image>")])
        tok.post_processor = processors.Sequence([
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(single="<|begin_of_text|> $A",
                                          special_tokens=[("<|begin_of_text|>", tok.token_to_id("<|begin_of_text|>"))])])
        return tok, {"bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>"}
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    if kind == "gpt2":
        return tok, {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>"}
    tok.add_special_tokens([added(t) for t in ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>",
                                               "<|vision_end|>", "<|image_pad|>", "<image>"]])
    add_flagged(tok)
    return tok, {"bos_token": None, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}


def build_all(work):
    train = tokenizer_corpus.training_text()
    out = {}
    for name, build in [("llama2", lambda: sentencepiece_style(train, False)),
                        ("llama2-metaspace", lambda: sentencepiece_style(train, True)),
                        ("metaspace-split", lambda: sentencepiece_style(train, True, split=True)),
                        ("gpt2", lambda: byte_level(train, "gpt2")), ("llama3", lambda: byte_level(train, "llama3")),
                        ("qwen2", lambda: byte_level(train, "qwen2"))]:
        tok, config = build()
        d = os.path.join(work, name)
        os.makedirs(d, exist_ok=True)
        tok.save(os.path.join(d, "tokenizer.json"))
        config = dict(config, tokenizer_class="PreTrainedTokenizerFast", model_max_length=4096)
        with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
            json.dump(config, f, indent=1)
        out[name] = (Tokenizer.from_file(os.path.join(d, "tokenizer.json")), d)  # as saved
    return out


def tiny_preset(modserve_bin, work):
    """The tokenizer `modserve model init --preset tiny` writes (Llama-2's layout, llava-1.5's
    chat template), read by the library as it is."""
    d = os.path.join(work, "tiny")
    p = subprocess.run([modserve_bin, "model", "init", "--preset", "tiny", "--seed", "1", "--out", d],
                       capture_output=True)
    if p.returncode != 0:
        raise RuntimeError(f"modserve model init failed: {p.stderr.decode(errors='replace')}")
    return Tokenizer.from_file(os.path.join(d, "tokenizer.json")), d


def modserve(args, mode_args):
    p = subprocess.run([args.modserve, "tokenize", "--model"] + mode_args, capture_output=True)
    if p.returncode != 0:
        raise RuntimeError(f"modserve tokenize {' '.join(mode_args)} failed ({p.returncode}): "
                           f"{p.stderr.decode(errors='replace')[-2000:]}")
    return [json.loads(line) for line in p.stdout.decode("utf-8").splitlines()]


def _bytes_to_unicode():
    """GPT-2's byte -> printable character map (what ByteLevel tokens are spelt in)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    extra = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + extra)
            extra += 1
    return dict(zip(bs, map(chr, cs)))


def random_ids(r, tok, n_lines):
    """Id sequences no encoder produces: any id, runs of byte-fallback pieces (valid and
    ill-formed UTF-8), special tokens, ids past the vocabulary; for byte-level
    tokenizers also lines of one-byte tokens: ill-formed bytes by the dozen, then a
    character split over tokens (streaming holds only that character)."""
    n = tok.get_vocab_size(with_added_tokens=True)
    byte_id = {b: tok.token_to_id(f"<0x{b:02X}>") for b in range(256)}
    has_bytes = byte_id[0] is not None
    level_id = {b: tok.token_to_id(c) for b, c in _bytes_to_unicode().items()}
    lines = []
    if not has_bytes and all(v is not None for v in level_id.values()):
        for m in range(56, 72):  # the character at every place around 64 tokens
            raw = bytes([0x80]) * m + "é€😀語"[m % 4].encode() + b"ok"
            lines.append([level_id[b] for b in raw])
        for _ in range(n_lines // 20):
            raw = bytes(r.choice([0x80, 0xBF, 0xFF, 0xC0, 0xE2]) for _ in range(r.randrange(60, 90)))
            raw += r.choice("é€😀語🇯🇵").encode() + b"\xF0\x9F"[: r.randrange(3)] + b"ok"
            lines.append([level_id[b] for b in raw])
    specials = [tok.token_to_id(t) for t in ["<s>", "</s>", "<unk>", "<image>", "<|im_end|>", "<mask>", "<both>"]
                if tok.token_to_id(t) is not None]
    for _ in range(n_lines):
        ids = []
        for _ in range(1 + r.randrange(30)):
            k = r.randrange(6)
            if k == 0 and has_bytes:  # a character as byte pieces, sometimes cut short
                raw = r.choice("é€😀語🇯🇵").encode()
                raw = raw[: r.randrange(1, len(raw) + 1)]
                ids += [byte_id[b] for b in raw]
            elif k == 1 and has_bytes:
                ids.append(byte_id[r.randrange(256)])
            elif k == 2 and specials:
                ids.append(r.choice(specials))
            elif k == 4 and has_bytes and r.randrange(4) == 0:
                # a long run: well-formed characters, then half the time one cut short
                # (full decode: U+FFFD for every byte of the run, streaming likewise)
                raw = "".join(r.choice("é€😀語🇯🇵a") for _ in range(2 + r.randrange(10))).encode()
                if r.randrange(2):
                    raw += "😀".encode()[: 1 + r.randrange(3)]
                ids += [byte_id[b] for b in raw]
            elif k == 3 and r.randrange(10) == 0:
                ids.append(n + r.randrange(50))  # no such token: skipped
            else:
                ids.append(r.randrange(n))
        lines.append(ids)
    return lines


def compare(args, name, tok, d, entries, corpus_path, r):
    t0 = time.time()
    texts = [e.decode("utf-8", errors="replace") for e in entries]
    ref = [enc.ids for enc in tok.encode_batch(texts, add_special_tokens=True)]
    ours = modserve(args, [d, "--file", corpus_path, "--jsonl"])
    bad = {"ids": [], "decode": [], "stream": []}
    known_count = {}

    def check(kind, hf, ours, ids, what):
        """True when equal or a known difference (counted); else a listed mismatch."""
        if hf == ours:
            return
        for reason, explains in KNOWN.get(kind, []):
            if explains(hf, ours, ids, tok):
                known_count[reason] = known_count.get(reason, 0) + 1
                return
        bad[kind].append(f"{what}\n    hf:       {hf!r}\n    modserve: {ours!r}")

    if len(ours) != len(entries):
        print(f"FAIL {name}: modserve gave {len(ours)} lines for {len(entries)} entries")
        return False
    for i, (a, b) in enumerate(zip(ref, ours)):
        check("ids", a, b["ids"], a, f"line {i + 1} {entries[i][:80]!r}")
    # Decode the library's ids of every line, and random ones, with both.
    id_lines = ref + random_ids(r, tok, 600)
    dec_path = os.path.join(args.work, f"{name}.ids")
    with open(dec_path, "w") as f:
        for ids in id_lines:
            f.write(",".join(map(str, ids)) + "\n")
    dec = modserve(args, [d, "--decode-file", dec_path])
    if len(dec) != len(id_lines):
        print(f"FAIL {name}: modserve decoded {len(dec)} lines of {len(id_lines)}")
        return False
    special = {i for i, t in tok.get_added_tokens_decoder().items() if t.special}
    for skip in (False, True):
        hf_text = tok.decode_batch(id_lines, skip_special_tokens=skip)
        for i, ids in enumerate(id_lines):
            what = f"ids line {i + 1} skip_special={skip} {ids[:30]}"
            if skip:  # what the decoders see: special tokens dropped first
                ids = [t for t in ids if t not in special]
            check("decode", hf_text[i], dec[i]["skip" if skip else "text"], ids, what)
            # The pieces of modserve's streaming decode, joined: exactly the full decode.
            # (HF's DecodeStream is no reference: it sends the start of a byte run that
            # turns ill-formed later, it has no finish, and it raises on some runs.)
            streamed = dec[i]["stream_skip" if skip else "stream"]
            check("stream", hf_text[i], streamed, ids, what)
    n_bad = sum(len(v) for v in bad.values())
    print(f"{name}: {len(entries)} lines encoded ({sum(map(len, ref))} ids), {len(id_lines)} id lines "
          f"({len(id_lines) - len(entries)} random) decoded and streamed, with and without special tokens; "
          f"mismatches: ids {len(bad['ids'])}, decode {len(bad['decode'])}, stream {len(bad['stream'])}; "
          f"known differences: {known_count or 'none'}; {time.time() - t0:.1f} s")
    for kind, items in bad.items():
        for what in items[: args.keep]:
            print(f"  {kind}: {what}")
    return n_bad == 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--modserve", required=True)
    ap.add_argument("--source", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--keep", type=int, default=5, help="mismatches printed per check")
    ap.add_argument("--only", help="one tokenizer name")
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    t0 = time.time()
    toks = build_all(args.work)
    toks["tiny"] = tiny_preset(args.modserve, args.work)
    entries = tokenizer_corpus.corpus()
    corpus_path = os.path.join(args.work, "corpus.txt")
    tokenizer_corpus.write_corpus(corpus_path, entries)
    n_bad_utf8 = sum(1 for e in entries if e.decode("utf-8", errors="replace").encode() != e)
    print(f"corpus: {len(entries)} lines ({n_bad_utf8} with ill-formed UTF-8), {os.path.getsize(corpus_path)} bytes; "
          f"tokenizers trained in {time.time() - t0:.1f} s")
    ok = True
    r = random.Random(5)
    for name, (tok, d) in toks.items():
        if args.only and name != args.only:
            continue
        try:
            ok &= compare(args, name, tok, d, entries, corpus_path, r)
        except Exception as e:  # a failed run is a failure, never a skip
            print(f"FAIL {name}: {e}")
            ok = False
    # `modserve bench tokenizer --hf` runs the library through tokenizer_bench_hf.py on the
    # same corpus: it must run and report both sides (timings are not checked).
    p = subprocess.run([args.modserve, "bench", "tokenizer", "--model", toks["gpt2"][1], "--corpus", corpus_path,
                        "--rounds", "1", "--hf", sys.executable, "--hf-script",
                        os.path.join(os.path.dirname(os.path.abspath(__file__)), "tokenizer_bench_hf.py")],
                       capture_output=True)
    out = p.stdout.decode()
    if p.returncode != 0 or f"{len(entries)} entries" not in out or "hf tokenizers, encode_batch" not in out:
        print(f"FAIL bench tokenizer --hf: rc {p.returncode}\n{out}{p.stderr.decode()[-1000:]}")
        ok = False
    else:
        print("bench tokenizer --hf: ran (modserve and the library on the corpus)")
    print(f"{'PASS' if ok else 'FAIL'} ({time.time() - t0:.1f} s)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

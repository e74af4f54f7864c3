"""Hugging Face `tokenizers` encode timing for `modserve bench tokenizer --hf PYTHON`.

Reads a corpus in the format of tokenizer_corpus.py (escapes \\n \\t \\r \\\\ \\xHH;
ill-formed UTF-8 decoded with errors="replace", as the comparison test does), encodes
every entry with add_special_tokens=True, one call per entry and one encode_batch over
all, best of ROUNDS, on one thread (the caller sets TOKENIZERS_PARALLELISM=false and
RAYON_NUM_THREADS=1), and prints one JSON line:
{"entries": N, "bytes": B, "seconds_per_line": S, "seconds_batch": S}.
Usage: tokenizer_bench_hf.py TOKENIZER_JSON CORPUS ROUNDS
"""
import json
import re
import sys
import time

from tokenizers import Tokenizer

ESCAPE = re.compile(rb"\\(n|t|r|\\|x[0-9a-fA-F]{2})")


def unescape(line: bytes) -> bytes:
    def one(m):
        e = m.group(1)
        return {b"n": b"\n", b"t": b"\t", b"r": b"\r", b"\\": b"\\"}.get(e) or bytes([int(e[1:], 16)])

    return ESCAPE.sub(one, line)


def main():
    if len(sys.argv) != 4:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    tok = Tokenizer.from_file(sys.argv[1])
    with open(sys.argv[2], "rb") as f:
        raw = [unescape(line.rstrip(b"\n")) for line in f]
    texts = [e.decode("utf-8", errors="replace") for e in raw]
    rounds = max(1, int(sys.argv[3]))
    best_line = best_batch = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        for t in texts:
            tok.encode(t, add_special_tokens=True)
        best_line = min(best_line, time.perf_counter() - t0)
        t0 = time.perf_counter()
        tok.encode_batch(texts, add_special_tokens=True)
        best_batch = min(best_batch, time.perf_counter() - t0)
    print(json.dumps({"entries": len(texts), "bytes": sum(map(len, raw)), "seconds_per_line": best_line,
                      "seconds_batch": best_batch}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

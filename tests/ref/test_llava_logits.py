#!/usr/bin/env python3
"""modserve against transformers on LLaVA folders that transformers itself wrote.

For every folder of make_llava_models.SPECS (the config matrix real checkpoints use)
and prompts with 0, 1 and 3 images and a 300-token one with an image (PNG and JPEG,
sizes that need resizing and cropping; on the transformers side each image goes
through the folder's CLIPImageProcessor):
  - `modserve run --dump-logits` equals LlavaForConditionalGeneration's logits at the
    last prompt position: max |err| <= 1e-4 x max |logit|. bf16/f16 folders are
    compared with transformers in f32 on the same (upcast) weights, as modserve's CPU
    backend computes in f32.
  - 32 greedy tokens of `modserve run --min-tokens 32 --max-tokens 32` equal
    generate(do_sample=False, min_new_tokens=32, max_new_tokens=32) token by token
    (both mask EOS until 32 tokens exist).
Then through `modserve serve` on one folder: a chat completion with an image (the
prompt rendered by the folder's chat template and tokenized by transformers) and a
completion with token ids give the same 32 tokens as transformers and as `run`.

Usage: test_llava_logits.py --modserve BIN --source DIR --work DIR [--only NAME...]
Exit 0 when every comparison ran and passed.
"""
import argparse
import base64
import json
import os
import select
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_llava_models  # noqa: E402
import llava_ref  # noqa: E402

REL_TOL = 1e-4
NEW_TOKENS = 32
IMG = make_llava_models.IMAGE_TOKEN
# (name, prompt ids with the image token once per image, image files)
PROMPTS = [
    ("text", [1, 5, 17, 300, 42, 999, 7, 64], []),
    ("1 jpeg", [1, 20, IMG, 30, 31, 32, 900], ["wide.jpg"]),
    ("3 images", [1, IMG, 40, IMG, 41, 42, IMG, 43], ["landscape.png", "wide.jpg", "tall.png"]),
    # many KV blocks and RoPE at a few hundred positions
    ("300 text tokens + 1 png", [1] + [(37 * i) % 990 + 3 for i in range(150)] + [IMG]
     + [(53 * i) % 990 + 3 for i in range(150)], ["tall.png"]),
]


def make_images(work):
    """Synthetic images (smooth gradients plus a pattern, so resampling matters)."""
    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(7)
    files = {}
    for name, (w, h) in (("landscape.png", (75, 50)), ("wide.jpg", (200, 90)),
                         ("tall.png", (33, 61))):
        y, x = np.mgrid[0:h, 0:w]
        rgb = np.stack([x * 255.0 / w, y * 255.0 / h, 128 + 100 * np.sin((x + 2 * y) / 5.0)], -1)
        rgb += rng.normal(0, 12, rgb.shape)
        img = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB")
        path = os.path.join(work, name)
        img.save(path, quality=90) if name.endswith(".jpg") else img.save(path)
        files[name] = path
    return files


def compare(label, got_logits, got_tokens, want_logits, want_tokens, failures):
    import numpy as np
    scale = float(np.abs(want_logits).max())
    err = float(np.abs(got_logits - want_logits).max())
    ok_logits = got_logits.shape == want_logits.shape and err <= REL_TOL * scale
    first_diff = next((i for i, (a, b) in enumerate(zip(got_tokens, want_tokens)) if a != b), None)
    ok_tokens = len(got_tokens) == len(want_tokens) == NEW_TOKENS and first_diff is None
    print("  %-44s max|err| %.3g (%.2g x scale %.3g)  tokens %s" % (
        label, err, err / scale, scale,
        "equal (%d)" % NEW_TOKENS if ok_tokens else "DIFFER at %s" % first_diff))
    if not ok_logits:
        failures.append("%s: logits max |err| %g > %g x %g" % (label, err, REL_TOL, scale))
    if not ok_tokens:
        failures.append("%s: tokens differ at %s:\n    modserve     %s\n    transformers %s" % (
            label, first_diff, got_tokens, want_tokens))


def http_post(url, body):
    req = urllib.request.Request(url, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.loads(r.read())


def start_server(modserve, folder, log_path):
    log = open(log_path, "w")
    proc = subprocess.Popen([modserve, "serve", "--model", folder, "--port", "0", "--device", "cpu",
                             "--threads", "1"], stdout=subprocess.PIPE, stderr=log, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        # wait for output with a timeout, so a server that hangs while loading fails the test
        if not select.select([proc.stdout], [], [], 1.0)[0]:
            continue
        line = proc.stdout.readline()
        if "listening on " in line:
            return proc, line.split("listening on ")[1].strip().rstrip("/")
    proc.kill()
    proc.wait()
    raise RuntimeError("modserve serve did not start (see %s)" % log_path)


def check_serving(args, spec, ref, images, failures):
    """Chat with an image and completions with token ids, through modserve serve."""
    folder = os.path.join(args.work, spec["name"])
    question = "What is in the picture?"
    chat_ids = ref.chat_prompt_ids(question)
    want_chat, _ = ref.generate(chat_ids, [images["landscape.png"]], NEW_TOKENS)
    run_chat = llava_ref.modserve_run(args.modserve, folder, chat_ids, [images["landscape.png"]],
                                      os.path.join(args.work, "serve-run.f32"), NEW_TOKENS)
    text_ids = PROMPTS[0][1]
    want_text, _ = ref.generate(text_ids, [], NEW_TOKENS)
    proc, base = start_server(args.modserve, folder, os.path.join(args.work, "serve.log"))
    try:
        with open(images["landscape.png"], "rb") as f:
            url = "data:image/png;base64," + base64.b64encode(f.read()).decode()
        common = {"max_tokens": NEW_TOKENS, "min_tokens": NEW_TOKENS, "temperature": 0,
                  "return_token_ids": True}
        chat = http_post(base + "/v1/chat/completions", dict(common, messages=[
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                         {"type": "text", "text": question}]}]))
        comp = http_post(base + "/v1/completions", dict(common, prompt=text_ids))
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    got_chat = chat.get("modserve", {}).get("token_ids")
    got_comp = comp.get("modserve", {}).get("token_ids")
    for label, got, want in (("serve chat + png vs transformers", got_chat, want_chat),
                             ("run (chat prompt ids) vs transformers", run_chat, want_chat),
                             ("serve completions (ids) vs transformers", got_comp, want_text)):
        same = got == want
        print("  %-44s tokens %s" % (label, "equal (%d)" % len(want) if same else "DIFFER"))
        if not same:
            failures.append("%s:\n    modserve     %s\n    transformers %s" % (label, got, want))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--modserve", required=True)
    ap.add_argument("--source", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--only", nargs="*")
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    args.modserve = os.path.abspath(args.modserve)
    import numpy as np
    import transformers

    images = make_images(args.work)
    tok = make_llava_models.tiny_tokenizer(args.modserve, args.work)
    failures = []
    n_cmp = 0
    print("transformers %s; tolerance max|err| <= %g x max|logit|; %d greedy tokens" % (
        transformers.__version__, REL_TOL, NEW_TOKENS))
    specs = [s for s in make_llava_models.SPECS if not args.only or s["name"] in args.only]
    for i, spec in enumerate(specs):
        folder = os.path.join(args.work, spec["name"])
        make_llava_models.build(spec, folder, tok, seed=100 + i)
        ref = llava_ref.Reference(folder)
        print("%s (%s, %d image tokens)" % (spec["name"], spec["dtype"], ref.image_tokens))
        for label, ids, names in PROMPTS:
            files = [images[n] for n in names]
            dump = os.path.join(args.work, "logits.f32")
            got_tokens = llava_ref.modserve_run(args.modserve, folder, ids, files, dump, NEW_TOKENS)
            got_logits = np.fromfile(dump, dtype="<f4")
            want_tokens, want_logits = ref.generate(ids, files, NEW_TOKENS, with_logits=True)
            compare(label, got_logits, got_tokens, want_logits, want_tokens, failures)
            n_cmp += 1
        if i == 0:
            check_serving(args, spec, ref, images, failures)
            n_cmp += 3
    print("%d comparisons on %d folders, %d failed" % (n_cmp, len(specs), len(failures)))
    for f in failures:
        print("FAIL:", f)
    return 1 if failures or n_cmp == 0 else 0


if __name__ == "__main__":
    sys.exit(main())

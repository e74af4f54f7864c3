#!/usr/bin/env python3
"""Golden logits from Hugging Face transformers for the tiny model.

Writes, for `modserve model init --preset tiny --seed 1 --dtype f32`, the fixed image
tests/data/demo.png and the fixed prompt below:
  tiny_s1_logits.f32   raw little-endian float32, vocab_size values: the logits of the
                       last prompt position
  tiny_s1_inputs.json  the inputs (prompt ids as `modserve run --prompt-ids` takes them,
                       with the image token once) and the versions that produced it

The model is loaded offline from the folder into LlavaForConditionalGeneration (f32,
eager attention, on the CPU so the result does not depend on a GPU's kernels); the image
goes through the folder's CLIPImageProcessor; the image token is expanded to the
model's image_seq_length as LlavaProcessor does. tests/test_golden.c compares
`modserve run --dump-logits` with these files.

Usage: make_golden.py [--modserve PATH] [--model DIR] [--out DIR]
  --modserve  the binary used to write the model when --model is not given
              (default: ./modserve)
  --model     an existing tiny seed-1 f32 folder
  --out       where the two files go (default: this script's folder)
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.dirname(os.path.dirname(HERE))
# BOS, the image, then ordinary ids (the tiny vocabulary has 1024; 1000 is the image).
PROMPT_IDS = [1, 1000, 5, 17, 300, 42, 999, 7, 1023, 64]
IMAGE_TOKEN = 1000


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--modserve", default="./modserve")
    ap.add_argument("--model")
    ap.add_argument("--out", default=HERE)
    args = ap.parse_args()

    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    import numpy as np
    import torch
    import transformers
    from PIL import Image
    from transformers import CLIPImageProcessor, LlavaForConditionalGeneration

    tmp = None
    model_dir = args.model
    if not model_dir:
        tmp = tempfile.mkdtemp(prefix="golden_tiny_")
        model_dir = os.path.join(tmp, "tiny-s1-f32")
        subprocess.run([args.modserve, "model", "init", "--preset", "tiny", "--seed", "1",
                        "--dtype", "f32", "--out", model_dir], check=True)

    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = json.load(f)
    assert cfg["image_token_index"] == IMAGE_TOKEN, cfg["image_token_index"]
    vc = cfg["vision_config"]
    n_img = (vc["image_size"] // vc["patch_size"]) ** 2
    if cfg.get("vision_feature_select_strategy", "default") == "full":
        n_img += 1
    expanded = []
    for t in PROMPT_IDS:
        expanded += [t] * n_img if t == IMAGE_TOKEN else [t]

    torch.manual_seed(0)
    model = LlavaForConditionalGeneration.from_pretrained(
        model_dir, dtype=torch.float32, local_files_only=True, attn_implementation="eager")
    model.eval()
    proc = CLIPImageProcessor.from_pretrained(model_dir, local_files_only=True)
    image = Image.open(os.path.join(SOURCE, "tests", "data", "demo.png")).convert("RGB")
    pixels = proc(images=image, return_tensors="pt")["pixel_values"].to(torch.float32)

    ids = torch.tensor([expanded], dtype=torch.long)
    with torch.no_grad():
        out = model(input_ids=ids, pixel_values=pixels, attention_mask=torch.ones_like(ids))
    logits = out.logits[0, -1].to(torch.float32).numpy()
    vocab = cfg["text_config"]["vocab_size"]
    assert logits.shape == (vocab,), logits.shape
    assert np.isfinite(logits).all()

    os.makedirs(args.out, exist_ok=True)
    logits.astype("<f4").tofile(os.path.join(args.out, "tiny_s1_logits.f32"))
    meta = {
        "model": "modserve model init --preset tiny --seed 1 --dtype f32",
        "image": "tests/data/demo.png",
        "prompt_ids": PROMPT_IDS,
        "image_token_index": IMAGE_TOKEN,
        "image_tokens": n_img,
        "expanded_length": len(expanded),
        "vocab_size": vocab,
        "pixel_values_shape": list(pixels.shape),
        "pixel_values_sum": float(pixels.double().sum()),
        "image_processor": type(proc).__name__,
        "top5": [int(i) for i in np.argsort(-logits, kind="stable")[:5]],
        "logit_absmax": float(np.abs(logits).max()),
        "transformers": transformers.__version__,
        "torch": torch.__version__,
    }
    with open(os.path.join(args.out, "tiny_s1_inputs.json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    print("golden: wrote %s/tiny_s1_logits.f32 (%d logits, top-5 %s, |max| %.4g) with "
          "transformers %s" % (args.out, vocab, meta["top5"], meta["logit_absmax"],
                               transformers.__version__))
    if tmp:
        subprocess.run(["rm", "-rf", tmp])
    return 0


if __name__ == "__main__":
    sys.exit(main())

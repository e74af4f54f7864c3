#!/usr/bin/env python3
"""Folders written by `modserve model init` load in transformers and give modserve's logits.

1. Every preset (tiny, llava-1.5-7b), through preset_files (the files init writes, less
   the weights, plus the tensor list init would write and the values modserve reads back
   from the files): every value modserve reads (config.json, preprocessor_config.json)
   equals what LlavaConfig / CLIPImageProcessor.from_pretrained read; the
   LlavaForConditionalGeneration built on the meta
   device (no memory for weights) has exactly the tensors of the list, name for name
   (published layout, as transformers 4.57 saves) and shape for shape; the image
   processor, tokenizer and LlavaProcessor load, and the processor expands <image> to
   the model's tokens per image.
2. The tiny preset with real weights, in f32 (one file, published names), bf16 (3 shards,
   new names) and f16 (2 shards, published): from_pretrained reports no missing,
   unexpected or misshapen tensor, and `modserve run --dump-logits` equals transformers'
   last-position logits (max |err| <= 1e-4 x max |logit|, transformers in f32 on the
   upcast weights) and 16 greedy tokens, for a text prompt and one with an image.

Usage: test_model_init_loads.py --modserve BIN --preset-files BIN --source DIR --work DIR
"""
import argparse
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llava_ref  # noqa: E402

PRESETS = ["tiny", "llava-1.5-7b"]
# (dtype, layout, shards)
TINY_VARIANTS = [("f32", "published", 1), ("bf16", "new", 3), ("f16", "published", 2)]
REL_TOL = 1e-4
NEW_TOKENS = 16


def published_names(model):
    """transformers' parameter names in the published layout: the reverse of the class's
    _checkpoint_conversion_mapping, as save_pretrained applies it."""
    prefixes = [(new.lstrip("^"), old.lstrip("^"))
                for old, new in type(model)._checkpoint_conversion_mapping.items()]
    out = {}
    for name, p in model.state_dict().items():
        for new, old in prefixes:
            if name.startswith(new):
                name = old + name[len(new):]
                break
        out[name] = tuple(p.shape)
    return out


def check_preset(args, preset, failures):
    import torch
    from transformers import (AutoTokenizer, CLIPImageProcessor, LlavaConfig,
                              LlavaForConditionalGeneration, LlavaProcessor)
    from PIL import Image
    folder = os.path.join(args.work, "preset-" + preset)
    subprocess.run([args.preset_files, preset, folder], check=True)
    with open(os.path.join(folder, "tensors.json")) as f:
        listed = {t["name"]: tuple(t["shape"]) for t in json.load(f)}
    with open(os.path.join(folder, "parsed.json")) as f:
        parsed = json.load(f)
    cfg = LlavaConfig.from_pretrained(folder, local_files_only=True)
    proc = CLIPImageProcessor.from_pretrained(folder, local_files_only=True)
    problems = []
    # every value modserve reads from the files equals what transformers reads
    ip = parsed.pop("image_processor")
    theirs_proc = {"shortest_edge": proc.size["shortest_edge"], "crop_height": proc.crop_size["height"],
                   "crop_width": proc.crop_size["width"]}
    n_keys = 0
    for section, ours, theirs in (
            ("", {k: v for k, v in parsed.items() if not isinstance(v, dict)}, cfg),
            ("vision_config.", parsed["vision_config"], cfg.vision_config),
            ("text_config.", parsed["text_config"], cfg.text_config),
            ("preprocessor.", ip, proc)):
        for k, v in ours.items():
            got = theirs_proc[k] if theirs is proc and k in theirs_proc else getattr(theirs, k, "<absent>")
            if got is None and v == -1:
                got = -1  # modserve's "absent" token id
            if isinstance(v, list):
                same = isinstance(got, (list, tuple)) and all(abs(a - b) <= 1e-6 * abs(b) for a, b in zip(v, got))
            elif isinstance(v, float) and isinstance(got, (int, float)) and not isinstance(got, bool):
                same = abs(v - got) <= 1e-6 * abs(got)  # modserve keeps f32
            else:
                same = v == got
            n_keys += 1
            if not same:
                problems.append("%s%s: modserve reads %r, transformers %r" % (section, k, v, got))
    with torch.device("meta"):
        model = LlavaForConditionalGeneration(cfg)
    have = published_names(model)
    if cfg.text_config.tie_word_embeddings:
        have.pop("language_model.lm_head.weight", None)
    for name in sorted(set(have) | set(listed)):
        if name not in listed:
            problems.append("transformers has %s %s, init does not write it" % (name, have[name]))
        elif name not in have:
            problems.append("init writes %s, transformers has no such tensor" % name)
        elif have[name] != listed[name]:
            problems.append("%s: init shape %s, transformers %s" % (name, listed[name], have[name]))
    side = cfg.vision_config.image_size
    if proc.crop_size != {"height": side, "width": side} or proc.size != {"shortest_edge": side}:
        problems.append("image processor size %s crop %s, vision image_size %d" % (proc.size, proc.crop_size, side))
    AutoTokenizer.from_pretrained(folder, local_files_only=True)
    lp = LlavaProcessor.from_pretrained(folder, local_files_only=True)
    grid = side // cfg.vision_config.patch_size
    n_img = grid * grid + (1 if cfg.vision_feature_select_strategy == "full" else 0)
    enc = lp(text="USER: <image>\nWhat is it? ASSISTANT:", images=Image.new("RGB", (40, 30)),
             return_tensors="pt")
    expanded = int((enc["input_ids"] == lp.tokenizer.convert_tokens_to_ids("<image>")).sum())
    if expanded != n_img or cfg.image_seq_length != n_img:
        problems.append("LlavaProcessor expands <image> to %d tokens, image_seq_length %d, model %d" % (
            expanded, cfg.image_seq_length, n_img))
    n_params = sum(1 for _ in listed)
    print("preset %-13s %d config values and %d tensors (names, shapes) compared with transformers, "
          "%d image tokens, processor + tokenizer load: %s" % (
              preset, n_keys, n_params, n_img, "ok" if not problems else "%d problems" % len(problems)))
    failures += ["preset %s: %s" % (preset, p) for p in problems]


def check_tiny(args, dtype, layout, shards, failures):
    import numpy as np
    import torch
    from transformers import LlavaForConditionalGeneration
    name = "tiny-%s-%s-%d" % (dtype, layout, shards)
    folder = os.path.join(args.work, name)
    subprocess.run([args.modserve, "model", "init", "--preset", "tiny", "--seed", "3", "--dtype", dtype,
                    "--layout", layout, "--shards", str(shards), "--out", folder],
                   check=True, stdout=subprocess.DEVNULL)
    _, info = LlavaForConditionalGeneration.from_pretrained(
        folder, dtype=torch.float32, local_files_only=True, output_loading_info=True)
    for k in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs"):
        if info.get(k):
            failures.append("%s: from_pretrained %s: %s" % (name, k, info[k]))
    ref = llava_ref.Reference(folder)
    image = os.path.join(args.source, "tests", "data", "demo.jpg")
    for label, ids, images in (("text", [1, 300, 301, 302, 17], []),
                               ("1 image", [1, 5, 1000, 6, 7, 8], [image])):
        dump = os.path.join(args.work, "logits.f32")
        got_tokens = llava_ref.modserve_run(args.modserve, folder, ids, images, dump, NEW_TOKENS)
        got = np.fromfile(dump, dtype="<f4")
        want_tokens, want = ref.generate(ids, images, NEW_TOKENS, with_logits=True)
        scale = float(np.abs(want).max())
        err = float(np.abs(got - want).max()) if got.shape == want.shape else float("inf")
        same = got_tokens == want_tokens
        print("%-26s %-8s loads with no missing/unexpected tensor; max|err| %.3g (%.2g x scale %.3g), "
              "%d greedy tokens %s" % (name, label, err, err / scale, scale, NEW_TOKENS,
                                       "equal" if same else "DIFFER"))
        if not err <= REL_TOL * scale:
            failures.append("%s %s: max |err| %g > %g x %g" % (name, label, err, REL_TOL, scale))
        if not same:
            failures.append("%s %s: tokens\n    modserve     %s\n    transformers %s" % (
                name, label, got_tokens, want_tokens))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--modserve", required=True)
    ap.add_argument("--preset-files", required=True)
    ap.add_argument("--source", required=True)
    ap.add_argument("--work", required=True)
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    args.modserve = os.path.abspath(args.modserve)
    failures = []
    for preset in PRESETS:
        check_preset(args, preset, failures)
    for dtype, layout, shards in TINY_VARIANTS:
        check_tiny(args, dtype, layout, shards, failures)
    print("%d presets, %d tiny folders: %d failures" % (len(PRESETS), len(TINY_VARIANTS), len(failures)))
    for f in failures:
        print("FAIL:", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

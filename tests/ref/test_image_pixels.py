"""modserve's image preprocessing against Pillow + transformers' CLIPImageProcessor.

For a corpus written here (image_corpus.py: 1x1 to 4000x3000, extreme aspect ratios,
gray, gray+alpha, RGBA, palette, bilevel, 16-bit, interlaced, progressive and CMYK/YCCK
JPEG, RGB PNG/JPEG) the float32 pixels of `modserve image preprocess` must equal
CLIPImageProcessor's pixel_values (the image opened with PIL.Image.open) within 1e-6,
and those of its host reference (--host-reference) bit for bit,
under several preprocessor configs: the tiny model's (112 px), LLaVA-1.5's (336 px), and
a bilinear one whose crop is larger than the resized image (zero padding). A case over
1e-6 fails unless KNOWN_DIFFERENCES lists it with its measured bound (the same list is in
docs/encoder.md). Formats modserve refuses and Pillow reads must be refused with an
error naming the format. Prints per case the max abs difference.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
from PIL import Image
from transformers import CLIPImageProcessor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from image_corpus import write_corpus, write_refused  # noqa: E402

TOL = 1e-6
# (config, image) -> max abs difference allowed, each with its reason in docs/encoder.md
# ("Known differences"). Keep both lists the same.
KNOWN_DIFFERENCES = {}

LLAVA_15 = {  # llava-hf/llava-1.5-7b-hf's preprocessor_config.json
    "crop_size": {"height": 336, "width": 336}, "do_center_crop": True, "do_convert_rgb": True,
    "do_normalize": True, "do_rescale": True, "do_resize": True,
    "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_processor_type": "CLIPImageProcessor",
    "image_std": [0.26862954, 0.26130258, 0.27577711], "processor_class": "LlavaProcessor",
    "resample": 3, "rescale_factor": 0.00392156862745098, "size": {"shortest_edge": 336},
}
# bilinear, a crop wider and taller than the resized short side: transformers pads with zeros
BILINEAR_PAD = dict(LLAVA_15, resample=2, size={"shortest_edge": 100}, crop_size={"height": 112, "width": 120})
# the other PIL filters modserve implements (lanczos 1, box 4, hamming 5), on a subset
FILTER_SUBSET = ("rgb_640x480.png", "rgb_111x113_up.png", "tall_9x2000.png", "gray_alpha_300x200.png")
PAD_SUBSET = ("rgb_1x1.png", "rgb_640x480.png", "tall_9x2000.png", "gray_alpha_300x200.png",
              "cmyk_adobe_320x240.jpg", "rgb_333x250_422.jpg", "interlaced_rgb_203x157.png")


def run(cmd):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


def model_folder(args, name, preproc):
    """A folder with the tiny model's config.json and the given preprocessor config
    (None: the tiny model's own)."""
    tiny = os.path.join(args.work, "tiny")
    if not os.path.isdir(tiny):
        r = run([args.modserve, "model", "init", "--preset", "tiny", "--seed", "1", "--dtype", "f32", "--out", tiny])
        if r.returncode != 0:
            sys.exit(f"FAIL: model init: {r.stderr}")
    if preproc is None:
        return tiny
    d = os.path.join(args.work, name)
    os.makedirs(d, exist_ok=True)
    shutil.copy(os.path.join(tiny, "config.json"), d)
    with open(os.path.join(d, "preprocessor_config.json"), "w") as f:
        json.dump(preproc, f)
    return d


def modserve_pixels(args, folder, paths, out, plane, extra=()):
    """[len(paths), 3, H, W] from one modserve run, or (when that run refuses an image)
    per image: an array, or the error text of the image modserve refused."""
    r = run([args.modserve, "image", "preprocess", "--model", folder, "--out", out, *extra] + paths)
    if r.returncode == 0:
        flat = np.fromfile(out, dtype="<f4")
        if flat.size == len(paths) * plane:
            return list(flat.reshape(len(paths), -1))
        return [f"modserve wrote {flat.size} floats for {len(paths)} images of {plane}"] * len(paths)
    if len(paths) == 1:
        return [r.stderr.strip() or f"exit {r.returncode}"]
    return [modserve_pixels(args, folder, [p], out, plane, extra)[0] for p in paths]


def reference_pixels(proc, path):
    with Image.open(path) as im:
        # input_data_format: transformers guesses channels-first for an array whose first
        # axis is 1 or 3 long (an image 1 or 3 pixels high); the images are channels-last
        return proc(images=im, return_tensors="np", input_data_format="channels_last")["pixel_values"][0]


def to_bytes(x, proc):
    """The uint8 crop behind normalised pixels x [3, H, W]."""
    mean = np.array(proc.image_mean, np.float64)[:, None, None]
    std = np.array(proc.image_std, np.float64)[:, None, None]
    return np.rint((x.astype(np.float64) * std + mean) * 255).astype(np.int64)


def compare_config(args, cfg_name, folder, cases):
    proc = CLIPImageProcessor.from_pretrained(folder)
    ch, cw = proc.crop_size["height"], proc.crop_size["width"]
    t0 = time.time()
    ours = modserve_pixels(args, folder, [p for _, p in cases], os.path.join(args.work, f"{cfg_name}.f32"), 3 * ch * cw)
    # the host reference (ms_image_preprocess_f32) must be bit-equal: it rescales by the
    # double 1/255 as transformers does
    host = modserve_pixels(args, folder, [p for _, p in cases], os.path.join(args.work, f"{cfg_name}.host.f32"),
                           3 * ch * cw, ("--host-reference",))
    t_ms = time.time() - t0
    failures, worst = [], 0.0
    t0 = time.time()
    for i, (name, path) in enumerate(cases):
        if isinstance(ours[i], str):
            print(f"  {cfg_name:13s} {name:30s} modserve failed: {ours[i]}  FAIL")
            failures.append(f"{cfg_name}/{name}: modserve failed: {ours[i]}")
            continue
        ref = reference_pixels(proc, path)
        if ref.shape != (3, ch, cw) or ref.dtype != np.float32:
            failures.append(f"{cfg_name}/{name}: reference is {ref.dtype}{ref.shape}")
            continue
        mine = ours[i].reshape(3, ch, cw)
        d = float(np.abs(mine - ref).max())
        # the resized + cropped bytes behind both: x = (u/255 - mean)/std is far from any
        # rounding boundary of u, so round((x * std + mean) * 255) gives u back exactly
        same_bytes = np.array_equal(to_bytes(mine, proc), to_bytes(ref, proc))
        host_equal = not isinstance(host[i], str) and np.array_equal(host[i].reshape(3, ch, cw), ref)
        if not host_equal:
            failures.append(f"{cfg_name}/{name}: the host reference is not bit-equal to CLIPImageProcessor")
        worst = max(worst, d)
        bound = KNOWN_DIFFERENCES.get((cfg_name, name))
        verdict = "ok" if d <= TOL else (f"known difference (<= {bound:g})" if bound is not None and d <= bound else "FAIL")
        ndiff = int((mine != ref).sum())
        print(f"  {cfg_name:13s} {name:30s} max|diff| {d:.3g}  ({ndiff} of {ref.size} floats differ, "
              f"bytes {'equal' if same_bytes else 'DIFFER'}; host reference {'bit-equal' if host_equal else 'DIFFERS'})"
              f"  {verdict}")
        if verdict == "FAIL":
            failures.append(f"{cfg_name}/{name}: max abs difference {d:.3g} > {TOL:g}")
    print(f"  {cfg_name}: {len(cases)} images, worst {worst:.3g}; modserve {t_ms:.1f} s, reference {time.time() - t0:.1f} s")
    return failures, worst


def check_refused(args, folder, refused):
    failures = []
    for fmt, path, word in refused:
        if path is None:  # the pinned Pillow writes every one of them: not a skip
            print(f"  {fmt:9s} FAIL: {word}")
            failures.append(f"{fmt}: {word}")
            continue
        r = run([args.modserve, "image", "preprocess", "--model", folder, "--out", os.path.join(args.work, "refused.f32"), path])
        msg = r.stderr.strip().splitlines()[-1] if r.stderr.strip() else ""
        ok = r.returncode == 1 and word in msg
        print(f"  {fmt:9s} Pillow reads it; modserve: exit {r.returncode}, \"{msg}\"  {'ok' if ok else 'FAIL'}")
        if not ok:
            failures.append(f"{fmt}: want exit 1 and an error naming '{word}', got exit {r.returncode}: {msg}")
    return failures


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--modserve", required=True)
    ap.add_argument("--source", required=True)
    ap.add_argument("--work", required=True)
    args = ap.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    os.makedirs(os.path.join(args.work, "images"))
    cases = write_corpus(os.path.join(args.work, "images"), args.source)
    refused = write_refused(os.path.join(args.work, "images"))
    print(f"corpus: {len(cases)} images, {len(refused)} refused formats")

    failures = []
    configs = [("tiny-112", model_folder(args, "tiny", None), cases),
               ("llava-1.5-336", model_folder(args, "llava336", LLAVA_15), cases),
               ("bilinear-pad", model_folder(args, "bilinear_pad", BILINEAR_PAD),
                [c for c in cases if c[0] in PAD_SUBSET])]
    tiny_pre = json.load(open(os.path.join(configs[0][1], "preprocessor_config.json")))
    for resample, fname in ((1, "lanczos"), (4, "box"), (5, "hamming")):
        configs.append((f"{fname}-112", model_folder(args, fname, dict(tiny_pre, resample=resample)),
                        [c for c in cases if c[0] in FILTER_SUBSET]))
    compared = 0
    for cfg_name, folder, subset in configs:
        f, _ = compare_config(args, cfg_name, folder, subset)
        failures += f
        compared += len(subset)
    for key in KNOWN_DIFFERENCES:
        if not any(key[0] == c[0] and key[1] in (n for n, _ in c[2]) for c in configs):
            failures.append(f"KNOWN_DIFFERENCES names {key}, which is not a case")
    print("refused formats:")
    failures += check_refused(args, configs[0][1], refused)
    print(f"compared {compared} preprocessed images, {len(refused)} refused formats")
    if failures:
        print("FAIL:\n  " + "\n  ".join(failures))
        return 1
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())

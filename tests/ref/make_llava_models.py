#!/usr/bin/env python3
"""Tiny LLaVA folders written by transformers itself, for test_llava_logits.py.

Each folder is LlavaConfig -> LlavaForConditionalGeneration (seeded), saved with
save_pretrained (safetensors; sharded when the spec asks), plus the folder's
CLIPImageProcessor (preprocessor_config.json) and a tokenizer: the tiny byte-fallback
BPE that `modserve model init --preset tiny` writes (tokenizer.json +
tokenizer_config.json with its llava-1.5 chat template), so the vocabulary is 1024 with
<image> = 1000 and <pad> = 1001.

The specs cover, across the folders, the config values real LLaVA checkpoints use:
vision_feature_layer -2 and -1, vision_feature_select_strategy default and full,
grouped-query and multi-query heads (num_key_value_heads < num_attention_heads) and
plain multi-head, tied and untied embeddings, a projector with and without bias, both
tensor-name layouts (transformers 4.57 saves the published `language_model.model...`;
the newer `model.language_model...` is written by renaming the keys with safetensors),
one file or shards, and f32, bf16 and f16 files; also head_dim != hidden / heads, rms
epsilon 1e-6, rope_theta 5e5, Llama attention/MLP biases and a GELU vision tower.

Weights are redrawn after construction (seeded) with larger spreads than transformers'
init (std 0.02), so attention is far from uniform and the logits spread: near-ties
would make greedy comparisons depend on float noise.

Usage: make_llava_models.py --modserve BIN --out DIR [--only NAME...]
"""
import argparse
import json
import math
import os
import shutil
import subprocess
import sys

IMAGE_TOKEN = 1000
PAD_TOKEN = 1001

# One folder each. "layout" new = renamed keys; "shard" = a max_shard_size for
# save_pretrained; "top_tie" writes a top-level tie_word_embeddings that differs from
# text_config's (transformers ties by text_config only); optional: "image_size" (42),
# "text_hidden" (64), "head_dim" (hidden / heads; 16 with hidden 48 and 4 heads makes
# heads x head_dim != hidden), "rms_eps" (1e-5), "rope_theta" (1e4; 5e5 as Llama-3
# based LLaVAs), "bias" (Llama q/k/v/o and MLP biases), "vision_act" (quick_gelu).
SPECS = [
    dict(name="f32-l2-default-gqa", dtype="float32", feature_layer=-2, strategy="default",
         heads=4, kv_heads=2, tie=False, proj_bias=True, layout="published", shard=None),
    dict(name="f32-l1-full-mha-tied-new-sharded", dtype="float32", feature_layer=-1,
         strategy="full", heads=4, kv_heads=4, tie=True, proj_bias=False, layout="new",
         shard="150KB"),
    dict(name="bf16-l2-full-mqa-sharded", dtype="bfloat16", feature_layer=-2, strategy="full",
         heads=4, kv_heads=1, tie=False, proj_bias=False, layout="published", shard="100KB",
         rope_theta=500000.0, bias=True),
    dict(name="f16-l1-default-gqa-tied-new", dtype="float16", feature_layer=-1,
         strategy="default", heads=4, kv_heads=2, tie=True, proj_bias=True, layout="new",
         shard=None),
    dict(name="f32-l2-default-untied-toptie", dtype="float32", feature_layer=-2,
         strategy="default", heads=4, kv_heads=2, tie=False, proj_bias=True,
         layout="published", shard=None, top_tie=True, image_size=56, text_hidden=48,
         head_dim=16, rms_eps=1e-6),
    dict(name="bf16-l1-full-gqa-new-sharded", dtype="bfloat16", feature_layer=-1,
         strategy="full", heads=8, kv_heads=2, tie=False, proj_bias=True, layout="new",
         shard="120KB", vision_act="gelu"),
]


def llava_config(spec):
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig
    image_size = spec.get("image_size", 42)
    hidden = spec.get("text_hidden", 64)
    head_dim = spec.get("head_dim", hidden // spec["heads"])
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=56, num_hidden_layers=3,
                              num_attention_heads=2, image_size=image_size, patch_size=14,
                              projection_dim=16, layer_norm_eps=1e-5,
                              hidden_act=spec.get("vision_act", "quick_gelu"))
    text = LlamaConfig(vocab_size=1024, hidden_size=hidden, intermediate_size=112,
                       num_hidden_layers=2, num_attention_heads=spec["heads"],
                       num_key_value_heads=spec["kv_heads"], head_dim=head_dim,
                       max_position_embeddings=512, rms_norm_eps=spec.get("rms_eps", 1e-5),
                       rope_theta=spec.get("rope_theta", 10000.0),
                       attention_bias=spec.get("bias", False), mlp_bias=spec.get("bias", False),
                       tie_word_embeddings=spec["tie"], bos_token_id=1,
                       eos_token_id=2, pad_token_id=PAD_TOKEN)
    grid = image_size // 14
    n_img = grid * grid + (1 if spec["strategy"] == "full" else 0)
    return LlavaConfig(vision_config=vision, text_config=text, image_token_index=IMAGE_TOKEN,
                       vision_feature_layer=spec["feature_layer"],
                       vision_feature_select_strategy=spec["strategy"],
                       multimodal_projector_bias=spec["proj_bias"], image_seq_length=n_img,
                       pad_token_id=PAD_TOKEN)


def redraw(model, seed):
    """Seeded values with spreads that keep activations of order one."""
    import torch
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("lm_head.weight") and model.config.text_config.tie_word_embeddings:
                continue  # the same tensor as embed_tokens
            if "norm" in name and name.endswith(".weight"):
                val = 1.0 + 0.1 * torch.randn(p.shape, generator=g)
            elif name.endswith(".bias"):
                val = 0.1 * torch.randn(p.shape, generator=g)
            elif p.ndim == 1:  # class embedding
                val = 0.5 * torch.randn(p.shape, generator=g)
            elif "embed" in name:  # token and position embeddings
                val = 0.5 * torch.randn(p.shape, generator=g)
            else:  # linear and convolution weights: std 1/sqrt(fan_in)
                fan_in = p[0].numel()
                val = torch.randn(p.shape, generator=g) / math.sqrt(fan_in)
            p.copy_(val.to(p.dtype))


def rename_to_new_layout(folder):
    """Rewrites the published names as newer transformers saves them (model.language_model...)."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    def new_name(k):
        for old, new in (("language_model.model.", "model.language_model."),
                         ("language_model.lm_head.", "lm_head."),
                         ("vision_tower.", "model.vision_tower."),
                         ("multi_modal_projector.", "model.multi_modal_projector.")):
            if k.startswith(old):
                return new + k[len(old):]
        raise ValueError("unexpected tensor name %s" % k)

    files = sorted(f for f in os.listdir(folder) if f.endswith(".safetensors"))
    for f in files:
        path = os.path.join(folder, f)
        with safe_open(path, "pt") as st:
            tensors = {new_name(k): st.get_tensor(k) for k in st.keys()}
            meta = st.metadata()
        save_file(tensors, path, metadata=meta)
    index = os.path.join(folder, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as fh:
            idx = json.load(fh)
        idx["weight_map"] = {new_name(k): v for k, v in idx["weight_map"].items()}
        with open(index, "w") as fh:
            json.dump(idx, fh, indent=2)


def tensor_names(folder):
    from safetensors import safe_open
    names = []
    for f in sorted(os.listdir(folder)):
        if f.endswith(".safetensors"):
            with safe_open(os.path.join(folder, f), "pt") as st:
                names += list(st.keys())
    return names


def build(spec, out_dir, tokenizer_dir, seed=0):
    import torch
    from transformers import CLIPImageProcessor, LlavaForConditionalGeneration

    torch.manual_seed(seed)
    cfg = llava_config(spec)
    model = LlavaForConditionalGeneration(cfg).eval()
    redraw(model, seed)
    dtype = getattr(torch, spec["dtype"])
    model = model.to(dtype)
    if os.path.exists(out_dir):
        shutil.rmtree(out_dir)
    kwargs = {"safe_serialization": True}
    if spec["shard"]:
        kwargs["max_shard_size"] = spec["shard"]
    model.save_pretrained(out_dir, **kwargs)
    edge = cfg.vision_config.image_size
    CLIPImageProcessor(size={"shortest_edge": edge},
                       crop_size={"height": edge, "width": edge}).save_pretrained(out_dir)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(tokenizer_dir, f), os.path.join(out_dir, f))

    names = tensor_names(out_dir)
    assert any(n.startswith("language_model.model.") for n in names), names[:5]
    if spec["layout"] == "new":
        rename_to_new_layout(out_dir)
        names = tensor_names(out_dir)
        assert any(n.startswith("model.language_model.") for n in names), names[:5]
    assert spec["tie"] == (not any(n.endswith("lm_head.weight") for n in names))
    sharded = os.path.exists(os.path.join(out_dir, "model.safetensors.index.json"))
    assert sharded == bool(spec["shard"]), "sharding of %s" % spec["name"]
    if spec.get("top_tie"):
        path = os.path.join(out_dir, "config.json")
        with open(path) as fh:
            c = json.load(fh)
        c["tie_word_embeddings"] = not spec["tie"]
        with open(path, "w") as fh:
            json.dump(c, fh, indent=2)
    return cfg


def tiny_tokenizer(modserve, work):
    """The tokenizer files `modserve model init --preset tiny` writes."""
    tok = os.path.join(work, "tokenizer-source")
    if not os.path.exists(os.path.join(tok, "tokenizer.json")):
        subprocess.run([modserve, "model", "init", "--preset", "tiny", "--seed", "1", "--out", tok],
                       check=True, stdout=subprocess.DEVNULL)
    return tok


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--modserve", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--only", nargs="*")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    tok = tiny_tokenizer(args.modserve, args.out)
    for i, spec in enumerate(SPECS):
        if args.only and spec["name"] not in args.only:
            continue
        build(spec, os.path.join(args.out, spec["name"]), tok, seed=100 + i)
        print("wrote", spec["name"])
    return 0


if __name__ == "__main__":
    sys.exit(main())

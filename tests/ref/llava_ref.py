"""transformers' side of the LLaVA reference tests: one folder loaded in f32.

The model is LlavaForConditionalGeneration.from_pretrained(folder, dtype=float32,
eager attention) on the CPU, so bf16/f16 files are upcast exactly as modserve's CPU
backend upcasts them; images go through the folder's CLIPImageProcessor; the image
token of a prompt is expanded to the model's tokens per image, as LlavaProcessor does.
"""
import json
import os
import subprocess


class Reference:
    def __init__(self, folder):
        import torch
        from transformers import CLIPImageProcessor, LlavaForConditionalGeneration
        # The models are tiny: torch's thread pool costs more than it gains (6x slower
        # generate on a busy 2-core machine), and one thread keeps results reproducible.
        torch.set_num_threads(1)
        self.folder = folder
        with open(os.path.join(folder, "config.json")) as f:
            self.config = json.load(f)
        self.model = LlavaForConditionalGeneration.from_pretrained(
            folder, dtype=torch.float32, local_files_only=True,
            attn_implementation="eager").eval()
        self.processor = CLIPImageProcessor.from_pretrained(folder, local_files_only=True)
        c = self.model.config
        grid = c.vision_config.image_size // c.vision_config.patch_size
        self.image_tokens = grid * grid + (1 if c.vision_feature_select_strategy == "full" else 0)
        self.image_token = c.image_token_index
        self._tokenizer = None

    def _inputs(self, ids, image_files):
        import torch
        from PIL import Image
        expanded = []
        for t in ids:
            expanded += [t] * self.image_tokens if t == self.image_token else [t]
        assert ids.count(self.image_token) == len(image_files)
        kw = {}
        if image_files:
            imgs = [Image.open(p) for p in image_files]
            px = self.processor(images=imgs, return_tensors="pt")["pixel_values"]
            kw["pixel_values"] = px.to(torch.float32)
        input_ids = torch.tensor([expanded], dtype=torch.long)
        return dict(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), **kw)

    def generate(self, ids, image_files, n, with_logits=False):
        """n greedy tokens; EOS is masked until n exist (min_new_tokens), as --min-tokens.
        Also the raw logits of the last prompt position (the first step's, before any
        logits processor) when with_logits."""
        import torch
        inputs = self._inputs(ids, image_files)
        with torch.no_grad():
            out = self.model.generate(**inputs, do_sample=False, max_new_tokens=n, min_new_tokens=n,
                                      pad_token_id=self.config.get("pad_token_id", 0),
                                      return_dict_in_generate=True, output_logits=with_logits)
        tokens = [int(t) for t in out.sequences[0, inputs["input_ids"].shape[1]:]]
        logits = out.logits[0][0].to(torch.float32).numpy() if with_logits else None
        return tokens, logits

    def chat_prompt_ids(self, question):
        """One user turn (an image, then the question) through the folder's chat template."""
        from transformers import AutoTokenizer
        if self._tokenizer is None:
            self._tokenizer = AutoTokenizer.from_pretrained(self.folder, local_files_only=True)
        messages = [{"role": "user", "content": [{"type": "image"},
                                                 {"type": "text", "text": question}]}]
        text = self._tokenizer.apply_chat_template(messages, add_generation_prompt=True,
                                                   tokenize=False)
        return self._tokenizer(text)["input_ids"]


def modserve_run(modserve, folder, ids, images, dump, n):
    """`modserve run` on the CPU: n greedy tokens with EOS masked until n exist
    (--min-tokens, as min_new_tokens), the last prompt position's logits into dump."""
    cmd = [modserve, "run", "--model", folder, "--prompt-ids", ",".join(map(str, ids)),
           "--max-tokens", str(n), "--min-tokens", str(n), "--dump-logits", dump,
           "--device", "cpu", "--threads", "1"]
    for im in images:
        cmd += ["--image", im]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError("%s failed (%d): %s" % (" ".join(cmd), p.returncode, p.stderr[-2000:]))
    return [int(t) for t in p.stdout.splitlines()[0].split(",")]

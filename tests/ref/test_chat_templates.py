"""modserve's chat formats against transformers' apply_chat_template.

For each chat format modserve renders in C (llm/chat_template.c: llava-1.5, llama-2,
chatml, qwen2), a model folder gets a tokenizer trained by test_tokenizers.py and a
tokenizer_config.json carrying the Jinja chat template its model family publishes
(llava-hf/llava-1.5-7b-hf, meta-llama/Llama-2-7b-chat-hf, a plain ChatML template,
Qwen/Qwen2-VL-7B-Instruct); the tiny preset's folder (`modserve model init`) is used
as written, with its own llava-1.5 template. Generated conversations (system or not, one to four turns,
images anywhere in a message, text with surrounding whitespace, every script of the
corpus) go to
  - `modserve tokenize --model DIR --messages FILE`: the prompt text and the ids by the
    rules of a chat request to `modserve serve` (ms_chat_tokenize; without
    --chat-template the format is found by matching the folder's template, as the
    server does; the server's HTTP path itself is not run);
  - transformers: AutoTokenizer.from_pretrained(DIR).apply_chat_template(tokenize=False),
    then the tokenizer on that text with add_special_tokens unless the text starts with
    bos_token (the rule of ProcessorMixin.apply_chat_template(tokenize=True)).
Prompt text and ids must be equal for every conversation.

Message content: modserve takes OpenAI parts (text, image, image_url). The LLaVA and
Qwen2-VL templates take the same parts ({"type": "image"}); the Llama-2 and ChatML
templates take a string, so they get the parts joined with "<image>" in place of each
image, which is modserve's documented rendering for those formats.
Usage: test_chat_templates.py --modserve BIN --source DIR --work DIR
"""
import argparse
import json
import os
import random
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_tokenizers  # noqa: E402
import tokenizer_corpus  # noqa: E402

# The templates as the model families publish them in tokenizer_config.json.
LLAVA15 = (
    "{% for message in messages %}{% if message['role'] != 'system' %}{{ message['role'].upper() + ': '}}"
    "{% endif %}{# Render all images first #}{% for content in message['content'] | selectattr('type', "
    "'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}{# Render all text next #}{% if message['role'] != "
    "'assistant' %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ "
    "content['text'] + ' '}}{% endfor %}{% else %}{% for content in message['content'] | selectattr('type', "
    "'equalto', 'text') %}{% generation %}{{ content['text'] + ' '}}{% endgeneration %}{% endfor %}{% endif "
    "%}{% endfor %}{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}")
LLAMA2 = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = "
    "messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}"
    "{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + "
    "'\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}")
CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + "
    "'\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
QWEN2_VL = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}"
    "<|im_end|>\n{% else %}{% for content in message['content'] %}{% if content['type'] == 'image' or 'image' in "
    "content or 'image_url' in content %}{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}"
    "Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>{% elif content['type'] "
    "== 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}"
    "Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>{% elif 'text' in content "
    "%}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt %}"
    "<|im_start|>assistant\n{% endif %}")

# case -> (tokenizer from test_tokenizers.py, template (None: the folder's own), content as
# parts?, alternating roles?)
FORMATS = {
    "llava-1.5": ("llama2", LLAVA15, True, False),
    "llama-2": ("llama2", LLAMA2, False, True),
    "chatml": ("qwen2", CHATML, False, False),
    "qwen2": ("qwen2", QWEN2_VL, True, False),
    "tiny-preset": ("tiny", None, True, False),  # modserve model init's folder as it is (llava-1.5)
}


def text_piece(r):
    """Message text: corpus-like text (valid UTF-8, added tokens such as <mask> or <|im_end|>
    typed in it), sometimes with whitespace around it."""
    t = r.choice(tokenizer_corpus.GENERATORS[:12])(r)  # [8:10]: added tokens typed in the text
    if r.randrange(4) == 0:
        t = r.choice(tokenizer_corpus.SPACES) + t + r.choice(tokenizer_corpus.SPACES)
    return t


def conversation(r, alternate):
    msgs = []
    if r.randrange(3) == 0:
        msgs.append({"role": "system", "content": [{"type": "text", "text": text_piece(r)}]})
    turns = 1 + r.randrange(4)
    for k in range(turns):
        role = ("user" if k % 2 == 0 else "assistant") if alternate or r.randrange(4) else r.choice(["user", "assistant"])
        parts = []
        for _ in range(1 + r.randrange(3)):
            if role == "user" and r.randrange(3) == 0:
                parts.append({"type": r.choice(["image", "image_url"])})
            else:
                parts.append({"type": "text", "text": text_piece(r)})
        msgs.append({"role": role, "content": parts})
    if alternate and msgs[-1]["role"] == "assistant" and r.randrange(2):
        msgs.append({"role": "user", "content": [{"type": "text", "text": text_piece(r)}]})
    return msgs


def for_template(msgs, as_parts):
    """The messages as the model's template takes them."""
    out = []
    for m in msgs:
        if as_parts:
            parts = [{"type": "image"} if p["type"] != "text" else p for p in m["content"]]
            out.append({"role": m["role"], "content": parts})
        else:
            out.append({"role": m["role"], "content": "".join(p.get("text", "<image>") for p in m["content"])})
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--modserve", required=True)
    ap.add_argument("--source", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--conversations", type=int, default=300, help="per format")
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    t0 = time.time()
    from transformers import AutoTokenizer

    toks = test_tokenizers.build_all(os.path.join(args.work, "tokenizers"))
    toks["tiny"] = test_tokenizers.tiny_preset(args.modserve, os.path.join(args.work, "tokenizers"))
    ok = True
    r = random.Random(11)
    for fmt, (tok_name, template, as_parts, alternate) in FORMATS.items():
        d = os.path.join(args.work, fmt)
        os.makedirs(d, exist_ok=True)
        src = toks[tok_name][1]
        with open(os.path.join(src, "tokenizer.json"), "rb") as f, open(os.path.join(d, "tokenizer.json"), "wb") as g:
            g.write(f.read())
        with open(os.path.join(src, "tokenizer_config.json")) as f:
            config = json.load(f)
        if template:
            config["chat_template"] = template
        with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
            json.dump(config, f, indent=1)
        hf = AutoTokenizer.from_pretrained(d)
        convs = [(conversation(r, alternate), bool(r.randrange(2))) for _ in range(args.conversations)]
        # The fixed cases first: one user turn with an image, and system + multi-turn.
        convs[0] = ([{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is this?"}]}], True)
        convs[1] = ([{"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
                     {"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "image_url"}]},
                     {"role": "assistant", "content": [{"type": "text", "text": " A cat. "}]},
                     {"role": "user", "content": [{"type": "text", "text": "And?"}]}], False)
        path = os.path.join(d, "messages.jsonl")
        with open(path, "w") as f:
            for msgs, gen in convs:
                f.write(json.dumps({"messages": msgs, "add_generation_prompt": gen}) + "\n")
        p = subprocess.run([args.modserve, "tokenize", "--model", d, "--messages", path], capture_output=True)
        if p.returncode != 0:
            print(f"FAIL {fmt}: modserve tokenize --messages failed ({p.returncode}): {p.stderr.decode()[-2000:]}")
            ok = False
            continue
        ours = [json.loads(line) for line in p.stdout.decode().splitlines()]
        if len(ours) != len(convs):
            print(f"FAIL {fmt}: {len(ours)} results for {len(convs)} conversations")
            ok = False
            continue
        bad_text = bad_ids = images = 0
        for i, ((msgs, gen), got) in enumerate(zip(convs, ours)):
            prompt = hf.apply_chat_template(for_template(msgs, as_parts), tokenize=False, add_generation_prompt=gen)
            bos = hf.bos_token
            ids = hf(prompt, add_special_tokens=not (bos and prompt.startswith(bos)))["input_ids"]
            images += sum(p["type"] != "text" for m in msgs for p in m["content"])
            if prompt != got["prompt"]:
                bad_text += 1
                if bad_text <= 3:
                    print(f"  {fmt} conversation {i}: prompt differs\n    hf:       {prompt!r}\n"
                          f"    modserve: {got['prompt']!r}")
            elif ids != got["ids"]:
                bad_ids += 1
                if bad_ids <= 3:
                    print(f"  {fmt} conversation {i}: ids differ\n    hf:       {ids}\n    modserve: {got['ids']}")
        # `modserve tokenize --chat --images 1 TEXT` is conversation 0 (one user turn,
        # the image first, generation prompt): the same ids (llama-2 once had two BOS).
        msgs0, gen0 = convs[0]
        prompt0 = hf.apply_chat_template(for_template(msgs0, as_parts), tokenize=False, add_generation_prompt=gen0)
        want0 = hf(prompt0, add_special_tokens=not (hf.bos_token and prompt0.startswith(hf.bos_token)))["input_ids"]
        p = subprocess.run([args.modserve, "tokenize", "--model", d, "--chat", "--images", "1", "What is this?"],
                           capture_output=True)
        chat_ok = p.returncode == 0 and p.stdout.decode().strip() == ",".join(map(str, want0))
        if not chat_ok:
            print(f"  {fmt}: --chat gave {p.stdout.decode().strip()!r} (rc {p.returncode}), hf {want0}")
        print(f"{fmt}: {len(convs)} conversations ({images} images, template matched from tokenizer_config.json), "
              f"prompt mismatches {bad_text}, id mismatches {bad_ids}; --chat {'same' if chat_ok else 'DIFFERS'}")
        ok &= bad_text == 0 and bad_ids == 0 and chat_ok
    # Bad input is an error naming the line and what is wrong (a missing role once freed
    # an uninitialized pointer).
    good = json.dumps({"messages": [{"role": "user", "content": "hi"}]})
    for bad, says in [({"messages": [{"role": "robot", "content": "hi"}]}, "robot"),
                      ({"messages": [{"content": "hi"}]}, "role"),
                      ({"messages": [{"role": "user", "content": [{"type": "video"}]}]}, "content part"),
                      ({"messages": "hi"}, "messages"), ({"messages": [], "add_generation_prompt": 1}, "boolean")]:
        bad_path = os.path.join(args.work, "bad.jsonl")
        with open(bad_path, "w") as f:
            f.write(good + "\n" + json.dumps(bad) + "\n")
        p = subprocess.run([args.modserve, "tokenize", "--model", os.path.join(args.work, "chatml"), "--messages",
                            bad_path], capture_output=True)
        err = p.stderr.decode()
        if p.returncode == 0 or "line 2" not in err or says not in err:
            print(f"FAIL: bad line {bad} gave rc {p.returncode}, stderr {err!r}")
            ok = False
    print(f"{'PASS' if ok else 'FAIL'} ({time.time() - t0:.1f} s)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""The official `openai` Python client against `modserve serve` on the tiny model.

Writes the tiny model (modserve model init --preset tiny --seed 1 --dtype f32), starts
`modserve serve` on port 0 (the port is read from its "listening on" line), waits for
/health, and drives it only through the client:
  - models.list;
  - chat with an image (a data: URL of a PNG made with Pillow), greedy and seeded
    sampling: the streamed deltas joined equal the non-streamed text, and the usage of
    stream_options.include_usage equals the non-streamed usage;
  - completions with a text prompt and with token ids, streamed and not;
  - errors raised as the client's own types with our status codes: BadRequestError 400
    (a malformed image, a bad field, a context overflow; each names its field),
    NotFoundError 404 (an unknown model, an unknown path), AuthenticationError 401
    (a second server started with --api-key, a wrong key).
Every server is stopped at the end, also on failure, and must exit 0 on SIGTERM.
Exit 0 when every check passed, 1 otherwise; prints each comparison.
"""
import argparse
import base64
import io
import os
import select
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

import httpx
import openai
from PIL import Image

MODEL = "tiny"


class Checks:
    def __init__(self):
        self.n = 0
        self.failed = 0

    def check(self, cond, what):
        self.n += 1
        if not cond:
            self.failed += 1
            print(f"FAIL {what}", flush=True)
        return cond


class Server:
    """`modserve serve` as a child process; stop() is safe to call more than once."""

    def __init__(self, modserve, model_dir, log_path, extra=()):
        self.log = open(log_path, "w")
        args = [modserve, "serve", "--model", model_dir, "--port", "0", "--device", "cpu", "--threads", "2",
                "--served-model-name", MODEL, *extra]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self.log)
        self.base = None
        self.exit_code = None
        try:
            self.wait_listening(log_path)
            self.wait_health()
        except BaseException:
            self.stop()  # never leave a half-started server behind
            raise

    def wait_listening(self, log_path):
        line = b""
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and self.proc.poll() is None:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.2)
            if not ready:
                continue
            ch = os.read(self.proc.stdout.fileno(), 1)
            if not ch:
                break
            line += ch
            if ch == b"\n":
                text = line.decode()
                if "listening on http://" in text:
                    self.base = "http://127.0.0.1:" + text.strip().rsplit(":", 1)[1]
                    break
                line = b""
        if self.base is None:
            raise RuntimeError(f"modserve serve did not start (see {log_path})")

    def wait_health(self):
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.base + "/health", timeout=5) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("/health never answered 200")

    def stop(self):
        if self.exit_code is not None:
            return self.exit_code
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.exit_code = self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            self.exit_code = -9
        self.proc.stdout.close()
        self.log.close()
        return self.exit_code


def png_data_url(w, h):
    img = Image.new("RGB", (w, h))
    img.putdata([((x * 7) % 256, (y * 11) % 256, ((x + y) * 5) % 256) for y in range(h) for x in range(w)])
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def client_for(srv, key="unused"):
    # max_retries=0: a refusal must surface as the exception, not be retried away.
    return openai.OpenAI(base_url=srv.base + "/v1", api_key=key, max_retries=0, timeout=300)


def usage_tuple(u):
    return (u.prompt_tokens, u.completion_tokens, u.total_tokens) if u else None


def check_models(c, client):
    models = client.models.list()
    ids = [m.id for m in models.data]
    print(f"models.list: {ids}")
    c.check(ids == [MODEL] and models.data[0].object == "model", f"models.list ids {ids}")
    ext = (models.data[0].model_extra or {}).get("modserve", {})
    c.check(ext.get("image_seq_length", 0) > 0, f"models.list modserve extension {ext}")
    return ext.get("image_seq_length", 0)


def chat_stream_equals(c, client, label, messages, **kw):
    """Non-streamed vs streamed chat with the same settings; returns the completion."""
    full = client.chat.completions.create(model=MODEL, messages=messages, **kw)
    ch = full.choices[0]
    c.check(full.id.startswith("chatcmpl-") and full.object == "chat.completion", f"{label}: id/object {full.id}")
    c.check(ch.message.role == "assistant" and isinstance(ch.message.content, str), f"{label}: message {ch.message}")
    u = full.usage
    c.check(u.total_tokens == u.prompt_tokens + u.completion_tokens, f"{label}: usage {usage_tuple(u)}")
    stream = client.chat.completions.create(model=MODEL, messages=messages, stream=True,
                                            stream_options={"include_usage": True}, **kw)
    parts, finish, usage, ids, roles, usage_choices = [], None, None, set(), [], None
    for chunk in stream:
        ids.add(chunk.id)
        c.check(chunk.object == "chat.completion.chunk", f"{label}: chunk object {chunk.object}")
        if chunk.usage:
            usage, usage_choices = chunk.usage, len(chunk.choices)
        for choice in chunk.choices:
            if choice.delta.role:
                roles.append(choice.delta.role)
            parts.append(choice.delta.content or "")
            finish = choice.finish_reason or finish
    text = "".join(parts)
    print(f"{label}: non-stream {ch.message.content!r} ({ch.finish_reason}, usage {usage_tuple(u)}); "
          f"stream {len(parts)} deltas {text!r} ({finish}, usage {usage_tuple(usage)})")
    c.check(text == ch.message.content, f"{label}: streamed {text!r} != {ch.message.content!r}")
    c.check(finish == ch.finish_reason, f"{label}: finish {finish} vs {ch.finish_reason}")
    c.check(usage_tuple(usage) == usage_tuple(u), f"{label}: stream usage {usage_tuple(usage)} vs {usage_tuple(u)}")
    c.check(usage_choices == 0, f"{label}: the usage chunk has {usage_choices} choices")
    c.check(len(ids) == 1 and roles == ["assistant"], f"{label}: chunk ids {ids}, roles {roles}")
    return full


def check_chat(c, client, image_seq_length):
    image = png_data_url(40, 30)
    messages = [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": image}},
        {"type": "text", "text": "What is in this image?"}]}]
    greedy = chat_stream_equals(c, client, "chat+image greedy", messages, max_tokens=8, temperature=0,
                                extra_body={"ignore_eos": True})
    c.check(greedy.choices[0].finish_reason == "length" and greedy.usage.completion_tokens == 8,
            f"chat+image greedy: 8 tokens, {greedy.usage.completion_tokens}")
    c.check(greedy.usage.prompt_tokens > image_seq_length,
            f"chat+image prompt {greedy.usage.prompt_tokens} tokens > {image_seq_length} image tokens")
    seeded = chat_stream_equals(c, client, "chat+image seed 7", messages, max_tokens=10, temperature=1.0,
                                top_p=0.9, seed=7, extra_body={"ignore_eos": True})
    again = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=10, temperature=1.0,
                                           top_p=0.9, seed=7, extra_body={"ignore_eos": True})
    c.check(again.choices[0].message.content == seeded.choices[0].message.content, "seed 7 twice: same text")
    text_only = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Tell me a story"}]
    chat_stream_equals(c, client, "chat text greedy", text_only, max_tokens=12, temperature=0)


def completion_stream_equals(c, client, label, prompt, n_prompt=None, **kw):
    full = client.completions.create(model=MODEL, prompt=prompt, **kw)
    ch = full.choices[0]
    c.check(full.id.startswith("cmpl-") and full.object == "text_completion", f"{label}: id/object {full.id}")
    stream = client.completions.create(model=MODEL, prompt=prompt, stream=True,
                                       stream_options={"include_usage": True}, **kw)
    parts, finish, usage = [], None, None
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for choice in chunk.choices:
            parts.append(choice.text)
            finish = choice.finish_reason or finish
    text = "".join(parts)
    print(f"{label}: non-stream {ch.text!r} ({ch.finish_reason}, usage {usage_tuple(full.usage)}); "
          f"stream {text!r} ({finish}, usage {usage_tuple(usage)})")
    c.check(text == ch.text, f"{label}: streamed {text!r} != {ch.text!r}")
    c.check(finish == ch.finish_reason, f"{label}: finish {finish} vs {ch.finish_reason}")
    c.check(usage_tuple(usage) == usage_tuple(full.usage), f"{label}: stream usage")
    if n_prompt is not None:
        c.check(full.usage.prompt_tokens == n_prompt, f"{label}: prompt_tokens {full.usage.prompt_tokens} != {n_prompt}")
    return full


def check_completions(c, client):
    completion_stream_equals(c, client, "completions text", "Once upon a time", max_tokens=6, temperature=0)
    ids = [1, 300, 301, 302, 303]
    full = completion_stream_equals(c, client, "completions ids", ids, n_prompt=len(ids), max_tokens=6,
                                    temperature=0, extra_body={"ignore_eos": True, "return_token_ids": True})
    got = ((full.model_extra or {}).get("modserve") or {}).get("token_ids")
    c.check(full.usage.completion_tokens == 6 and isinstance(got, list) and len(got) == 6,
            f"completions ids: 6 generated ids, got {got}")


def expect_error(c, label, exc_type, status, call, code=None, param=None):
    try:
        call()
    except openai.APIStatusError as e:
        print(f"{label}: {type(e).__name__} {e.status_code} code={e.code} param={e.param}")
        c.check(type(e) is exc_type, f"{label}: raised {type(e).__name__}, want {exc_type.__name__}")
        c.check(e.status_code == status, f"{label}: status {e.status_code}, want {status}")
        c.check(isinstance(e.body, dict) and isinstance(e.body.get("message"), str) and e.body["message"],
                f"{label}: error body {e.body}")
        if code is not None:
            c.check(e.code == code, f"{label}: code {e.code}, want {code}")
        if param is not None:
            c.check(e.param is not None and param in e.param, f"{label}: param {e.param}, want {param}")
        return
    except openai.OpenAIError as e:
        c.check(False, f"{label}: raised {type(e).__name__} ({e}), want {exc_type.__name__}")
        return
    c.check(False, f"{label}: no error raised, want {exc_type.__name__} {status}")


def check_errors(c, client):
    user = [{"role": "user", "content": "hi"}]
    bad_image = [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgoAAAANSUhEU"}}]}]
    expect_error(c, "malformed image", openai.BadRequestError, 400,
                 lambda: client.chat.completions.create(model=MODEL, messages=bad_image, max_tokens=2),
                 code="invalid_base64", param="messages")
    expect_error(c, "max_tokens -5", openai.BadRequestError, 400,
                 lambda: client.chat.completions.create(model=MODEL, messages=user, max_tokens=-5),
                 code="invalid_value", param="max_tokens")
    expect_error(c, "n=3", openai.BadRequestError, 400,
                 lambda: client.chat.completions.create(model=MODEL, messages=user, max_tokens=2, n=3),
                 code="invalid_value", param="n")
    expect_error(c, "max_tokens over the context", openai.BadRequestError, 400,
                 lambda: client.completions.create(model=MODEL, prompt="hi", max_tokens=100000),
                 code="context_length_exceeded", param="max_tokens")
    # An unknown model is 404 model_not_found, as OpenAI and vLLM answer it.
    expect_error(c, "unknown model", openai.NotFoundError, 404,
                 lambda: client.chat.completions.create(model="gpt-4", messages=user, max_tokens=2),
                 code="model_not_found")
    expect_error(c, "unknown path", openai.NotFoundError, 404,
                 lambda: client.get("/nothing/here", cast_to=httpx.Response), code="not_found")


def check_auth(c, modserve, model_dir, work):
    srv = Server(modserve, model_dir, os.path.join(work, "serve_key.log"), ["--api-key", "sekret"])
    try:
        for key in ("wrong", "sekretX"):
            expect_error(c, f"api key {key!r}", openai.AuthenticationError, 401,
                         lambda: client_for(srv, key).models.list(), code="invalid_api_key")
        expect_error(c, "chat with a wrong key", openai.AuthenticationError, 401,
                     lambda: client_for(srv, "wrong").chat.completions.create(
                         model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=2))
        good = client_for(srv, "sekret")
        c.check([m.id for m in good.models.list().data] == [MODEL], "the right key lists the model")
        r = good.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=2)
        c.check(r.choices[0].message.role == "assistant", "the right key chats")
        print("api key: wrong keys 401, the right key served")
    finally:
        code = srv.stop()
    c.check(code == 0, f"server with --api-key: exit {code} on SIGTERM")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--modserve", required=True)
    ap.add_argument("--source", required=True)
    ap.add_argument("--work", required=True)
    a = ap.parse_args()
    shutil.rmtree(a.work, ignore_errors=True)
    os.makedirs(a.work)
    model_dir = os.path.join(a.work, "tiny")
    subprocess.run([a.modserve, "model", "init", "--preset", "tiny", "--seed", "1", "--dtype", "f32",
                    "--out", model_dir], check=True, stdout=subprocess.DEVNULL)
    print(f"openai {openai.__version__}, model {model_dir}")
    c = Checks()
    srv = Server(a.modserve, model_dir, os.path.join(a.work, "serve.log"))
    try:
        client = client_for(srv)
        image_seq_length = check_models(c, client)
        check_chat(c, client, image_seq_length)
        check_completions(c, client)
        check_errors(c, client)
    except Exception as e:  # a failure of the client itself is a failed check, never a pass
        c.check(False, f"unexpected {type(e).__name__}: {e}")
    finally:
        code = srv.stop()
    c.check(code == 0, f"server: exit {code} on SIGTERM")
    try:
        check_auth(c, a.modserve, model_dir, a.work)
    except Exception as e:
        c.check(False, f"unexpected {type(e).__name__}: {e}")
    print(f"test_openai_client: {c.n} checks, {c.failed} failed")
    return 1 if c.failed or c.n == 0 else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""PyTorch's numbers for the work `modserve bench kernels` times, on the same GPU.

Same ceilings (device copy, 8192^3 bf16 matmul), torch's scaled_dot_product_attention
at the attention shapes, and transformers' CLIPVisionModel (ViT-L/14-336, batch 32) and
LlamaDecoderLayer (7B shapes, prefill 2048 tokens; x32 layers for the model) with random
weights in bf16. Timing: CUDA events, warm-up first, median of repeats.

The line `sdpa_causal_4k_ms=X` is for scripts/gpu.sh, which hands it to the C bench
(MS_BENCH_TORCH_SDPA_MS) so both sides print together.
"""
import statistics
import sys


def timed(fn, reps=10, warmup=3):
    import torch
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a = torch.cuda.Event(enable_timing=True)
        b = torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b) / 1e3)
    return statistics.median(times)


def line(name, sec, extra):
    print("  %-46s %9.3f ms %s" % (name, sec * 1e3, extra), flush=True)


def main():
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        print("kernels_torch: no torch")
        return 77
    if not torch.cuda.is_available():
        print("kernels_torch: needs a GPU")
        return 77
    dev = torch.device("cuda")
    bf = torch.bfloat16
    torch.manual_seed(0)
    print("torch %s on %s" % (torch.__version__, torch.cuda.get_device_name(0)), flush=True)

    x = torch.rand(1 << 29, dtype=bf, device=dev)
    y = torch.empty_like(x)
    sec = timed(lambda: y.copy_(x))
    bw = 2 * x.numel() * 2 / sec
    print("ceiling  torch copy %.2f GB read + written  %.3f ms  %.1f GB/s" % (
        2 * x.numel() * 2 / 1e9, sec * 1e3, bw / 1e9))
    del x, y
    a = torch.rand(8192, 8192, dtype=bf, device=dev) - 0.5
    b = torch.rand(8192, 8192, dtype=bf, device=dev) - 0.5
    sec = timed(lambda: a @ b.t())
    mm = 2 * 8192 ** 3 / sec
    print("ceiling  torch matmul bf16 8192^3  %.3f ms  %.1f TFLOP/s" % (sec * 1e3, mm / 1e12))
    del a, b

    print("\nscaled_dot_product_attention (bf16)")
    for name, B, H, T, D, causal in [("causal 1x2048 h32 d128", 1, 32, 2048, 128, True),
                                     ("causal 1x4096 h32 d128", 1, 32, 4096, 128, True),
                                     ("CLIP 32x577 h16 d64 full", 32, 16, 577, 64, False)]:
        q, k, v = (torch.randn(B, H, T, D, dtype=bf, device=dev) for _ in range(3))
        sec = timed(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal))
        flops = 4 * B * H * T * T * D * (0.5 if causal else 1.0)
        line("sdpa " + name, sec, "%6.1f TFLOP/s %5.1f%% of matmul" % (
            flops / sec / 1e12, 100 * flops / sec / mm))
        if T == 4096:
            print("sdpa_causal_4k_ms=%.4f" % (sec * 1e3))
        del q, k, v

    print("\ntransformers stages (random weights, bf16)")
    try:
        from transformers import CLIPVisionConfig, CLIPVisionModel
        cfg = CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                               num_attention_heads=16, image_size=336, patch_size=14,
                               hidden_act="quick_gelu", projection_dim=768)
        cfg._attn_implementation = "sdpa"
        model = CLIPVisionModel(cfg).to(dev, bf).eval()
        px = torch.randn(32, 3, 336, 336, dtype=bf, device=dev)
        with torch.no_grad():
            sec = timed(lambda: model(pixel_values=px, output_hidden_states=True), reps=5)
        line("CLIPVisionModel ViT-L/14-336 batch 32", sec, "%8.1f images/s" % (32 / sec))
        del model, px
    except Exception as e:  # a missing or changed API is a finding, not a crash
        print("  CLIPVisionModel: skipped (%s: %s)" % (type(e).__name__, e))
    try:
        from transformers import LlamaConfig
        from transformers.models.llama.modeling_llama import LlamaDecoderLayer, LlamaRotaryEmbedding
        cfg = LlamaConfig(hidden_size=4096, intermediate_size=11008, num_attention_heads=32,
                          num_key_value_heads=32, max_position_embeddings=4096, rms_norm_eps=1e-5)
        cfg._attn_implementation = "sdpa"
        layer = LlamaDecoderLayer(cfg, layer_idx=0).to(dev, bf).eval()
        rope = LlamaRotaryEmbedding(cfg).to(dev)
        T = 2048
        h = torch.randn(1, T, 4096, dtype=bf, device=dev)
        pos = torch.arange(T, device=dev)[None]
        cos_sin = rope(h, pos)
        with torch.no_grad():
            sec = timed(lambda: layer(h, attention_mask=None, position_ids=pos,
                                      position_embeddings=cos_sin), reps=5)
        params = 4 * 4096 * 4096 + 3 * 4096 * 11008
        flops = 2 * params * T + 4 * 4096 * T * T * 0.5
        line("LlamaDecoderLayer prefill 2048 (one layer)", sec,
             "%6.1f TFLOP/s %5.1f%% of matmul; x32 layers %.1f ms" % (
                 flops / sec / 1e12, 100 * flops / sec / mm, 32 * sec * 1e3))
        h1 = torch.randn(1, 1, 4096, dtype=bf, device=dev)
        pos1 = torch.zeros(1, 1, dtype=torch.long, device=dev)
        cs1 = rope(h1, pos1)
        with torch.no_grad():
            sec = timed(lambda: layer(h1, attention_mask=None, position_ids=pos1,
                                      position_embeddings=cs1), reps=20)
        line("LlamaDecoderLayer decode 1 token (one layer)", sec,
             "%6.1f GB/s weights %5.1f%% of copy; x32 layers %.2f ms" % (
                 params * 2 / sec / 1e9, 100 * params * 2 / sec / bw, 32 * sec * 1e3))
    except Exception as e:
        print("  LlamaDecoderLayer: skipped (%s: %s)" % (type(e).__name__, e))
    return 0


if __name__ == "__main__":
    sys.exit(main())

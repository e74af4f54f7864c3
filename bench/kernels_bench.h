/*
 * `modserve bench kernels`: the two ceilings of the device (copy bandwidth, bf16 matrix
 * rate), every op at LLaVA-1.5-7B shapes as a fraction of its ceiling, and the issue's
 * stage targets (decode at batch 1 and 64, prefill of 2,048 tokens, CLIP ViT-L/14-336
 * at batch 32, prefill attention at 4k tokens), each printed beside its target.
 */
#ifndef MS_BENCH_KERNELS_BENCH_H
#define MS_BENCH_KERNELS_BENCH_H

/* argv[0] is "kernels". Returns 0, 2 on a usage error, 77 when no GPU is present and
 * --device cpu was not asked for. */
int ms_bench_kernels_main(int argc, char **argv);

#endif

/*
 * Table-driven test of every backend op (in the spirit of llama.cpp's
 * test-backend-ops): for each op, several shapes including odd ones, random inputs
 * from a seeded RNG, compared with a naive double-precision reference
 * (test_backend_ops_ref.c) through the harness (test_backend_ops_harness.c: guard
 * bytes, NaN-filled outputs, NMSE and per-row limits). The code-path cases
 * (test_backend_ops_cases_paths.c) run here at sizes the CPU under ASan takes in
 * seconds; test_cuda_kernels runs them at full size on a GPU.
 *
 *   test_backend_ops --backend cpu|cuda [--op NAME] [--seed S] [--full]
 * --full runs the code-path cases at test_cuda_kernels' sizes (slow on the CPU). It
 * exits 77 (skipped) for cuda when no GPU is present or CUDA was not built in.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/backend.h"
#include "tests/test_backend_ops.h"
#include "tests/test_util.h"

int main(int argc, char **argv) {
    const char *backend = "cpu", *only = NULL;
    uint64_t seed = 0;
    tbo_size paths = TBO_SIZE_SMALL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--backend") == 0 && i + 1 < argc) backend = argv[++i];
        else if (strcmp(argv[i], "--op") == 0 && i + 1 < argc) only = argv[++i];
        else if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc)
            seed = strtoull(argv[++i], NULL, 0);
        else if (strcmp(argv[i], "--full") == 0)
            paths = TBO_SIZE_FULL;
        else {
            fprintf(stderr, "usage: test_backend_ops --backend cpu|cuda [--op NAME] [--seed S] [--full]\n");
            return 2;
        }
    }
    if (strcmp(backend, "cuda") == 0 && !ms_cuda_available())
        return ms_test_skip("test_backend_ops", "no CUDA GPU here (or built without CUDA)");
    ms_error err = {0};
    ms_backend *be = strcmp(backend, "cpu") == 0 ? ms_backend_cpu_create(0)
                                                 : ms_backend_create(backend, 0, 0, &err);
    if (!be) {
        fprintf(stderr, "test_backend_ops: backend %s: %s\n", backend, err.msg);
        return 1; /* a GPU is present (or cpu was asked): failing to start is an error */
    }
    ms_ctx *ctx = ms_ctx_create(be);
    tbo_init(be, ctx, only, seed);
    printf("backend %s, act dtype %s\n", be->name, ms_dtype_name(be->act_dtype));
    tbo_cases_core();
    tbo_cases_attention();
    tbo_cases_misc();
    tbo_cases_paths(paths);
    int cases, failed;
    tbo_counts(&cases, &failed);
    printf("%d cases, %d failed\n", cases, failed);
    ms_ctx_destroy(ctx);
    ms_backend_destroy(be);
    return ms_test_finish("test_backend_ops");
}

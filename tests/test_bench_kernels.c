/*
 * `modserve bench kernels` runs end to end: on the CPU at small shapes (a smoke test of
 * the harness and every op it times), and on CUDA it reports "needs a GPU" with 77 when
 * there is none. Timings are printed, never asserted.
 */
#include <string.h>

#include "bench/kernels_bench.h"
#include "kernels/backend.h"
#include "tests/test_util.h"

int main(void) {
    char *cpu_args[] = {"kernels", "--device", "cpu", "--iters", "1", NULL};
    EXPECT(ms_bench_kernels_main(5, cpu_args) == 0);
    char *bad_args[] = {"kernels", "--device", "tpu", NULL};
    EXPECT(ms_bench_kernels_main(3, bad_args) == 2);
    if (!ms_cuda_available()) {
        char *gpu_args[] = {"kernels", "--no-stages", NULL};
        EXPECT(ms_bench_kernels_main(2, gpu_args) == 77);
    }
    return ms_test_finish("test_bench_kernels");
}

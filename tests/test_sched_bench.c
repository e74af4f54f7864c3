/* `modserve bench sched` runs (small sizes) and refuses bad options. */
#include "bench/sched_bench.h"
#include "tests/test_util.h"

int main(void) {
    char *ok[] = {"sched", "--requests", "300", "--workers", "8", "--decisions", "3000", NULL};
    EXPECT(ms_bench_sched_main(7, ok) == 0);
    char *mono[] = {"sched", "--requests", "300", "--workers", "8", "--decisions", "3000",
                    "--mode", "monolithic", NULL};
    EXPECT(ms_bench_sched_main(9, mono) == 0);
    char *bad[] = {"sched", "--workers", "2", NULL};
    EXPECT(ms_bench_sched_main(3, bad) == 2);
    char *unknown[] = {"sched", "--frobnicate", "1", NULL};
    EXPECT(ms_bench_sched_main(3, unknown) == 2);
    return ms_test_finish("test_sched_bench");
}

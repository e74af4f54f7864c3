/*
 * The index contract of the ops (docs/kernels.md, "Index contract"), the same on every
 * backend: a sequence longer than its max, cu_seqlens/cu_q not running from 0 to the
 * rows of q, ctx_lens over max_ctx or under the sequence's queries, block ids outside
 * the cache, kv_write slots past the cache, get_rows/scatter_rows indices out of range.
 * Each case runs in a child process that must abort (SIGABRT) with a message naming
 * the fault; a child that returns normally fails the case. The CPU checks on the host
 * before it reads; CUDA records the fault on the device and aborts at the next sync.
 *
 *   test_backend_contract --backend cpu|cuda    (cuda: 77 without a GPU)
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kernels/backend.h"
#include "tests/test_util.h"

static const char *g_backend = "cpu";

static ms_ctx *child_ctx(void) {
    ms_error err = {0};
    ms_backend *be = ms_backend_create(g_backend, 0, 1, &err);
    if (!be) {
        fprintf(stderr, "backend %s: %s\n", g_backend, err.msg);
        _exit(3);
    }
    return ms_ctx_create(be);
}

static ms_tensor act(ms_ctx *ctx, int ndim, const int64_t *shape) {
    ms_tensor t = ms_ctx_tensor(ctx, ctx->backend->act_dtype, ndim, shape);
    ms_op_fill(ctx, &t, 0.5f);
    return t;
}

static ms_tensor ids(ms_ctx *ctx, const int32_t *v, int64_t n) {
    return ms_ctx_upload_i32(ctx, v, 1, &n);
}

/* ---- the cases: each runs one op with one bad index ---- */

static void attention_case(const int32_t cu[3], int64_t T, int32_t max_seqlen) {
    ms_ctx *ctx = child_ctx();
    const int64_t s[3] = {T, 2, 16};
    ms_tensor q = act(ctx, 3, s), k = act(ctx, 3, s), v = act(ctx, 3, s), o = act(ctx, 3, s);
    ms_tensor c = ids(ctx, cu, 3);
    ms_op_attention(ctx, &o, &q, &k, &v, &c, max_seqlen, true, 0.25f);
    ms_ctx_sync(ctx);
}

static void seq_over_max(void) {
    attention_case((const int32_t[3]){0, 5, 9}, 9, 4);
}

static void cu_short_of_rows(void) {
    attention_case((const int32_t[3]){0, 3, 8}, 9, 5);
}

/* nseq sequences, bs 16, 3 table columns, 4 cache blocks. */
static void paged_case(int nseq, const int32_t *cu_q, const int32_t *lens, const int32_t *bt,
                       int32_t max_q, int32_t max_ctx) {
    ms_ctx *ctx = child_ctx();
    const int64_t sq[3] = {cu_q[nseq], 2, 16}, sc[4] = {4, 16, 2, 16}, sbt[2] = {nseq, 3};
    ms_tensor q = act(ctx, 3, sq), o = act(ctx, 3, sq), kc = act(ctx, 4, sc), vc = act(ctx, 4, sc);
    ms_tensor dbt = ms_ctx_upload_i32(ctx, bt, 2, sbt), dcu = ids(ctx, cu_q, nseq + 1),
              dl = ids(ctx, lens, nseq);
    ms_op_attention_paged(ctx, &o, &q, &kc, &vc, &dbt, &dcu, &dl, max_q, max_ctx, 0.25f);
    ms_ctx_sync(ctx);
}

static void ctx_over_max(void) {
    const int32_t cu[3] = {0, 1, 2}, lens[2] = {10, 40}, bt[6] = {0, 1, 2, 3, 0, 1};
    paged_case(2, cu, lens, bt, 1, 33);
}

static void ctx_under_queries(void) {
    const int32_t cu[2] = {0, 3}, lens[1] = {2}, bt[3] = {0, 1, 2};
    paged_case(1, cu, lens, bt, 3, 16);
}

static void queries_over_max_q(void) {
    const int32_t cu[2] = {0, 3}, lens[1] = {20}, bt[3] = {0, 1, 2};
    paged_case(1, cu, lens, bt, 2, 20);
}

static void block_outside_cache(void) {
    const int32_t cu[2] = {0, 1}, lens[1] = {20}, bt[3] = {0, 99, 1};
    paged_case(1, cu, lens, bt, 1, 20);
}

static void slot_outside_cache(void) {
    ms_ctx *ctx = child_ctx();
    const int64_t sc[4] = {2, 16, 2, 16}, sr[3] = {2, 2, 16};
    ms_tensor kc = act(ctx, 4, sc), vc = act(ctx, 4, sc), k = act(ctx, 3, sr), v = act(ctx, 3, sr);
    const int32_t slots[2] = {-1, 99};
    ms_tensor sl = ids(ctx, slots, 2);
    ms_op_kv_write(ctx, &kc, &vc, &k, &v, &sl);
    ms_ctx_sync(ctx);
}

static void row_id_outside_table(void) {
    ms_ctx *ctx = child_ctx();
    const int64_t st[2] = {10, 16}, so[2] = {2, 16};
    ms_tensor table = act(ctx, 2, st), out = act(ctx, 2, so);
    const int32_t id[2] = {3, 50};
    ms_tensor di = ids(ctx, id, 2);
    ms_op_get_rows(ctx, &out, &table, &di);
    ms_ctx_sync(ctx);
}

static void scatter_index_outside(void) {
    ms_ctx *ctx = child_ctx();
    const int64_t sd[2] = {5, 16}, ss[2] = {1, 16};
    ms_tensor dst = act(ctx, 2, sd), src = act(ctx, 2, ss);
    const int32_t ix[1] = {7};
    ms_tensor di = ids(ctx, ix, 1);
    ms_op_scatter_rows(ctx, &dst, &src, &di);
    ms_ctx_sync(ctx);
}

/* ---- running a case in a child ---- */

/* Runs fn in a child with stderr captured; returns its wait status, *msg its stderr. */
static int run_child(void (*fn)(void), char *msg, size_t cap) {
    int fd[2];
    MS_CHECKF(pipe(fd) == 0, "pipe failed");
    fflush(stdout);
    fflush(stderr);
    const pid_t pid = fork();
    MS_CHECKF(pid >= 0, "fork failed");
    if (pid == 0) {
        close(fd[0]);
        dup2(fd[1], 2);
        fn();
        _exit(0); /* no abort: the op accepted the bad index */
    }
    close(fd[1]);
    size_t n = 0;
    ssize_t r;
    while (n + 1 < cap && (r = read(fd[0], msg + n, cap - 1 - n)) > 0) n += (size_t)r;
    msg[n] = '\0';
    char sink[256];
    while (read(fd[0], sink, sizeof sink) > 0) {} /* drain */
    close(fd[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    return status;
}

static void expect_abort(const char *name, void (*fn)(void), const char *needle) {
    char msg[4096];
    const int st = run_child(fn, msg, sizeof msg);
    const bool aborted = WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT;
    const bool named = strstr(msg, needle) != NULL;
    printf("%-24s %s%s\n", name, aborted && named ? "aborts: " : "FAIL: ",
           aborted ? (named ? needle : "message lacks the expected text") : "did not abort");
    EXPECTF(aborted && named, "%s: status %d, wanted an abort naming \"%s\"; stderr:\n%s", name,
            st, needle, msg);
}

static void probe_cuda(void) {
    _exit(ms_cuda_available() ? 0 : MS_TEST_SKIP_CODE);
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "--backend") == 0) g_backend = argv[2];
    else if (argc != 1) {
        fprintf(stderr, "usage: test_backend_contract [--backend cpu|cuda]\n");
        return 2;
    }
    if (strcmp(g_backend, "cpu") != 0) {
        /* CUDA is first touched in a child: a runtime started before fork is unusable */
        char msg[256];
        const int st = run_child(probe_cuda, msg, sizeof msg);
        if (WIFEXITED(st) && WEXITSTATUS(st) == MS_TEST_SKIP_CODE)
            return ms_test_skip("test_backend_contract", "no CUDA GPU here");
    }
    printf("backend %s\n", g_backend);
    expect_abort("sequence over max", seq_over_max, "sequence 0 has 5 rows (max given 4)");
    expect_abort("cu short of the rows", cu_short_of_rows, "must run from 0 to 9");
    expect_abort("ctx_len over max_ctx", ctx_over_max, "sequence 1 has ctx_len 40");
    expect_abort("ctx_len under queries", ctx_under_queries, "sequence 0 has ctx_len 2");
    expect_abort("queries over max_q", queries_over_max_q, "sequence 0 has 3 rows (max given 2)");
    expect_abort("block outside the cache", block_outside_cache, "99, cache has 4 blocks");
    expect_abort("slot outside the cache", slot_outside_cache,
                 "slot 99 at row 1 outside a cache of 32 slots");
    expect_abort("id outside the table", row_id_outside_table,
                 "id 50 at row 1 outside table of 10");
    expect_abort("scatter index outside", scatter_index_outside,
                 "index 7 at row 0 outside 5 rows");
    return ms_test_finish("test_backend_contract");
}

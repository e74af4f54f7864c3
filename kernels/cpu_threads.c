/*
 * A small pthread pool for the CPU backend's parallel-for. Plain pthreads rather than
 * OpenMP so that ThreadSanitizer builds see every synchronisation.
 *
 * One job at a time: the caller takes `submit` with trylock, publishes the job under
 * `mu`, and works on it too; pieces are claimed with an atomic counter. A second
 * worker thread calling an op while the pool is busy simply runs its own range inline
 * (each serving worker already has a core's worth of work), so concurrent callers are
 * safe and never block on each other.
 */
#include "kernels/cpu_internal.h"

#include <pthread.h>
#include <stdatomic.h>

struct ms_cpu_pool {
    int n_threads;        /* including the caller */
    pthread_t *threads;   /* n_threads - 1 helpers */
    pthread_mutex_t submit;
    pthread_mutex_t mu;
    pthread_cond_t work_cv, done_cv;
    uint64_t generation;  /* bumped per job, under mu */
    int active;           /* helpers still on the current job, under mu */
    bool stop;
    /* the current job (written under mu before generation is bumped) */
    ms_cpu_range_fn fn;
    void *arg;
    int64_t n, piece;
    atomic_int_fast64_t next;
};

static void pool_run_pieces(ms_cpu_pool *p, ms_cpu_range_fn fn, void *arg, int64_t n,
                            int64_t piece) {
    for (;;) {
        const int64_t b = atomic_fetch_add(&p->next, piece);
        if (b >= n) break;
        fn(arg, b, b + piece < n ? b + piece : n);
    }
}

static void *pool_main(void *vp) {
    ms_cpu_pool *p = vp;
    uint64_t seen = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->stop && p->generation == seen) pthread_cond_wait(&p->work_cv, &p->mu);
        if (p->stop) break;
        seen = p->generation;
        ms_cpu_range_fn fn = p->fn;
        void *arg = p->arg;
        const int64_t n = p->n, piece = p->piece;
        pthread_mutex_unlock(&p->mu);
        pool_run_pieces(p, fn, arg, n, piece);
        pthread_mutex_lock(&p->mu);
        if (--p->active == 0) pthread_cond_signal(&p->done_cv);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

ms_cpu_pool *ms_cpu_pool_create(int n_threads) {
    MS_CHECK(n_threads >= 1);
    ms_cpu_pool *p = ms_xcalloc(1, sizeof *p);
    p->n_threads = n_threads;
    pthread_mutex_init(&p->submit, NULL);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->work_cv, NULL);
    pthread_cond_init(&p->done_cv, NULL);
    atomic_init(&p->next, 0);
    p->threads = ms_xcalloc((size_t)n_threads, sizeof *p->threads);
    for (int i = 0; i + 1 < n_threads; i++)
        MS_CHECKF(pthread_create(&p->threads[i], NULL, pool_main, p) == 0,
                  "cpu backend: cannot start thread %d of %d", i + 1, n_threads);
    return p;
}

void ms_cpu_pool_destroy(ms_cpu_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->stop = true;
    pthread_cond_broadcast(&p->work_cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i + 1 < p->n_threads; i++) pthread_join(p->threads[i], NULL);
    pthread_cond_destroy(&p->work_cv);
    pthread_cond_destroy(&p->done_cv);
    pthread_mutex_destroy(&p->mu);
    pthread_mutex_destroy(&p->submit);
    free(p->threads);
    free(p);
}

int ms_cpu_pool_threads(const ms_cpu_pool *p) {
    return p->n_threads;
}

void ms_cpu_parallel_for(ms_cpu_pool *p, int64_t n, int64_t grain, ms_cpu_range_fn fn,
                         void *arg) {
    if (n <= 0) return;
    if (grain < 1) grain = 1;
    if (p->n_threads == 1 || n <= grain || pthread_mutex_trylock(&p->submit) != 0) {
        fn(arg, 0, n);
        return;
    }
    /* About four pieces per thread balances uneven rows (causal attention). */
    int64_t piece = (n + 4 * (int64_t)p->n_threads - 1) / (4 * (int64_t)p->n_threads);
    if (piece < grain) piece = grain;
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->arg = arg;
    p->n = n;
    p->piece = piece;
    atomic_store(&p->next, 0);
    p->active = p->n_threads - 1;
    p->generation++;
    pthread_cond_broadcast(&p->work_cv);
    pthread_mutex_unlock(&p->mu);
    pool_run_pieces(p, fn, arg, n, piece);
    pthread_mutex_lock(&p->mu);
    while (p->active > 0) pthread_cond_wait(&p->done_cv, &p->mu);
    pthread_mutex_unlock(&p->mu);
    pthread_mutex_unlock(&p->submit);
}

/*
 * Token sampling on the device (kernels/sample.h gives the algorithm every backend
 * follows), so only B token ids cross to the host, never B x vocab logits.
 *
 * 1. argmax per row (lowest index on ties, NaN never wins): the answer for greedy rows,
 *    rows with top_k == 1, and rows with no finite logit.
 * 2. Only when some row samples: each row's (logit, id) pairs are sorted by decreasing
 *    logit with CUB's segmented radix sort (stable, so equal logits keep increasing
 *    ids: the reference's order); NaN sorts as -inf and -0 as +0, as the reference
 *    compares them.
 * 3. One block per sampling row walks the sorted row with block-wide prefix sums in
 *    double: top-k cut, top-p cut (shortest prefix reaching top_p of the kept weight),
 *    then the first token whose running sum exceeds u * total. Sums are the same values
 *    as the reference's, added in another order: the pick differs only when u * total
 *    falls within rounding of a boundary.
 */
#include <cub/device/device_segmented_radix_sort.cuh>
#include <limits.h>
#include <math.h>

#include "kernels/cuda/cuda_ops.cuh"

enum { ARGMAX_THREADS = 256, PICK_THREADS = 1024 };

static bool row_samples(const ms_sample_params &p) {
    return p.temperature > 0.0f && p.top_k != 1;
}

__global__ void argmax_kernel(int32_t *__restrict__ out, const float *__restrict__ logits,
                              int64_t V) {
    __shared__ float sv[ARGMAX_THREADS / 32];
    __shared__ int32_t si[ARGMAX_THREADS / 32];
    const float *row = logits + blockIdx.x * V;
    float bv = -INFINITY;
    int32_t bi = INT_MAX;
    for (int64_t i = threadIdx.x; i < V; i += blockDim.x) {
        const float x = row[i];
        if (x > bv) { /* strict, and ascending i per thread: lowest index wins; NaN never */
            bv = x;
            bi = (int32_t)i;
        }
    }
    /* (value desc, index asc) reduction; -inf everywhere leaves bi = INT_MAX -> 0 below. */
    for (int o = 16; o > 0; o >>= 1) {
        const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
        const int32_t oi = __shfl_xor_sync(0xffffffffu, bi, o);
        if (ov > bv || (ov == bv && oi < bi)) {
            bv = ov;
            bi = oi;
        }
    }
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) {
        sv[warp] = bv;
        si[warp] = bi;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int w = 1; w < (int)(blockDim.x >> 5); w++)
            if (sv[w] > bv || (sv[w] == bv && si[w] < bi)) {
                bv = sv[w];
                bi = si[w];
            }
        out[blockIdx.x] = bi == INT_MAX ? 0 : bi;
    }
}

/* Sort keys: logits with NaN -> -inf and -0 -> +0; values: token ids. */
__global__ void sample_prep_kernel(float *__restrict__ keys, int32_t *__restrict__ ids,
                                   int32_t *__restrict__ offsets, const float *__restrict__ logits,
                                   int64_t B, int64_t V) {
    const int64_t n = B * V;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        const float x = logits[i];
        keys[i] = isnan(x) ? -INFINITY : x + 0.0f;
        ids[i] = (int32_t)(i % V);
        if (i % V == 0) offsets[i / V] = (int32_t)i;
        if (i == n - 1) offsets[B] = (int32_t)n;
    }
}

/* Inclusive prefix sum over the block (blockDim.x == PICK_THREADS); *total gets the sum. */
__device__ double block_incl_scan(double x, double *sh, double *total) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
        const double y = __shfl_up_sync(0xffffffffu, x, o);
        if (lane >= o) x += y;
    }
    __syncthreads(); /* sh may still be read from the previous call */
    if (lane == 31) sh[warp] = x;
    __syncthreads();
    if (warp == 0) {
        double w = sh[lane]; /* PICK_THREADS / 32 == 32 warps */
#pragma unroll
        for (int o = 1; o < 32; o <<= 1) {
            const double y = __shfl_up_sync(0xffffffffu, w, o);
            if (lane >= o) w += y;
        }
        sh[lane] = w; /* inclusive over warps */
    }
    __syncthreads();
    *total = sh[31];
    return x + (warp > 0 ? sh[warp - 1] : 0.0);
}

/* Smallest i < limit (over the sorted row) whose prefix weight satisfies
 * prefix > thr (strict) or prefix >= thr; -1 when none. Weights come from w_of(i). */
template <typename WOf>
__device__ int32_t first_prefix_over(WOf w_of, int32_t limit, double thr, bool strict,
                                     double *sh, int32_t *found, double *prefix_at) {
    double carry = 0.0;
    for (int32_t base = 0; base < limit; base += PICK_THREADS) {
        const int32_t i = base + (int32_t)threadIdx.x;
        const double x = i < limit ? w_of(i) : 0.0;
        double tot;
        const double pre = carry + block_incl_scan(x, sh, &tot);
        if (threadIdx.x == 0) *found = INT_MAX;
        __syncthreads();
        if (i < limit && (strict ? pre > thr : pre >= thr)) atomicMin(found, i);
        __syncthreads();
        const int32_t f = *found;
        if (f != INT_MAX) {
            if (i == f) *prefix_at = pre;
            __syncthreads();
            return f;
        }
        carry += tot;
    }
    return -1;
}

__global__ void __launch_bounds__(PICK_THREADS)
    sample_pick_kernel(int32_t *__restrict__ out, const float *__restrict__ sorted,
                       const int32_t *__restrict__ sorted_ids,
                       const ms_sample_params *__restrict__ params,
                       const float *__restrict__ uniforms, int64_t V) {
    __shared__ double sh[32];
    __shared__ double red[32];
    __shared__ int32_t found;
    __shared__ double prefix_at;
    const int64_t b = blockIdx.x;
    const ms_sample_params pr = params[b];
    if (!(pr.temperature > 0.0f) || pr.top_k == 1) return; /* argmax already written */
    const float *ks = sorted + b * V;
    const int32_t *ids = sorted_ids + b * V;
    const float mx = ks[0];
    if (!(mx > -INFINITY)) return; /* no finite logit: argmax's answer stands */

    /* Candidates: finite-weight tokens, a prefix of the sorted row. */
    int32_t cnt = 0;
    for (int64_t i = threadIdx.x; i < V; i += blockDim.x) cnt += ks[i] > -INFINITY;
    const int32_t n_cand = (int32_t)ms_block_sum((double)cnt, red);
    const int32_t k = pr.top_k > 0 && pr.top_k < n_cand ? pr.top_k : n_cand;
    const double inv_t = 1.0 / (double)pr.temperature;
    auto w_of = [&](int32_t i) { return exp(((double)ks[i] - (double)mx) * inv_t); };

    int32_t n_keep = k;
    double total = 0.0;
    {
        double part = 0.0;
        for (int32_t i = threadIdx.x; i < k; i += blockDim.x) part += w_of(i);
        total = ms_block_sum(part, red);
    }
    if (pr.top_p < 1.0f) {
        const double want = (double)pr.top_p * total;
        const int32_t f = first_prefix_over(w_of, k, want, false, sh, &found, &prefix_at);
        if (f >= 0) {
            n_keep = f + 1;
            total = prefix_at;
        }
    }
    const double target = (double)uniforms[b] * total;
    int32_t pick = first_prefix_over(w_of, n_keep, target, true, sh, &found, &prefix_at);
    if (pick < 0) pick = n_keep - 1; /* rounding left none: the last kept token */
    if (threadIdx.x == 0) out[b] = ids[pick];
}

void ms_cuda_sample(ms_ctx *ctx, ms_tensor *out_ids, const ms_tensor *logits,
                    const ms_sample_params *params, const float *uniforms) {
    cudaStream_t st = ms_cuda_stream_of(ctx);
    const int64_t B = ms_tensor_rows(logits), V = ms_tensor_cols(logits);
    int32_t *out = (int32_t *)out_ids->data;
    const float *lg = (const float *)logits->data;
    argmax_kernel<<<(unsigned)B, ARGMAX_THREADS, 0, st>>>(out, lg, V);
    MS_CUDA_LAUNCHED(st);

    bool any = false;
    for (int64_t b = 0; b < B; b++) any = any || row_samples(params[b]);
    if (!any) return;
    MS_CHECKF(B * V < INT32_MAX, "sample: %lld x %lld logits are too many to sort", (long long)B,
              (long long)V);

    /* Host arrays to the device: pageable sources are staged before the call returns. */
    ms_sample_params *d_params =
        (ms_sample_params *)ms_cuda_scratch(ctx, (size_t)B * sizeof(ms_sample_params));
    float *d_u = (float *)ms_cuda_scratch(ctx, (size_t)B * sizeof(float));
    MS_CUDA_CHECK(cudaMemcpyAsync(d_params, params, (size_t)B * sizeof(ms_sample_params),
                                  cudaMemcpyHostToDevice, st));
    MS_CUDA_CHECK(cudaMemcpyAsync(d_u, uniforms, (size_t)B * sizeof(float),
                                  cudaMemcpyHostToDevice, st));

    const int64_t n = B * V;
    float *keys = (float *)ms_cuda_scratch(ctx, (size_t)n * sizeof(float));
    float *keys_sorted = (float *)ms_cuda_scratch(ctx, (size_t)n * sizeof(float));
    int32_t *ids = (int32_t *)ms_cuda_scratch(ctx, (size_t)n * sizeof(int32_t));
    int32_t *ids_sorted = (int32_t *)ms_cuda_scratch(ctx, (size_t)n * sizeof(int32_t));
    int32_t *offsets = (int32_t *)ms_cuda_scratch(ctx, (size_t)(B + 1) * sizeof(int32_t));
    sample_prep_kernel<<<ms_cuda_blocks(n, 256), 256, 0, st>>>(keys, ids, offsets, lg, B, V);
    MS_CUDA_LAUNCHED(st);

    size_t temp_bytes = 0;
    MS_CUDA_CHECK(cub::DeviceSegmentedRadixSort::SortPairsDescending(
        NULL, temp_bytes, keys, keys_sorted, ids, ids_sorted, (int)n, (int)B, offsets,
        offsets + 1, 0, 32, st));
    void *temp = ms_cuda_scratch(ctx, temp_bytes);
    MS_CUDA_CHECK(cub::DeviceSegmentedRadixSort::SortPairsDescending(
        temp, temp_bytes, keys, keys_sorted, ids, ids_sorted, (int)n, (int)B, offsets,
        offsets + 1, 0, 32, st));
    MS_CUDA_LAUNCHED(st);

    sample_pick_kernel<<<(unsigned)B, PICK_THREADS, 0, st>>>(out, keys_sorted, ids_sorted,
                                                              d_params, d_u, V);
    MS_CUDA_LAUNCHED(st);
}

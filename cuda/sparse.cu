// Sparse-input kernels (engine/backend/cpu/sparse.rs): the forward product X·W of a CSR batch
// and the transposed weight gradient Xᵀ·Δ in 64-bit fixed point. No cap on a row's length.

// out[b, j] = beta·out[b, j] + Σ_{(c, v) ∈ row b} v·w[c, j], the sum in storage order from 0.
// Grid: (rows, column blocks); one thread per output column. The row's indices (and values)
// are staged through shared memory a block-width at a time, so each thread's loads of w are
// independent of one another and stay in flight together (long rows are not latency-bound).
// `has_vals` = 0: indicator rows.
extern "C" __global__ void spmm(float* out, const u64* offsets, const u32* cols, const float* vals,
                                int has_vals, const float* w, u64 n, float beta) {
    __shared__ u32 sc[256];
    __shared__ float sv[256];
    u64 b = blockIdx.x;
    u64 j = blockIdx.y * (u64)blockDim.x + threadIdx.x;
    u64 start = offsets[b], end = offsets[b + 1];
    float acc = 0.0f;
    for (u64 k0 = start; k0 < end; k0 += blockDim.x) {
        u64 k = k0 + threadIdx.x;
        if (k < end) {
            sc[threadIdx.x] = cols[k];
            sv[threadIdx.x] = has_vals ? vals[k] : 1.0f;
        }
        __syncthreads();
        int m = (int)min((u64)blockDim.x, end - k0);
        if (j < n) {
            if (has_vals) {
                #pragma unroll 8
                for (int i = 0; i < m; ++i) acc += sv[i] * w[(u64)sc[i] * n + j];
            } else {
                #pragma unroll 8
                for (int i = 0; i < m; ++i) acc += w[(u64)sc[i] * n + j];
            }
        }
        __syncthreads();
    }
    if (j >= n) return;
    float* o = out + b * n + j;
    *o = beta == 0.0f ? acc : beta * *o + acc;
}

// ---- The transposed (per-feature) structure of a batch, built on the device ----------------
// counts[c] = number of non-zeros in column c (atomics; counts must start at 0).
extern "C" __global__ void csc_count(const u32* cols, u64 nnz, u32* counts) {
    for (u64 k = blockIdx.x * (u64)blockDim.x + threadIdx.x; k < nnz; k += (u64)gridDim.x * blockDim.x)
        atomicAdd(&counts[cols[k]], 1u);
}

// starts[c] = Σ_{c' < c} counts[c'] for c in 0..=n (exclusive scan), and cursor = starts (the
// fill positions). One block of 1024 threads: each sums a contiguous segment, the segment
// sums are scanned with warp shuffles, then each thread writes its segment.
extern "C" __global__ void csc_scan(const u32* counts, u64 n, u64* starts, u64* cursor) {
    __shared__ u64 warp_sums[32];
    u64 per = (n + blockDim.x - 1) / blockDim.x;
    u64 lo = min(n, threadIdx.x * per), hi = min(n, lo + per);
    u64 sum = 0;
    for (u64 c = lo; c < hi; ++c) sum += counts[c];
    // Inclusive scan of the segment sums within the warp, then across warps.
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    u64 incl = sum;
    #pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
        u64 v = __shfl_up_sync(0xffffffffu, incl, o);
        if (lane >= o) incl += v;
    }
    if (lane == 31) warp_sums[warp] = incl;
    __syncthreads();
    if (warp == 0) {
        u64 w = lane < (int)(blockDim.x >> 5) ? warp_sums[lane] : 0;
        #pragma unroll
        for (int o = 1; o < 32; o <<= 1) {
            u64 v = __shfl_up_sync(0xffffffffu, w, o);
            if (lane >= o) w += v;
        }
        warp_sums[lane] = w;
    }
    __syncthreads();
    u64 run = incl - sum + (warp > 0 ? warp_sums[warp - 1] : 0);
    for (u64 c = lo; c < hi; ++c) { starts[c] = run; cursor[c] = run; run += counts[c]; }
    if (threadIdx.x == blockDim.x - 1) starts[n] = run;  // the last thread ends at the total
}

// Scatters each non-zero (row b, value v) to its column's list; one block per row. The order
// within a column varies from run to run (atomics), which the fixed-point gradient does not see.
extern "C" __global__ void csc_fill(const u64* offsets, const u32* cols, const float* vals, int has_vals,
                                    u64* cursor, u32* trows, float* tvals) {
    u64 b = blockIdx.x;
    for (u64 k = offsets[b] + threadIdx.x; k < offsets[b + 1]; k += blockDim.x) {
        u64 pos = atomicAdd(&cursor[cols[k]], 1ull);
        trows[pos] = (u32)b;
        if (has_vals) tvals[pos] = vals[k];
    }
}

// For every input feature f (grid.x = n_in) and output column j (grid.y blocks):
// dw[f, j] = beta·dw[f, j] + alpha·Σ fixed(v·delta[b, j]) over the batch rows b holding f
// (beta = 0: dw is not read; a feature absent from the batch gets beta·dw, or 0). The
// feature's rows are staged through shared memory as in `spmm`. The sum is an integer, so the
// order of a feature's rows does not matter.
extern "C" __global__ void sparse_weight_gradient(float* dw, const u64* starts, const u32* rows,
                                                  const float* vals, int has_vals, const float* delta,
                                                  u64 n, float alpha, float beta) {
    __shared__ u32 sr[256];
    __shared__ float sv[256];
    u64 f = blockIdx.x;
    u64 j = blockIdx.y * (u64)blockDim.x + threadIdx.x;
    u64 s = starts[f], e = starts[f + 1];
    float* o = dw + f * n + j;
    if (s == e) {
        if (j < n && beta != 1.0f) *o = beta == 0.0f ? 0.0f : *o * beta;
        return;
    }
    i64 acc = 0;
    for (u64 k0 = s; k0 < e; k0 += blockDim.x) {
        u64 k = k0 + threadIdx.x;
        if (k < e) {
            sr[threadIdx.x] = rows[k];
            sv[threadIdx.x] = has_vals ? vals[k] : 1.0f;
        }
        __syncthreads();
        int m = (int)min((u64)blockDim.x, e - k0);
        if (j < n) {
            if (has_vals) {
                #pragma unroll 8
                for (int i = 0; i < m; ++i)
                    acc = (i64)((u64)acc + (u64)to_fixed(sv[i] * delta[(u64)sr[i] * n + j]));
            } else {
                #pragma unroll 8
                for (int i = 0; i < m; ++i)
                    acc = (i64)((u64)acc + (u64)to_fixed(delta[(u64)sr[i] * n + j]));
            }
        }
        __syncthreads();
    }
    if (j >= n) return;
    float g = scaled_from_fixed(alpha, acc);
    *o = beta == 0.0f ? g : beta * *o + g;
}

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

// For every feature present in the batch (grid.x), every output column j (grid.y blocks):
// dw[f, j] = (beta == 0 ? 0 : dw[f, j]) + alpha·Σ fixed(v·delta[b, j]) over the batch rows b
// holding f. Rows of absent features are scaled (or zeroed) beforehand by the host side, and
// so are present rows when beta != 0, so here `beta` only says whether to read dw. The
// feature's rows are staged through shared memory as in `spmm`.
extern "C" __global__ void sparse_weight_gradient(float* dw, const u32* features, const u64* starts,
                                                  const u32* rows, const float* vals, int has_vals,
                                                  const float* delta, u64 n, float alpha, float beta) {
    __shared__ u32 sr[256];
    __shared__ float sv[256];
    u64 f = blockIdx.x;
    u64 j = blockIdx.y * (u64)blockDim.x + threadIdx.x;
    u64 s = starts[f], e = starts[f + 1];
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
    float* o = dw + (u64)features[f] * n + j;
    *o = beta == 0.0f ? g : *o + g;
}

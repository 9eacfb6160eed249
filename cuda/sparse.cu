// Sparse-input kernels (engine/backend/cpu/sparse.rs): the forward product X·W of a CSR batch
// and the transposed weight gradient Xᵀ·Δ in 64-bit fixed point. No cap on a row's length.

// out[b, j] = beta·out[b, j] + Σ_{(c, v) ∈ row b} v·w[c, j], the sum in storage order from 0.
// Grid: (rows, column blocks); one thread per output column. `has_vals` = 0: indicator rows.
extern "C" __global__ void spmm(float* out, const u64* offsets, const u32* cols, const float* vals,
                                int has_vals, const float* w, u64 n, float beta) {
    u64 b = blockIdx.x;
    u64 j = blockIdx.y * (u64)blockDim.x + threadIdx.x;
    if (j >= n) return;
    u64 start = offsets[b], end = offsets[b + 1];
    float acc = 0.0f;
    if (has_vals) {
        for (u64 k = start; k < end; ++k) acc += vals[k] * w[(u64)cols[k] * n + j];
    } else {
        for (u64 k = start; k < end; ++k) acc += w[(u64)cols[k] * n + j];
    }
    float* o = out + b * n + j;
    *o = beta == 0.0f ? acc : beta * *o + acc;
}

// For every feature present in the batch (grid.x), every output column j (grid.y blocks):
// dw[f, j] = (beta == 0 ? 0 : dw[f, j]) + alpha·Σ fixed(v·delta[b, j]) over the batch rows b
// holding f. Rows of absent features are scaled (or zeroed) beforehand by the host side, and
// so are present rows when beta != 0, so here `beta` only says whether to read dw.
extern "C" __global__ void sparse_weight_gradient(float* dw, const u32* features, const u64* starts,
                                                  const u32* rows, const float* vals, int has_vals,
                                                  const float* delta, u64 n, float alpha, float beta) {
    u64 i = blockIdx.x;
    u64 j = blockIdx.y * (u64)blockDim.x + threadIdx.x;
    if (j >= n) return;
    u64 s = starts[i], e = starts[i + 1];
    i64 acc = 0;
    if (has_vals) {
        for (u64 k = s; k < e; ++k)
            acc = (i64)((u64)acc + (u64)to_fixed(vals[k] * delta[(u64)rows[k] * n + j]));
    } else {
        for (u64 k = s; k < e; ++k)
            acc = (i64)((u64)acc + (u64)to_fixed(delta[(u64)rows[k] * n + j]));
    }
    float g = scaled_from_fixed(alpha, acc);
    float* o = dw + (u64)features[i] * n + j;
    *o = beta == 0.0f ? g : *o + g;
}

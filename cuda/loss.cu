// Output-layer deltas and losses (engine/backend/cpu/loss.rs), dense targets and sparse (CSR)
// targets with the two-pass scheme. Losses are summed in fixed point: kernels write i64
// partial sums (each of at most 2048 terms of at most 2^51, so they cannot overflow) that the
// host adds in i128, exactly as the CPU does.

#define LOSS_BLOCK 256
#define LOSS_PER_THREAD 8

// Target value of non-zero `k` (its index in the batch's arrays) of a row with `nnz` non-zeros.
__device__ __forceinline__ float target_value(const LossParams& s, const float* vals, int has_vals,
                                              u64 k, u64 nnz) {
    if (has_vals) return vals[k];
    return (s.act == A_SOFTMAX && nnz > 0) ? 1.0f / (float)nnz : 1.0f;
}

// Pass 1 for non-SoftMax outputs: d = δ(a, 0), or 0 with ignore_zero.
extern "C" __global__ void zero_target_delta(float* d, const float* a, u64 n, LossParams s, int ignore_zero) {
    for (u64 i = blockIdx.x * (u64)blockDim.x + threadIdx.x; i < n; i += (u64)gridDim.x * blockDim.x) {
        d[i] = ignore_zero ? 0.0f : unit_delta(s, a[i], 0.0f);
    }
}

// Pass 2: one block per row overwrites the row's non-zeros. `mode`: 0 unit_delta, 1 the target
// itself (SoftMax + CrossEntropy), 2 softmax_grad_a. A row whose columns strictly increase has
// no repeated column and is written in parallel; otherwise its non-zeros are taken a
// block-width at a time in storage order, and within such a chunk only the last of equal
// columns writes, so a column listed twice keeps its last value, as on the CPU.
extern "C" __global__ void sparse_target_delta(float* d, const float* a, const u64* offsets, const u32* cols,
                                               const float* vals, int has_vals, u64 rows, u64 n,
                                               LossParams s, int mode, int unique) {
    __shared__ u32 sc[ROW_THREADS];
    u64 b = blockIdx.x;
    u64 start = offsets[b], end = offsets[b + 1], nnz = end - start;
    int ordered = 1;
    if (!unique) {
        for (u64 k = start + 1 + threadIdx.x; k < end; k += blockDim.x) ordered &= cols[k - 1] < cols[k];
        ordered = __syncthreads_and(ordered);
    }
    for (u64 k0 = start; k0 < end; k0 += blockDim.x) {
        u64 k = k0 + threadIdx.x;
        int m = (int)min((u64)blockDim.x, end - k0);
        bool last = true;
        if (!ordered) {
            if (k < end) sc[threadIdx.x] = cols[k];
            __syncthreads();
            if (k < end) {
                u32 c = sc[threadIdx.x];
                for (int i = threadIdx.x + 1; i < m; ++i) last = last && sc[i] != c;
            }
        }
        if (k < end && last) {
            float t = target_value(s, vals, has_vals, k, nnz);
            u64 idx = b * n + cols[k];
            d[idx] = mode == 0 ? unit_delta(s, a[idx], t)
                               : (mode == 1 ? t : softmax_grad_a(s, a[idx], t));
        }
        if (!ordered) __syncthreads();
    }
}

// SoftMax pass 1: d = softmax_grad_a(a, 0), or 0 (CrossEntropy or ignore_zero).
extern "C" __global__ void softmax_zero_grad(float* d, const float* a, u64 n, LossParams s, int zero) {
    for (u64 i = blockIdx.x * (u64)blockDim.x + threadIdx.x; i < n; i += (u64)gridDim.x * blockDim.x) {
        d[i] = zero ? 0.0f : softmax_grad_a(s, a[i], 0.0f);
    }
}

// LossSpec::softmax_row_delta, one block per row: CrossEntropy δ = a·Σt − t, otherwise the
// Jacobian-vector product a·(g − ⟨a, g⟩); sums in f64.
extern "C" __global__ void softmax_row_delta(float* d, const float* a, u64 cols, int ce) {
    __shared__ double ssum[ROW_THREADS];
    float* dr = d + blockIdx.x * cols;
    const float* ar = a + blockIdx.x * cols;
    double acc = 0.0;
    for (u64 j = threadIdx.x; j < cols; j += blockDim.x)
        acc += ce ? (double)dr[j] : (double)ar[j] * (double)dr[j];
    acc = block_reduce(acc, ssum, AddD());
    for (u64 j = threadIdx.x; j < cols; j += blockDim.x) {
        dr[j] = ce ? (float)((double)ar[j] * acc - (double)dr[j])
                   : (float)((double)ar[j] * ((double)dr[j] - acc));
    }
}

// Dense targets: d = δ(a, t) (mode 0), t (mode 1), softmax_grad_a(a, t) (mode 2).
extern "C" __global__ void dense_target_delta(float* d, const float* a, const float* t, u64 n,
                                              LossParams s, int mode) {
    for (u64 i = blockIdx.x * (u64)blockDim.x + threadIdx.x; i < n; i += (u64)gridDim.x * blockDim.x) {
        d[i] = mode == 0 ? unit_delta(s, a[i], t[i]) : (mode == 1 ? t[i] : softmax_grad_a(s, a[i], t[i]));
    }
}

// Σ fixed(L(a[i], t[i])) (t = 0 when `t` is null-flagged), one i64 partial per block of
// LOSS_BLOCK·LOSS_PER_THREAD elements.
extern "C" __global__ void loss_partials(i64* partials, const float* a, const float* t, int has_t, u64 n,
                                         LossParams s) {
    __shared__ i64 sh[LOSS_BLOCK];
    u64 base = (u64)blockIdx.x * LOSS_BLOCK * LOSS_PER_THREAD;
    i64 acc = 0;
    for (int r = 0; r < LOSS_PER_THREAD; ++r) {
        u64 i = base + (u64)r * LOSS_BLOCK + threadIdx.x;
        if (i < n) acc = (i64)((u64)acc + (u64)to_fixed(unit_loss(s, a[i], has_t ? t[i] : 0.0f)));
    }
    acc = block_reduce(acc, sh, AddI());
    if (threadIdx.x == 0) partials[blockIdx.x] = acc;
}

// The training forward of a non-SoftMax output layer with sparse targets, pass 1 of
// Backend::sparse_output_forward in one read of z: a = f(z) in place (activation_forward's
// formula), d = δ(a, 0) (zero_target_delta's; 0 with ignore_zero) and, per block, the i64
// partial Σ fixed(L(a, 0)) (loss_partials' terms; none with ignore_zero). Grid-stride, any grid:
// the partials are exact integers, so their total does not depend on how elements are split.
// Needs blockDim.x == LOSS_BLOCK.
extern "C" __global__ void output_zero_pass(float* za, float* d, i64* partials, u64 n, int act,
                                            ActParams ap, LossParams s, int ignore_zero) {
    __shared__ i64 sh[LOSS_BLOCK];
    i64 acc = 0;
    for (u64 i = blockIdx.x * (u64)blockDim.x + threadIdx.x; i < n; i += (u64)gridDim.x * blockDim.x) {
        float a = act_forward(act, za[i], ap);
        za[i] = a;
        if (ignore_zero) {
            d[i] = 0.0f;
        } else {
            d[i] = unit_delta(s, a, 0.0f);
            acc = (i64)((u64)acc + (u64)to_fixed(unit_loss(s, a, 0.0f)));
        }
    }
    acc = block_reduce(acc, sh, AddI());
    if (threadIdx.x == 0) partials[blockIdx.x] = acc;
}

// Per row (one block each): Σ over its non-zeros of fixed(L(a, t)) − fixed(L(a, 0)) (or
// fixed(L(a, t)) alone with ignore_zero), an exact integer sum in any order.
extern "C" __global__ void sparse_loss_rows(i64* out, const float* a, const u64* offsets, const u32* cols,
                                            const float* vals, int has_vals, u64 rows, u64 n,
                                            LossParams s, int ignore_zero) {
    __shared__ i64 sh[ROW_THREADS];
    u64 b = blockIdx.x;
    u64 start = offsets[b], end = offsets[b + 1], nnz = end - start;
    i64 acc = 0;
    for (u64 k = start + threadIdx.x; k < end; k += blockDim.x) {
        float t = target_value(s, vals, has_vals, k, nnz);
        float av = a[b * n + cols[k]];
        acc = (i64)((u64)acc + (u64)to_fixed(unit_loss(s, av, t)));
        if (!ignore_zero) acc = (i64)((u64)acc - (u64)to_fixed(unit_loss(s, av, 0.0f)));
    }
    acc = block_reduce(acc, sh, AddI());
    if (threadIdx.x == 0) out[b] = acc;
}

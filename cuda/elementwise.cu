// Element-wise and row-wise kernels: bias, copies, activations, dropout, optimizer updates.
// Grid-stride loops over `n` elements; row kernels take one block (256 threads) per row.

#define ROW_THREADS 256

extern "C" __global__ void set_rows_to_bias(float* out, const float* bias, u64 rows, u64 cols) {
    u64 total = rows * cols;
    for (u64 i = blockIdx.x * (u64)blockDim.x + threadIdx.x; i < total; i += (u64)gridDim.x * blockDim.x) {
        out[i] = bias[i % cols];
    }
}

extern "C" __global__ void add_bias(float* out, const float* bias, u64 rows, u64 cols) {
    u64 total = rows * cols;
    for (u64 i = blockIdx.x * (u64)blockDim.x + threadIdx.x; i < total; i += (u64)gridDim.x * blockDim.x) {
        out[i] += bias[i % cols];
    }
}

extern "C" __global__ void add_assign(float* dst, const float* src, u64 n) {
    for (u64 i = blockIdx.x * (u64)blockDim.x + threadIdx.x; i < n; i += (u64)gridDim.x * blockDim.x) {
        dst[i] += src[i];
    }
}

extern "C" __global__ void scale_rows(float* x, const float* weights, u64 rows, u64 cols) {
    u64 total = rows * cols;
    for (u64 i = blockIdx.x * (u64)blockDim.x + threadIdx.x; i < total; i += (u64)gridDim.x * blockDim.x) {
        x[i] *= weights[i / cols];
    }
}

extern "C" __global__ void scale(float* x, float beta, u64 n) {
    for (u64 i = blockIdx.x * (u64)blockDim.x + threadIdx.x; i < n; i += (u64)gridDim.x * blockDim.x) {
        x[i] *= beta;
    }
}

// db[j] = beta·db[j] + alpha·Σ_b fixed(delta[b, j]) (engine/backend/cpu/dense.rs bias_gradient).
// Block: 32 columns × 8 row groups; each thread sums every 8th row of its column, and the 8
// partial integer sums are added in shared memory (integers: the split does not change the
// result).
extern "C" __global__ void bias_gradient(float* db, const float* delta, u64 rows, u64 cols,
                                         float alpha, float beta) {
    __shared__ i64 part[8][32];
    u64 j = blockIdx.x * 32ull + threadIdx.x;
    i64 acc = 0;
    if (j < cols) {
        for (u64 b = threadIdx.y; b < rows; b += 8)
            acc = (i64)((u64)acc + (u64)to_fixed(delta[b * cols + j]));
    }
    part[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && j < cols) {
        for (int g = 1; g < 8; ++g) acc = (i64)((u64)acc + (u64)part[g][threadIdx.x]);
        float grad = scaled_from_fixed(alpha, acc);
        db[j] = beta == 0.0f ? grad : beta * db[j] + grad;
    }
}

extern "C" __global__ void activation_forward(float* x, u64 n, int act, ActParams p) {
    for (u64 i = blockIdx.x * (u64)blockDim.x + threadIdx.x; i < n; i += (u64)gridDim.x * blockDim.x) {
        x[i] = act_forward(act, x[i], p);
    }
}

extern "C" __global__ void activation_backward(float* delta, const float* a, u64 n, int act, ActParams p) {
    for (u64 i = blockIdx.x * (u64)blockDim.x + threadIdx.x; i < n; i += (u64)gridDim.x * blockDim.x) {
        delta[i] *= act_derivative(act, a[i], p);
    }
}

// Row-wise SoftMax (engine/ops/activation.rs softmax_row_in_place): max, exp, f64 sum, scale.
extern "C" __global__ void softmax_forward(float* x, u64 cols) {
    __shared__ float smax[ROW_THREADS];
    __shared__ double ssum[ROW_THREADS];
    float* row = x + blockIdx.x * cols;
    float m = -__int_as_float(0x7f800000);
    for (u64 j = threadIdx.x; j < cols; j += blockDim.x) m = fmaxf(m, row[j]);
    m = block_reduce(m, smax, MaxOp());
    double s = 0.0;
    for (u64 j = threadIdx.x; j < cols; j += blockDim.x) {
        float e = m_exp(row[j] - m);
        row[j] = e;
        s += (double)e;
    }
    s = block_reduce(s, ssum, AddD());
    double inv = 1.0 / s;
    for (u64 j = threadIdx.x; j < cols; j += blockDim.x) row[j] = (float)((double)row[j] * inv);
}

// SoftMax Jacobian-vector product per row: d = a·(g − ⟨a, g⟩), dot in f64.
extern "C" __global__ void softmax_backward(float* delta, const float* a, u64 cols) {
    __shared__ double ssum[ROW_THREADS];
    float* d = delta + blockIdx.x * cols;
    const float* ar = a + blockIdx.x * cols;
    double dot = 0.0;
    for (u64 j = threadIdx.x; j < cols; j += blockDim.x) dot += (double)ar[j] * (double)d[j];
    dot = block_reduce(dot, ssum, AddD());
    for (u64 j = threadIdx.x; j < cols; j += blockDim.x) d[j] = (float)((double)ar[j] * ((double)d[j] - dot));
}

// Inverted dropout: dropped when uniform(seed, stream, i) < p (engine/backend/cpu/backend.rs);
// with dropped = 0 it is also the gradient through dropout.
// Element (b, j) of a rows x cols matrix draws uniform(seed, stream, b*stride + offset + j)
// (engine/backend/traits.rs DropoutMask); stride == cols, offset == 0 is the flat index.
extern "C" __global__ void dropout_forward(float* x, u64 n, u64 cols, u64 stride, u64 offset,
                                           float p, float dropped, float scale_kept,
                                           u64 seed, u64 stream) {
    const bool flat = stride == cols && offset == 0;
    for (u64 i = blockIdx.x * (u64)blockDim.x + threadIdx.x; i < n; i += (u64)gridDim.x * blockDim.x) {
        const u64 index = flat ? i : (i / cols) * stride + offset + i % cols;
        x[i] = uniform_f32(seed, stream, index) < p ? dropped : x[i] * scale_kept;
    }
}


// One optimizer update per element (engine/ops/optimizer.rs update_step).
extern "C" __global__ void optimizer_step(float* w, const float* g, float* s0, float* s1, u64 n,
                                          int opt, Hyper h) {
    for (u64 i = blockIdx.x * (u64)blockDim.x + threadIdx.x; i < n; i += (u64)gridDim.x * blockDim.x) {
        float wi = w[i];
        float gi = g[i] - (h.lambda * wi + h.lambda1 * sgn(wi));
        switch (opt) {
            case O_SGD: w[i] = wi + h.alpha * gi; break;
            case O_MOMENTUM: {
                float v = h.mu * s0[i] + h.alpha * gi;
                s0[i] = v;
                w[i] = wi + v;
                break;
            }
            case O_NESTEROV: {
                float old = s0[i];
                float v = h.mu * old + h.alpha * gi;
                s0[i] = v;
                w[i] = wi + v + h.mu * (v - old);
                break;
            }
            case O_ADAGRAD: {
                float v = s0[i] + gi * gi;
                s0[i] = v;
                w[i] = wi + h.alpha * gi / sqrtf(fmaxf(v, 1.0e-9f));
                break;
            }
            case O_RMSPROP: {
                float v = h.mu * s0[i] + (1.0f - h.mu) * gi * gi;
                s0[i] = v;
                w[i] = wi + h.alpha * gi / sqrtf(fmaxf(v, 1.0e-9f));
                break;
            }
            case O_ADADELTA: {
                float sg = h.mu * s1[i] + (1.0f - h.mu) * gi * gi;
                float dw = sqrtf(fmaxf(s0[i], 1.0e-9f) / fmaxf(sg, 1.0e-9f)) * gi;
                float v = h.mu * s0[i] + (1.0f - h.mu) * dw * dw;
                s0[i] = v;
                s1[i] = sg;
                w[i] = wi + dw;
                break;
            }
            default: {  // Adam
                float m = h.mu * s0[i] + (1.0f - h.mu) * gi;
                float v = h.mu1 * s1[i] + (1.0f - h.mu1) * gi * gi;
                float m_hat = m / h.adam_m;
                float v_hat = v / h.adam_v;
                s0[i] = m;
                s1[i] = v;
                w[i] = wi + h.alpha * m_hat / (sqrtf(v_hat) + 1.0e-8f);
                break;
            }
        }
    }
}

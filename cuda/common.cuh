// Device versions of the reference formulas in engine/ops (the single source of truth).
// Every function here mirrors a Rust function line for line, in the same order of IEEE
// operations; the module is compiled with --fmad=false so that no a*b+c is contracted into
// an FMA, which makes these bit-identical to the CPU backend (except tanh/expm1/log1p, which
// come from CUDA's libdevice and may differ from the host libm in the last bit).

typedef unsigned int u32;
typedef unsigned long long u64;
typedef long long i64;

// ---- engine/ops/math.rs -------------------------------------------------------------------

__device__ __forceinline__ float m_exp(float x) {
    x = fminf(fmaxf(x, -87.0f), 88.0f);
    const float ROUND = 12582912.0f;
    float n = (x * 1.44269504088896340736f + ROUND) - ROUND;
    float r = x - n * 0.693359375f - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    float y = p * r * r + r + 1.0f;
    u32 biased = __float_as_uint(n + (ROUND + 127.0f)) - __float_as_uint(ROUND);
    return y * __uint_as_float(biased << 23);
}

__device__ __forceinline__ float m_ln(float x) {
    const float SQRT_HALF = 0.70710678118654752440f;
    u32 bits = __float_as_uint(x);
    int e = (int)((bits >> 23) & 0xffu) - 126;
    float m = __uint_as_float((bits & 0x007fffffu) | 0x3f000000u);
    if (m < SQRT_HALF) {
        e -= 1;
        m = m + m - 1.0f;
    } else {
        m -= 1.0f;
    }
    float ef = (float)e;
    float z = m * m;
    float y = 7.0376836292e-2f;
    y = y * m - 1.1514610310e-1f;
    y = y * m + 1.1676998740e-1f;
    y = y * m - 1.2420140846e-1f;
    y = y * m + 1.4249322787e-1f;
    y = y * m - 1.6668057665e-1f;
    y = y * m + 2.0000714765e-1f;
    y = y * m - 2.4999993993e-1f;
    y = y * m + 3.3333331174e-1f;
    y = y * m * z;
    y += -2.12194440e-4f * ef;
    y += -0.5f * z;
    float r = m + y;
    return r + 0.693359375f * ef;
}

// ---- engine/ops/fixed.rs ------------------------------------------------------------------

__device__ __forceinline__ i64 to_fixed(float x) {
    if (isnan(x)) return 0;
    double y = (double)x * 1073741824.0;
    y = fmin(fmax(y, -2251799813685248.0), 2251799813685248.0);
    return llrint(y);
}

__device__ __forceinline__ float scaled_from_fixed(float alpha, i64 sum) {
    return (float)((double)alpha * ((double)sum * (1.0 / 1073741824.0)));
}

// ---- engine/rng.rs (Philox4x32-10) --------------------------------------------------------

__device__ __forceinline__ u32 philox_word(u64 seed, u64 stream, u64 index) {
    u64 block = index >> 2;
    u32 c0 = (u32)block, c1 = (u32)(block >> 32), c2 = (u32)stream, c3 = (u32)(stream >> 32);
    u32 k0 = (u32)seed, k1 = (u32)(seed >> 32);
    #pragma unroll
    for (int round = 0; round < 10; ++round) {
        if (round > 0) {
            k0 += 0x9E3779B9u;
            k1 += 0xBB67AE85u;
        }
        u32 hi0 = __umulhi(0xD2511F53u, c0), lo0 = 0xD2511F53u * c0;
        u32 hi1 = __umulhi(0xCD9E8D57u, c2), lo1 = 0xCD9E8D57u * c2;
        u32 n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
        c0 = n0; c1 = lo1; c2 = n2; c3 = lo0;
    }
    switch (index & 3) {
        case 0: return c0;
        case 1: return c1;
        case 2: return c2;
        default: return c3;
    }
}

__device__ __forceinline__ float uniform_f32(u64 seed, u64 stream, u64 index) {
    u32 x = philox_word(seed, stream, index);
    return (float)((x >> 8) + 1u) * (1.0f / 16777216.0f);
}

// ---- engine/ops/activation.rs -------------------------------------------------------------

enum Act {
    A_SIGMOID = 0, A_TANH = 1, A_RELU = 2, A_LINEAR = 3, A_PRELU = 4, A_SOFTPLUS = 5,
    A_SOFTSIGN = 6, A_SOFTMAX = 7, A_RELUMAX = 8, A_LINEARMAX = 9, A_ELU = 10, A_LRELU = 11,
    A_SELU = 12
};

struct ActParams { float slope, alpha, lambda; };

__device__ __forceinline__ float sigmoid(float z) { return 1.0f / (1.0f + m_exp(-z)); }

__device__ __forceinline__ float clampf(float x, float lo, float hi) { return fminf(fmaxf(x, lo), hi); }

__device__ __forceinline__ float act_forward(int act, float z, ActParams p) {
    switch (act) {
        case A_SIGMOID: return sigmoid(z);
        case A_TANH: return tanhf(z);
        case A_RELU: return fmaxf(z, 0.0f);
        case A_LRELU: case A_PRELU: return z > 0.0f ? z : p.slope * z;
        case A_ELU: return z > 0.0f ? z : p.alpha * expm1f(z);
        case A_SELU: return z > 0.0f ? p.lambda * z : p.lambda * p.alpha * expm1f(z);
        case A_SOFTPLUS: return fmaxf(z, 0.0f) + log1pf(expf(-fabsf(z)));
        case A_SOFTSIGN: return z / (1.0f + fabsf(z));
        case A_RELUMAX: return clampf(z, 0.0f, 1.0f);
        case A_LINEARMAX: return clampf(z, -1.0f, 1.0f);
        default: return z;  // Linear, SoftMax (row-wise elsewhere)
    }
}

__device__ __forceinline__ float act_derivative(int act, float a, ActParams p) {
    switch (act) {
        case A_SIGMOID: return a * (1.0f - a);
        case A_TANH: return 1.0f - a * a;
        case A_RELU: return a > 0.0f ? 1.0f : 0.0f;
        case A_LRELU: case A_PRELU: return a > 0.0f ? 1.0f : p.slope;
        case A_ELU: return a >= 0.0f ? 1.0f : a + p.alpha;
        case A_SELU: return a >= 0.0f ? p.lambda : a + p.lambda * p.alpha;
        case A_SOFTPLUS: return -expm1f(-a);
        case A_SOFTSIGN: { float s = 1.0f - fabsf(a); return s * s; }
        case A_RELUMAX: return (a > 0.0f && a < 1.0f) ? 1.0f : 0.0f;
        case A_LINEARMAX: return fabsf(a) < 1.0f ? 1.0f : 0.0f;
        default: return 1.0f;  // Linear, SoftMax
    }
}

// ---- engine/ops/loss.rs -------------------------------------------------------------------

enum Err { E_L1 = 0, E_L2 = 1, E_CE = 2, E_SMCE = 3, E_DSMCE = 4, E_HINGE = 5, E_L2HINGE = 6 };

struct LossParams {
    int error, act;
    ActParams ap;
    float one_target, zero_target, one_scale, zero_scale;
    float boost_one, boost_zero;
};

#define LOG_FLOOR 1.0e-12f

__device__ __forceinline__ float ln_floor(float x) { return m_ln(fmaxf(x, LOG_FLOOR)); }

__device__ __forceinline__ float l2_hinge_diff(float a, float t) {
    float d = a - fabsf(t);
    return t > 0.0f ? fminf(d, 0.0f) : fmaxf(d, 0.0f);
}

__device__ __forceinline__ float unit_loss(const LossParams& s, float a, float t) {
    bool softmax = s.act == A_SOFTMAX;
    switch (s.error) {
        case E_L1: return fabsf(a - t);
        case E_L2: return 0.5f * (a - t) * (a - t);
        case E_L2HINGE: { float d = l2_hinge_diff(a, t); return 0.5f * d * d; }
        case E_HINGE: return fmaxf(1.0f - t * a, 0.0f);
        case E_CE:
            if (softmax) return -t * ln_floor(a);
            return -t * ln_floor(a) - (1.0f - t) * ln_floor(1.0f - a);
        default: {  // SMCE, DSMCE
            if (t > 0.0f) {
                if (a < s.one_target) {
                    float w = (softmax || s.error == E_DSMCE) ? t : 1.0f;
                    return -s.one_scale * w * ln_floor(a);
                }
                return 0.0f;
            }
            if (a > s.zero_target) return -s.zero_scale * ln_floor(1.0f - a);
            return 0.0f;
        }
    }
}

__device__ __forceinline__ float unit_delta(const LossParams& s, float a, float t) {
    bool canonical = s.act == A_SIGMOID || s.act == A_SOFTMAX;
    switch (s.error) {
        case E_L1: return (a - t > 0.0f ? 1.0f : -1.0f) * act_derivative(s.act, a, s.ap);
        case E_L2: return (a - t) * act_derivative(s.act, a, s.ap);
        case E_L2HINGE: return l2_hinge_diff(a, t) * act_derivative(s.act, a, s.ap);
        case E_HINGE: return t * a < 1.0f ? -t * act_derivative(s.act, a, s.ap) : 0.0f;
        case E_CE: {
            float boost = t != 0.0f ? s.boost_one : s.boost_zero;
            float g = canonical
                ? a - t
                : (a - t) / fmaxf(a * (1.0f - a), LOG_FLOOR) * act_derivative(s.act, a, s.ap);
            return boost * g;
        }
        default: {
            bool data = s.error == E_DSMCE;
            if (t > 0.0f) {
                if (a >= s.one_target) return 0.0f;
                if (s.act == A_SOFTMAX) return s.one_scale * (a - t);
                float w = data ? t : 1.0f;
                if (canonical) return s.one_scale * w * (a - 1.0f);
                return -s.one_scale * w / fmaxf(a, LOG_FLOOR) * act_derivative(s.act, a, s.ap);
            }
            if (a > s.zero_target) {
                if (canonical) return s.zero_scale * a;
                return s.zero_scale / fmaxf(1.0f - a, LOG_FLOOR) * act_derivative(s.act, a, s.ap);
            }
            return 0.0f;
        }
    }
}

__device__ __forceinline__ float softmax_grad_a(const LossParams& s, float a, float t) {
    switch (s.error) {
        case E_L1: return a - t > 0.0f ? 1.0f : -1.0f;
        case E_L2: return a - t;
        case E_L2HINGE: return l2_hinge_diff(a, t);
        case E_HINGE: return t * a < 1.0f ? -t : 0.0f;
        case E_CE: return a > LOG_FLOOR ? -t / a : 0.0f;
        default:
            if (t > 0.0f) {
                return (a < s.one_target && a > LOG_FLOOR) ? -s.one_scale * t / a : 0.0f;
            }
            return (a > s.zero_target && 1.0f - a > LOG_FLOOR) ? s.zero_scale / (1.0f - a) : 0.0f;
    }
}

// ---- engine/ops/optimizer.rs --------------------------------------------------------------

enum Opt { O_SGD = 0, O_MOMENTUM = 1, O_ADAGRAD = 2, O_NESTEROV = 3, O_RMSPROP = 4, O_ADADELTA = 5, O_ADAM = 6 };

struct Hyper { float alpha, lambda, lambda1, mu, mu1, adam_m, adam_v; };

__device__ __forceinline__ float sgn(float w) { return w > 0.0f ? 1.0f : (w < 0.0f ? -1.0f : 0.0f); }

// ---- block reductions (fixed tree order: deterministic run to run) -------------------------

template <typename T, typename Op>
__device__ __forceinline__ T block_reduce(T v, T* shared, Op op) {
    int tid = threadIdx.x;
    shared[tid] = v;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (tid < s) shared[tid] = op(shared[tid], shared[tid + s]);
        __syncthreads();
    }
    T r = shared[0];
    __syncthreads();
    return r;
}

struct MaxOp { __device__ float operator()(float a, float b) const { return fmaxf(a, b); } };
struct AddD { __device__ double operator()(double a, double b) const { return a + b; } };
struct AddI { __device__ i64 operator()(i64 a, i64 b) const { return (i64)((u64)a + (u64)b); } };

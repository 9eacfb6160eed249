// Sparse-input kernels (engine/backend/cpu/sparse.rs): the forward product X·W of a CSR batch
// and the transposed weight gradient Xᵀ·Δ in 64-bit fixed point. No cap on a row's length.

// out[b, j] = beta·out[b, j] + Σ_{(c, v) ∈ row b} v·w[c, j], in the order of the CPU's spmm
// (engine/backend/cpu/sparse.rs): the row's non-zeros in chunks of 256 in storage order, each
// chunk summed from 0 in order, the chunk sums added in order from 0.
// Grid: (rows, column blocks, chunks); block z sums chunk z of its row for 256 columns (the
// chunk's indices and values staged through shared memory, so the loads of w are independent
// and stay in flight together). A row of one chunk is written directly; the chunk sums of a
// longer row go to `parts` ([row][chunk][n], `chunks` = grid.z) and `spmm_combine` adds them,
// so a long row is spread over many blocks instead of one thread's long dependent sum.
#define SPMM_CHUNK 256
extern "C" __global__ void spmm(float* out, const u64* offsets, const u32* cols, const float* vals,
                                int has_vals, const float* w, u64 n, float beta, float* parts) {
    __shared__ u32 sc[SPMM_CHUNK];
    __shared__ float sv[SPMM_CHUNK];
    u64 b = blockIdx.x, z = blockIdx.z;
    u64 j = blockIdx.y * (u64)blockDim.x + threadIdx.x;
    u64 row_start = offsets[b], end = offsets[b + 1];
    u64 start = row_start + z * SPMM_CHUNK;
    if (start >= end && z > 0) return;
    u64 k = start + threadIdx.x;
    if (k < end) {
        sc[threadIdx.x] = cols[k];
        sv[threadIdx.x] = has_vals ? vals[k] : 1.0f;
    }
    __syncthreads();
    if (j >= n) return;
    int m = (int)min((u64)SPMM_CHUNK, end > start ? end - start : 0);
    float part = 0.0f;
    if (has_vals) {
        #pragma unroll 8
        for (int i = 0; i < m; ++i) part += sv[i] * w[(u64)sc[i] * n + j];
    } else {
        #pragma unroll 8
        for (int i = 0; i < m; ++i) part += w[(u64)sc[i] * n + j];
    }
    if (end - row_start <= SPMM_CHUNK) {
        float* o = out + b * n + j;
        *o = beta == 0.0f ? part : beta * *o + part;
    } else {
        parts[(b * gridDim.z + z) * n + j] = part;
    }
}

// `spmm` four columns per thread (n % 4 == 0): each thread loads w[c, j..j+4] as one float4
// and keeps four sums, each over the chunk's non-zeros in the same order as `spmm`'s, so the
// bits are `spmm`'s. Grid: (rows, blocks of 4·blockDim.x columns, chunks); any block size
// that is a multiple of 32 up to SPMM_CHUNK (narrow layers take fewer threads).
extern "C" __global__ void spmm_quads(float* out, const u64* offsets, const u32* cols, const float* vals,
                                      int has_vals, const float* w, u64 n, float beta, float* parts) {
    __shared__ u32 sc[SPMM_CHUNK];
    __shared__ float sv[SPMM_CHUNK];
    u64 b = blockIdx.x, z = blockIdx.z;
    u64 j = (blockIdx.y * (u64)blockDim.x + threadIdx.x) * 4;
    u64 row_start = offsets[b], end = offsets[b + 1];
    u64 start = row_start + z * SPMM_CHUNK;
    if (start >= end && z > 0) return;
    for (u64 i = threadIdx.x; i < SPMM_CHUNK; i += blockDim.x) {
        u64 k = start + i;
        if (k < end) {
            sc[i] = cols[k];
            sv[i] = has_vals ? vals[k] : 1.0f;
        }
    }
    __syncthreads();
    if (j >= n) return;
    int m = (int)min((u64)SPMM_CHUNK, end > start ? end - start : 0);
    float4 part = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    if (has_vals) {
        #pragma unroll 4
        for (int i = 0; i < m; ++i) {
            float4 x = *reinterpret_cast<const float4*>(w + (u64)sc[i] * n + j);
            float v = sv[i];
            part.x += v * x.x;
            part.y += v * x.y;
            part.z += v * x.z;
            part.w += v * x.w;
        }
    } else {
        #pragma unroll 4
        for (int i = 0; i < m; ++i) {
            float4 x = *reinterpret_cast<const float4*>(w + (u64)sc[i] * n + j);
            part.x += x.x;
            part.y += x.y;
            part.z += x.z;
            part.w += x.w;
        }
    }
    if (end - row_start <= SPMM_CHUNK) {
        float4* o = reinterpret_cast<float4*>(out + b * n + j);
        if (beta == 0.0f) {
            *o = part;
        } else {
            float4 p = *o;
            p.x = beta * p.x + part.x;
            p.y = beta * p.y + part.y;
            p.z = beta * p.z + part.z;
            p.w = beta * p.w + part.w;
            *o = p;
        }
    } else {
        *reinterpret_cast<float4*>(parts + (b * gridDim.z + z) * n + j) = part;
    }
}

// Adds the chunk sums of rows longer than one chunk, in chunk order from 0 (see `spmm`).
extern "C" __global__ void spmm_combine(float* out, const u64* offsets, const float* parts, u64 n,
                                        u64 chunks, float beta) {
    u64 b = blockIdx.x;
    u64 j = blockIdx.y * (u64)blockDim.x + threadIdx.x;
    u64 nnz = offsets[b + 1] - offsets[b];
    if (j >= n || nnz <= SPMM_CHUNK) return;
    u64 used = (nnz + SPMM_CHUNK - 1) / SPMM_CHUNK;
    float total = 0.0f;
    for (u64 z = 0; z < used; ++z) total += parts[(b * chunks + z) * n + j];
    float* o = out + b * n + j;
    *o = beta == 0.0f ? total : beta * *o + total;
}

// ---- The transposed (per-feature) structure of a batch, built on the device ----------------
// counts[c] = number of non-zeros in column c (atomics; counts must start at 0).
extern "C" __global__ void csc_count(const u32* cols, u64 nnz, u32* counts) {
    for (u64 k = blockIdx.x * (u64)blockDim.x + threadIdx.x; k < nnz; k += (u64)gridDim.x * blockDim.x)
        atomicAdd(&counts[cols[k]], 1u);
}

// The exclusive scan starts[c] = Σ_{c' < c} counts[c'] (c in 0..=n), cursor = starts, in three
// launches: csc_scan_blocks scans each tile of 1024 counts and writes the tile totals;
// csc_scan_totals scans the totals (one block); csc_scan_finish adds each tile's offset.

// Exclusive scan of 1024 values across a block (warp shuffles), and the block's total.
__device__ __forceinline__ u64 block_exclusive_scan(u64 v, u64* total) {
    __shared__ u64 warp_sums[32];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    u64 incl = v;
    #pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
        u64 t = __shfl_up_sync(0xffffffffu, incl, o);
        if (lane >= o) incl += t;
    }
    if (lane == 31) warp_sums[warp] = incl;
    __syncthreads();
    if (warp == 0) {
        u64 w = lane < (int)(blockDim.x >> 5) ? warp_sums[lane] : 0;
        #pragma unroll
        for (int o = 1; o < 32; o <<= 1) {
            u64 t = __shfl_up_sync(0xffffffffu, w, o);
            if (lane >= o) w += t;
        }
        warp_sums[lane] = w;
    }
    __syncthreads();
    u64 excl = incl - v + (warp > 0 ? warp_sums[warp - 1] : 0);
    *total = warp_sums[(blockDim.x >> 5) - 1];
    __syncthreads();
    return excl;
}

extern "C" __global__ void csc_scan_blocks(const u32* counts, u64 n, u64* starts, u64* tile_totals) {
    u64 c = blockIdx.x * (u64)blockDim.x + threadIdx.x;
    u64 v = c < n ? counts[c] : 0;
    u64 total;
    u64 excl = block_exclusive_scan(v, &total);
    if (c < n) starts[c] = excl;
    if (threadIdx.x == 0) tile_totals[blockIdx.x] = total;
}

// One block of 1024 threads: exclusive scan of `tiles` totals in place (each thread takes a
// contiguous segment), and the grand total in totals[tiles].
extern "C" __global__ void csc_scan_totals(u64* totals, u64 tiles) {
    u64 per = (tiles + blockDim.x - 1) / blockDim.x;
    u64 lo = min(tiles, threadIdx.x * per), hi = min(tiles, lo + per);
    u64 sum = 0;
    for (u64 i = lo; i < hi; ++i) sum += totals[i];
    u64 grand;
    u64 run = block_exclusive_scan(sum, &grand);
    for (u64 i = lo; i < hi; ++i) { u64 v = totals[i]; totals[i] = run; run += v; }
    if (threadIdx.x == 0) totals[tiles] = grand;
}

extern "C" __global__ void csc_scan_finish(u64* starts, u64* cursor, const u64* tile_offsets, u64 n, u64 tiles) {
    u64 c = blockIdx.x * (u64)blockDim.x + threadIdx.x;
    if (c < n) {
        u64 v = starts[c] + tile_offsets[blockIdx.x];
        starts[c] = v;
        cursor[c] = v;
    }
    if (c == 0) starts[n] = tile_offsets[tiles];
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

// For every input feature f and output column j (grid.y blocks of columns):
// dw[f, j] = beta·dw[f, j] + alpha·Σ fixed(v·delta[b, j]) over the batch rows b holding f
// (beta = 0: dw is not read; a feature absent from the batch gets beta·dw, or 0). The blocks
// of grid.x stride over the n_in features (a block per feature made ~100k blocks whose launch
// cost exceeded their work: most features are absent from a minibatch). The feature's rows
// are staged through shared memory as in `spmm`. The sum is an integer, so the order of a
// feature's rows does not matter.
// With `absent_rows` 0 the rows of features absent from the batch are left alone (for
// sparse_gradient_absent_rows, or beta = 1).
extern "C" __global__ void sparse_weight_gradient(float* dw, const u64* starts, const u32* rows,
                                                  const float* vals, int has_vals, const float* delta,
                                                  u64 n, u64 n_in, float alpha, float beta,
                                                  int absent_rows) {
    __shared__ u32 sr[256];
    __shared__ float sv[256];
    const u64 j = blockIdx.y * (u64)blockDim.x + threadIdx.x;
    for (u64 f = blockIdx.x; f < n_in; f += gridDim.x) {
        const u64 s = starts[f], e = starts[f + 1];
        float* o = dw + f * n + j;
        if (s == e) {
            if (absent_rows && j < n && beta != 1.0f) *o = beta == 0.0f ? 0.0f : *o * beta;
            continue;
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
        if (j < n) {
            float g = scaled_from_fixed(alpha, acc);
            *o = beta == 0.0f ? g : beta * *o + g;
        }
    }
}

// The rows of features absent from the batch, sparse_weight_gradient's `s == e` case on its
// own: dw[f, :] ← 0 (beta = 0) or beta·dw[f, :], four floats at a time when rows are a whole
// number of float4 (n % 4 == 0). Grid-stride over the (row, quad) pairs; the row and offset
// advance by the stride's quotient and remainder, so there is one 64-bit division per thread.
extern "C" __global__ void sparse_gradient_absent_rows(float* dw, const u64* starts, u64 n, u64 n_in,
                                                       float beta) {
    const int quads = (n % 4) == 0;
    const u64 per_row = quads ? n / 4 : n;
    const u64 total = n_in * per_row;
    const u64 stride = (u64)gridDim.x * blockDim.x;
    const u64 stride_rows = stride / per_row, stride_rest = stride % per_row;
    u64 i = blockIdx.x * (u64)blockDim.x + threadIdx.x;
    u64 f = i / per_row, r = i % per_row;
    for (; i < total; i += stride) {
        if (starts[f] == starts[f + 1]) {
            if (quads) {
                float4* p = reinterpret_cast<float4*>(dw + f * n) + r;
                if (beta == 0.0f) {
                    *p = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
                } else {
                    float4 v = *p;
                    v.x = v.x * beta;
                    v.y = v.y * beta;
                    v.z = v.z * beta;
                    v.w = v.w * beta;
                    *p = v;
                }
            } else {
                float* p = dw + f * n + r;
                *p = beta == 0.0f ? 0.0f : *p * beta;
            }
        }
        f += stride_rows;
        r += stride_rest;
        if (r >= per_row) {
            r -= per_row;
            f += 1;
        }
    }
}

// ---- Exact top-K per row (engine/predict/topk.rs's contract) ------------------------------
// Keys: order-preserving score bits (−0 as +0) above !index, so that a larger key is a better
// entry and equal scores rank the lower index first; key 0 marks a non-candidate (NaN or
// excluded). One block of 1024 threads per row: radix-select the K-th largest key over 8
// digits of 8 bits, collect the keys at or above it, sort them (bitonic, shared memory), write
// indices and scores; rows with fewer candidates are padded with NO_ITEM and −∞.

#define TOPK_MAX 2048

// Sorts the kk selected keys in `sel` (shared memory, room for TOPK_MAX) descending with a
// bitonic network over the next power of two, then writes the row's k outputs: the index and
// score (bits from `row`) of each, NO_ITEM and −∞ past kk. Called by the whole block.
__device__ void topk_sort_and_write(u64* sel, u32 kk, int k, const float* row, u32* out_idx,
                                    float* out_score) {
    u32 p = 1;
    while (p < kk) p <<= 1;
    for (u32 i = kk + threadIdx.x; i < p; i += blockDim.x) sel[i] = 0;
    __syncthreads();
    for (u32 size = 2; size <= p; size <<= 1) {
        for (u32 stride = size >> 1; stride > 0; stride >>= 1) {
            for (u32 i = threadIdx.x; i < p; i += blockDim.x) {
                u32 j = i ^ stride;
                if (j > i) {
                    bool desc = (i & size) == 0;
                    u64 x = sel[i], y = sel[j];
                    if (desc ? (x < y) : (x > y)) { sel[i] = y; sel[j] = x; }
                }
            }
            __syncthreads();
        }
    }
    for (u32 r = threadIdx.x; r < (u32)k; r += blockDim.x) {
        if (r < kk) {
            u32 idx = ~(u32)(sel[r] & 0xffffffffull);
            out_idx[r] = idx;
            out_score[r] = row[idx];
        } else {
            out_idx[r] = 0xffffffffu;
            out_score[r] = -__int_as_float(0x7f800000);
        }
    }
}

__device__ __forceinline__ u64 topk_key(float s, u32 i) {
    if (isnan(s)) return 0;
    u32 bits = __float_as_uint(s == 0.0f ? 0.0f : s);
    u32 ord = (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
    return ((u64)ord << 32) | (u64)(~i);
}

// keys[b·items + i] = topk_key(scores[b·ld + i], i), then 0 at the row's excluded columns.
extern "C" __global__ void topk_keys(u64* keys, const float* scores, u64 ld, u64 items,
                                     const u64* ex_offsets, const u32* ex_cols, int has_ex) {
    u64 b = blockIdx.x;
    for (u64 i = threadIdx.x; i < items; i += blockDim.x)
        keys[b * items + i] = topk_key(scores[b * ld + i], (u32)i);
    if (!has_ex) return;
    __syncthreads();
    for (u64 k = ex_offsets[b] + threadIdx.x; k < ex_offsets[b + 1]; k += blockDim.x) {
        u32 c = ex_cols[k];
        if (c < items) keys[b * items + c] = 0;
    }
}

extern "C" __global__ void topk_select(const u64* keys, const float* scores, u64 ld, u64 items, int k,
                                       u32* out_idx, float* out_score) {
    __shared__ u32 hist[256];
    __shared__ u64 sel[TOPK_MAX];
    __shared__ u32 chosen, remaining, count, n_sel;
    __shared__ i64 cnt_part[1024];
    u64 b = blockIdx.x;
    const u64* row = keys + b * items;
    // Candidates in the row.
    i64 c = 0;
    for (u64 i = threadIdx.x; i < items; i += blockDim.x) c += row[i] != 0;
    c = block_reduce(c, cnt_part, AddI());
    u32 kk = (u32)min((i64)k, c);
    u64 prefix = 0, mask = 0;
    if (threadIdx.x == 0) { remaining = kk; n_sel = 0; }
    __syncthreads();
    if (kk > 0 && (i64)kk < c) {
        for (int shift = 56; shift >= 0; shift -= 8) {
            for (int d = threadIdx.x; d < 256; d += blockDim.x) hist[d] = 0;
            __syncthreads();
            for (u64 i = threadIdx.x; i < items; i += blockDim.x) {
                u64 key = row[i];
                if (key != 0 && (key & mask) == prefix) atomicAdd(&hist[(key >> shift) & 255u], 1u);
            }
            __syncthreads();
            if (threadIdx.x == 0) {
                u32 cum = 0, need = remaining;
                for (int d = 255; d >= 0; --d) {
                    if (cum + hist[d] >= need) { chosen = (u32)d; remaining = need - cum; break; }
                    cum += hist[d];
                }
            }
            __syncthreads();
            prefix |= (u64)chosen << shift;
            mask |= 255ull << shift;
            __syncthreads();
        }
    } else {
        prefix = 1;  // every candidate (key ≥ 1) is selected
    }
    // Collect the kk keys ≥ the threshold (keys are unique, so exactly kk).
    for (u64 i = threadIdx.x; i < items; i += blockDim.x) {
        u64 key = row[i];
        if (key != 0 && key >= prefix && kk > 0) {
            u32 pos = atomicAdd(&n_sel, 1u);
            if (pos < TOPK_MAX) sel[pos] = key;
        }
    }
    __syncthreads();
    topk_sort_and_write(sel, kk, k, scores + b * ld, out_idx + b * k, out_score + b * k);
}

// Top-K for rows of at most 65,536 items, reading the scores directly (no key array): the
// exclusions of the row become a bitmap in shared memory; radix select over the 32
// order-preserving bits of the scores in three digits (11, 11, 10 bits) finds the K-th largest
// score T; among the entries equal to T, a radix select over the 16-bit indices keeps the
// lowest ones. Then the same sort and output as topk_select. Five passes over 4-byte scores
// instead of ten over 8-byte keys.
#define TOPK_SMALL_ITEMS 65536

__device__ __forceinline__ u32 topk_ord(float s) {
    u32 bits = __float_as_uint(s == 0.0f ? 0.0f : s);
    return (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
}

// In the histogram `hist` of `bins` (≤ 2048) bins, finds the bin holding the `need`-th largest
// entry (counting from the top bin) and how many of that bin's entries are needed; thread t
// looks at bins 2t and 2t+1 from the top. Results in *chosen and *left.
__device__ __forceinline__ void topk_find_bin(const u32* hist, int bins, u32 need, u32* chosen, u32* left) {
    int hi = bins - 1 - 2 * (int)threadIdx.x, lo = hi - 1;
    u32 vh = hi >= 0 ? hist[hi] : 0, vl = lo >= 0 ? hist[lo] : 0;
    u64 total;
    u64 above = block_exclusive_scan((u64)vh + vl, &total);
    if (above < need && above + vh >= need) { *chosen = (u32)hi; *left = need - (u32)above; }
    else if (above + vh < need && above + vh + vl >= need) { *chosen = (u32)lo; *left = need - (u32)above - vh; }
    __syncthreads();
}

extern "C" __global__ void topk_small(const float* scores, u64 ld, u64 items, const u64* ex_offsets,
                                      const u32* ex_cols, int has_ex, int k, u32* out_idx, float* out_score) {
    __shared__ u32 excluded[TOPK_SMALL_ITEMS / 32];
    __shared__ u32 hist[2048];
    __shared__ u64 sel[TOPK_MAX];
    __shared__ i64 red[1024];
    __shared__ u32 chosen, left, n_sel;
    u64 b = blockIdx.x;
    const float* row = scores + b * ld;
    u32 words = (u32)((items + 31) / 32);
    for (u32 i = threadIdx.x; i < words; i += blockDim.x) excluded[i] = 0;
    __syncthreads();
    if (has_ex)
        for (u64 e = ex_offsets[b] + threadIdx.x; e < ex_offsets[b + 1]; e += blockDim.x) {
            u32 c = ex_cols[e];
            if (c < items) atomicOr(&excluded[c >> 5], 1u << (c & 31));
        }
    __syncthreads();
#define TOPK_VALID(i, s) (!isnan(s) && !(excluded[(i) >> 5] & (1u << ((i) & 31))))
    i64 c = 0;
    for (u32 i = threadIdx.x; i < items; i += blockDim.x) c += TOPK_VALID(i, row[i]);
    c = block_reduce(c, red, AddI());
    u32 kk = (u32)min((i64)k, c);
    // Threshold T on the score bits and how many entries equal to T are taken.
    u32 t_ord = 0, t_take = 0, prefix = 0, mask = 0;
    bool all = (i64)kk >= c;
    if (!all && kk > 0) {
        u32 need = kk;
        const int shifts[3] = {21, 10, 0}, widths[3] = {11, 11, 10};
        #pragma unroll
        for (int p = 0; p < 3; ++p) {
            int bins = 1 << widths[p];
            for (int d = threadIdx.x; d < bins; d += blockDim.x) hist[d] = 0;
            __syncthreads();
            for (u32 i = threadIdx.x; i < items; i += blockDim.x) {
                float s = row[i];
                if (!TOPK_VALID(i, s)) continue;
                u32 o = topk_ord(s);
                if ((o & mask) == prefix) atomicAdd(&hist[(o >> shifts[p]) & (bins - 1)], 1u);
            }
            __syncthreads();
            topk_find_bin(hist, bins, need, &chosen, &left);
            prefix |= chosen << shifts[p];
            mask |= (u32)(bins - 1) << shifts[p];
            need = left;
        }
        t_ord = prefix;
        t_take = need;  // entries equal to T to take, the lowest indices first
    }
    // Among the entries equal to T, the t_take lowest indices: radix select over the 16-bit
    // index from the bottom (bins counted from index 0 upwards, so the "top" is index 0).
    u32 idx_limit = 0xffffffffu;
    if (!all && kk > 0) {
        u32 need = t_take, iprefix = 0, imask = 0;
        #pragma unroll
        for (int p = 0; p < 2; ++p) {
            int shift = p == 0 ? 8 : 0;
            for (int d = threadIdx.x; d < 256; d += blockDim.x) hist[d] = 0;
            __syncthreads();
            for (u32 i = threadIdx.x; i < items; i += blockDim.x) {
                float s = row[i];
                if (!TOPK_VALID(i, s) || topk_ord(s) != t_ord || (i & imask) != iprefix) continue;
                atomicAdd(&hist[255 - ((i >> shift) & 255u)], 1u);  // reversed: low index = top bin
            }
            __syncthreads();
            topk_find_bin(hist, 256, need, &chosen, &left);
            iprefix |= (255u - chosen) << shift;
            imask |= 255u << shift;
            need = left;
        }
        idx_limit = iprefix;  // entries equal to T with index ≤ idx_limit are taken
    }
    if (threadIdx.x == 0) n_sel = 0;
    __syncthreads();
    for (u32 i = threadIdx.x; i < items && kk > 0; i += blockDim.x) {
        float s = row[i];
        if (!TOPK_VALID(i, s)) continue;
        u32 o = topk_ord(s);
        if (all || o > t_ord || (o == t_ord && i <= idx_limit)) {
            u32 pos = atomicAdd(&n_sel, 1u);
            if (pos < TOPK_MAX) sel[pos] = ((u64)o << 32) | (u64)(~i);
        }
    }
#undef TOPK_VALID
    __syncthreads();
    topk_sort_and_write(sel, kk, k, row, out_idx + b * k, out_score + b * k);
}

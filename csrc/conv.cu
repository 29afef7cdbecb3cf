// conv.cu — conv-family kernels of EKDAA (SPEC.md "Network", "Forward", "EKDAA update" 3–4).
//
//   conv_block_fwd      h = conv(x, W) + b, z = φ(h) ⊙ m/(1−p), out = maxpool2x2(z) + argmax   (eq. 3–4)
//                       as an implicit GEMM (igemm.cuh) with the epilogue fused; v1 (one thread per
//                       output) kept for benchmarks, likewise for conv_error_proj
//   conv_error_proj     d = convT(e_above, K) (K = E for EKDAA, W for BP), unpooled to h's resolution at
//                       the argmax (eq. 7), then e = (φ(h) − φ(h − βd)) ⊙ m/(1−p)   [rule "ekdaa", eq. 8]
//                                                  e = d ⊙ φ'(h) ⊙ m/(1−p)         [rule "bp"]
//   unpool_error        the same unpool + epilogue for a d already in memory (e.g. an FC layer's, flattened)
//   conv_proj           d = convT(e, K) alone (the release's normalize-by-max(d) path)
//   unpool_bilinear     TF2 bilinear resize, half-pixel centres (the release's unpool)
//   conv_filter_update  ΔW = z ⋆ Flip(e) (conv-backward-filter), Δb = Σ e, ΔE = γ·ΔW      (eq. 9–10)
//                       as a split-K implicit GEMM (register-blocked, shared-memory tiles) and a
//                       fixed-order sum of its partials; v1 (one block per output) kept for benchmarks;
//                       v3 (conv_filter_update_pooled) for an e that is zero off the pool argmax: one
//                       term per 2x2 window, the same split-K and reduce
//
// Layout: float32 NCHW, contiguous; weights [C_out, C_in, k, k]; k odd, stride 1, same padding.
// Every kernel but the filter update's GEMM is a thin wrapper over a per-thread body in conv.h
// (one output, or one 2x2 pool cell, per thread); the GEMM and its reduce use shared-memory tiles
// and registers (v1, one block per output with a fixed-order tree, is kept for benchmarks).
// Test: `pytest tests/gpu/test_ops_conv.py` (the CPU simulator, and the GPU when there is one);
// bench/micro.py times them (filter update v1, v2 and v3).
#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <array>
#include <string>
#include <vector>

#include "common.cuh"
#include "conv.h"
#include "igemm.cuh"

namespace ekdaa {
namespace {

constexpr int kThreads = 256;  // threads per block of the one-thread-per-output kernels

// Blocks of kThreads covering `threads` threads, within the 1-D grid limit.
unsigned int blocks_for(const char* op, int64_t threads) {
    const int64_t blocks = (threads + kThreads - 1) / kThreads;
    require(blocks <= INT32_MAX, op, "too many threads for the grid: " + std::to_string(threads));
    return static_cast<unsigned int>(blocks);
}

__global__ void conv_block_fwd_kernel(ConvBlockFwdArgs a, int64_t threads) {
    const int64_t t = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (t < threads) conv_block_fwd_at(a, t);
}

// Also serves unpool_error (a.d set instead of a.e / a.kernel).
__global__ void conv_error_proj_kernel(ErrorProjArgs a, int64_t threads) {
    const int64_t t = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (t < threads) error_proj_at(a, t);
}

__global__ void conv_proj_kernel(const float* __restrict__ e,  // [N, C_out, H, W]
                                 const float* __restrict__ K,  // [C_out, C_in, k, k]
                                 float* __restrict__ d,        // [N, C_in, H, W]
                                 int64_t C_in, int64_t C_out, int64_t H, int64_t W, int64_t k, int64_t threads) {
    const int64_t t = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (t < threads) conv_proj_at(e, K, d, C_in, C_out, H, W, k, t);
}

__global__ void unpool_bilinear_proj_kernel(const float* __restrict__ d,  // [N·C, h, w]
                                            float* __restrict__ out,      // [N·C, H, W]
                                            int64_t h, int64_t w, int64_t H, int64_t W, int64_t threads) {
    const int64_t t = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (t < threads) unpool_bilinear_at(d, out, h, w, H, W, t);
}

// One block per output (weight or bias); thread i sums terms i, i + kFilterUpdateThreads, ... in
// order, then a fixed tree adds the partial sums: the result does not depend on scheduling
// (the simulator tests check it bitwise under several thread schedules).
__global__ void conv_filter_update_kernel(FilterUpdateArgs a) {
    __shared__ float partial[kFilterUpdateThreads];
    const int64_t o = blockIdx.x;
    partial[threadIdx.x] = filter_update_partial(a, o, threadIdx.x, kFilterUpdateThreads);
    __syncthreads();
    for (int s = kFilterUpdateThreads / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) partial[threadIdx.x] += partial[threadIdx.x + s];
        __syncthreads();
    }
    if (threadIdx.x == 0) filter_update_store(a, o, partial[0]);
}

// Column j of the filter update's implicit im2col (FwuPlan): kind 0, tap (ci, ky, kx) of z, read at
// zoff = ci·HW + zdy·W + zdx from a position's address where (y + zdy, x + zdx) is inside the image;
// kind 1, the bias column of ones; kind 2, past the last column. Once per thread, not per term.
EKDAA_HD void fwu_column(const FwuPlan& g, int j, int& zoff, int& zdy, int& zdx, int& kind) {
    zoff = 0;
    zdy = 0;
    zdx = 0;
    kind = j < g.taps ? 0 : (j < g.cols ? 1 : 2);
    if (kind == 0) {
        const int kk2 = g.k * g.k, ci = j / kk2, r = j - ci * kk2, ky = r / g.k, kx = r - ky * g.k;
        zdy = ky - g.pad;
        zdx = kx - g.pad;
        zoff = ci * g.HW + zdy * g.W + zdx;
    }
}

// Position p of an N x gh x gw grid as (n, y, x): once per thread.
EKDAA_HD void fwu_locate(int p, int gh, int gw, int& n, int& y, int& x) {
    n = 0, y = 0, x = 0;
    if (gh * gw == 0) return;
    n = p / (gh * gw);
    const int yx = p - n * gh * gw;
    y = yx / gw;
    x = yx - y * gw;
}

// (n, y, x) += kFwuBK positions of the N x gh x gw grid the plan's adv_* were made for: one carry
// per digit at most (adv_x < gw, adv_y < gh), no division.
EKDAA_HD void fwu_advance(const FwuPlan& g, int gh, int gw, int& n, int& y, int& x) {
    x += g.adv_x;
    if (x >= gw) {
        x -= gw;
        ++y;
    }
    y += g.adv_y;
    if (y >= gh) {
        y -= gh;
        ++n;
    }
    n += g.adv_n;
}

// Pass 1 of the filter update (v2), one block per (column tile, C_out tile, split):
//   ws[s, co, j] = Σ_{p in split s, in order} e[p, co] · Z[p, j]      (FwuPlan in conv.h)
// Block tile 64 (co) x 64 (j), 256 threads as 16 x 16, thread (tm, tn) holding rows co0 + 4·tm .. +3
// and columns j0 + 4·tn .. +3 in registers; per step kFwuBK = 16 positions of e and of the implicit
// im2col Z are staged in shared memory, each thread loading position (t % 16) of rows/columns
// t / 16 + 16·i (i < 4), so a warp reads 16 consecutive positions of 2 planes (coalesced). A
// thread's column decomposition (ci, ky, kx) is computed once; its position (n, y, x) advances by
// kFwuBK with at most one carry per digit: no division or modulo per term, int32 index math.
__global__ void __launch_bounds__(kFwuThreads)
    conv_filter_update_gemm_kernel(const float* __restrict__ z,  // [N, C_in, H, W]
                                   const float* __restrict__ e,  // [N, C_out, H, W]
                                   float* __restrict__ ws,       // [splits, C_out, cols]
                                   FwuPlan g) {
    __shared__ float es[kFwuBK][kFwuBM + 4];  // e tile [positions, co]; +4 spreads the transposing stores
    __shared__ float zs[kFwuBK][kFwuBN + 4];  // Z tile [positions, j]
    const int t = threadIdx.x;
    const int lr = t & (kFwuBK - 1), lc = t >> 4;  // loader: position lr, rows/columns lc + 16·i
    const int tn = t & 15, tm = t >> 4;            // compute: columns 4·tn.., rows 4·tm..
    const int j0 = blockIdx.x * kFwuBN, co0 = blockIdx.y * kFwuBM;
    const int p_begin = blockIdx.z * g.split_len;
    const int p_end = min(g.positions, p_begin + g.split_len);

    // This thread's 4 loader columns: z offset of (ci, ky − pad, kx − pad), the tap shift, and its kind.
    int zoff[4], zdy[4], zdx[4], zkind[4];  // fwu_column
    int eoff[4];                            // e offset of row co (−1: beyond C_out)
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        fwu_column(g, j0 + lc + 16 * i, zoff[i], zdy[i], zdx[i], zkind[i]);
        const int co = co0 + lc + 16 * i;
        eoff[i] = co < g.C_out ? co * g.HW : -1;
    }
    // Position p = p_begin + lr as (n, y, x) (p may lie past p_end: then it is never read).
    int n, y, x;
    fwu_locate(p_begin + lr, g.H, g.W, n, y, x);
    const int zimg = g.C_in * g.HW, eimg = g.C_out * g.HW;

    float acc[4][4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = 0.0f;

    for (int c0 = p_begin; c0 < p_end; c0 += kFwuBK) {
        const bool live = c0 + lr < p_end;
        const int yx = y * g.W + x;
        const int zbase = live ? n * zimg + yx : 0, ebase = live ? n * eimg + yx : 0;  // n < N when live
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            float zv = 0.0f;
            if (live) {
                if (zkind[i] == 0) {
                    const int iy = y + zdy[i], ix = x + zdx[i];
                    if (static_cast<unsigned>(iy) < static_cast<unsigned>(g.H) &&
                        static_cast<unsigned>(ix) < static_cast<unsigned>(g.W))
                        zv = z[zbase + zoff[i]];
                } else if (zkind[i] == 1) {
                    zv = 1.0f;
                }
            }
            zs[lr][lc + 16 * i] = zv;
            es[lr][lc + 16 * i] = (live && eoff[i] >= 0) ? e[ebase + eoff[i]] : 0.0f;
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < kFwuBK; ++kk) {
            float a[4], b[4];
#pragma unroll
            for (int i = 0; i < 4; ++i) a[i] = es[kk][4 * tm + i];
#pragma unroll
            for (int j = 0; j < 4; ++j) b[j] = zs[kk][4 * tn + j];
#pragma unroll
            for (int i = 0; i < 4; ++i)
#pragma unroll
                for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
        }
        __syncthreads();
        fwu_advance(g, g.H, g.W, n, y, x);
    }

    float* out = ws + int64_t(blockIdx.z) * g.C_out * g.cols;  // this split's partial G
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const int co = co0 + 4 * tm + i;
        if (co >= g.C_out) continue;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const int col = j0 + 4 * tn + j;
            if (col < g.cols) out[co * g.cols + col] = acc[i][j];
        }
    }
}

// Pass 2 of the filter update (v2), one thread per G[co, j]: the partials summed in split order
// 0, 1, ..., splits − 1 (bitwise reproducible), then ΔW, ΔE = γ·ΔW, or Δb for the bias column.
__global__ void conv_filter_update_reduce_kernel(const float* __restrict__ ws,  // [splits, C_out, cols]
                                                 float* __restrict__ dw,        // [C_out, taps]
                                                 float* __restrict__ db,        // [C_out] or nullptr
                                                 float* __restrict__ de,        // [C_out, taps]
                                                 FwuPlan g) {
    const int o = blockIdx.x * blockDim.x + threadIdx.x;
    const int outputs = g.C_out * g.cols;
    if (o >= outputs) return;
    float sum = 0.0f;
    for (int s = 0; s < g.splits; ++s) sum += ws[int64_t(s) * outputs + o];
    const int co = o / g.cols, j = o - co * g.cols;  // once per output
    if (j < g.taps) {
        dw[co * g.taps + j] = sum;
        de[co * g.taps + j] = g.gamma * sum;
    } else {
        db[co] = sum;
    }
}

// Pass 1 of the filter update of a pooled layer (v3, FwuPooledPlan in conv.h), one block per
// (column tile, C_out tile, split):
//   ws[s, co, j] = Σ_{cells c = (n, i, j') of split s, in order} e[n, co, 2i+dy, 2j'+dx] · Z_q[c, j]
// with q = 2·dy + dx = argmax[n, co, i, j'], Z_q[c, (ci, ky, kx)] = z[n, ci, 2i+dy+ky−pad, 2j'+dx+kx−pad]
// (zero outside the image) and Z_q[c, taps] = 1 (bias). Block tile 64 (co) x 128 (j); per step
// kFwuBK = 16 cells are staged in shared memory: the four variants Z_q of the implicit im2col (the
// cells' full-resolution 2x2 windows), and for each row co of the tile e at the argmax and the byte
// offset of its variant. Loaders: thread t handles cell t % 16 and columns t / 16 + 16·i (i < 8; a
// column's 4 variants are the window z[at], z[at + 1], z[at + W], z[at + W + 1]) and rows
// t / 16 + 16·i (i < 4). Product: warp w owns columns 16w..16w+15, lane l rows 2l, 2l+1: per cell a
// lane reads {e, e, offset, offset} of its rows in one float4, then 4 float4 of Z_q per row, each
// feeding 4 FMAs; the 32 lanes' reads of one Z row touch at most 4 distinct 16-byte chunks (one per
// q, skewed into distinct banks): one wavefront.
__global__ void __launch_bounds__(kFwuThreads, 2)  // <= 128 registers: two blocks (16 warps) per SM
    conv_filter_update_pooled_kernel(const float* __restrict__ z,         // [N, C_in, H, W]
                                     const float* __restrict__ e,         // [N, C_out, H, W]
                                     const uint8_t* __restrict__ argmax,  // [N, C_out, Hp, Wp]
                                     float* __restrict__ ws,              // [splits, C_out, cols]
                                     FwuPooledPlan pp) {
    __shared__ float4 zs4[kFwpZVariant];                // Z_q tiles, floats [q][cell][j] (q-stride kFwpZVariant)
    __shared__ float4 eq4[kFwuBK * kFwpEqRow / 4];      // per cell and lane l: e[2l], e[2l+1], offsets (int bits)
    float* zs = reinterpret_cast<float*>(&zs4[0]);
    float* eq = reinterpret_cast<float*>(&eq4[0]);
    const FwuPlan& g = pp.g;
    const int t = threadIdx.x;
    const int lr = t & (kFwuBK - 1), lc = t >> 4;  // loader: cell lr, columns / rows lc + 16·i
    const int lane = t & 31, warp = t >> 5;        // product: rows 2·lane, 2·lane + 1; columns 16·warp ..
    const int j0 = blockIdx.x * kFwpBN, co0 = blockIdx.y * kFwuBM;
    const int p_begin = blockIdx.z * g.split_len;
    const int p_end = min(g.positions, p_begin + g.split_len);

    constexpr int kCols = kFwpBN / 16, kRows = kFwuBM / 16;  // loader columns and rows per thread
    constexpr int kNoRow = -(1 << 29);  // a row shift that fails every bounds check (|y0|, |zdy| < 2^29)
    int zoff[kCols], zdy[kCols], zdx[kCols];  // fwu_column (full resolution); zdy = kNoRow: no tap of z
    float* bias_dst = nullptr;                // this thread's slot of the bias column, if it loads it
#pragma unroll
    for (int i = 0; i < kCols; ++i) {
        int kind;
        fwu_column(g, j0 + lc + 16 * i, zoff[i], zdy[i], zdx[i], kind);
        zdy[i] = kind == 0 ? zdy[i] : kNoRow;
        if (kind == 1) bias_dst = zs + lr * kFwpZRow + lc + 16 * i;
    }
    int eoff[kRows], aoff[kRows];  // e and argmax offsets of row co (−1: beyond C_out)
#pragma unroll
    for (int i = 0; i < kRows; ++i) {
        const int co = co0 + lc + 16 * i;
        eoff[i] = co < g.C_out ? co * g.HW : -1;
        aoff[i] = co < g.C_out ? co * pp.HWp : -1;
    }
    // Row r = lc + 16·i of the e / offset tile sits at lane r/2, component r % 2: e at
    // eq_row + 32·i, its offset 2 floats further.
    float* eq_row = eq + lr * kFwpEqRow + 4 * (lc >> 1) + (lc & 1);
    int n, ci, cj;  // cell p_begin + lr as (n, i, j') (past p_end: never read)
    fwu_locate(p_begin + lr, pp.Hp, pp.Wp, n, ci, cj);
    const int zimg = g.C_in * g.HW, eimg = g.C_out * g.HW, aimg = g.C_out * pp.HWp;

    float acc[2][16];
#pragma unroll
    for (int r = 0; r < 2; ++r)
#pragma unroll
        for (int c = 0; c < 16; ++c) acc[r][c] = 0.0f;

    for (int c0 = p_begin; c0 < p_end; c0 += kFwuBK) {
        const bool live = c0 + lr < p_end;
        const int y0 = 2 * ci, x0 = 2 * cj, yx = y0 * g.W + x0;  // the window's top-left corner
        const int zbase = live ? n * zimg + yx : 0, ebase = live ? n * eimg + yx : 0;  // n < N when live
        const int abase = live ? n * aimg + ci * pp.Wp + cj : 0;
        const int ylive = live ? y0 : kNoRow;  // no row of z for a cell past the split
#pragma unroll
        for (int i = 0; i < kCols; ++i) {
            // Z_q for q = 0..3: the 2x2 window at (y0 + zdy, x0 + zdx), zero outside the image
            const int iy = ylive + zdy[i], ix = x0 + zdx[i], at = zbase + zoff[i];
            const bool row0 = static_cast<unsigned>(iy) < static_cast<unsigned>(g.H);
            const bool row1 = static_cast<unsigned>(iy + 1) < static_cast<unsigned>(g.H);
            const bool col0 = static_cast<unsigned>(ix) < static_cast<unsigned>(g.W);
            const bool col1 = static_cast<unsigned>(ix + 1) < static_cast<unsigned>(g.W);
            float* dst = zs + lr * kFwpZRow + lc + 16 * i;
            dst[0] = row0 && col0 ? z[at] : 0.0f;
            dst[kFwpZVariant] = row0 && col1 ? z[at + 1] : 0.0f;
            dst[2 * kFwpZVariant] = row1 && col0 ? z[at + g.W] : 0.0f;
            dst[3 * kFwpZVariant] = row1 && col1 ? z[at + g.W + 1] : 0.0f;
        }
        if (live && bias_dst != nullptr)  // the column of ones, over the zeros just stored
            bias_dst[0] = bias_dst[kFwpZVariant] = bias_dst[2 * kFwpZVariant] = bias_dst[3 * kFwpZVariant] = 1.0f;
#pragma unroll
        for (int i = 0; i < kRows; ++i) {
            float ev = 0.0f;
            int qoff = 0;
            if (live && eoff[i] >= 0) {
                const int q = argmax[abase + aoff[i]] & 3;
                ev = e[ebase + eoff[i] + q + (q >> 1) * (g.W - 2)];  // + dy·W + dx
                qoff = q * kFwpZVariant * int(sizeof(float));
            }
            eq_row[32 * i] = ev;
            eq_row[32 * i + 2] = __int_as_float(qoff);
        }
        __syncthreads();
        const char* zcol = reinterpret_cast<const char*>(zs + 16 * warp);  // + a row's byte offset: one add
#pragma unroll
        for (int kk = 0; kk < kFwuBK; ++kk) {
            const float4 v = eq4[kk * (kFwpEqRow / 4) + lane];
            const float ea[2] = {v.x, v.y};
            const int qa[2] = {__float_as_int(v.z), __float_as_int(v.w)};
#pragma unroll
            for (int r = 0; r < 2; ++r) {
                const float4* row = reinterpret_cast<const float4*>(zcol + qa[r]) + kk * (kFwpZRow / 4);
#pragma unroll
                for (int c4 = 0; c4 < 4; ++c4) {
                    const float4 b = row[c4];
                    acc[r][4 * c4 + 0] = fmaf(ea[r], b.x, acc[r][4 * c4 + 0]);
                    acc[r][4 * c4 + 1] = fmaf(ea[r], b.y, acc[r][4 * c4 + 1]);
                    acc[r][4 * c4 + 2] = fmaf(ea[r], b.z, acc[r][4 * c4 + 2]);
                    acc[r][4 * c4 + 3] = fmaf(ea[r], b.w, acc[r][4 * c4 + 3]);
                }
            }
        }
        __syncthreads();
        fwu_advance(g, pp.Hp, pp.Wp, n, ci, cj);
    }

    float* out = ws + int64_t(blockIdx.z) * g.C_out * g.cols;  // this split's partial G
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const int co = co0 + 2 * lane + r;
        if (co >= g.C_out) continue;
#pragma unroll
        for (int c = 0; c < 16; ++c) {
            const int col = j0 + 16 * warp + c;
            if (col < g.cols) out[co * g.cols + col] = acc[r][c];
        }
    }
}

void check_sizes(const char* op, std::initializer_list<int64_t> sizes) {
    for (int64_t s : sizes) require(s >= 0, op, "sizes must be >= 0, got " + std::to_string(s));
}

void check_kernel_size(const char* op, int64_t k) {
    require(k >= 1 && k % 2 == 1, op, "kernel size k must be odd and >= 1, got " + std::to_string(k));
}

void check_activation(const char* op, int act) {
    require(act >= kTanh && act <= kSigmoid, op, "activation code must be in [0, 4], got " + std::to_string(act));
}

// The mask of a tensor of `count` elements: p < 1, scale = 1/(1−p) >= 1, and flat indices fit in 32 bits.
void check_dropout(const char* op, const Dropout& dp, int64_t count) {
    require(dp.threshold < (1u << 24), op,
            "dropout threshold must be < 2^24 (p < 1), got " + std::to_string(dp.threshold));
    require(dp.scale >= 1.0f && std::isfinite(dp.scale), op,
            "dropout scale must be 1/(1-p) >= 1, got " + std::to_string(dp.scale));
    require(dp.threshold == 0 || count <= (int64_t(1) << 32), op,
            "dropout on a tensor of " + std::to_string(count) + " elements exceeds the 2^32 mask index range");
}

}  // namespace

void check_conv_block_fwd(const char* op, const ConvBlockFwdArgs& a) {
    check_sizes(op, {a.N, a.C_in, a.C_out, a.H, a.W});
    check_kernel_size(op, a.k);
    check_activation(op, a.act);
    check_dropout(op, a.dropout, a.N * a.C_out * a.H * a.W);
    require(!a.pool || a.argmax != nullptr || a.N * a.C_out * (a.H / 2) * (a.W / 2) == 0, op,
            "argmax output is required when pool is on");
}

void check_error_proj(const char* op, const ErrorProjArgs& a) {
    check_sizes(op, {a.N, a.C_in, a.C_out, a.Hp, a.Wp, a.Hh, a.Wh});
    check_activation(op, a.act);
    require(a.rule == kRuleEkdaa || a.rule == kRuleBp, op, "rule must be 0 (ekdaa) or 1 (bp), got " + std::to_string(a.rule));
    require(a.rule != kRuleBp || a.act != kSignum, op, "rule bp needs φ', which signum does not have");
    require(std::isfinite(a.beta), op, "beta must be finite");
    if (a.project) check_kernel_size(op, a.k);
    if (a.pool) {
        require(a.argmax != nullptr || a.N * a.C_in * a.Hp * a.Wp == 0, op, "argmax is required when pool is on");
        require(a.Hp == a.Hh / 2 && a.Wp == a.Wh / 2, op,
                "pooled size (" + std::to_string(a.Hp) + ", " + std::to_string(a.Wp) + ") must be h's size (" +
                    std::to_string(a.Hh) + ", " + std::to_string(a.Wh) + ") // 2");
    } else {
        require(a.Hp == a.Hh && a.Wp == a.Wh, op, "without argmax, the error and h must have the same H, W");
    }
    check_dropout(op, a.dropout, a.N * a.C_in * a.Hh * a.Wh);
}

void check_filter_update(const char* op, const FilterUpdateArgs& a) {
    check_sizes(op, {a.N, a.C_in, a.C_out, a.H, a.W});
    check_kernel_size(op, a.k);
    require(std::isfinite(a.gamma), op, "gamma must be finite");
}

void launch_conv_block_fwd_v1(const float* x, const float* w, const float* b, float* h, float* out, uint8_t* argmax,
                              int64_t N, int64_t C_in, int64_t C_out, int64_t H, int64_t W, int64_t k, int act,
                              bool apply_activation, bool pool, Dropout dropout, cudaStream_t stream) {
    const char* op = "conv_block_fwd_v1";
    const ConvBlockFwdArgs a{x, w, b, h, out, argmax, N, C_in, C_out, H, W, k, act, apply_activation, pool, dropout};
    check_conv_block_fwd(op, a);
    const int64_t threads = conv_block_fwd_threads(a);
    if (threads == 0) return;
    conv_block_fwd_kernel<<<blocks_for(op, threads), kThreads, 0, stream>>>(a, threads);
    CUDA_CHECK_LAUNCH(op, stream);
}

void launch_conv_error_proj_v1(const float* e, const float* kernel, const float* h, const uint8_t* argmax,
                               float* e_below, int64_t N, int64_t C_in, int64_t C_out, int64_t Hp, int64_t Wp,
                               int64_t Hh, int64_t Wh, int64_t k, bool pool, int rule, int act, float beta,
                               Dropout dropout, cudaStream_t stream) {
    const char* op = "conv_error_proj_v1";
    const ErrorProjArgs a{e, kernel, nullptr, h, argmax, e_below, N, C_in, C_out, Hp, Wp,
                          Hh, Wh, k, /*project=*/true, pool, rule, act, beta, dropout};
    check_error_proj(op, a);
    const int64_t threads = error_proj_threads(a);
    if (threads == 0) return;
    conv_error_proj_kernel<<<blocks_for(op, threads), kThreads, 0, stream>>>(a, threads);
    CUDA_CHECK_LAUNCH(op, stream);
}

void launch_unpool_error(const float* d, const float* h, const uint8_t* argmax, float* e, int64_t N, int64_t C,
                         int64_t Hp, int64_t Wp, int64_t Hh, int64_t Wh, int rule, int act, float beta,
                         Dropout dropout, cudaStream_t stream) {
    const char* op = "unpool_error";
    const ErrorProjArgs a{nullptr, nullptr, d, h, argmax, e, N, C, /*C_out=*/0, Hp, Wp,
                          Hh, Wh, /*k=*/1, /*project=*/false, /*pool=*/true, rule, act, beta, dropout};
    check_error_proj(op, a);
    const int64_t threads = error_proj_threads(a);
    if (threads == 0) return;
    conv_error_proj_kernel<<<blocks_for(op, threads), kThreads, 0, stream>>>(a, threads);
    CUDA_CHECK_LAUNCH(op, stream);
}

void launch_conv_proj(const float* e, const float* K, float* d, int64_t N, int64_t C_in, int64_t C_out, int64_t H,
                      int64_t W, int64_t k, cudaStream_t stream) {
    const char* op = "conv_proj";
    check_sizes(op, {N, C_in, C_out, H, W});
    check_kernel_size(op, k);
    const int64_t threads = N * C_in * H * W;
    if (threads == 0) return;
    conv_proj_kernel<<<blocks_for(op, threads), kThreads, 0, stream>>>(e, K, d, C_in, C_out, H, W, k, threads);
    CUDA_CHECK_LAUNCH(op, stream);
}

void launch_unpool_bilinear(const float* d, float* out, int64_t N, int64_t C, int64_t h, int64_t w, int64_t H,
                            int64_t W, cudaStream_t stream) {
    const char* op = "unpool_bilinear";
    check_sizes(op, {N, C, h, w, H, W});
    const int64_t threads = N * C * H * W;
    if (threads == 0) return;
    require(h > 0 && w > 0, op, "cannot resize an empty (" + std::to_string(h) + ", " + std::to_string(w) + ") plane");
    unpool_bilinear_proj_kernel<<<blocks_for(op, threads), kThreads, 0, stream>>>(d, out, h, w, H, W, threads);
    CUDA_CHECK_LAUNCH(op, stream);
}

namespace {

// `what` (named, with its value) must fit the kernels' int32 index math.
void require_int32(const char* op, const std::string& what, int64_t value) {
    require(value <= INT32_MAX, op,
            what + " = " + std::to_string(value) + " exceeds 2^31 - 1, the limit of the kernel's 32-bit index math");
}

// g.split_len, g.splits and g.adv_* for g.positions = N·gh·gw positions (n, y, x) and block tiles of
// kFwuBM rows x tile_cols columns: split-K chosen from the shapes alone, enough splits for
// ~kFwuTargetBlocks blocks, at most one per step and 65535 (grid z).
void plan_splits(const char* op, FwuPlan& g, int gh, int gw, int tile_cols) {
    const int64_t tiles =
        std::max<int64_t>(1, ((g.C_out + kFwuBM - 1) / kFwuBM) * ((int64_t(g.cols) + tile_cols - 1) / tile_cols));
    const int64_t chunks = std::max<int64_t>(1, (int64_t(g.positions) + kFwuBK - 1) / kFwuBK);  // steps
    const int64_t want = std::min<int64_t>({(kFwuTargetBlocks + tiles - 1) / tiles, chunks, 65535});
    const int64_t per_split = (chunks + want - 1) / want;  // steps per split
    g.split_len = int(per_split * kFwuBK);
    g.splits = int((chunks + per_split - 1) / per_split);
    require_int32(op, "workspace floats splits*C_out*cols", int64_t(g.splits) * g.C_out * g.cols);
    g.adv_n = g.adv_y = g.adv_x = 0;
    if (gh * gw > 0) {
        g.adv_n = kFwuBK / (gh * gw);
        g.adv_y = (kFwuBK % (gh * gw)) / gw;
        g.adv_x = kFwuBK % gw;
    }
}

// The v2 plan: sizes checked (32-bit), split-K chosen from the shapes alone.
FwuPlan plan_filter_update(const char* op, int64_t N, int64_t C_in, int64_t C_out, int64_t H, int64_t W, int64_t k,
                           bool bias, float gamma) {
    check_filter_update(op, FilterUpdateArgs{nullptr, nullptr, nullptr, nullptr, nullptr, N, C_in, C_out, H, W, k,
                                             gamma});
    require_int32(op, "z's element count N*C_in*H*W", N * C_in * H * W);
    require_int32(op, "e's element count N*C_out*H*W", N * C_out * H * W);
    require_int32(op, "positions N*H*W (+ one tile)", N * H * W + kFwuBK);
    require_int32(op, "k*k", k * k);
    const int64_t taps = C_in * k * k, cols = taps + (bias ? 1 : 0);
    require_int32(op, "ΔW's element count C_out*C_in*k*k (+C_out)", C_out * cols);
    FwuPlan g{};
    g.N = int(N), g.C_in = int(C_in), g.C_out = int(C_out), g.H = int(H), g.W = int(W), g.k = int(k);
    g.pad = int(k / 2), g.HW = int(H * W), g.positions = int(N * H * W), g.taps = int(taps), g.cols = int(cols);
    g.gamma = gamma;
    plan_splits(op, g, g.H, g.W, kFwuBN);
    return g;
}

// The v3 plan: v2's checks and columns, the split over the N·Hp·Wp pooled cells.
FwuPooledPlan plan_filter_update_pooled(const char* op, int64_t N, int64_t C_in, int64_t C_out, int64_t H, int64_t W,
                                        int64_t k, bool bias, float gamma) {
    FwuPooledPlan pp{};
    pp.g = plan_filter_update(op, N, C_in, C_out, H, W, k, bias, gamma);
    pp.Hp = int(H / 2), pp.Wp = int(W / 2), pp.HWp = pp.Hp * pp.Wp;
    pp.g.positions = int(N) * pp.HWp;  // <= N·H·W: fits
    plan_splits(op, pp.g, pp.Hp, pp.Wp, kFwpBN);
    return pp;
}

}  // namespace

int64_t conv_filter_update_workspace_floats(int64_t N, int64_t C_in, int64_t C_out, int64_t H, int64_t W, int64_t k,
                                            bool bias) {
    const char* op = "conv_filter_update";
    return fwu_workspace_floats(plan_filter_update(op, N, C_in, C_out, H, W, k, bias, 0.0f));
}

void launch_conv_filter_update(const float* z, const float* e, float* dw, float* db, float* de, float* workspace,
                               int64_t workspace_floats, int64_t N, int64_t C_in, int64_t C_out, int64_t H,
                               int64_t W, int64_t k, float gamma, cudaStream_t stream) {
    const char* op = "conv_filter_update";
    const FwuPlan g = plan_filter_update(op, N, C_in, C_out, H, W, k, db != nullptr, gamma);
    const int64_t outputs = int64_t(g.C_out) * g.cols;
    if (outputs == 0) return;
    const int64_t need = fwu_workspace_floats(g);
    require(workspace_floats >= need, op,
            "workspace holds " + std::to_string(workspace_floats) + " floats, needs " + std::to_string(need) +
                " (conv_filter_update_workspace_floats)");
    require(workspace != nullptr, op, "workspace is null but " + std::to_string(need) + " floats are needed");
    const dim3 grid(ceil_div(g.cols, kFwuBN), ceil_div(g.C_out, kFwuBM), static_cast<unsigned int>(g.splits));
    require(grid.y <= 65535, op, "C_out = " + std::to_string(C_out) + " needs more than 65535 row tiles");
    conv_filter_update_gemm_kernel<<<grid, kFwuThreads, 0, stream>>>(z, e, workspace, g);
    CUDA_CHECK_LAUNCH(op, stream);
    conv_filter_update_reduce_kernel<<<blocks_for(op, outputs), kThreads, 0, stream>>>(workspace, dw, db, de, g);
    CUDA_CHECK_LAUNCH(op, stream);
}

int64_t conv_filter_update_pooled_workspace_floats(int64_t N, int64_t C_in, int64_t C_out, int64_t H, int64_t W,
                                                   int64_t k, bool bias) {
    const char* op = "conv_filter_update_pooled";
    return fwu_workspace_floats(plan_filter_update_pooled(op, N, C_in, C_out, H, W, k, bias, 0.0f).g);
}

void launch_conv_filter_update_pooled(const float* z, const float* e, const uint8_t* argmax, float* dw, float* db,
                                      float* de, float* workspace, int64_t workspace_floats, int64_t N, int64_t C_in,
                                      int64_t C_out, int64_t H, int64_t W, int64_t Hp, int64_t Wp, int64_t k,
                                      float gamma, cudaStream_t stream) {
    const char* op = "conv_filter_update_pooled";
    const FwuPooledPlan pp = plan_filter_update_pooled(op, N, C_in, C_out, H, W, k, db != nullptr, gamma);
    require(Hp == H / 2 && Wp == W / 2, op,
            "argmax's pooled size (" + std::to_string(Hp) + ", " + std::to_string(Wp) + ") must be (H/2, W/2) = (" +
                std::to_string(H / 2) + ", " + std::to_string(W / 2) + ")");
    const FwuPlan& g = pp.g;
    const int64_t outputs = int64_t(g.C_out) * g.cols;
    if (outputs == 0) return;
    const int64_t need = fwu_workspace_floats(g);
    require(workspace_floats >= need, op,
            "workspace holds " + std::to_string(workspace_floats) + " floats, needs " + std::to_string(need) +
                " (conv_filter_update_pooled_workspace_floats)");
    require(workspace != nullptr, op, "workspace is null but " + std::to_string(need) + " floats are needed");
    require(argmax != nullptr || g.positions == 0, op, "argmax is null but there are pooled cells");
    const dim3 grid(ceil_div(g.cols, kFwpBN), ceil_div(g.C_out, kFwuBM), static_cast<unsigned int>(g.splits));
    require(grid.y <= 65535, op, "C_out = " + std::to_string(C_out) + " needs more than 65535 row tiles");
    conv_filter_update_pooled_kernel<<<grid, kFwuThreads, 0, stream>>>(z, e, argmax, workspace, pp);
    CUDA_CHECK_LAUNCH(op, stream);
    conv_filter_update_reduce_kernel<<<blocks_for(op, outputs), kThreads, 0, stream>>>(workspace, dw, db, de, g);
    CUDA_CHECK_LAUNCH(op, stream);
}

void launch_conv_filter_update_v1(const float* z, const float* e, float* dw, float* db, float* de, int64_t N,
                                  int64_t C_in, int64_t C_out, int64_t H, int64_t W, int64_t k, float gamma,
                                  cudaStream_t stream) {
    const char* op = "conv_filter_update_v1";
    const FilterUpdateArgs a{z, e, dw, db, de, N, C_in, C_out, H, W, k, gamma};
    check_filter_update(op, a);
    const int64_t blocks = filter_update_outputs(a);  // one block per output
    if (blocks == 0) return;
    require(blocks <= INT32_MAX, op, "too many outputs for the grid: " + std::to_string(blocks));
    conv_filter_update_kernel<<<static_cast<unsigned int>(blocks), kFilterUpdateThreads, 0, stream>>>(a);
    CUDA_CHECK_LAUNCH(op, stream);
}

// ------------------------------------------------------------------ conv forward / transposed conv as implicit GEMM (v2)
//
// conv_block_fwd and conv_error_proj (v2, the default): the GEMM of igemm.cuh (register-blocked
// BM x BN tiles, double-buffered shared-memory K steps, int32 index math) with each op's
// epilogue fused. The tile comes from kIgemmTiles by the GEMM's shape (igemm_tile_for).

namespace {

// Forward conv: rows = positions (n, y, x) of h (pooled: 4 consecutive rows per 2x2 window, the
// window's positions in code order q, cells on a ceil(H/2) x ceil(W/2) grid), columns = C_out,
// depth = (ci, ky, kx). Epilogue as v1 (conv_block_fwd_at): h = acc + b, z = φ(h)·m/(1−p); pooled,
// the thread holding a window's 4 rows takes its max and argmax (ties: first q) and writes out and
// the code; a cell on the odd trailing row/column writes only h.
template <int BM, int BN, int KS>
__global__ void __launch_bounds__(kIgemmThreads) conv_block_fwd_igemm_kernel(ConvBlockFwdArgs a, IgemmPlan g) {
    using Sh = IgemmShape<BM, BN, KS>;
    constexpr int TM = Sh::TM, TN = Sh::TN;
    float acc[TM][TN];
    const int r0 = blockIdx.x * BM, c0 = blockIdx.y * BN;
    int tm, tn;
    if (!igemm_mainloop<BM, BN, KS>(g, a.x, a.w, r0, c0, acc, tm, tn)) return;
    const int H = g.Hs, W = g.Ws, HW = g.HWs, C = g.cols;
    int co[TN];
    float bias[TN];
#pragma unroll
    for (int j = 0; j < TN; ++j) {
        co[j] = c0 + igemm_tile_row<BN / TN>(tn, j);
        bias[j] = a.b != nullptr && co[j] < C ? a.b[co[j]] : 0.0f;
    }
    if (g.group == 1) {
#pragma unroll
        for (int i = 0; i < TM; ++i) {
            const int r = r0 + igemm_tile_row<Sh::RT>(tm, i);
            if (r >= g.rows) continue;
            int n, y, x;
            igemm_position(g, r, n, y, x);
#pragma unroll
            for (int j = 0; j < TN; ++j) {
                if (co[j] >= C) continue;
                const int index = (n * C + co[j]) * HW + y * W + x;
                const float h = a.b != nullptr ? acc[i][j] + bias[j] : acc[i][j];
                a.h[index] = h;
                a.out[index] = block_output(a, h, index);
            }
        }
        return;
    }
    {  // pooled: rows 4·w .. 4·w + 3 of this thread are one window (TM is a multiple of 4)
        const int Hp = H / 2, Wp = W / 2;
#pragma unroll
        for (int w = 0; w < TM / 4; ++w) {
            const int r = r0 + igemm_tile_row<Sh::RT>(tm, 4 * w);  // q = 0 of the window
            if (r >= g.rows) continue;
            int n, y0, x0;
            igemm_position(g, r, n, y0, x0);
            const int i = y0 >> 1, jw = x0 >> 1;
            const bool window = i < Hp && jw < Wp;  // false on the odd trailing row/column
#pragma unroll
            for (int j = 0; j < TN; ++j) {
                if (co[j] >= C) continue;
                float best = 0.0f;
                int code = 0;
#pragma unroll
                for (int q = 0; q < 4; ++q) {
                    const int y = y0 + pool_dy(q), x = x0 + pool_dx(q);
                    if (y >= H || x >= W) continue;
                    const int index = (n * C + co[j]) * HW + y * W + x;
                    const float h = a.b != nullptr ? acc[4 * w + q][j] + bias[j] : acc[4 * w + q][j];
                    a.h[index] = h;
                    if (window) pool_argmax_update(q, block_output(a, h, index), best, code);
                }
                if (window) {
                    const int pooled = ((n * C + co[j]) * Hp + i) * Wp + jw;
                    a.out[pooled] = best;
                    a.argmax[pooled] = static_cast<uint8_t>(code);
                }
            }
        }
    }
}

// Transposed conv: rows = cells (n, i, j) of a ceil(Hh/2) x ceil(Wh/2) grid (pooled; cells past
// Hp x Wp are dead rows) or positions of Hh x Wh (unpooled), columns = C_in, depth = (co, ky, kx)
// over e with flipped taps; acc = d at the pooled resolution, i.e. once per window — the argmax only
// picks which of the window's 4 outputs receives it, so no FLOP is spent off the argmax. Epilogue as
// v1 (error_proj_at): error_below(d) at the argmax, exact zeros at the window's other positions and
// on the odd trailing row/column; unpooled, error_below(d) at every position.
template <int BM, int BN, int KS>
__global__ void __launch_bounds__(kIgemmThreads) conv_error_proj_igemm_kernel(ErrorProjArgs a, IgemmPlan g) {
    using Sh = IgemmShape<BM, BN, KS>;
    constexpr int TM = Sh::TM, TN = Sh::TN;
    float acc[TM][TN];
    const int r0 = blockIdx.x * BM, c0 = blockIdx.y * BN;
    int tm, tn;
    if (!igemm_mainloop<BM, BN, KS>(g, a.e, a.kernel, r0, c0, acc, tm, tn)) return;
    const int Hp = g.Hs, Wp = g.Ws, Hh = static_cast<int>(a.Hh), Wh = static_cast<int>(a.Wh), C = g.cols;
#pragma unroll
    for (int i = 0; i < TM; ++i) {
        const int r = r0 + igemm_tile_row<Sh::RT>(tm, i);
        if (r >= g.rows) continue;
        int n, y, x;  // unpooled: a position of h; pooled: a cell (window (y, x) when inside Hp x Wp)
        igemm_position(g, r, n, y, x);
#pragma unroll
        for (int j = 0; j < TN; ++j) {
            const int ci = c0 + igemm_tile_row<BN / TN>(tn, j);
            if (ci >= C) continue;
            const float d = acc[i][j];
            const int plane = (n * C + ci) * Hh * Wh;
            if (!a.pool) {
                a.e_below[plane + y * Wh + x] = error_below(a, d, plane + y * Wh + x);
                continue;
            }
            const int code = y < Hp && x < Wp ? a.argmax[((n * C + ci) * Hp + y) * Wp + x] : -1;
#pragma unroll
            for (int q = 0; q < 4; ++q) {
                const int yy = 2 * y + pool_dy(q), xx = 2 * x + pool_dx(q);
                if (yy >= Hh || xx >= Wh) continue;
                const int index = plane + yy * Wh + xx;
                // d = 0 off the argmax: y = φ(h), so the EKDAA error (and BP's δ) is exactly 0 there.
                a.e_below[index] = q == code ? error_below(a, d, index) : 0.0f;
            }
        }
    }
}

// Block tiles (BM rows x BN columns, KS depth groups), in order of preference: the larger tiles
// reuse each loaded value more, the smaller ones give small layers enough blocks (their depth groups
// keep 4 x 4 outputs per thread). igemm_tile_for takes the first tile that gives >= kIgemmTargetBlocks
// blocks, else the one giving the most (earlier on ties), among those that waste no whole
// 32-row/column strip (BN <= cols rounded up to 32, likewise BM).
struct IgemmTile {
    int bm, bn, ks;
};
constexpr IgemmTile kIgemmTiles[] = {{128, 64, 1}, {64, 128, 1}, {64, 64, 1}, {64, 32, 2}, {32, 64, 2}, {32, 32, 4}};
constexpr int kIgemmTileCount = sizeof(kIgemmTiles) / sizeof(kIgemmTiles[0]);
constexpr int kIgemmTargetBlocks = 264;  // ~2 blocks per SM of a 132-SM H100/H200 (fixed: shapes alone decide)

int64_t igemm_blocks(int64_t rows, int64_t cols, const IgemmTile& t) {
    return ((rows + t.bm - 1) / t.bm) * ((cols + t.bn - 1) / t.bn);
}

template <int BM, int BN, int KS>
void launch_igemm_tile(const ConvBlockFwdArgs& a, const IgemmPlan& g, dim3 grid, cudaStream_t stream) {
    conv_block_fwd_igemm_kernel<BM, BN, KS><<<grid, kIgemmThreads, 0, stream>>>(a, g);
}

template <int BM, int BN, int KS>
void launch_igemm_tile(const ErrorProjArgs& a, const IgemmPlan& g, dim3 grid, cudaStream_t stream) {
    conv_error_proj_igemm_kernel<BM, BN, KS><<<grid, kIgemmThreads, 0, stream>>>(a, g);
}

// Launch the plan's GEMM with tile `tile` of kIgemmTiles (-1: igemm_tile_for) and `a`'s epilogue;
// the walkers' advance per step (BK = 8·KS depth indices) is set here, from the tile.
template <typename Args>
void launch_igemm(const char* op, const Args& a, IgemmPlan g, int tile, cudaStream_t stream) {
    require(g.k <= kIgemmMaxK, op, "kernel size k must be <= " + std::to_string(kIgemmMaxK) +
                                       " (the implicit GEMM's tap masks), got " + std::to_string(g.k));
    if (tile < 0) tile = igemm_tile_for(g.rows, g.cols);
    require(tile < kIgemmTileCount, op, "tile must be -1 (by shape) or < " + std::to_string(kIgemmTileCount) +
                                            ", got " + std::to_string(tile));
    const IgemmTile t = kIgemmTiles[tile];
    const int bk = kIgemmBK * t.ks;
    g.adv_s = bk / g.kk2, g.adv_r = bk % g.kk2;
    g.adv_ky = g.adv_r / g.k, g.adv_kx = g.adv_r % g.k;
    const dim3 grid(ceil_div(g.rows, t.bm), ceil_div(g.cols, t.bn));
    require(grid.y <= 65535, op, "C = " + std::to_string(g.cols) + " needs more than 65535 column tiles");
    switch (tile) {
        case 0: launch_igemm_tile<128, 64, 1>(a, g, grid, stream); break;
        case 1: launch_igemm_tile<64, 128, 1>(a, g, grid, stream); break;
        case 2: launch_igemm_tile<64, 64, 1>(a, g, grid, stream); break;
        case 3: launch_igemm_tile<64, 32, 2>(a, g, grid, stream); break;
        case 4: launch_igemm_tile<32, 64, 2>(a, g, grid, stream); break;
        default: launch_igemm_tile<32, 32, 4>(a, g, grid, stream); break;
    }
    CUDA_CHECK_LAUNCH(op, stream);
}

// The GEMM's plan: rows on a Hg x Wg cell grid (`group` rows per cell) per image, `cols` columns,
// A from src [N, S, Hs, Ws], B with the given strides; sizes already checked to fit in int32.
IgemmPlan igemm_plan(int64_t N, int64_t cols, int64_t S, int64_t Hs, int64_t Ws, int64_t k, bool flip, int group,
                     int64_t Hg, int64_t Wg, int64_t col_stride, int64_t src_stride) {
    IgemmPlan g{};
    g.rows = int(N * Hg * Wg * group), g.cols = int(cols), g.depth = int(S * k * k);
    g.S = int(S), g.Hs = int(Hs), g.Ws = int(Ws), g.HWs = int(Hs * Ws);
    g.k = int(k), g.pad = int(k / 2), g.kk2 = int(k * k), g.flip = flip ? 1 : 0;
    g.group = group, g.Hg = int(Hg), g.Wg = int(Wg);
    g.col_stride = int(col_stride), g.src_stride = int(src_stride);
    // tap (ky, kx) reads (y + dy, x + dx): dy = ky − pad, or pad − ky flipped (likewise dx)
    const int sign = flip ? -1 : 1;
    g.tap_dy = sign * g.Ws, g.tap_dx = sign, g.tap_off = -sign * (g.pad * g.Ws + g.pad);
    return g;  // adv_*: by launch_igemm, from the tile
}

}  // namespace

int igemm_tile_for(int64_t rows, int64_t cols) {
    int best = 0;
    int64_t best_blocks = 0;
    for (int i = 0; i < kIgemmTileCount; ++i) {
        const IgemmTile& t = kIgemmTiles[i];
        if (t.bn > (cols + 31) / 32 * 32 || t.bm > (rows + 31) / 32 * 32) continue;
        const int64_t blocks = igemm_blocks(rows, cols, t);
        if (blocks >= kIgemmTargetBlocks) return i;
        if (blocks > best_blocks) best = i, best_blocks = blocks;
    }
    return best;  // 32x32 qualifies whenever rows, cols >= 1
}

std::vector<std::array<int, 3>> igemm_tiles() {
    std::vector<std::array<int, 3>> out;
    for (const IgemmTile& t : kIgemmTiles) out.push_back({t.bm, t.bn, t.ks});
    return out;
}

void launch_conv_block_fwd(const float* x, const float* w, const float* b, float* h, float* out, uint8_t* argmax,
                           int64_t N, int64_t C_in, int64_t C_out, int64_t H, int64_t W, int64_t k, int act,
                           bool apply_activation, bool pool, Dropout dropout, cudaStream_t stream, int tile) {
    const char* op = "conv_block_fwd";
    const ConvBlockFwdArgs a{x, w, b, h, out, argmax, N, C_in, C_out, H, W, k, act, apply_activation, pool, dropout};
    check_conv_block_fwd(op, a);
    const int64_t Hg = pool ? (H + 1) / 2 : H, Wg = pool ? (W + 1) / 2 : W, group = pool ? 4 : 1;
    require_int32(op, "x's element count N*C_in*H*W", N * C_in * H * W);
    require_int32(op, "h's element count N*C_out*H*W", N * C_out * H * W);
    require_int32(op, "w's element count C_out*C_in*k*k", C_out * C_in * k * k);
    require_int32(op, "GEMM rows N*H*W (pool: N*4*ceil(H/2)*ceil(W/2)) + one tile", N * Hg * Wg * group + 128);
    if (N * Hg * Wg * C_out == 0) return;
    const IgemmPlan g = igemm_plan(N, C_out, C_in, H, W, k, /*flip=*/false, int(group), Hg, Wg,
                                   /*col_stride=*/C_in * k * k, /*src_stride=*/k * k);
    launch_igemm(op, a, g, tile, stream);
}

void launch_conv_error_proj(const float* e, const float* kernel, const float* h, const uint8_t* argmax, float* e_below,
                            int64_t N, int64_t C_in, int64_t C_out, int64_t Hp, int64_t Wp, int64_t Hh, int64_t Wh,
                            int64_t k, bool pool, int rule, int act, float beta, Dropout dropout, cudaStream_t stream,
                            int tile) {
    const char* op = "conv_error_proj";
    const ErrorProjArgs a{e, kernel, nullptr, h, argmax, e_below, N, C_in, C_out, Hp, Wp,
                          Hh, Wh, k, /*project=*/true, pool, rule, act, beta, dropout};
    check_error_proj(op, a);
    const int64_t Hg = pool ? (Hh + 1) / 2 : Hh, Wg = pool ? (Wh + 1) / 2 : Wh;
    require_int32(op, "e's element count N*C_out*Hp*Wp", N * C_out * Hp * Wp);
    require_int32(op, "h's element count N*C_in*Hh*Wh", N * C_in * Hh * Wh);
    require_int32(op, "kernel's element count C_out*C_in*k*k", C_out * C_in * k * k);
    require_int32(op, "GEMM rows N*Hh*Wh (pool: N*ceil(Hh/2)*ceil(Wh/2)) + one tile", N * Hg * Wg + 128);
    if (N * Hg * Wg * C_in == 0) return;
    const IgemmPlan g = igemm_plan(N, C_in, C_out, Hp, Wp, k, /*flip=*/true, 1, Hg, Wg,
                                   /*col_stride=*/k * k, /*src_stride=*/C_in * k * k);
    launch_igemm(op, a, g, tile, stream);
}

}  // namespace ekdaa

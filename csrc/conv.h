// conv.h — conv-family ops of EKDAA (implemented in conv.cu; equations there): launcher
// declarations, plus the per-thread bodies of every conv kernel (the kernels in conv.cu are
// thin wrappers around them, except the filter update's split-K GEMM: FwuPlan below, and the
// implicit-GEMM conv_block_fwd / conv_error_proj (v2, igemm.cuh; they reuse the epilogue helpers
// here); the launchers size their grids with the *_threads helpers, hence __host__ __device__).
// tests/gpu/test_ops_conv.py checks every kernel against ekdaa_cuda.reference, on the CPU
// simulator (ekdaa_cuda._sim) and on a GPU.
//
// Layout: float32 NCHW, contiguous. Conv weights [C_out, C_in, k, k] (PyTorch), k odd,
// stride 1, "same" zero padding, cross-correlation. 2x2/stride-2 max-pool with floor (an odd
// trailing row/column belongs to no window); argmax code q = 2·dy + dx (uint8) inside the
// window, ties resolved to the first in row-major order. Dropout index = flat NCHW index of
// the pre-pool tensor h.
#pragma once

#include <cuda_runtime.h>

#include <array>
#include <cstdint>
#include <vector>

#include "elementwise.cuh"
#include "fc.h"  // Dropout, dropout_factor, error_unit, ErrorRule: shared with the FC kernels

namespace ekdaa {

// ------------------------------------------------------------------ index helpers

EKDAA_HD int64_t nchw_index(int64_t n, int64_t c, int64_t y, int64_t x, int64_t C, int64_t H, int64_t W) {
    return ((n * C + c) * H + y) * W + x;
}

// Window (i, j) of a 2x2 pool covers rows 2i, 2i+1 and columns 2j, 2j+1; position q = 2·dy + dx.
EKDAA_HD int pool_dy(int q) { return q >> 1; }
EKDAA_HD int pool_dx(int q) { return q & 1; }

// Running argmax over a window visited in order q = 0, 1, 2, 3: a tie keeps the earlier q.
EKDAA_HD void pool_argmax_update(int q, float v, float& best, int& code) {
    if (q == 0 || v > best) {
        best = v;
        code = q;
    }
}

// TF2 tf.image.resize bilinear, half-pixel centres, one axis: output `dst` of n_out reads
// src = (dst + 0.5)·n_in/n_out − 0.5 clamped to [0, n_in − 1], i.e. (1 − frac)·in[lo] + frac·in[hi].
// src is formed as ((2·dst + 1)·n_in) / (2·n_out) − 0.5 so an integer src is exact.
EKDAA_HD void bilinear_source(int64_t dst, int64_t n_in, int64_t n_out, int64_t& lo, int64_t& hi, float& frac) {
    float src = static_cast<float>((2 * dst + 1) * n_in) / static_cast<float>(2 * n_out) - 0.5f;
    src = src < 0.0f ? 0.0f : src;
    const float top = static_cast<float>(n_in - 1);
    src = src > top ? top : src;
    lo = static_cast<int64_t>(src);  // src >= 0: truncation is floor
    hi = lo + 1 < n_in ? lo + 1 : lo;
    frac = src - static_cast<float>(lo);
}

// h[n, co, y, x] = b[co] + Σ_{ci, ky, kx} w[co, ci, ky, kx] · x[n, ci, y + ky − k/2, x + kx − k/2]
// (zero outside the image); b may be nullptr.
EKDAA_HD float conv_at(const float* x,  // [N, C_in, H, W]
                       const float* w,  // [C_out, C_in, k, k]
                       const float* b,  // [C_out] or nullptr
                       int64_t n, int64_t co, int64_t y, int64_t xx, int64_t C_in, int64_t H, int64_t W, int64_t k) {
    const int64_t p = k / 2;
    float acc = b != nullptr ? b[co] : 0.0f;
    for (int64_t ci = 0; ci < C_in; ++ci) {
        for (int64_t ky = 0; ky < k; ++ky) {
            const int64_t iy = y + ky - p;
            if (iy < 0 || iy >= H) continue;
            for (int64_t kx = 0; kx < k; ++kx) {
                const int64_t ix = xx + kx - p;
                if (ix < 0 || ix >= W) continue;
                acc += w[((co * C_in + ci) * k + ky) * k + kx] * x[nchw_index(n, ci, iy, ix, C_in, H, W)];
            }
        }
    }
    return acc;
}

// Transposed convolution (conv-backward-data) at one input position:
// d[n, ci, y, x] = Σ_{co, ky, kx} K[co, ci, ky, kx] · e[n, co, y − ky + k/2, x − kx + k/2] (zero outside).
EKDAA_HD float conv_transpose_at(const float* e,  // [N, C_out, H, W]
                                 const float* K,  // [C_out, C_in, k, k]
                                 int64_t n, int64_t ci, int64_t y, int64_t x, int64_t C_in, int64_t C_out, int64_t H,
                                 int64_t W, int64_t k) {
    const int64_t p = k / 2;
    float acc = 0.0f;
    for (int64_t co = 0; co < C_out; ++co) {
        for (int64_t ky = 0; ky < k; ++ky) {
            const int64_t oy = y - ky + p;
            if (oy < 0 || oy >= H) continue;
            for (int64_t kx = 0; kx < k; ++kx) {
                const int64_t ox = x - kx + p;
                if (ox < 0 || ox >= W) continue;
                acc += K[((co * C_in + ci) * k + ky) * k + kx] * e[nchw_index(n, co, oy, ox, C_out, H, W)];
            }
        }
    }
    return acc;
}

// ------------------------------------------------------------------ per-thread bodies

// conv_block_fwd: h = conv(x, w) + b; z = (apply_activation ? φ(h) : h) · m/(1−p);
// out = maxpool2x2(z) with argmax, or out = z when !pool.
struct ConvBlockFwdArgs {
    const float* x;    // [N, C_in, H, W]
    const float* w;    // [C_out, C_in, k, k]
    const float* b;    // [C_out] or nullptr
    float* h;          // [N, C_out, H, W]
    float* out;        // [N, C_out, H/2, W/2] when pool, else [N, C_out, H, W]
    uint8_t* argmax;   // [N, C_out, H/2, W/2] when pool, else unused
    int64_t N, C_in, C_out, H, W, k;
    int act;
    bool apply_activation, pool;
    Dropout dropout;
};

// Threads: pooled, one per 2x2 cell of a ceil(H/2) x ceil(W/2) grid (a cell on the odd trailing
// row/column writes only h); unpooled, one per element of h.
EKDAA_HD int64_t conv_block_fwd_threads(const ConvBlockFwdArgs& a) {
    return a.pool ? a.N * a.C_out * ((a.H + 1) / 2) * ((a.W + 1) / 2) : a.N * a.C_out * a.H * a.W;
}

EKDAA_HD float block_output(const ConvBlockFwdArgs& a, float h, int64_t index) {
    const float z = a.apply_activation ? activate<float>(a.act, h) : h;
    return z * dropout_factor(a.dropout, static_cast<uint32_t>(index));
}

EKDAA_HD void conv_block_fwd_at(const ConvBlockFwdArgs& a, int64_t t) {
    if (!a.pool) {
        const int64_t x = t % a.W, y = (t / a.W) % a.H, co = (t / (a.W * a.H)) % a.C_out, n = t / (a.W * a.H * a.C_out);
        const float h = conv_at(a.x, a.w, a.b, n, co, y, x, a.C_in, a.H, a.W, a.k);
        a.h[t] = h;
        a.out[t] = block_output(a, h, t);
        return;
    }
    const int64_t Wc = (a.W + 1) / 2, Hc = (a.H + 1) / 2, Hp = a.H / 2, Wp = a.W / 2;
    const int64_t j = t % Wc, i = (t / Wc) % Hc, co = (t / (Wc * Hc)) % a.C_out, n = t / (Wc * Hc * a.C_out);
    const bool window = i < Hp && j < Wp;  // false on the dropped odd row/column
    float best = 0.0f;
    int code = 0;
    for (int q = 0; q < 4; ++q) {
        const int64_t y = 2 * i + pool_dy(q), x = 2 * j + pool_dx(q);
        if (y >= a.H || x >= a.W) continue;
        const int64_t index = nchw_index(n, co, y, x, a.C_out, a.H, a.W);
        const float h = conv_at(a.x, a.w, a.b, n, co, y, x, a.C_in, a.H, a.W, a.k);
        a.h[index] = h;
        if (window) pool_argmax_update(q, block_output(a, h, index), best, code);
    }
    if (window) {
        const int64_t pooled = nchw_index(n, co, i, j, a.C_out, Hp, Wp);
        a.out[pooled] = best;
        a.argmax[pooled] = static_cast<uint8_t>(code);
    }
}

// conv_error_proj / unpool_error: the error of the layer below,
// e_below = error_unit(rule, φ, h, d, β) · m/(1−p), where d at the resolution Hp x Wp is either
// the transposed conv of `e` with `kernel` (project: conv_error_proj) or read from `d`
// (!project: unpool_error). With pool, each d is placed at its window's argmax (zero error
// elsewhere and on the dropped odd row/column); without, Hh = Hp, Wh = Wp and d maps one to one.
// Modes are flags, not null pointers: an empty tensor's pointer may be null (CuPy gives 0).
struct ErrorProjArgs {
    const float* e;         // [N, C_out, Hp, Wp] (project)
    const float* kernel;    // [C_out, C_in, k, k] (project)
    const float* d;         // [N, C_in, Hp, Wp] (!project)
    const float* h;         // [N, C_in, Hh, Wh] pre-activation of the layer below
    const uint8_t* argmax;  // [N, C_in, Hp, Wp] codes of the layer below's pool (pool)
    float* e_below;         // [N, C_in, Hh, Wh]
    int64_t N, C_in, C_out, Hp, Wp, Hh, Wh, k;
    bool project, pool;
    int rule, act;
    float beta;
    Dropout dropout;
};

// Threads: with argmax, one per pooled output (a 2x2 cell of a ceil(Hh/2) x ceil(Wh/2) grid,
// writing its up to 4 outputs; d is computed once per cell, only where it lands); without, one per
// element of e_below.
EKDAA_HD int64_t error_proj_threads(const ErrorProjArgs& a) {
    return a.pool ? a.N * a.C_in * ((a.Hh + 1) / 2) * ((a.Wh + 1) / 2) : a.N * a.C_in * a.Hh * a.Wh;
}

EKDAA_HD float projected_error_at(const ErrorProjArgs& a, int64_t n, int64_t ci, int64_t y, int64_t x) {
    if (a.project) return conv_transpose_at(a.e, a.kernel, n, ci, y, x, a.C_in, a.C_out, a.Hp, a.Wp, a.k);
    return a.d[nchw_index(n, ci, y, x, a.C_in, a.Hp, a.Wp)];
}

EKDAA_HD float error_below(const ErrorProjArgs& a, float d, int64_t index) {
    return error_unit(a.rule, a.act, a.h[index], d, a.beta) * dropout_factor(a.dropout, static_cast<uint32_t>(index));
}

EKDAA_HD void error_proj_at(const ErrorProjArgs& a, int64_t t) {
    if (!a.pool) {
        const int64_t x = t % a.Wh, y = (t / a.Wh) % a.Hh, ci = (t / (a.Wh * a.Hh)) % a.C_in;
        const int64_t n = t / (a.Wh * a.Hh * a.C_in);
        a.e_below[t] = error_below(a, projected_error_at(a, n, ci, y, x), t);
        return;
    }
    const int64_t Wc = (a.Wh + 1) / 2, Hc = (a.Hh + 1) / 2;
    const int64_t j = t % Wc, i = (t / Wc) % Hc, ci = (t / (Wc * Hc)) % a.C_in, n = t / (Wc * Hc * a.C_in);
    int code = -1;  // no window: the whole cell gets zero error
    float d = 0.0f;
    if (i < a.Hp && j < a.Wp) {
        code = a.argmax[nchw_index(n, ci, i, j, a.C_in, a.Hp, a.Wp)];
        d = projected_error_at(a, n, ci, i, j);
    }
    for (int q = 0; q < 4; ++q) {
        const int64_t y = 2 * i + pool_dy(q), x = 2 * j + pool_dx(q);
        if (y >= a.Hh || x >= a.Wh) continue;
        const int64_t index = nchw_index(n, ci, y, x, a.C_in, a.Hh, a.Wh);
        // d = 0 off the argmax: y = φ(h), so the EKDAA error (and BP's δ) is exactly 0 there.
        a.e_below[index] = q == code ? error_below(a, d, index) : 0.0f;
    }
}

// conv_proj: d = transposed conv of e with K, no epilogue. One thread per element of d.
EKDAA_HD void conv_proj_at(const float* e,  // [N, C_out, H, W]
                           const float* K,  // [C_out, C_in, k, k]
                           float* d,        // [N, C_in, H, W]
                           int64_t C_in, int64_t C_out, int64_t H, int64_t W, int64_t k, int64_t t) {
    const int64_t x = t % W, y = (t / W) % H, ci = (t / (W * H)) % C_in, n = t / (W * H * C_in);
    d[t] = conv_transpose_at(e, K, n, ci, y, x, C_in, C_out, H, W, k);
}

// unpool_bilinear: out[n, c] = bilinear resize of d[n, c] from h x w to H x W. One thread per output.
EKDAA_HD void unpool_bilinear_at(const float* d,  // [N·C, h, w]
                                 float* out,      // [N·C, H, W]
                                 int64_t h, int64_t w, int64_t H, int64_t W, int64_t t) {
    const int64_t x = t % W, y = (t / W) % H, plane = t / (W * H);
    int64_t y0, y1, x0, x1;
    float fy, fx;
    bilinear_source(y, h, H, y0, y1, fy);
    bilinear_source(x, w, W, x0, x1, fx);
    const float* p = d + plane * h * w;
    const float top = (1.0f - fx) * p[y0 * w + x0] + fx * p[y0 * w + x1];
    const float bottom = (1.0f - fx) * p[y1 * w + x0] + fx * p[y1 * w + x1];
    out[t] = (1.0f - fy) * top + fy * bottom;
}

// Threads per block of conv_filter_update: thread i sums terms i, i + kFilterUpdateThreads, ... of
// its block's output, then a fixed tree adds the partial sums (so a power of two).
constexpr int kFilterUpdateThreads = 256;
static_assert((kFilterUpdateThreads & (kFilterUpdateThreads - 1)) == 0, "the tree reduction needs a power of 2");

// conv_filter_update: output o < C_out·C_in·k·k is ΔW[o] (flat [C_out, C_in, k, k]) and
// o = C_out·C_in·k·k + co is Δb[co] (when db); each is a sum of N·H·W terms, term t = (n, y, x):
//   ΔW[co, ci, ky, kx] += e[n, co, y, x] · z[n, ci, y + ky − k/2, x + kx − k/2]   (zero outside)
//   Δb[co]             += e[n, co, y, x]
struct FilterUpdateArgs {
    const float* z;  // [N, C_in, H, W] input of the conv
    const float* e;  // [N, C_out, H, W] error of the conv's output
    float* dw;       // [C_out, C_in, k, k]
    float* db;       // [C_out], or nullptr for no bias
    float* de;       // [C_out, C_in, k, k], ΔE = γ·ΔW
    int64_t N, C_in, C_out, H, W, k;
    float gamma;
};

EKDAA_HD int64_t filter_update_outputs(const FilterUpdateArgs& a) {
    return a.C_out * a.C_in * a.k * a.k + (a.db != nullptr ? a.C_out : 0);
}

// Σ of the terms first, first + stride, ... (< N·H·W) of output o, in ascending order.
EKDAA_HD float filter_update_partial(const FilterUpdateArgs& a, int64_t o, int64_t first, int64_t stride) {
    const int64_t HW = a.H * a.W, terms = a.N * HW, weights = a.C_out * a.C_in * a.k * a.k;
    float acc = 0.0f;
    if (o >= weights) {
        const int64_t co = o - weights;
        for (int64_t t = first; t < terms; t += stride) acc += a.e[(t / HW * a.C_out + co) * HW + t % HW];
        return acc;
    }
    const int64_t kx = o % a.k, ky = (o / a.k) % a.k, ci = (o / (a.k * a.k)) % a.C_in, co = o / (a.k * a.k * a.C_in);
    const int64_t dy = ky - a.k / 2, dx = kx - a.k / 2;
    for (int64_t t = first; t < terms; t += stride) {
        const int64_t x = t % a.W, y = (t / a.W) % a.H, n = t / HW;
        const int64_t iy = y + dy, ix = x + dx;
        if (iy < 0 || iy >= a.H || ix < 0 || ix >= a.W) continue;
        acc += a.e[nchw_index(n, co, y, x, a.C_out, a.H, a.W)] * a.z[nchw_index(n, ci, iy, ix, a.C_in, a.H, a.W)];
    }
    return acc;
}

EKDAA_HD void filter_update_store(const FilterUpdateArgs& a, int64_t o, float sum) {
    const int64_t weights = a.C_out * a.C_in * a.k * a.k;
    if (o < weights) {
        a.dw[o] = sum;
        a.de[o] = a.gamma * sum;
    } else {
        a.db[o - weights] = sum;
    }
}

// ------------------------------------------------------------------ filter update as a split-K GEMM (v2)
//
// ΔW viewed as a GEMM: M = C_out (rows co), Nc = C_in·k·k columns j = (ci, ky, kx) plus one
// column of ones for Δb (when there is a bias), reduction over the K = N·H·W positions p = (n, y, x):
//   G[co, j] = Σ_p e[n, co, y, x] · Z[p, j],  Z[p, (ci, ky, kx)] = z[n, ci, y + ky − k/2, x + kx − k/2]
// (implicit im2col, zero outside the image), Z[p, Nc] = 1. The positions are cut into `splits`
// contiguous ranges of `split_len` positions (a multiple of kFwuBK); pass 1 writes one partial G
// per range into the workspace [splits, C_out, cols], pass 2 sums them in split order.
constexpr int kFwuBM = 64;             // C_out rows per block tile
constexpr int kFwuBN = 64;             // columns (ci, ky, kx | bias) per block tile
constexpr int kFwuBK = 16;             // positions staged in shared memory per step
constexpr int kFwuThreads = 256;       // 16 x 16 threads, each a 4 x 4 register tile of G
constexpr int kFwuTargetBlocks = 264;  // split-K aims at ~2 blocks per SM of a 132-SM card (fixed: results
                                       // depend on the shapes only, never on the device)
static_assert(kFwuBM == 4 * 16 && kFwuBN == 4 * 16 && kFwuThreads == 256, "thread tile layout");
static_assert(kFwuBK == 16, "the loaders map thread t to position t % 16");

// The plan of one filter update: every size fits in int32 (checked by plan_filter_update).
struct FwuPlan {
    int N, C_in, C_out, H, W, k, pad;
    int HW;            // H·W
    int positions;     // K = N·H·W
    int taps;          // C_in·k·k: ΔW columns
    int cols;          // taps (+1 with bias): G's columns
    int split_len;     // positions per split, a multiple of kFwuBK
    int splits;        // partial G's in the workspace
    int adv_n, adv_y, adv_x;  // kFwuBK positions = adv_n images + adv_y rows + adv_x columns (adv_y < H, adv_x < W)
    float gamma;
};

// Floats of workspace a plan needs: splits·C_out·cols.
inline int64_t fwu_workspace_floats(const FwuPlan& p) { return int64_t(p.splits) * p.C_out * p.cols; }

// ------------------------------------------------------------------ filter update of a pooled layer (v3)
//
// Below a 2x2 max-pool whose error is unpooled at the argmax, e is zero except at each window's
// argmax (and zero on a dropped odd row/column): conv_error_proj / unpool_error write error_unit(d)
// there and exactly 0 elsewhere, whatever the rule. The filter update then needs only one term per
// window, a quarter of the dense sum:
//   ΔW[co, ci, ky, kx] = Σ_{n,i,j} e[n, co, 2i+dy, 2j+dx] · z[n, ci, 2i+dy+ky−k/2, 2j+dx+kx−k/2]
//   Δb[co]             = Σ_{n,i,j} e[n, co, 2i+dy, 2j+dx],   (dy, dx) from q = argmax[n, co, i, j]
// (z zero outside the image; e read at full resolution). Not a plain GEMM: the position read
// depends on the row co through q. The split-K machinery is v2's (FwuPlan, workspace, reduce pass)
// with the reduction over the P = N·Hp·Wp pooled cells (n, i, j) instead of N·H·W positions.
// Block tile kFwuBM = 64 rows x kFwpBN = 128 columns (twice v2's columns: the staging of the four
// window variants is paid per row tile, so wider tiles spend a larger share on FMAs), kFwuBK cells
// a step, kFwuThreads threads.
constexpr int kFwpBN = 128;
constexpr int kFwpZRow = kFwpBN + 4;                 // floats per cell of one variant's Z tile (+4: stores spread)
constexpr int kFwpZVariant = kFwuBK * kFwpZRow + 4;  // floats per variant q (+4: a column's 4 variants, 4 banks apart)
constexpr int kFwpEqRow = 2 * kFwuBM + 4;            // floats per cell of the e / offset tile (+4: stores spread)
static_assert(kFwpZRow % 4 == 0 && kFwpZVariant % 4 == 0 && kFwpZVariant % 32 == 4, "float4 reads, bank skew");
static_assert(kFwpEqRow % 4 == 0, "float4 reads of the e / offset tile");
static_assert(kFwuBM == 2 * 32 && kFwpBN == 16 * (kFwuThreads / 32), "v3 tile: lane = 2 rows, warp = 16 columns");

// The plan of one pooled filter update: g as v2's plan but with g.positions = P, g.split_len,
// g.splits and g.adv_* (adv_y < Hp, adv_x < Wp) over the pooled cells; g.H, g.W, g.HW stay the
// full resolution of z and e. Every size fits in int32 (checked by the planner).
struct FwuPooledPlan {
    FwuPlan g;
    int Hp, Wp, HWp;  // pooled grid: H/2, W/2, Hp·Wp
};

// ------------------------------------------------------------------ argument checks (host)

// Throw std::invalid_argument("<op>: ...") unless the sizes are consistent; run by every
// launcher before anything is launched.
void check_conv_block_fwd(const char* op, const ConvBlockFwdArgs& a);
void check_error_proj(const char* op, const ErrorProjArgs& a);
void check_filter_update(const char* op, const FilterUpdateArgs& a);

// ------------------------------------------------------------------ launchers

// h = conv(x, w) + b; z = φ(h)·m/(1−p) (φ skipped when !apply_activation); out = maxpool2x2(z)
// with argmax codes (pool) or out = z (!pool, argmax unused, may be nullptr). An implicit GEMM
// (igemm.cuh); `tile` indexes igemm_tiles() (-1: chosen by shape, igemm_tile_for; tests and
// benchmarks force one). Sizes beyond 32-bit index math are refused (std::invalid_argument).
void launch_conv_block_fwd(const float* x,   // [N, C_in, H, W]
                           const float* w,   // [C_out, C_in, k, k]
                           const float* b,   // [C_out] or nullptr
                           float* h,         // [N, C_out, H, W]
                           float* out,       // [N, C_out, H/2, W/2] (pool) or [N, C_out, H, W]
                           uint8_t* argmax,  // [N, C_out, H/2, W/2] (pool) or nullptr
                           int64_t N, int64_t C_in, int64_t C_out, int64_t H, int64_t W, int64_t k, int act,
                           bool apply_activation, bool pool, Dropout dropout, cudaStream_t stream, int tile = -1);

// e_below = error_unit(rule, φ, h, unpool(convT(e, kernel)), β)·m/(1−p); without pool no
// unpooling (Hh = Hp, Wh = Wp, argmax unused). An implicit GEMM like launch_conv_block_fwd.
void launch_conv_error_proj(const float* e,         // [N, C_out, Hp, Wp]
                            const float* kernel,    // [C_out, C_in, k, k]
                            const float* h,         // [N, C_in, Hh, Wh]
                            const uint8_t* argmax,  // [N, C_in, Hp, Wp] with Hp = Hh/2, Wp = Wh/2 (pool)
                            float* e_below,         // [N, C_in, Hh, Wh]
                            int64_t N, int64_t C_in, int64_t C_out, int64_t Hp, int64_t Wp, int64_t Hh, int64_t Wh,
                            int64_t k, bool pool, int rule, int act, float beta, Dropout dropout, cudaStream_t stream,
                            int tile = -1);

// The implicit-GEMM block tiles {BM rows, BN columns, KS depth groups} of the two launchers above,
// and the index of the one they choose for a GEMM of `rows` x `cols`.
std::vector<std::array<int, 3>> igemm_tiles();
int igemm_tile_for(int64_t rows, int64_t cols);

// Version 1 of the two (benchmark-only, bench/micro.py): one thread per output (or 2x2 pool cell)
// with 64-bit index math and global loads in the inner loop; same arguments and results.
void launch_conv_block_fwd_v1(const float* x,   // [N, C_in, H, W]
                              const float* w,   // [C_out, C_in, k, k]
                              const float* b,   // [C_out] or nullptr
                              float* h,         // [N, C_out, H, W]
                              float* out,       // [N, C_out, H/2, W/2] (pool) or [N, C_out, H, W]
                              uint8_t* argmax,  // [N, C_out, H/2, W/2] (pool) or nullptr
                              int64_t N, int64_t C_in, int64_t C_out, int64_t H, int64_t W, int64_t k, int act,
                              bool apply_activation, bool pool, Dropout dropout, cudaStream_t stream);
void launch_conv_error_proj_v1(const float* e,         // [N, C_out, Hp, Wp]
                               const float* kernel,    // [C_out, C_in, k, k]
                               const float* h,         // [N, C_in, Hh, Wh]
                               const uint8_t* argmax,  // [N, C_in, Hp, Wp] (pool)
                               float* e_below,         // [N, C_in, Hh, Wh]
                               int64_t N, int64_t C_in, int64_t C_out, int64_t Hp, int64_t Wp, int64_t Hh,
                               int64_t Wh, int64_t k, bool pool, int rule, int act, float beta, Dropout dropout,
                               cudaStream_t stream);

// e = error_unit(rule, φ, h, unpool_argmax(d), β)·m/(1−p) for a d already in memory.
void launch_unpool_error(const float* d,         // [N, C, Hp, Wp]
                         const float* h,         // [N, C, Hh, Wh]
                         const uint8_t* argmax,  // [N, C, Hp, Wp], Hp = Hh/2, Wp = Wh/2
                         float* e,               // [N, C, Hh, Wh]
                         int64_t N, int64_t C, int64_t Hp, int64_t Wp, int64_t Hh, int64_t Wh, int rule, int act,
                         float beta, Dropout dropout, cudaStream_t stream);

// d = transposed conv (conv-backward-data) of e with K.
void launch_conv_proj(const float* e,  // [N, C_out, H, W]
                      const float* K,  // [C_out, C_in, k, k]
                      float* d,        // [N, C_in, H, W]
                      int64_t N, int64_t C_in, int64_t C_out, int64_t H, int64_t W, int64_t k, cudaStream_t stream);

// out = TF2 bilinear (half-pixel centres) resize of every [h, w] plane to [H, W].
void launch_unpool_bilinear(const float* d,  // [N, C, h, w]
                            float* out,      // [N, C, H, W]
                            int64_t N, int64_t C, int64_t h, int64_t w, int64_t H, int64_t W, cudaStream_t stream);

// ΔW = conv-backward-filter(z, e), Δb = Σ_{n,y,x} e (db may be nullptr), ΔE = γ·ΔW as a split-K
// implicit GEMM (two launches: partials into `workspace`, then a fixed-order sum; deterministic,
// no atomics). `workspace` must hold conv_filter_update_workspace_floats(...) floats (checked
// against `workspace_floats`); it is scratch, overwritten, and may be nullptr when that is 0.
void launch_conv_filter_update(const float* z,    // [N, C_in, H, W]
                               const float* e,    // [N, C_out, H, W]
                               float* dw,         // [C_out, C_in, k, k]
                               float* db,         // [C_out] or nullptr
                               float* de,         // [C_out, C_in, k, k]
                               float* workspace,  // [workspace_floats] scratch: [splits, C_out, C_in·k·k (+1)]
                               int64_t workspace_floats, int64_t N, int64_t C_in, int64_t C_out, int64_t H,
                               int64_t W, int64_t k, float gamma, cudaStream_t stream);

// Floats of workspace launch_conv_filter_update needs for these sizes (bias: db != nullptr);
// throws std::invalid_argument for sizes it cannot run (e.g. beyond 32-bit indexing).
int64_t conv_filter_update_workspace_floats(int64_t N, int64_t C_in, int64_t C_out, int64_t H, int64_t W, int64_t k,
                                            bool bias);

// Version 3, the filter update of a pooled layer: the same outputs as launch_conv_filter_update
// for an e that is zero except at the argmax of each 2x2 window (see FwuPooledPlan), a quarter of
// the multiply-adds. Hp = H/2 and Wp = W/2 (checked); codes are 0..3 (only their low 2 bits are
// read). `workspace` as for v2, sized by conv_filter_update_pooled_workspace_floats(...).
void launch_conv_filter_update_pooled(const float* z,         // [N, C_in, H, W]
                                      const float* e,         // [N, C_out, H, W], zero off the argmax
                                      const uint8_t* argmax,  // [N, C_out, Hp, Wp] codes 2·dy + dx of the pool
                                      float* dw,              // [C_out, C_in, k, k]
                                      float* db,              // [C_out] or nullptr
                                      float* de,              // [C_out, C_in, k, k]
                                      float* workspace,       // [workspace_floats]: [splits, C_out, C_in·k·k (+1)]
                                      int64_t workspace_floats, int64_t N, int64_t C_in, int64_t C_out, int64_t H,
                                      int64_t W, int64_t Hp, int64_t Wp, int64_t k, float gamma, cudaStream_t stream);

// Floats of workspace launch_conv_filter_update_pooled needs (bias: db != nullptr); throws
// std::invalid_argument for sizes it cannot run.
int64_t conv_filter_update_pooled_workspace_floats(int64_t N, int64_t C_in, int64_t C_out, int64_t H, int64_t W,
                                                   int64_t k, bool bias);

// Version 1 (benchmark-only, bench/micro.py): one block per output, 256 threads each summing a
// strided slice of the N·H·W terms with 64-bit div/mod per term, then a fixed tree.
void launch_conv_filter_update_v1(const float* z,  // [N, C_in, H, W]
                                  const float* e,  // [N, C_out, H, W]
                                  float* dw,       // [C_out, C_in, k, k]
                                  float* db,       // [C_out] or nullptr
                                  float* de,       // [C_out, C_in, k, k]
                                  int64_t N, int64_t C_in, int64_t C_out, int64_t H, int64_t W, int64_t k,
                                  float gamma, cudaStream_t stream);

}  // namespace ekdaa

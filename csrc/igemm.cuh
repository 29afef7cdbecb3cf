// igemm.cuh — the implicit-GEMM tile machinery of the v2 conv kernels (conv.cu: conv_block_fwd's
// forward conv and conv_error_proj's transposed conv; SIMT FP32, no tensor cores).
//
// Both are one GEMM   C[r, c] = Σ_kk A[r, kk] · B[kk, c]   over
//   rows r    output positions (n, y, x), in the order of IgemmPlan::group (below);
//   columns c output channels;
//   depth kk  (s, ky, kx): source channel s < S, tap (ky, kx) < k x k;
//   A[r, kk] = src[n, s, y + dy, x + dx], zero outside the Hs x Ws plane (implicit im2col), with
//              (dy, dx) = (ky − pad, kx − pad) for a convolution, (pad − ky, pad − kx) for the
//              transposed one (flipped taps, IgemmPlan::flip);
//   B[kk, c] = wts[c·col_stride + s·src_stride + ky·k + kx]   (the [C_out, C_in, k, k] weights read
//              as [C_in·k·k, C_out] for the forward conv, as [C_out·k·k, C_in] for the transposed one).
// Rows are cells of a Hg x Wg grid per image, `group` rows per cell: group 1, cell (n, i, j) is the
// position (i, j); group 4 (the pooled forward), row 4·cell + q is the position (2i + q/2, 2j + q%2)
// of the cell's 2x2 pool window, so the 4 positions of a window are 4 consecutive rows and land in
// one thread (below). A position outside the Hs x Ws plane (the odd trailing row/column of a
// ceil(H/2) x ceil(W/2) cell grid) is a dead row: its A row is zero and the epilogue skips it.
//
// Block tile BM x BN with 256 threads as 16 x 16: thread (tm, tn) = (t % 16, t / 16) holds
// TM = BM/16 rows and TN = BN/16 columns of C in registers; its rows are groups of RG = min(TM, 4)
// consecutive rows, groups 16·RG apart (row g·16·RG + tm·RG + i), likewise its columns, so every
// shared-memory read is one float4 (float2 when the tile side is 32). Per step kIgemmBK = 8 depth
// indices of A (BM x 8) and B (8 x BN) go through shared memory, double-buffered: the global loads
// of step s + 1 are issued into registers before the FMAs of step s and stored into the other
// buffer after them, one barrier per step. Loaders: warp w loads depth index w of A for rows
// lane + 32·i (consecutive positions: coalesced); thread t loads depth index t % 8 of B for columns
// t / 8 + 32·i. Each loader walks its depth index (s, ky, kx) by 8 per step with one carry per
// digit (IgemmPlan::adv_*), and decomposes its rows into (n, y, x) once before the K loop: no
// division or modulo in the K loop, int32 index math (sizes checked by the launchers).
//
// Zero padding: a tap outside the plane multiplies an explicit 0 (v1, the one-thread-per-output
// kernels, skip it), so with a non-finite weight the two differ: 0·Inf = NaN here. For finite
// inputs the results agree up to the summation order (exactly on integer-valued inputs).
#pragma once

#include <cuda_runtime.h>

#include "elementwise.cuh"

namespace ekdaa {

constexpr int kIgemmThreads = 256;  // 16 x 16 threads, each a TM x TN register tile
constexpr int kIgemmBK = 8;         // depth indices per step (warp w loads index w of A)
static_assert(kIgemmThreads == 32 * kIgemmBK, "A's loaders: one warp per depth index of a step");

// The GEMM of one launch (host-built by conv.cu's plan_igemm; every size fits in int32).
struct IgemmPlan {
    int rows;                    // GEMM rows: Hg·Wg·group per image, times N
    int cols;                    // output channels
    int depth;                   // S·k·k
    int S, Hs, Ws, HWs;          // source channels and plane (A = src [N, S, Hs, Ws])
    int k, pad, kk2;             // kernel size, k/2, k·k
    int flip;                    // 1: transposed conv (taps pad − ky, pad − kx)
    int group;                   // rows per cell: 1, or 4 (2x2 pool window, q = 2·dy + dx)
    int Hg, Wg;                  // cells per image plane
    int col_stride, src_stride;  // B[kk, c] = wts[c·col_stride + s·src_stride + ky·k + kx]
    int adv_s, adv_r;            // kIgemmBK depth indices = adv_s channels + adv_r taps (adv_r < k·k)
    int adv_ky, adv_kx;          // adv_r = adv_ky·k + adv_kx
};

// The position of GEMM row r: image n and (y, x) (division: outside the K loop only).
EKDAA_HD void igemm_position(const IgemmPlan& g, int r, int& n, int& y, int& x) {
    const int cell = g.group == 4 ? r >> 2 : r, q = r - cell * g.group;
    const int j = cell % g.Wg, ni = cell / g.Wg, i = ni % g.Hg;
    n = ni / g.Hg;
    y = g.group == 4 ? 2 * i + (q >> 1) : i;
    x = g.group == 4 ? 2 * j + (q & 1) : j;
}

// Row of the block tile held in a thread's i-th row register (TM = BM/16 registers, tm = t % 16);
// likewise columns. Groups of min(T, 4) consecutive rows, 16 groups apart.
template <int BM>
EKDAA_HD int igemm_tile_row(int tm, int i) {
    constexpr int TM = BM / 16, RG = TM < 4 ? TM : 4;
    return (i / RG) * 16 * RG + tm * RG + i % RG;
}

// V consecutive floats from shared memory as one vector load (V = 4: float4, 2: float2).
template <int V>
__device__ __forceinline__ void igemm_lds(const float* p, float* out) {
    static_assert(V == 2 || V == 4, "float2 or float4 reads");
    if constexpr (V == 4) {
        const float4 v = *reinterpret_cast<const float4*>(p);
        out[0] = v.x, out[1] = v.y, out[2] = v.z, out[3] = v.w;
    } else {
        const float2 v = *reinterpret_cast<const float2*>(p);
        out[0] = v.x, out[1] = v.y;
    }
}

// acc[i][j] = C[r0 + igemm_tile_row<BM>(tm, i), c0 + igemm_tile_row<BN>(tn, j)] for this thread
// (tm, tn) = (t % 16, t / 16); rows and columns beyond the GEMM come out as whatever zero rows give.
template <int BM, int BN>
__device__ __forceinline__ void igemm_mainloop(const IgemmPlan& g,
                                               const float* __restrict__ src,  // [N, S, Hs, Ws]
                                               const float* __restrict__ wts,  // B, see above
                                               int r0, int c0, float (&acc)[BM / 16][BN / 16]) {
    constexpr int TM = BM / 16, TN = BN / 16, RG = TM < 4 ? TM : 4, CG = TN < 4 ? TN : 4;
    constexpr int AS = BM / 32, BS = BN / 32;  // A rows, B columns each thread loads per step
    static_assert(BM % 32 == 0 && BN % 32 == 0 && BM <= 128 && BN <= 128, "tiles of 32, 64 or 128");
    __shared__ __align__(16) float As[2][kIgemmBK][BM];
    __shared__ __align__(16) float Bs[2][kIgemmBK][BN + 4];  // +4: conflict-free transposing stores
    const int t = threadIdx.x, lane = t & 31, warp = t >> 5;
    const int tm = t & 15, tn = t >> 4;
    const int kb = t & 7, cb = t >> 3;  // B loader: depth index kb, columns cb + 32·i

    // A loader rows: offset of (n, 0, y, x) in src, and (y, x); a dead row gets y far below 0 so
    // that y + dy fails the bounds test whatever dy is (|dy| <= pad < 2^30).
    int abase[AS], ay[AS], ax[AS];
#pragma unroll
    for (int i = 0; i < AS; ++i) {
        const int r = r0 + lane + 32 * i;
        int n = 0, y = 0, x = 0;
        if (r < g.rows) igemm_position(g, r, n, y, x);
        const bool live = r < g.rows && y < g.Hs && x < g.Ws;
        abase[i] = live ? n * g.S * g.HWs + y * g.Ws + x : 0;
        ay[i] = live ? y : -(1 << 30);
        ax[i] = x;
    }
    // B loader columns: c·col_stride, or −1 beyond the GEMM
    int boff[BS];
#pragma unroll
    for (int i = 0; i < BS; ++i) {
        const int c = c0 + cb + 32 * i;
        boff[i] = c < g.cols ? c * g.col_stride : -1;
    }
    // depth walkers: A's index warp, B's index kb, both advanced by kIgemmBK per step
    int ac = warp / g.kk2, ar = warp - ac * g.kk2;
    int aky = ar / g.k, akx = ar - aky * g.k;
    int bc = kb / g.kk2, br = kb - bc * g.kk2;

    float ra[AS], rb[BS];  // the next step's tiles, in flight in registers
    auto load = [&]() {
        const int dy = g.flip ? g.pad - aky : aky - g.pad, dx = g.flip ? g.pad - akx : akx - g.pad;
#pragma unroll
        for (int i = 0; i < AS; ++i) {
            const int iy = ay[i] + dy, ix = ax[i] + dx;
            ra[i] = 0.0f;
            if (ac < g.S && static_cast<unsigned>(iy) < static_cast<unsigned>(g.Hs) &&
                static_cast<unsigned>(ix) < static_cast<unsigned>(g.Ws))
                ra[i] = src[abase[i] + ac * g.HWs + dy * g.Ws + dx];
        }
#pragma unroll
        for (int i = 0; i < BS; ++i) rb[i] = (bc < g.S && boff[i] >= 0) ? wts[boff[i] + bc * g.src_stride + br] : 0.0f;
        // advance both walkers by kIgemmBK depth indices: at most one carry per digit
        akx += g.adv_kx;
        if (akx >= g.k) akx -= g.k, ++aky;
        aky += g.adv_ky;
        if (aky >= g.k) aky -= g.k, ++ac;
        ac += g.adv_s;
        br += g.adv_r;
        if (br >= g.kk2) br -= g.kk2, ++bc;
        bc += g.adv_s;
    };
    auto store = [&](int buf) {
#pragma unroll
        for (int i = 0; i < AS; ++i) As[buf][warp][lane + 32 * i] = ra[i];
#pragma unroll
        for (int i = 0; i < BS; ++i) Bs[buf][kb][cb + 32 * i] = rb[i];
    };

#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] = 0.0f;
    const int steps = (g.depth + kIgemmBK - 1) / kIgemmBK;
    if (steps > 0) {
        load();
        store(0);
    }
    __syncthreads();
    for (int s = 0; s < steps; ++s) {
        const int buf = s & 1;
        if (s + 1 < steps) load();  // global loads of step s + 1 overlap the FMAs of step s
#pragma unroll
        for (int kk = 0; kk < kIgemmBK; ++kk) {
            float a[TM], b[TN];
#pragma unroll
            for (int i = 0; i < TM; i += RG) igemm_lds<RG>(&As[buf][kk][(i / RG) * 16 * RG + tm * RG], a + i);
#pragma unroll
            for (int j = 0; j < TN; j += CG) igemm_lds<CG>(&Bs[buf][kk][(j / CG) * 16 * CG + tn * CG], b + j);
#pragma unroll
            for (int i = 0; i < TM; ++i)
#pragma unroll
                for (int j = 0; j < TN; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
        }
        if (s + 1 < steps) store(buf ^ 1);  // the other buffer: last read in step s − 1, before the barrier
        __syncthreads();
    }
}

}  // namespace ekdaa

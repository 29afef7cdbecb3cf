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
// Block tile BM x BN, 256 threads in KS depth groups (IgemmShape): each step stages BK = 8·KS depth
// indices of A (BM x BK) and B (BK x BN) in shared memory and group g multiplies depth indices
// 8g .. 8g + 7 of it into its own TM x TN register tile per thread; with KS > 1 the groups' tiles
// are summed through shared memory at the end in group order (fixed: deterministic) and group 0
// runs the epilogue. So small tiles (for small grids) keep 4 x 4 outputs per thread and the FMAs
// per loaded element of the large ones. A thread (tm, tn) of a group holds rows in groups of 4
// consecutive rows, RT·4 rows apart (row (i/4)·RT·4 + tm·4 + i%4; RT = BM/TM threads along rows),
// likewise columns, so every shared-memory read is one float4 and a pooled window's 4 rows are in
// one thread. Double buffering: the global loads of step s + 1 are issued into registers before the
// FMAs of step s and stored into the other buffer after them, one barrier per step. Loaders:
// thread t loads depth index t / (32/KS) of A for rows t % (32/KS) + (32/KS)·i (consecutive threads,
// consecutive positions: coalesced) and depth index t % BK of B for columns t / BK + (256/BK)·i.
// Each loader walks its depth index (s, ky, kx) by BK per step with one carry per digit
// (IgemmPlan::adv_*) and decomposes its rows into (n, y, x) once before the K loop, keeping per row a
// pointer and a mask of the taps inside the plane (k <= kIgemmMaxK): a load is then one offset, the
// same for all of a thread's rows in a step, and one mask test. No division or modulo in the K loop,
// int32 index math (sizes checked by the launchers); the K loop runs two steps per iteration, one per
// shared-memory buffer.
//
// Zero padding: a tap outside the plane multiplies an explicit 0 (v1, the one-thread-per-output
// kernels, skip it), so with a non-finite weight the two differ: 0·Inf = NaN here. For finite
// inputs the results agree up to the summation order (exactly on integer-valued inputs).
#pragma once

#include <cuda_runtime.h>

#include <type_traits>

#include "elementwise.cuh"

namespace ekdaa {

constexpr int kIgemmThreads = 256;  // KS depth groups of 256/KS threads, each a TM x TN register tile
constexpr int kIgemmBK = 8;         // depth indices per step and group
constexpr int kIgemmMaxK = 15;      // kernel sizes up to 15: a loader row's tap mask has 15 bits per axis
constexpr unsigned kIgemmPastDepthBit = 1u << 15;  // the bit between them, in no row's mask

// The thread layout of a BM x BN tile with KS depth groups.
template <int BM, int BN, int KS>
struct IgemmShape {
    static constexpr int TM = KS == 1 ? BM / 16 : 4, TN = KS == 1 ? BN / 16 : 4;  // registers per thread
    static constexpr int RT = BM / TM;                                         // threads along rows
    static constexpr int BK = kIgemmBK * KS;                                   // depth indices per step
    static constexpr int ALD = kIgemmThreads / BK, AS = BM / ALD;  // A: threads per depth index, rows each
    static constexpr int BLD = kIgemmThreads / BK, BS = BN / BLD;  // B: columns per pass, passes
    static_assert(RT * (BN / TN) * KS == kIgemmThreads, "every thread owns one TM x TN tile of one group");
    static_assert(TM % 4 == 0 && TN % 4 == 0 && AS >= 1 && BS >= 1 && BM % ALD == 0 && BN % BLD == 0,
                  "float4 reads; whole loader passes");
};

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
    int adv_s, adv_r;            // BK depth indices (one step) = adv_s channels + adv_r taps (adv_r < k·k)
    int adv_ky, adv_kx;          // adv_r = adv_ky·k + adv_kx
    int tap_dy, tap_dx, tap_off;  // offset of tap (ky, kx) from a position: ky·tap_dy + kx·tap_dx + tap_off
};

// The position of GEMM row r: image n and (y, x) (division: outside the K loop only).
EKDAA_HD void igemm_position(const IgemmPlan& g, int r, int& n, int& y, int& x) {
    const int cell = g.group == 4 ? r >> 2 : r, q = r - cell * g.group;
    const int j = cell % g.Wg, ni = cell / g.Wg, i = ni % g.Hg;
    n = ni / g.Hg;
    y = g.group == 4 ? 2 * i + (q >> 1) : i;
    x = g.group == 4 ? 2 * j + (q & 1) : j;
}

// Row of the block tile held in a thread's i-th row register (thread tm of RT along rows); likewise
// columns. Groups of 4 consecutive rows, RT·4 rows apart.
template <int RT>
EKDAA_HD int igemm_tile_row(int tm, int i) {
    return (i / 4) * RT * 4 + tm * 4 + i % 4;
}

// 4 consecutive floats from shared memory as one float4 load.
__device__ __forceinline__ void igemm_lds4(const float* p, float* out) {
    const float4 v = *reinterpret_cast<const float4*>(p);
    out[0] = v.x, out[1] = v.y, out[2] = v.z, out[3] = v.w;
}

// The GEMM of the block tile at (r0, c0). Returns true in the threads that hold the result:
// acc[i][j] = C[r0 + igemm_tile_row<RT>(tm, i), c0 + igemm_tile_row<BN/TN>(tn, j)] (rows beyond the
// GEMM come out as zero, columns beyond it as garbage: the epilogue skips both); false in the other
// depth groups' threads,
// which take no part in the epilogue. Every thread of the block must call it (barriers).
template <int BM, int BN, int KS>
__device__ __forceinline__ bool igemm_mainloop(const IgemmPlan& g,
                                               const float* __restrict__ src,  // [N, S, Hs, Ws]
                                               const float* __restrict__ wts,  // B, see above
                                               int r0, int c0,
                                               float (&acc)[IgemmShape<BM, BN, KS>::TM][IgemmShape<BM, BN, KS>::TN],
                                               int& tm, int& tn) {
    using Sh = IgemmShape<BM, BN, KS>;
    constexpr int TM = Sh::TM, TN = Sh::TN, RT = Sh::RT, BK = Sh::BK, AS = Sh::AS, BS = Sh::BS;
    __shared__ __align__(16) float As[2][BK][BM];
    __shared__ __align__(16) float Bs[2][BK][BN + 4];  // +4: fewer conflicts in the transposing stores
    const int t = threadIdx.x;
    const int da = t / Sh::ALD, ra0 = t % Sh::ALD;  // A loader: depth index da, rows ra0 + ALD·i
    const int kb = t % BK, cb = t / BK;             // B loader: depth index kb, columns cb + BLD·i
    const int kg = KS == 1 ? 0 : t / (kIgemmThreads / KS);  // depth group
    const int u = KS == 1 ? t : t % (kIgemmThreads / KS);   // thread in it
    tm = u % RT;
    tn = u / RT;

    // A loader rows: a pointer to (n, 0, y, x) in src and a mask of the taps that stay inside the
    // plane: bit ky (0-14) when y + dy(ky) is a row of it, bit 16 + kx (16-30) when x + dx(kx) is a
    // column; bit 15 is never set (past the depth, below). A dead row (beyond the GEMM or on the odd
    // trailing row/column of the cell grid) has mask 0: every load of it is skipped.
    // Small tiles (KS > 1: twice the loads per FMA) keep row pointers moved by the change of offset
    // each step (kept in registers rather than rebuilt from the kernel parameters at every load);
    // large tiles keep int32 offsets (fewer registers: 3 blocks per SM instead of 2).
    using Row = std::conditional_t<(KS > 1), const float*, int>;
    Row arow[AS];
    unsigned amask[AS];
#pragma unroll
    for (int i = 0; i < AS; ++i) {
        const int r = r0 + ra0 + Sh::ALD * i;
        int n = 0, y = 0, x = 0;
        if (r < g.rows) igemm_position(g, r, n, y, x);
        const bool live = r < g.rows && y < g.Hs && x < g.Ws;
        unsigned m = 0;
        for (int q = 0; live && q < g.k; ++q) {
            const int d = g.flip ? g.pad - q : q - g.pad;
            if (static_cast<unsigned>(y + d) < static_cast<unsigned>(g.Hs)) m |= 1u << q;
            if (static_cast<unsigned>(x + d) < static_cast<unsigned>(g.Ws)) m |= 1u << (16 + q);
        }
        const int base = live ? n * g.S * g.HWs + y * g.Ws + x : 0;
        if constexpr (KS > 1) arow[i] = src + base; else arow[i] = base;
        amask[i] = m;
    }
    // B loader columns: a pointer to column c's weights; a column beyond the GEMM reads the last one
    // (its products only reach accumulators of columns that are never written)
    Row bcol[BS];
#pragma unroll
    for (int i = 0; i < BS; ++i) {
        const int base = min(c0 + cb + Sh::BLD * i, g.cols - 1) * g.col_stride;
        if constexpr (KS > 1) bcol[i] = wts + base; else bcol[i] = base;
    }
    // depth walkers: A's index da as (ac, aky, akx), B's index kb as (bc, br), both advanced by BK per step
    int ac = da / g.kk2, ar = da - ac * g.kk2;
    int aky = ar / g.k, akx = ar - aky * g.k;
    int bc = kb / g.kk2, br = kb - bc * g.kk2;

    float ra[AS], rb[BS];       // the next step's tiles, in flight in registers
    int aoff_prev = 0, boff_prev = 0;  // the offsets the small tiles' arow / bcol point at
    auto load = [&]() {
        // this step's tap and channel, the same for all of a thread's rows: one offset from the row
        // pointers and the mask bits the load needs (bit 15 alone past the depth: never in a mask)
        const int aoff = ac * g.HWs + aky * g.tap_dy + akx * g.tap_dx + g.tap_off, boff = bc * g.src_stride + br;
        const unsigned need = ac < g.S ? (1u << aky) | (1u << (16 + akx)) : kIgemmPastDepthBit;
        const bool bdepth = bc < g.S;
#pragma unroll
        for (int i = 0; i < AS; ++i) {
            if constexpr (KS > 1) arow[i] += aoff - aoff_prev;
            const bool in = (need & ~amask[i]) == 0;
            if constexpr (KS > 1) ra[i] = in ? *arow[i] : 0.0f; else ra[i] = in ? src[arow[i] + aoff] : 0.0f;
        }
#pragma unroll
        for (int i = 0; i < BS; ++i) {
            if constexpr (KS > 1) bcol[i] += boff - boff_prev;
            if constexpr (KS > 1) rb[i] = bdepth ? *bcol[i] : 0.0f; else rb[i] = bdepth ? wts[bcol[i] + boff] : 0.0f;
        }
        aoff_prev = aoff, boff_prev = boff;
        // advance both walkers by BK depth indices: at most one carry per digit
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
        for (int i = 0; i < AS; ++i) As[buf][da][ra0 + Sh::ALD * i] = ra[i];
#pragma unroll
        for (int i = 0; i < BS; ++i) Bs[buf][kb][cb + Sh::BLD * i] = rb[i];
    };

#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] = 0.0f;
    const int steps = (g.depth + BK - 1) / BK;
    if (steps > 0) {
        load();
        store(0);
    }
    __syncthreads();
    // two steps per iteration, one per buffer; small tiles unroll them, so that every shared-memory
    // address is a constant offset (large tiles do not: 79-80 registers, 3 blocks per SM, instead of 85-93)
    for (int s0 = 0; s0 < steps; s0 += 2) {
#pragma unroll(KS > 1 ? 2 : 1)
        for (int buf = 0; buf < 2; ++buf) {
            const int s = s0 + buf;
            if (s >= steps) break;  // uniform: the odd last step
            const bool more = s + 1 < steps;
            if (more) load();  // global loads of step s + 1 overlap the FMAs of step s
#pragma unroll
            for (int kk = 0; kk < kIgemmBK; ++kk) {
                float a[TM], b[TN];
#pragma unroll
                for (int i = 0; i < TM; i += 4)
                    igemm_lds4(&As[buf][kg * kIgemmBK + kk][(i / 4) * RT * 4 + tm * 4], a + i);
#pragma unroll
                for (int j = 0; j < TN; j += 4)
                    igemm_lds4(&Bs[buf][kg * kIgemmBK + kk][(j / 4) * (BN / TN) * 4 + tn * 4], b + j);
#pragma unroll
                for (int i = 0; i < TM; ++i)
#pragma unroll
                    for (int j = 0; j < TN; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
            }
            if (more) store(buf ^ 1);  // the other buffer: last read in step s − 1, before the barrier
            __syncthreads();
        }
    }
    if constexpr (KS > 1) {  // groups 1 .. KS − 1 hand their tiles to group 0, which adds them in order
        __shared__ __align__(16) float Cs[KS - 1][TM * TN][kIgemmThreads / KS];  // [group][register][thread]
        if (kg > 0)
#pragma unroll
            for (int i = 0; i < TM; ++i)
#pragma unroll
                for (int j = 0; j < TN; ++j) Cs[kg - 1][i * TN + j][u] = acc[i][j];
        __syncthreads();
        if (kg > 0) return false;
        for (int h = 0; h < KS - 1; ++h)
#pragma unroll
            for (int i = 0; i < TM; ++i)
#pragma unroll
                for (int j = 0; j < TN; ++j) acc[i][j] += Cs[h][i * TN + j][u];
    }
    return true;
}

}  // namespace ekdaa

// fc.cu — fully-connected layer kernels of EKDAA (SPEC.md "Network", "EKDAA update" steps 1–4).
//
//   fc_fwd          h = z·Wᵀ + b,  out = φ(h) ⊙ m/(1−p)                     (eq. 3–4, dropout)
//   fc_proj         d = e·W  or  d = e·Eᵀ                                    (step 2–3: d_{l-1} = e_l E_l)
//   fc_error_proj   e_below = (φ(h) − φ(h − βd)) ⊙ m/(1−p)  [rule "ekdaa"]   (eq. 8), fused with fc_proj
//                   e_below = d ⊙ φ'(h) ⊙ m/(1−p)           [rule "bp"]
//   error_epilogue  the same epilogue over a d already in memory (any shape, flat index)
//   fc_update       ΔW = eᵀ·z, ΔE = γ·ΔWᵀ (one kernel), Δb = Σ_n e              (eq. 9–10, step 4)
//   softmax_error   z_y = softmax(h_y), e_y = z_y − onehot(label), loss = −log z_y[label]   (step 1)
//   fc_update_proj  fc_update + Δb + the error projection to the layer below, one launch (reads e once)
//   fc_softmax_error the output layer: fc_fwd + softmax_error + the batch's Σ loss and correct count
//
// Layout: float32, row-major, contiguous. z, h, e, d are [N, F] (batch-major); W is [F_out, F_in]
// (PyTorch), E is [F_in, F_out] (= Wᵀ's shape). Dropout index = flat C-order index of the
// [N, F] tensor it applies to (n·F + f), as ekdaa_cuda.reference.dropout_keep.
//
// The matrix products share one plain shared-memory tiled GEMM (tile_gemm): one output per
// thread, 16×16 tiles, k summed in ascending order — deterministic, and exact for small
// integer inputs. fc_fwd (v2) has its own split-K GEMM (fc_fwd_splitk_kernel: 4×4 outputs a
// thread, K cut across blocks, finished by the last block of each tile); tile_gemm's fc_fwd_kernel
// stays as v1 for bench/micro.py. Test: `pytest tests/gpu/test_ops_fc.py` (the CPU simulator, and
// the GPU when there is one).
#include <algorithm>
#include <initializer_list>
#include <string>

#include "common.cuh"
#include "fc.h"

namespace ekdaa {
namespace {

constexpr int kTile = 16;        // GEMM tile edge: blocks of kTile × kTile threads
constexpr int kThreads = 256;    // threads per block of the 1-D kernels
constexpr int kMaxGridY = 65535;

// C(i, j) = Σ_k A(i, k)·B(k, j) for this thread's element of the kTile × kTile output tile at
// (i0, j0): i = i0 + threadIdx.y (row), j = j0 + threadIdx.x (column), with
// A(i, k) = a[i·a_row + k·a_col] and B(k, j) = b[k·b_row + j·b_col] (strides in elements), so one
// routine serves z·Wᵀ, e·W, e·Eᵀ and eᵀ·z. Every thread of the block must call it (it
// synchronises); threads outside [rows, cols] get a meaningless value and must not store it.
// Tiles are loaded so that consecutive threadIdx.x read consecutive addresses of whichever
// index has unit stride.
__device__ float tile_gemm(const float* a, long long a_row, long long a_col,  // A [rows, K]
                           const float* b, long long b_row, long long b_col,  // B [K, cols]
                           int rows, int cols, int K, int i0, int j0) {
    __shared__ float as[kTile][kTile + 1];  // as[ii][kk] = A(i0 + ii, k0 + kk)
    __shared__ float bs[kTile][kTile + 1];  // bs[kk][jj] = B(k0 + kk, j0 + jj)
    const int tx = threadIdx.x, ty = threadIdx.y;
    // Which tile coordinate each thread loads: the unit-stride one follows threadIdx.x.
    const bool a_k_unit = a_col == 1;
    const int a_ii = a_k_unit ? ty : tx, a_kk = a_k_unit ? tx : ty;
    const bool b_k_unit = b_row == 1;
    const int b_kk = b_k_unit ? tx : ty, b_jj = b_k_unit ? ty : tx;

    float acc = 0.0f;
    for (int k0 = 0; k0 < K; k0 += kTile) {
        const int ai = i0 + a_ii, ak = k0 + a_kk;
        as[a_ii][a_kk] = (ai < rows && ak < K) ? a[ai * a_row + ak * a_col] : 0.0f;
        const int bk = k0 + b_kk, bj = j0 + b_jj;
        bs[b_kk][b_jj] = (bk < K && bj < cols) ? b[bk * b_row + bj * b_col] : 0.0f;
        __syncthreads();
        for (int kk = 0; kk < kTile; ++kk) acc += as[ty][kk] * bs[kk][tx];
        __syncthreads();
    }
    return acc;
}

// Grid of kTile × kTile blocks covering a [rows, cols] output.
dim3 gemm_grid(const char* op, int64_t rows, int64_t cols) {
    require(rows <= int64_t(kMaxGridY) * kTile, op,
            "too many output rows for the grid: " + std::to_string(rows) + " > " +
                std::to_string(int64_t(kMaxGridY) * kTile));
    // tile_gemm forms row/column indices in int, up to a tile past the last: keep them below 2^31
    require(cols <= INT32_MAX - kTile, op, "output dimensions must fit in int32");
    return dim3(ceil_div(cols, kTile), ceil_div(rows, kTile));
}

// The finish of a grid whose blocks each leave a partial result in global memory and whose last
// block combines them (fc_fwd's K splits of one tile, fc_softmax_error's row blocks). Every thread
// of a 1-D block calls it once its partials are stored: the stores are fenced device-wide, thread 0
// takes an integer ticket, and the block that takes the last of `arrivals` tickets gets true (in
// every thread), after resetting the ticket to 0 for the next launch; its loads that follow see
// the other blocks' partials. The combining block then sums them in a fixed order, so the result
// does not depend on which block came last (no float atomics).
__device__ bool last_to_arrive(unsigned int* ticket, unsigned int arrivals) {
    __shared__ bool last;
    __threadfence();  // this thread's partials are visible device-wide before the ticket is taken
    __syncthreads();
    if (threadIdx.x == 0) {
        last = atomicAdd(ticket, 1u) == arrivals - 1;
        if (last) {
            *ticket = 0u;
            __threadfence();  // acquire: the partials stored before the other tickets are seen
        }
    }
    __syncthreads();
    return last;
}

__global__ void fc_fwd_kernel(const float* __restrict__ z,  // [N, F_in]
                              const float* __restrict__ w,  // [F_out, F_in]
                              const float* __restrict__ b,  // [F_out] or nullptr
                              float* __restrict__ h,        // [N, F_out]
                              float* __restrict__ out,      // [N, F_out]
                              int N, int F_in, int F_out, int act, bool apply_activation, Dropout dropout) {
    // A(n, k) = z[n, k]; B(k, f) = W[f, k].
    const float acc = tile_gemm(z, F_in, 1, w, 1, F_in, N, F_out, F_in, blockIdx.y * kTile, blockIdx.x * kTile);
    const int n = blockIdx.y * kTile + threadIdx.y, f = blockIdx.x * kTile + threadIdx.x;
    if (n >= N || f >= F_out) return;
    const long long idx = (long long)n * F_out + f;
    const float hv = b != nullptr ? acc + b[f] : acc;
    h[idx] = hv;
    const float a = apply_activation ? activate<float>(act, hv) : hv;
    out[idx] = a * dropout_factor(dropout, static_cast<uint32_t>(idx));
}

// fc_fwd v2: split-K register-blocked GEMM. A block owns a kFwdBM × kFwdBN tile of h (rows n,
// columns f) and the K range of 32-wide steps [s·steps/splits, (s+1)·steps/splits) of its split s;
// blockIdx.x = s·tiles + tile. Each step stages z[m0.., k0..k0+31] and W[n0.., k0..k0+31] in shared
// memory (double-buffered: the next step's global loads are in registers during this step's FMAs,
// one barrier a step); kFwdGroups depth groups of 64 threads take 8 consecutive k each, a thread
// accumulating 4 × 4 outputs (rows tm + 8i, columns tn + 8j) from float4 reads along k. The groups'
// tiles are summed in group order through shared memory; with one split the block applies the
// epilogue itself, else it stores its tile to partials[tile][s] and the last block of the tile to
// arrive (last_to_arrive) sums the splits' tiles in split order and applies it. Summation order is
// fixed (k ascending within a group's 8, groups, then splits in order): bitwise reproducible.
constexpr int kFwdBM = 32;                // output tile rows (batch)
constexpr int kFwdBN = 32;                // output tile columns (features)
constexpr int kFwdGroups = 4;             // depth groups of 64 threads
constexpr int kFwdBK = 8 * kFwdGroups;    // k per step
constexpr int kFwdThreads = 64 * kFwdGroups;
constexpr int kFwdPitch = kFwdBK + 4;     // staged row pitch: float4-aligned, conflict-free (see below)
constexpr int kFwdTileFloats = kFwdBM * kFwdBN;
constexpr int kFwdTargetBlocks = 264;     // two blocks per SM of a 132-SM H100/H200
constexpr int kFwdMinSteps = 4;           // steps a split keeps at least (128 k), when splits are chosen
constexpr int kFwdMaxSplits = 64;         // bounds the last block's partial sum

struct FcFwdPlan {
    int tiles_n;  // column tiles, ceil(F_out / kFwdBN)
    int tiles;    // row tiles × column tiles
    int splits;   // K ranges
    int steps;    // ceil(F_in / kFwdBK)
};

__global__ void __launch_bounds__(kFwdThreads, 2)
    fc_fwd_splitk_kernel(const float* __restrict__ z,        // [N, F_in]
                         const float* __restrict__ w,        // [F_out, F_in]
                         const float* __restrict__ b,        // [F_out] or nullptr
                         float* __restrict__ h,              // [N, F_out]
                         float* __restrict__ out,            // [N, F_out]
                         float* __restrict__ partials,       // [tiles, splits, kFwdTileFloats]; splits > 1
                         unsigned int* __restrict__ tickets, // [tiles], 0 between launches; splits > 1
                         int N, int F_in, int F_out, FcFwdPlan plan, int act, bool apply_activation,
                         Dropout dropout) {
    // Row pitch kFwdPitch = 36 floats: a loader warp stores 32 consecutive k of one row (32 banks);
    // a warp's float4 reads take rows tm + 8i with tm = 0..3 (A) or tn + 8j with tn = 0..7 (B) at
    // one kk, 36 floats apart, i.e. in distinct 4-bank groups: one wavefront per read.
    __shared__ __align__(16) float as[2][kFwdBM][kFwdPitch];            // as[buf][m][kk] = z[m0 + m, k0 + kk]
    __shared__ __align__(16) float bs[2][kFwdBN][kFwdPitch];            // bs[buf][c][kk] = W[n0 + c, k0 + kk]
    __shared__ __align__(16) float group_sum[kFwdGroups][kFwdBM][kFwdBN];  // each depth group's tile
    const int tid = threadIdx.x;
    const int split = blockIdx.x / plan.tiles, tile = blockIdx.x - split * plan.tiles;
    const int tile_m = tile / plan.tiles_n;
    const int m0 = tile_m * kFwdBM, n0 = (tile - tile_m * plan.tiles_n) * kFwdBN;
    const int s_begin = static_cast<int>((long long)split * plan.steps / plan.splits);
    const int s_end = static_cast<int>((long long)(split + 1) * plan.steps / plan.splits);

    // Loader: rows lrow + 8i (i < 4) of each staged tile, depth index `lane` of a step; a row past
    // the matrix loads zeros (its offset stays 0 and is never read).
    const int lane = tid & 31, lrow = tid >> 5;
    int a_off[4], b_off[4];
    unsigned int a_ok = 0, b_ok = 0;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const int m = m0 + lrow + 8 * i, f = n0 + lrow + 8 * i;
        a_off[i] = m < N ? m * F_in : 0;
        b_off[i] = f < F_out ? f * F_in : 0;
        a_ok |= (m < N ? 1u : 0u) << i;
        b_ok |= (f < F_out ? 1u : 0u) << i;
    }
    float ra[4], rb[4];  // the next step's staged values
    auto load = [&](int k0) {
        const int k = k0 + lane;
        const bool k_ok = k < F_in;
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            ra[i] = k_ok && ((a_ok >> i) & 1u) ? z[a_off[i] + k] : 0.0f;
            rb[i] = k_ok && ((b_ok >> i) & 1u) ? w[b_off[i] + k] : 0.0f;
        }
    };
    auto stage = [&](int buf) {
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            as[buf][lrow + 8 * i][lane] = ra[i];
            bs[buf][lrow + 8 * i][lane] = rb[i];
        }
    };

    // Compute: depth group g, outputs (tm + 8i, tn + 8j).
    const int g = tid >> 6, tm = (tid >> 3) & 7, tn = tid & 7;
    float acc[4][4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = 0.0f;

    int k0 = s_begin * kFwdBK, buf = 0;
    if (s_begin < s_end) {
        load(k0);
        stage(0);
    }
    __syncthreads();
    for (int s = s_begin; s < s_end; ++s) {
        const bool more = s + 1 < s_end;
        k0 += kFwdBK;
        if (more) load(k0);
#pragma unroll
        for (int q = 0; q < 2; ++q) {
            const int kk = 8 * g + 4 * q;
            float4 av[4], bv[4];
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                av[i] = *reinterpret_cast<const float4*>(&as[buf][tm + 8 * i][kk]);
                bv[i] = *reinterpret_cast<const float4*>(&bs[buf][tn + 8 * i][kk]);
            }
#pragma unroll
            for (int i = 0; i < 4; ++i)
#pragma unroll
                for (int j = 0; j < 4; ++j) {
                    float c = acc[i][j];
                    c += av[i].x * bv[j].x;
                    c += av[i].y * bv[j].y;
                    c += av[i].z * bv[j].z;
                    c += av[i].w * bv[j].w;
                    acc[i][j] = c;
                }
        }
        if (more) stage(buf ^ 1);
        __syncthreads();
        buf ^= 1;
    }

#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) group_sum[g][tm + 8 * i][tn + 8 * j] = acc[i][j];
    __syncthreads();
    // From here thread tid owns the 4 outputs (r, c..c+3) of the tile.
    const int r = tid >> 3, c = (tid & 7) * 4;
    float4 v = *reinterpret_cast<const float4*>(&group_sum[0][r][c]);
#pragma unroll
    for (int q = 1; q < kFwdGroups; ++q) {
        const float4 p = *reinterpret_cast<const float4*>(&group_sum[q][r][c]);
        v.x += p.x, v.y += p.y, v.z += p.z, v.w += p.w;
    }
    if (plan.splits > 1) {
        float* tile_partials = partials + tile * plan.splits * kFwdTileFloats + tid * 4;
        *reinterpret_cast<float4*>(tile_partials + split * kFwdTileFloats) = v;
        if (!last_to_arrive(tickets + tile, static_cast<unsigned int>(plan.splits))) return;
        v = *reinterpret_cast<const float4*>(tile_partials);
#pragma unroll 8
        for (int q = 1; q < plan.splits; ++q) {  // unrolled: 8 loads in flight, still added in split order
            const float4 p = *reinterpret_cast<const float4*>(tile_partials + q * kFwdTileFloats);
            v.x += p.x, v.y += p.y, v.z += p.z, v.w += p.w;
        }
    }
    const int n = m0 + r;
    if (n >= N) return;
    const float sums[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int q = 0; q < 4; ++q) {
        const int f = n0 + c + q;
        if (f >= F_out) break;
        const int idx = n * F_out + f;
        const float hv = b != nullptr ? sums[q] + b[f] : sums[q];
        h[idx] = hv;
        const float a = apply_activation ? activate<float>(act, hv) : hv;
        out[idx] = a * dropout_factor(dropout, static_cast<uint32_t>(idx));
    }
}

// kErrorEpilogue = false: d = e·M. true: e_below = error_unit(h, d) · m/(1−p), d never stored.
template <bool kErrorEpilogue>
__global__ void fc_proj_kernel(const float* __restrict__ e,       // [N, F_out]
                               const float* __restrict__ weight,  // [F_out, F_in] or [F_in, F_out]
                               const float* __restrict__ h,       // [N, F_in] (epilogue only)
                               float* __restrict__ out,           // [N, F_in]
                               int N, int F_in, int F_out, int layout, int rule, int act, float beta,
                               Dropout dropout) {
    // A(n, o) = e[n, o]; B(o, i) = W[o, i] (kOutIn) or E[i, o] (kInOut).
    const long long b_row = layout == kOutIn ? F_in : 1;
    const long long b_col = layout == kOutIn ? 1 : F_out;
    const float d =
        tile_gemm(e, F_out, 1, weight, b_row, b_col, N, F_in, F_out, blockIdx.y * kTile, blockIdx.x * kTile);
    const int n = blockIdx.y * kTile + threadIdx.y, i = blockIdx.x * kTile + threadIdx.x;
    if (n >= N || i >= F_in) return;
    const long long idx = (long long)n * F_in + i;
    if (kErrorEpilogue) {
        out[idx] = error_unit(rule, act, h[idx], d, beta) * dropout_factor(dropout, static_cast<uint32_t>(idx));
    } else {
        out[idx] = d;
    }
}

__global__ void error_epilogue_kernel(const float* __restrict__ d,  // [count]
                                      const float* __restrict__ h,  // [count]
                                      float* __restrict__ e,        // [count]
                                      long long count, int rule, int act, float beta, Dropout dropout) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < count;
         i += (long long)gridDim.x * blockDim.x) {
        e[i] = error_unit(rule, act, h[i], d[i], beta) * dropout_factor(dropout, static_cast<uint32_t>(i));
    }
}

__global__ void fc_update_kernel(const float* __restrict__ z,  // [N, F_in]
                                 const float* __restrict__ e,  // [N, F_out]
                                 float* __restrict__ dw,       // [F_out, F_in]
                                 float* __restrict__ de,       // [F_in, F_out]
                                 int N, int F_in, int F_out, float gamma) {
    // A(o, n) = e[n, o]; B(n, i) = z[n, i]; K = N.
    const float acc = tile_gemm(e, 1, F_out, z, F_in, 1, F_out, F_in, N, blockIdx.y * kTile, blockIdx.x * kTile);
    const int o = blockIdx.y * kTile + threadIdx.y, i = blockIdx.x * kTile + threadIdx.x;
    if (o >= F_out || i >= F_in) return;
    dw[(long long)o * F_in + i] = acc;
    de[(long long)i * F_out + o] = gamma * acc;
}

// One thread per output feature; consecutive threads read consecutive addresses of each row.
__global__ void fc_bias_update_kernel(const float* __restrict__ e,  // [N, F_out]
                                      float* __restrict__ db,       // [F_out]
                                      long long N, long long F_out) {
    const long long f = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    if (f >= F_out) return;
    float s = 0.0f;
    for (long long n = 0; n < N; ++n) s += e[n * F_out + f];
    db[f] = s;
}

// One thread per row (C is small: 10 classes in every preset).
__global__ void softmax_error_kernel(const float* __restrict__ h,         // [N, C]
                                     const int32_t* __restrict__ labels,  // [N]
                                     float* __restrict__ probs,           // [N, C]
                                     float* __restrict__ e,               // [N, C]
                                     float* __restrict__ loss,            // [N]
                                     long long N, long long C) {
    const long long n = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    if (n >= N) return;
    const float* hr = h + n * C;
    float* pr = probs + n * C;
    float* er = e + n * C;
    float m = -INFINITY;
    for (long long c = 0; c < C; ++c) m = fmaxf(m, hr[c]);
    float sum = 0.0f;
    for (long long c = 0; c < C; ++c) sum += expf(hr[c] - m);
    const int32_t label = labels[n];
    const bool valid = label >= 0 && label < C;
    for (long long c = 0; c < C; ++c) {
        const float p = expf(hr[c] - m) / sum;
        pr[c] = p;
        er[c] = valid ? p - (c == label ? 1.0f : 0.0f) : NAN;
    }
    // −log(exp(h_y − m)/sum) = log(sum) − (h_y − m): finite even when the probability underflows.
    loss[n] = valid ? logf(sum) - (hr[label] - m) : NAN;
}

// Fused ΔW/ΔE/Δb of an FC layer and the projection of its error e to the layer below: all three
// read only e (and z, W/E, h), so one launch serves them. 1-D grid of kTile × kTile-thread blocks:
//   blocks [0, update_tiles)                 ΔW = eᵀ·z tile (as fc_update_kernel), ΔE = γ·ΔWᵀ when de
//   next bias_blocks (0 without db)          Δb[f] = Σ_n e[n, f], one thread per f (as fc_bias_update)
//   the rest, proj_tiles                     d = e·M tile; e_below = error_unit(h, d)·m/(1−p) when h,
//                                            else d itself (the pooling conv below unpools it next)
// update_cols = ceil(F_in / kTile) update tiles per row of tiles; proj_cols = ceil(F_in / kTile).
__global__ void fc_update_proj_kernel(const float* __restrict__ z,       // [N, F_in]
                                      const float* __restrict__ e,       // [N, F_out]
                                      const float* __restrict__ weight,  // [F_out, F_in] or [F_in, F_out]; proj
                                      const float* __restrict__ h,       // [N, F_in] or nullptr (store d)
                                      float* __restrict__ dw,            // [F_out, F_in]
                                      float* __restrict__ db,            // [F_out] or nullptr
                                      float* __restrict__ de,            // [F_in, F_out] or nullptr
                                      float* __restrict__ below,         // [N, F_in] e_below or d; proj only
                                      int N, int F_in, int F_out, float gamma, int update_tiles, int bias_blocks,
                                      int layout, int rule, int act, float beta, Dropout dropout) {
    const int tiles_x = (F_in + kTile - 1) / kTile;
    int b = blockIdx.x;
    if (b < update_tiles) {
        // A(o, n) = e[n, o]; B(n, i) = z[n, i]; K = N.
        const int i0 = (b / tiles_x) * kTile, j0 = (b % tiles_x) * kTile;
        const float acc = tile_gemm(e, 1, F_out, z, F_in, 1, F_out, F_in, N, i0, j0);
        const int o = i0 + threadIdx.y, i = j0 + threadIdx.x;
        if (o >= F_out || i >= F_in) return;
        dw[(long long)o * F_in + i] = acc;
        if (de != nullptr) de[(long long)i * F_out + o] = gamma * acc;
        return;
    }
    b -= update_tiles;
    if (b < bias_blocks) {
        const long long f = (long long)b * kTile * kTile + threadIdx.y * kTile + threadIdx.x;
        if (f >= F_out) return;
        float s = 0.0f;
        for (long long n = 0; n < N; ++n) s += e[n * F_out + f];
        db[f] = s;
        return;
    }
    b -= bias_blocks;
    // A(n, o) = e[n, o]; B(o, i) = W[o, i] (kOutIn) or E[i, o] (kInOut).
    const long long b_row = layout == kOutIn ? F_in : 1;
    const long long b_col = layout == kOutIn ? 1 : F_out;
    const int i0 = (b / tiles_x) * kTile, j0 = (b % tiles_x) * kTile;
    const float d = tile_gemm(e, F_out, 1, weight, b_row, b_col, N, F_in, F_out, i0, j0);
    const int n = i0 + threadIdx.y, i = j0 + threadIdx.x;
    if (n >= N || i >= F_in) return;
    const long long idx = (long long)n * F_in + i;
    below[idx] = h != nullptr
                     ? error_unit(rule, act, h[idx], d, beta) * dropout_factor(dropout, static_cast<uint32_t>(idx))
                     : d;
}

constexpr int kSoftmaxRows = 16;  // rows of the output layer per block of fc_softmax_error_kernel

// The output layer in one launch: h = z·Wᵀ + b, probs = softmax(h) row-wise and, with labels,
// e = probs − onehot(label), the batch's summed cross-entropy and correct-prediction count.
// Block = kThreads threads over kSoftmaxRows rows: the threads first form h for the block's
// rows × C (k summed in ascending order, as tile_gemm), then one thread per row takes its
// softmax, error, loss log(Σ exp(h − max)) − (h_y − max) and argmax (first maximum, as NumPy);
// thread 0 sums the rows' losses (double) and counts in row order into the block's partials, and
// the last block to finish (last_to_arrive: an integer ticket, no float atomics) sums the partials
// in block order into stats: deterministic whatever the block schedule. A label outside [0, C)
// makes its row of e and its loss NaN and is never correct. The ticket is 0 again after the launch.
__global__ void fc_softmax_error_kernel(const float* __restrict__ z,         // [N, F_in]
                                        const float* __restrict__ w,         // [C, F_in]
                                        const float* __restrict__ bias,      // [C] or nullptr
                                        const int32_t* __restrict__ labels,  // [N] or nullptr (inference)
                                        float* __restrict__ h,               // [N, C]
                                        float* __restrict__ probs,           // [N, C]
                                        float* __restrict__ e,               // [N, C]; labels only
                                        double* __restrict__ partial_loss,   // [gridDim.x]; labels only
                                        int* __restrict__ partial_correct,   // [gridDim.x]; labels only
                                        unsigned int* __restrict__ ticket,   // [1], 0 between launches
                                        double* __restrict__ loss,           // [1] Σ_n loss_n; labels only
                                        int* __restrict__ correct,           // [1] Σ_n [argmax = label]
                                        int N, int F_in, int C) {
    __shared__ double row_loss[kSoftmaxRows];
    __shared__ int row_correct[kSoftmaxRows];
    const int row0 = blockIdx.x * kSoftmaxRows;
    const int rows = min(kSoftmaxRows, N - row0);
    for (int p = threadIdx.x; p < rows * C; p += blockDim.x) {
        const int n = row0 + p / C, c = p % C;
        const float* zr = z + (long long)n * F_in;
        const float* wr = w + (long long)c * F_in;
        float acc = 0.0f;
        for (int k = 0; k < F_in; ++k) acc += zr[k] * wr[k];
        h[(long long)n * C + c] = bias != nullptr ? acc + bias[c] : acc;
    }
    __syncthreads();  // h of the block's rows is complete (global writes are visible within the block)
    if (threadIdx.x < kSoftmaxRows) {
        double l = 0.0;
        int hit = 0;
        if (threadIdx.x < rows) {
            const long long base = (long long)(row0 + threadIdx.x) * C;
            const float* hr = h + base;
            float m = -INFINITY;
            for (int c = 0; c < C; ++c) m = fmaxf(m, hr[c]);
            float sum = 0.0f;
            for (int c = 0; c < C; ++c) sum += expf(hr[c] - m);
            const int label = labels != nullptr ? labels[row0 + threadIdx.x] : -1;
            const bool valid = label >= 0 && label < C;
            float best = -1.0f;
            int arg = 0;
            for (int c = 0; c < C; ++c) {
                const float p = expf(hr[c] - m) / sum;
                probs[base + c] = p;
                if (p > best) best = p, arg = c;
                if (labels != nullptr) e[base + c] = valid ? p - (c == label ? 1.0f : 0.0f) : NAN;
            }
            l = valid ? double(logf(sum) - (hr[label] - m)) : double(NAN);
            hit = valid && arg == label;
        }
        row_loss[threadIdx.x] = l;
        row_correct[threadIdx.x] = hit;
    }
    if (labels == nullptr) return;
    __syncthreads();
    if (threadIdx.x == 0) {
        double l = 0.0;
        int hits = 0;
        for (int r = 0; r < kSoftmaxRows; ++r) l += row_loss[r], hits += row_correct[r];
        partial_loss[blockIdx.x] = l;
        partial_correct[blockIdx.x] = hits;
    }
    if (!last_to_arrive(ticket, gridDim.x) || threadIdx.x != 0) return;
    const volatile double* pl = partial_loss;
    const volatile int* pc = partial_correct;
    double total = 0.0;
    int total_correct = 0;
    for (unsigned int q = 0; q < gridDim.x; ++q) total += pl[q], total_correct += pc[q];
    *loss = total;
    *correct = total_correct;
}

// Blocks for a grid-stride loop over `count` elements.
unsigned int stride_blocks(long long count) {
    return static_cast<unsigned int>(std::min<long long>(ceil_div(count, kThreads), 65535LL * 16));
}

void require_sizes(const char* op, std::initializer_list<int64_t> sizes) {
    for (int64_t s : sizes) require(s >= 0, op, "sizes must be >= 0, got " + std::to_string(s));
}

void require_act(const char* op, int act) {
    require(act >= kTanh && act <= kSigmoid, op,
            "act must be an activation code in [0, 4], got " + std::to_string(act));
}

void require_rule(const char* op, int rule) {
    require(rule == kRuleEkdaa || rule == kRuleBp, op, "rule must be 0 (ekdaa) or 1 (bp), got " + std::to_string(rule));
}

// tile_gemm's reduction index k0 + kTile must not overflow int.
void require_gemm_k(const char* op, const char* name, int64_t K) {
    require(K <= INT32_MAX - kTile, op, std::string(name) + " must fit in int32, got " + std::to_string(K));
}

// Dropout counters are uint32 flat indices (ekdaa_cuda.ops checks this too).
void require_dropout_range(const char* op, const Dropout& dropout, int64_t count) {
    require(dropout.threshold == 0 || count <= (int64_t(1) << 32), op,
            "dropout on a tensor of " + std::to_string(count) + " elements exceeds the 2^32 mask index range");
}

void require_layout(const char* op, int layout) {
    require(layout == kOutIn || layout == kInOut, op,
            "layout must be 0 (out_in) or 1 (in_out), got " + std::to_string(layout));
}

}  // namespace

namespace {

// fc_fwd v2's tiles and splits (see fc_fwd_splitk_kernel), with every size checked for its int32
// index math; `splits` = 0 chooses, from the sizes only.
FcFwdPlan plan_fc_fwd(const char* op, int64_t N, int64_t F_in, int64_t F_out, int64_t splits) {
    require_sizes(op, {N, F_in, F_out});
    const auto fits = [&](const char* what, int64_t value) {
        require(value <= INT32_MAX, op, std::string(what) + " must fit in int32, got " + std::to_string(value));
    };
    fits("N·F_in", N * F_in);  // products of sizes below 2^31 each: no int64 overflow
    fits("F_out·F_in", F_out * F_in);
    fits("N·F_out", N * F_out);
    fits("F_in + 64", F_in + 2 * kFwdBK);  // k0 + lane runs a step past the last
    const int64_t tiles_n = (F_out + kFwdBN - 1) / kFwdBN;
    const int64_t tiles = (N + kFwdBM - 1) / kFwdBM * tiles_n;
    const int64_t steps = (F_in + kFwdBK - 1) / kFwdBK;
    if (splits == 0) {
        const int64_t want = (kFwdTargetBlocks + tiles - 1) / std::max<int64_t>(tiles, 1);
        splits = std::max<int64_t>(1, std::min({want, steps / kFwdMinSteps, int64_t(kFwdMaxSplits)}));
    } else {
        require(splits >= 1 && splits <= std::max<int64_t>(steps, 1), op,
                "splits must be 0 (chosen) or in [1, ceil(F_in / 32) = " + std::to_string(std::max<int64_t>(steps, 1)) +
                    "], got " + std::to_string(splits));
    }
    fits("blocks (tiles·splits)", tiles * splits);
    if (splits > 1) fits("workspace floats (tiles·splits·1024)", tiles * splits * kFwdTileFloats);
    return FcFwdPlan{int(tiles_n), int(tiles), int(splits), int(steps)};
}

}  // namespace

FcFwdSizes fc_fwd_sizes(int64_t N, int64_t F_in, int64_t F_out, int64_t splits) {
    const FcFwdPlan p = plan_fc_fwd("fc_fwd", N, F_in, F_out, splits);
    const int64_t tickets = p.splits > 1 ? p.tiles : 0;
    return FcFwdSizes{p.splits, tickets * p.splits * kFwdTileFloats, tickets};
}

void launch_fc_fwd(const float* z, const float* w, const float* b, float* h, float* out, float* partials,
                   unsigned int* tickets, int64_t partial_floats, int64_t ticket_count, int64_t N, int64_t F_in,
                   int64_t F_out, int act, bool apply_activation, Dropout dropout, int64_t splits,
                   cudaStream_t stream) {
    const char* op = "fc_fwd";
    require_act(op, act);
    const FcFwdPlan p = plan_fc_fwd(op, N, F_in, F_out, splits);
    if (N == 0 || F_out == 0) return;
    require_dropout_range(op, dropout, N * F_out);
    if (p.splits > 1) {
        const int64_t floats = int64_t(p.tiles) * p.splits * kFwdTileFloats;
        require(partials != nullptr && partial_floats >= floats, op,
                "workspace partials hold " + std::to_string(partials == nullptr ? 0 : partial_floats) +
                    " floats, " + std::to_string(p.splits) + " splits need " + std::to_string(floats) +
                    " (fc_fwd_sizes)");
        require(reinterpret_cast<std::uintptr_t>(partials) % 16 == 0, op,
                "workspace partials must be 16-byte aligned (float4 stores)");
        require(tickets != nullptr && ticket_count >= p.tiles, op,
                "workspace tickets hold " + std::to_string(tickets == nullptr ? 0 : ticket_count) + ", " +
                    std::to_string(p.splits) + " splits need " + std::to_string(p.tiles) + " (fc_fwd_sizes)");
    }
    fc_fwd_splitk_kernel<<<static_cast<unsigned int>(p.tiles * p.splits), kFwdThreads, 0, stream>>>(
        z, w, b, h, out, partials, tickets, int(N), int(F_in), int(F_out), p, act, apply_activation, dropout);
    CUDA_CHECK_LAUNCH(op, stream);
}

void launch_fc_fwd_v1(const float* z, const float* w, const float* b, float* h, float* out, int64_t N, int64_t F_in,
                      int64_t F_out, int act, bool apply_activation, Dropout dropout, cudaStream_t stream) {
    const char* op = "fc_fwd";
    require_sizes(op, {N, F_in, F_out});
    require_act(op, act);
    if (N == 0 || F_out == 0) return;
    require_gemm_k(op, "F_in", F_in);
    require_dropout_range(op, dropout, N * F_out);
    const dim3 grid = gemm_grid(op, N, F_out);
    fc_fwd_kernel<<<grid, dim3(kTile, kTile), 0, stream>>>(z, w, b, h, out, int(N), int(F_in), int(F_out), act,
                                                           apply_activation, dropout);
    CUDA_CHECK_LAUNCH(op, stream);
}

void launch_fc_proj(const float* e, const float* weight, float* d, int64_t N, int64_t F_in, int64_t F_out, int layout,
                    cudaStream_t stream) {
    const char* op = "fc_proj";
    require_sizes(op, {N, F_in, F_out});
    require_layout(op, layout);
    if (N == 0 || F_in == 0) return;
    require_gemm_k(op, "F_out", F_out);
    const dim3 grid = gemm_grid(op, N, F_in);
    fc_proj_kernel<false><<<grid, dim3(kTile, kTile), 0, stream>>>(e, weight, nullptr, d, int(N), int(F_in),
                                                                   int(F_out), layout, kRuleEkdaa, kLinear, 0.0f,
                                                                   Dropout{0, 0, 1.0f});
    CUDA_CHECK_LAUNCH(op, stream);
}

void launch_fc_error_proj(const float* e, const float* weight, const float* h, float* e_below, int64_t N, int64_t F_in,
                          int64_t F_out, int layout, int rule, int act, float beta, Dropout dropout,
                          cudaStream_t stream) {
    const char* op = "fc_error_proj";
    require_sizes(op, {N, F_in, F_out});
    require_layout(op, layout);
    require_rule(op, rule);
    require_act(op, act);
    if (N == 0 || F_in == 0) return;
    require_gemm_k(op, "F_out", F_out);
    require_dropout_range(op, dropout, N * F_in);
    const dim3 grid = gemm_grid(op, N, F_in);
    fc_proj_kernel<true><<<grid, dim3(kTile, kTile), 0, stream>>>(e, weight, h, e_below, int(N), int(F_in),
                                                                  int(F_out), layout, rule, act, beta, dropout);
    CUDA_CHECK_LAUNCH(op, stream);
}

void launch_error_epilogue(const float* d, const float* h, float* e, int64_t count, int rule, int act, float beta,
                           Dropout dropout, cudaStream_t stream) {
    const char* op = "error_epilogue";
    require_sizes(op, {count});
    require_rule(op, rule);
    require_act(op, act);
    if (count == 0) return;
    require_dropout_range(op, dropout, count);
    error_epilogue_kernel<<<stride_blocks(count), kThreads, 0, stream>>>(d, h, e, count, rule, act, beta, dropout);
    CUDA_CHECK_LAUNCH(op, stream);
}

void launch_fc_update(const float* z, const float* e, float* dw, float* de, int64_t N, int64_t F_in, int64_t F_out,
                      float gamma, cudaStream_t stream) {
    const char* op = "fc_update";
    require_sizes(op, {N, F_in, F_out});
    if (F_out == 0 || F_in == 0) return;  // N = 0 still writes ΔW = 0 (an empty sum)
    require_gemm_k(op, "N", N);
    const dim3 grid = gemm_grid(op, F_out, F_in);
    fc_update_kernel<<<grid, dim3(kTile, kTile), 0, stream>>>(z, e, dw, de, int(N), int(F_in), int(F_out), gamma);
    CUDA_CHECK_LAUNCH(op, stream);
}

void launch_fc_bias_update(const float* e, float* db, int64_t N, int64_t F_out, cudaStream_t stream) {
    const char* op = "fc_bias_update";
    require_sizes(op, {N, F_out});
    if (F_out == 0) return;
    require(F_out / kThreads < INT32_MAX, op, "F_out too large for the grid");
    fc_bias_update_kernel<<<ceil_div(F_out, kThreads), kThreads, 0, stream>>>(e, db, N, F_out);
    CUDA_CHECK_LAUNCH(op, stream);
}

void launch_softmax_error(const float* h, const int32_t* labels, float* probs, float* e, float* loss, int64_t N,
                          int64_t C, cudaStream_t stream) {
    const char* op = "softmax_error";
    require_sizes(op, {N, C});
    if (N == 0) return;
    require(N / kThreads < INT32_MAX, op, "N too large for the grid");
    softmax_error_kernel<<<ceil_div(N, kThreads), kThreads, 0, stream>>>(h, labels, probs, e, loss, N, C);
    CUDA_CHECK_LAUNCH(op, stream);
}

void launch_fc_update_proj(const float* z, const float* e, const float* weight, const float* h, float* dw, float* db,
                           float* de, float* below, int64_t N, int64_t F_in, int64_t F_out, float gamma, int layout,
                           int rule, int act, float beta, Dropout dropout, cudaStream_t stream) {
    const char* op = "fc_update_proj";
    require_sizes(op, {N, F_in, F_out});
    require_layout(op, layout);
    require_rule(op, rule);
    require_act(op, act);
    if (F_out == 0 || F_in == 0) return;
    require_gemm_k(op, "N", N);
    require_gemm_k(op, "F_out", F_out);
    require(N <= INT32_MAX - kTile && F_out <= INT32_MAX - kTile, op, "N and F_out must fit in int32");
    require_dropout_range(op, dropout, N * F_in);
    const int64_t tiles_x = ceil_div(F_in, kTile);
    const int64_t update_tiles = ceil_div(F_out, kTile) * tiles_x;
    const int64_t bias_blocks = db != nullptr ? ceil_div(F_out, kTile * kTile) : 0;
    const int64_t proj_tiles = below != nullptr ? ceil_div(N, kTile) * tiles_x : 0;
    const int64_t blocks = update_tiles + bias_blocks + proj_tiles;
    require(blocks <= INT32_MAX, op, "too many blocks for the grid: " + std::to_string(blocks));
    fc_update_proj_kernel<<<static_cast<unsigned int>(blocks), dim3(kTile, kTile), 0, stream>>>(
        z, e, weight, h, dw, db, de, below, int(N), int(F_in), int(F_out), gamma, int(update_tiles),
        int(bias_blocks), layout, rule, act, beta, dropout);
    CUDA_CHECK_LAUNCH(op, stream);
}

int64_t fc_softmax_error_blocks(int64_t N) { return ceil_div(N, kSoftmaxRows); }

void launch_fc_softmax_error(const float* z, const float* w, const float* b, const int32_t* labels, float* h,
                             float* probs, float* e, double* partial_loss, int* partial_correct, unsigned int* ticket,
                             double* loss, int* correct, int64_t N, int64_t F_in, int64_t C, cudaStream_t stream) {
    const char* op = "fc_softmax_error";
    require_sizes(op, {N, F_in, C});
    require(C >= 1, op, "C must be >= 1, got " + std::to_string(C));
    require(N <= INT32_MAX - kSoftmaxRows && F_in <= INT32_MAX && C * kSoftmaxRows <= INT32_MAX, op,
            "N, F_in and 16·C must fit in int32");
    require(labels == nullptr || (e != nullptr && partial_loss != nullptr && partial_correct != nullptr &&
                                  ticket != nullptr && loss != nullptr && correct != nullptr),
            op, "with labels, e, the partials, the ticket, loss and correct are all needed");
    if (N == 0) return;
    fc_softmax_error_kernel<<<ceil_div(N, kSoftmaxRows), kThreads, 0, stream>>>(
        z, w, b, labels, h, probs, e, partial_loss, partial_correct, ticket, loss, correct, int(N), int(F_in), int(C));
    CUDA_CHECK_LAUNCH(op, stream);
}

}  // namespace ekdaa

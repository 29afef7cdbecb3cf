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
// integer inputs. Test: `pytest tests/gpu/test_ops_fc.py` (the CPU simulator, and the GPU when
// there is one). No benchmark yet.
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
// the last block to finish (an integer ticket, no float atomics) sums the partials in block order
// into stats: deterministic whatever the block schedule. A label outside [0, C) makes its row of
// e and its loss NaN and is never correct. The last block resets the ticket for the next launch.
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
        __threadfence();  // the partials are visible device-wide before the ticket is taken
        if (atomicAdd(ticket, 1u) == gridDim.x - 1) {
            const volatile double* pl = partial_loss;
            const volatile int* pc = partial_correct;
            double total = 0.0;
            int total_correct = 0;
            for (unsigned int q = 0; q < gridDim.x; ++q) total += pl[q], total_correct += pc[q];
            *loss = total;
            *correct = total_correct;
            *ticket = 0u;
        }
    }
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

void launch_fc_fwd(const float* z, const float* w, const float* b, float* h, float* out, int64_t N, int64_t F_in,
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

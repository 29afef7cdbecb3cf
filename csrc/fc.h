// fc.h — launchers of the fully-connected kernels (implemented in fc.cu; equations there) and
// the per-element error epilogue they share (tests/gpu/test_ops_fc.py checks it against
// ekdaa_cuda.reference, on the CPU simulator and on a GPU).
//
// All tensors are float32, row-major and contiguous; FC weights use PyTorch's [F_out, F_in]
// layout, EKDAA error weights E are stored as Wᵀ, i.e. [F_in, F_out].
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "elementwise.cuh"

namespace ekdaa {

// How the error of the layer below is formed from its projected error d (codes shared with
// ekdaa_cuda.ops.fc.RULE_CODES).
enum ErrorRule : int {
    kRuleEkdaa = 0,  // e = φ(h) − φ(h − βd)      (SPEC.md step 3, eq. 8)
    kRuleBp = 1,     // e = d · φ'(h)             (backprop's δ; FA uses it with a random B)
};

// Layout of the matrix an error is projected through (ekdaa_cuda.ops.fc.LAYOUT_CODES).
enum WeightLayout : int {
    kOutIn = 0,  // W [F_out, F_in]: d = e·W
    kInOut = 1,  // E [F_in, F_out]: d = e·Eᵀ
};

// Inverted dropout of one layer in one launch: element `index` (flat C-order) is kept iff
// dropout_keep(key, index, threshold), and kept elements are multiplied by `scale` = 1/(1−p)
// (rounded to float32 on the host). threshold = 0 keeps everything.
struct Dropout {
    uint32_t key;
    uint32_t threshold;
    float scale;
};

// The factor m/(1−p) for one element: 0 when dropped, `scale` when kept.
EKDAA_HD float dropout_factor(const Dropout& dp, uint32_t index) {
    if (dp.threshold == 0) return dp.scale;
    return dropout_keep(dp.key, index, dp.threshold) ? dp.scale : 0.0f;
}

// Error of one unit of the layer below, before dropout: EKDAA's target error or BP's δ.
EKDAA_HD float error_unit(int rule, int act, float h, float d, float beta) {
    return rule == kRuleBp ? d * activation_derivative<float>(act, h) : target_error<float>(act, h, d, beta);
}

// How launch_fc_fwd (v2) splits its work for given sizes: 32 × 32 output tiles, K = F_in cut into
// `splits` ranges of 32-wide steps, one block per (tile, range); with splits > 1 the blocks' partial
// tiles go to a workspace of `floats` floats and `tickets` counters (the last block of a tile sums
// them in range order).
struct FcFwdSizes {
    int64_t splits;   // K ranges (1: no workspace)
    int64_t floats;   // partials: [tiles, splits, 32·32], 0 when splits = 1
    int64_t tickets;  // one per tile, 0 when splits = 1
};

// The plan of launch_fc_fwd for these sizes; `splits` = 0 lets the launcher choose (from the sizes
// only: about 264 blocks, two per SM of a 132-SM H100/H200), else 1 <= splits <= ceil(F_in / 32)
// forces it (tests, benchmarks). Throws std::invalid_argument on sizes it cannot run.
FcFwdSizes fc_fwd_sizes(int64_t N, int64_t F_in, int64_t F_out, int64_t splits);

// h = z·Wᵀ + b; out = (apply_activation ? φ(h) : h) · m/(1−p), m from `dropout` at index n·F_out + f.
// v2: one launch of a register-blocked split-K GEMM (fc_fwd_sizes); a tile's partials are summed in
// range order by the last of its blocks to arrive (an integer ticket, no float atomics), so h is
// bitwise the same whatever the block schedule. The workspace is scratch except the tickets, which
// must be 0 before the launch and are 0 again after it (as every launch leaves them).
void launch_fc_fwd(const float* z,         // [N, F_in]
                   const float* w,         // [F_out, F_in]
                   const float* b,         // [F_out], or nullptr for no bias
                   float* h,               // [N, F_out]
                   float* out,             // [N, F_out]
                   float* partials,        // [partial_floats] >= fc_fwd_sizes(...).floats, 16-byte aligned
                   unsigned int* tickets,  // [ticket_count] >= fc_fwd_sizes(...).tickets, all 0
                   int64_t partial_floats, int64_t ticket_count, int64_t N, int64_t F_in, int64_t F_out, int act,
                   bool apply_activation, Dropout dropout, int64_t splits, cudaStream_t stream);

// The same outputs by the first kernel (one output per thread, 16 × 16 tiles, K summed serially in
// one block): benchmark-only (bench/micro.py), equal to v2 bitwise on integer-valued inputs.
void launch_fc_fwd_v1(const float* z,  // [N, F_in]
                      const float* w,  // [F_out, F_in]
                      const float* b,  // [F_out], or nullptr for no bias
                      float* h,        // [N, F_out]
                      float* out,      // [N, F_out]
                      int64_t N, int64_t F_in, int64_t F_out, int act, bool apply_activation, Dropout dropout,
                      cudaStream_t stream);

// d = e·W (layout kOutIn) or d = e·Eᵀ (layout kInOut).
void launch_fc_proj(const float* e,       // [N, F_out]
                    const float* weight,  // [F_out, F_in] (kOutIn) or [F_in, F_out] (kInOut)
                    float* d,             // [N, F_in]
                    int64_t N, int64_t F_in, int64_t F_out, int layout, cudaStream_t stream);

// e_below = error_unit(rule, act, h, d, β) · m/(1−p) with d = the projection above, without
// storing d; m from the layer below's `dropout` at index n·F_in + i.
void launch_fc_error_proj(const float* e,       // [N, F_out]
                          const float* weight,  // [F_out, F_in] (kOutIn) or [F_in, F_out] (kInOut)
                          const float* h,       // [N, F_in]  pre-activation of the layer below
                          float* e_below,       // [N, F_in]
                          int64_t N, int64_t F_in, int64_t F_out, int layout, int rule, int act, float beta,
                          Dropout dropout, cudaStream_t stream);

// The same epilogue alone, elementwise over a flat tensor: e[i] = error_unit(h[i], d[i]) · m_i/(1−p).
void launch_error_epilogue(const float* d,  // [count]
                           const float* h,  // [count]
                           float* e,        // [count]
                           int64_t count, int rule, int act, float beta, Dropout dropout, cudaStream_t stream);

// ΔW = eᵀ·z summed over the batch, and ΔE = γ·ΔWᵀ, by one kernel (fixed summation order).
void launch_fc_update(const float* z,  // [N, F_in]
                      const float* e,  // [N, F_out]
                      float* dw,       // [F_out, F_in]
                      float* de,       // [F_in, F_out]
                      int64_t N, int64_t F_in, int64_t F_out, float gamma, cudaStream_t stream);

// Δb = Σ_n e[n, :] (fixed summation order).
void launch_fc_bias_update(const float* e,  // [N, F_out]
                           float* db,       // [F_out]
                           int64_t N, int64_t F_out, cudaStream_t stream);

// probs = softmax(h) row-wise, e = probs − onehot(label), loss[n] = −log probs[n, label_n].
// A label outside [0, C) makes that row's e and loss NaN (probs are still written).
void launch_softmax_error(const float* h,          // [N, C]
                          const int32_t* labels,   // [N]
                          float* probs,            // [N, C]
                          float* e,                // [N, C]
                          float* loss,             // [N]
                          int64_t N, int64_t C, cudaStream_t stream);

// One launch for an FC layer's updates and its error's projection to the layer below (both read
// only e): dw = eᵀ·z; de = γ·dwᵀ unless de is nullptr; db = Σ_n e unless db is nullptr; and, unless
// below is nullptr, d = e·M (M = weight in `layout`) stored as below = error_unit(rule, act, h, d, β)
// · m/(1−p) when h is given (m from the layer below's `dropout` at index n·F_in + i), else as d.
void launch_fc_update_proj(const float* z,       // [N, F_in]
                           const float* e,       // [N, F_out]
                           const float* weight,  // [F_out, F_in] (kOutIn) or [F_in, F_out] (kInOut); with below
                           const float* h,       // [N, F_in] pre-activation of the layer below, or nullptr
                           float* dw,            // [F_out, F_in]
                           float* db,            // [F_out] or nullptr
                           float* de,            // [F_in, F_out] or nullptr
                           float* below,         // [N, F_in] or nullptr (no projection: the first layer)
                           int64_t N, int64_t F_in, int64_t F_out, float gamma, int layout, int rule, int act,
                           float beta, Dropout dropout, cudaStream_t stream);

// Blocks of launch_fc_softmax_error for a batch of N rows: the length of its partial arrays.
int64_t fc_softmax_error_blocks(int64_t N);

// The output layer in one launch: h = z·Wᵀ + b, probs = softmax(h); with labels also
// e = probs − onehot(label), loss[0] = Σ_n (log Σ_c exp(h_nc − max_n) − (h_n,label − max_n)) in
// double and correct[0] = #{n : argmax_c probs_nc = label_n}, reduced in a fixed order (block
// partials, then the last block sums them in block order; `ticket` must be 0 before the launch
// and is 0 again after it). A label outside [0, C) gives a NaN row of e and a NaN loss.
void launch_fc_softmax_error(const float* z,           // [N, F_in]
                             const float* w,           // [C, F_in]
                             const float* b,           // [C] or nullptr
                             const int32_t* labels,    // [N] or nullptr (inference: probs only)
                             float* h,                 // [N, C]
                             float* probs,             // [N, C]
                             float* e,                 // [N, C]; with labels
                             double* partial_loss,     // [fc_softmax_error_blocks(N)]; with labels
                             int* partial_correct,     // [fc_softmax_error_blocks(N)]; with labels
                             unsigned int* ticket,     // [1]; with labels
                             double* loss,             // [1]; with labels
                             int* correct,             // [1]; with labels
                             int64_t N, int64_t F_in, int64_t C, cudaStream_t stream);

}  // namespace ekdaa

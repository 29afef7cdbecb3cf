// conv.cu — conv-family kernels of EKDAA (SPEC.md "Network", "Forward", "EKDAA update" 3–4).
//
//   conv_block_fwd      h = conv(x, W) + b, z = φ(h) ⊙ m/(1−p), out = maxpool2x2(z) + argmax   (eq. 3–4)
//   conv_error_proj     d = convT(e_above, K) (K = E for EKDAA, W for BP), unpooled to h's resolution at
//                       the argmax (eq. 7), then e = (φ(h) − φ(h − βd)) ⊙ m/(1−p)   [rule "ekdaa", eq. 8]
//                                                  e = d ⊙ φ'(h) ⊙ m/(1−p)         [rule "bp"]
//   unpool_error        the same unpool + epilogue for a d already in memory (e.g. an FC layer's, flattened)
//   conv_proj           d = convT(e, K) alone (the release's normalize-by-max(d) path)
//   unpool_bilinear     TF2 bilinear resize, half-pixel centres (the release's unpool)
//   conv_filter_update  ΔW = z ⋆ Flip(e) (conv-backward-filter), Δb = Σ e, ΔE = γ·ΔW      (eq. 9–10)
//
// Layout: float32 NCHW, contiguous; weights [C_out, C_in, k, k]; k odd, stride 1, same padding.
// Every kernel is a thin wrapper over a per-thread body in conv.h (one output, or one 2x2 pool
// cell, per thread; no shared memory except the filter update's fixed-order block reduction).
// Test: `pytest tests/gpu/test_ops_conv.py` (the CPU simulator, and the GPU when there is one).
#include <cmath>
#include <initializer_list>
#include <string>

#include "common.cuh"
#include "conv.h"

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

void launch_conv_block_fwd(const float* x, const float* w, const float* b, float* h, float* out, uint8_t* argmax,
                           int64_t N, int64_t C_in, int64_t C_out, int64_t H, int64_t W, int64_t k, int act,
                           bool apply_activation, bool pool, Dropout dropout, cudaStream_t stream) {
    const char* op = "conv_block_fwd";
    const ConvBlockFwdArgs a{x, w, b, h, out, argmax, N, C_in, C_out, H, W, k, act, apply_activation, pool, dropout};
    check_conv_block_fwd(op, a);
    const int64_t threads = conv_block_fwd_threads(a);
    if (threads == 0) return;
    conv_block_fwd_kernel<<<blocks_for(op, threads), kThreads, 0, stream>>>(a, threads);
    CUDA_CHECK_LAUNCH(op, stream);
}

void launch_conv_error_proj(const float* e, const float* kernel, const float* h, const uint8_t* argmax, float* e_below,
                            int64_t N, int64_t C_in, int64_t C_out, int64_t Hp, int64_t Wp, int64_t Hh, int64_t Wh,
                            int64_t k, bool pool, int rule, int act, float beta, Dropout dropout,
                            cudaStream_t stream) {
    const char* op = "conv_error_proj";
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

void launch_conv_filter_update(const float* z, const float* e, float* dw, float* db, float* de, int64_t N,
                               int64_t C_in, int64_t C_out, int64_t H, int64_t W, int64_t k, float gamma,
                               cudaStream_t stream) {
    const char* op = "conv_filter_update";
    const FilterUpdateArgs a{z, e, dw, db, de, N, C_in, C_out, H, W, k, gamma};
    check_filter_update(op, a);
    const int64_t blocks = filter_update_outputs(a);  // one block per output
    if (blocks == 0) return;
    require(blocks <= INT32_MAX, op, "too many outputs for the grid: " + std::to_string(blocks));
    conv_filter_update_kernel<<<static_cast<unsigned int>(blocks), kFilterUpdateThreads, 0, stream>>>(a);
    CUDA_CHECK_LAUNCH(op, stream);
}

}  // namespace ekdaa

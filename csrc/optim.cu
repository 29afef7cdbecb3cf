// optim.cu — one optimizer step over all parameter tensors of a model (W, b, E of every layer)
// in at most two launches (SPEC.md "Optimisers and training"). The rule's updates Δ are the
// gradients: W ← W − λ·step(Δ).
//
//   launch 1 (rho > 0 only)  optim_sq_norm_kernel: partial[c] = Σ_{i ∈ chunk c} Δ_i²
//   launch 2                 optim_update_kernel:  ‖Δ‖²_F = Σ partials of the tensor (fixed order);
//                            Pascanu: Δ ← ρΔ/‖Δ‖_F if ‖Δ‖_F > ρ; then per element (and
//                            nonfinite[t] = 1 when an update or a new parameter of tensor t is not finite)
//     sgd      v ← μv + Δ;                       p ← p − λv
//     adam     m ← β1 m + (1−β1)Δ; v ← β2 v + (1−β2)Δ²;  p ← p − λ (m/(1−β1^t)) / (√(v/(1−β2^t)) + ε)
//     rmsprop  s ← ρ_d s + (1−ρ_d)Δ²;            p ← p − λΔ / (√s + ε)
//     then, with weight decay wd > 0 (decoupled), p ← p − λ·wd·p_old (p_old: p before the step)
//
// Layout: every tensor is a flat contiguous float32 array. The tensors travel as small device
// tables of int64 (addresses and sizes) built by ekdaa_cuda.ops.optim; each tensor is cut into
// chunks of kOptimChunk elements and one block handles one chunk. Reductions use a fixed
// assignment of elements to threads and a fixed tree, so steps are bit-for-bit reproducible.
// Test: `pytest tests/gpu/test_ops_optim.py` (the CPU simulator, and the GPU when there is one)
// and `pytest tests/test_optim_args.py` (the table construction). No benchmark yet.
#include <string>

#include "common.cuh"
#include "optim.h"

namespace ekdaa {
namespace {

constexpr int kThreads = 256;  // threads per block; a power of two for the tree reduction
static_assert((kThreads & (kThreads - 1)) == 0, "the tree reduction needs a power of 2");

__global__ void optim_sq_norm_kernel(const int64_t* __restrict__ grad_ptrs,      // [T]
                                     const int64_t* __restrict__ sizes,          // [T]
                                     const int64_t* __restrict__ chunk_offsets,  // [T + 1]
                                     float* __restrict__ partial) {              // [n_chunks]
    __shared__ float sums[kThreads];
    const int64_t c = blockIdx.x;
    const int64_t t = tensor_of_chunk(chunk_offsets, c);
    const float* g = reinterpret_cast<const float*>(grad_ptrs[t]);
    const int64_t begin = (c - chunk_offsets[t]) * kOptimChunk;
    const int64_t end = min(begin + kOptimChunk, sizes[t]);
    float s = 0.0f;
    for (int64_t i = begin + threadIdx.x; i < end; i += kThreads) s += g[i] * g[i];
    sums[threadIdx.x] = s;
    __syncthreads();
    for (int half = kThreads / 2; half > 0; half /= 2) {
        if (threadIdx.x < half) sums[threadIdx.x] += sums[threadIdx.x + half];
        __syncthreads();
    }
    if (threadIdx.x == 0) partial[c] = sums[0];
}

__global__ void optim_update_kernel(const int64_t* __restrict__ param_ptrs,     // [T]
                                    const int64_t* __restrict__ grad_ptrs,      // [T]
                                    const int64_t* __restrict__ state1_ptrs,    // [T]
                                    const int64_t* __restrict__ state2_ptrs,    // [T]
                                    const int64_t* __restrict__ sizes,          // [T]
                                    const int64_t* __restrict__ chunk_offsets,  // [T + 1]
                                    const float* __restrict__ lrs,              // [T]
                                    const float* __restrict__ partial,          // [n_chunks]
                                    int* __restrict__ nonfinite,                // [T] or nullptr
                                    OptimHyper hp) {
    __shared__ float factor;  // Pascanu factor of this block's tensor
    const int64_t c = blockIdx.x;
    const int64_t t = tensor_of_chunk(chunk_offsets, c);
    if (threadIdx.x == 0) {
        // Every block of tensor t sums the same partials in the same order: identical factors.
        float sq = 0.0f;
        if (hp.rho > 0.0f)
            for (int64_t q = chunk_offsets[t]; q < chunk_offsets[t + 1]; ++q) sq += partial[q];
        factor = pascanu_factor(sq, hp.rho);
    }
    __syncthreads();
    float* p = reinterpret_cast<float*>(param_ptrs[t]);
    const float* g = reinterpret_cast<const float*>(grad_ptrs[t]);
    float* s1 = reinterpret_cast<float*>(state1_ptrs[t]);
    float* s2 = reinterpret_cast<float*>(state2_ptrs[t]);
    const float lr = lrs[t];
    const int64_t begin = (c - chunk_offsets[t]) * kOptimChunk;
    const int64_t end = min(begin + kOptimChunk, sizes[t]);
    bool finite = true;
    for (int64_t i = begin + threadIdx.x; i < end; i += kThreads) {
        float pv = p[i];
        float s1v = s1 != nullptr ? s1[i] : 0.0f;
        float s2v = s2 != nullptr ? s2[i] : 0.0f;
        const float gv = g[i];
        optim_apply(hp, lr, gv * factor, pv, s1v, s2v);
        finite = finite && isfinite(gv) && isfinite(pv);
        p[i] = pv;
        if (s1 != nullptr) s1[i] = s1v;
        if (s2 != nullptr) s2[i] = s2v;
    }
    // Sticky: only ever set to 1 (every writer stores the same value), cleared by the host.
    if (!finite && nonfinite != nullptr) nonfinite[t] = 1;
}

void require_tables(const char* op, int64_t T, int64_t n_chunks) {
    require(T >= 1, op, "need at least one tensor, got T=" + std::to_string(T));
    require(n_chunks >= 0 && n_chunks <= INT32_MAX, op,
            "n_chunks must be in [0, 2^31), got " + std::to_string(n_chunks));
}

}  // namespace

void launch_optim_sq_norm(const int64_t* grad_ptrs, const int64_t* sizes, const int64_t* chunk_offsets, float* partial,
                          int64_t T, int64_t n_chunks, cudaStream_t stream) {
    const char* op = "optim_sq_norm";
    require_tables(op, T, n_chunks);
    if (n_chunks == 0) return;
    optim_sq_norm_kernel<<<static_cast<unsigned int>(n_chunks), kThreads, 0, stream>>>(grad_ptrs, sizes, chunk_offsets,
                                                                                       partial);
    CUDA_CHECK_LAUNCH(op, stream);
}

void launch_optim_update(const int64_t* param_ptrs, const int64_t* grad_ptrs, const int64_t* state1_ptrs,
                         const int64_t* state2_ptrs, const int64_t* sizes, const int64_t* chunk_offsets,
                         const float* lrs, const float* partial, int* nonfinite, int64_t T, int64_t n_chunks,
                         OptimHyper hyper, cudaStream_t stream) {
    const char* op = "optim_update";
    require_tables(op, T, n_chunks);
    require(hyper.kind == kSgd || hyper.kind == kAdam || hyper.kind == kRmsprop, op,
            "kind must be 0 (sgd), 1 (adam) or 2 (rmsprop), got " + std::to_string(hyper.kind));
    require(hyper.rho <= 0.0f || partial != nullptr, op, "rho > 0 needs the partial norms of launch 1");
    if (n_chunks == 0) return;
    optim_update_kernel<<<static_cast<unsigned int>(n_chunks), kThreads, 0, stream>>>(
        param_ptrs, grad_ptrs, state1_ptrs, state2_ptrs, sizes, chunk_offsets, lrs, partial, nonfinite, hyper);
    CUDA_CHECK_LAUNCH(op, stream);
}

}  // namespace ekdaa

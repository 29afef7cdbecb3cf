// optim.h — multi-tensor optimizer step (implemented in optim.cu; equations there) and its
// per-element functions (tests/gpu/test_ops_optim.py checks them against ekdaa_cuda.reference,
// on the CPU simulator and on a GPU).
#pragma once

#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "elementwise.cuh"  // EKDAA_HD

namespace ekdaa {

// Codes shared with Python: the index in ekdaa_cuda.reference.OPTIMIZERS.
enum OptimKind : int { kSgd = 0, kAdam = 1, kRmsprop = 2 };

// Elements per chunk: launch 1 writes one squared-norm partial per chunk, launch 2 updates
// one chunk per block. Exposed to Python as _C.OPTIM_CHUNK (it builds the chunk table).
constexpr int64_t kOptimChunk = 8192;

// Scalars of one step. bias_correction1/2 = 1 − β1^t, 1 − β2^t (computed on the host in double).
struct OptimHyper {
    int kind;
    float momentum;                                    // sgd
    float beta1, beta2, bias_correction1, bias_correction2;  // adam
    float decay;                                       // rmsprop
    float eps;                                         // adam, rmsprop
    float rho;                                         // Pascanu threshold; 0 = off
    float weight_decay;                                // decoupled: p ← p − λ·wd·p_old; 0 = off
};

// Pascanu rescaling factor for an update with squared Frobenius norm `sq_norm`:
// ρ/‖Δ‖_F when ρ > 0 and ‖Δ‖_F > ρ, else 1.
EKDAA_HD float pascanu_factor(float sq_norm, float rho) {
    const float norm = sqrtf(sq_norm);
    return (rho > 0.0f && norm > rho) ? rho / norm : 1.0f;
}

// One element's step with (already rescaled) update g, then the decoupled weight decay on the
// parameter as it was before the step (Loshchilov & Hutter's AdamW/SGDW). State: sgd s1 = velocity v;
// adam s1 = m, s2 = v; rmsprop s1 = s. Unused state slots are left untouched.
EKDAA_HD void optim_apply(const OptimHyper& hp, float lr, float g, float& p, float& s1, float& s2) {
    const float decay_step = lr * hp.weight_decay * p;
    switch (hp.kind) {
        case kSgd:  // v ← μv + Δ; p ← p − λv (PyTorch; μ = 0 is plain SGD)
            s1 = hp.momentum * s1 + g;
            p -= lr * s1;
            break;
        case kAdam: {  // m ← β1 m + (1−β1)Δ; v ← β2 v + (1−β2)Δ²; p ← p − λ m̂ / (√v̂ + ε)
            s1 = hp.beta1 * s1 + (1.0f - hp.beta1) * g;
            s2 = hp.beta2 * s2 + (1.0f - hp.beta2) * g * g;
            const float m_hat = s1 / hp.bias_correction1;
            const float v_hat = s2 / hp.bias_correction2;
            p -= lr * m_hat / (sqrtf(v_hat) + hp.eps);
            break;
        }
        default:  // kRmsprop: s ← ρ_d s + (1−ρ_d)Δ²; p ← p − λΔ / (√s + ε)
            s1 = hp.decay * s1 + (1.0f - hp.decay) * g * g;
            p -= lr * g / (sqrtf(s1) + hp.eps);
            break;
    }
    p -= decay_step;
}

// Index of the tensor that owns chunk c: chunk_offsets[t] <= c < chunk_offsets[t + 1]
// (tensors without elements own no chunk).
EKDAA_HD int64_t tensor_of_chunk(const int64_t* chunk_offsets, int64_t c) {
    int64_t t = 0;
    while (chunk_offsets[t + 1] <= c) ++t;
    return t;
}

// The tables describe T tensors; every `*_ptrs` entry is a device address of a float32 array
// of sizes[t] elements (0 where unused). chunk_offsets[t] = Σ_{u<t} ceil(sizes[u] / kOptimChunk),
// chunk_offsets[T] = n_chunks.

// Launch 1 (only when rho > 0): partial[c] = Σ Δ² over chunk c, fixed-order block reduction.
void launch_optim_sq_norm(const int64_t* grad_ptrs,      // [T]
                          const int64_t* sizes,          // [T]
                          const int64_t* chunk_offsets,  // [T + 1]
                          float* partial,                // [n_chunks]
                          int64_t T, int64_t n_chunks, cudaStream_t stream);

// Launch 2: per tensor, ‖Δ‖²_F = Σ of its partials (fixed order, when rho > 0), Pascanu factor,
// then the optimizer step on every element; params and state are updated in place. When an
// update Δ or a new parameter of tensor t is NaN or ±inf, nonfinite[t] is set to 1 (never
// cleared here: the flag is sticky until the host clears it, so training reads it only now and then).
void launch_optim_update(const int64_t* param_ptrs,     // [T]
                         const int64_t* grad_ptrs,      // [T]
                         const int64_t* state1_ptrs,    // [T]
                         const int64_t* state2_ptrs,    // [T] (0 except for adam)
                         const int64_t* sizes,          // [T]
                         const int64_t* chunk_offsets,  // [T + 1]
                         const float* lrs,              // [T] learning rate of each tensor
                         const float* partial,          // [n_chunks] from launch 1 (read only if rho > 0)
                         int* nonfinite,                // [T] sticky flags, or nullptr
                         int64_t T, int64_t n_chunks, OptimHyper hyper, cudaStream_t stream);

}  // namespace ekdaa

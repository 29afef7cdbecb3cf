// elementwise.cuh — per-element functions shared by the kernels (on the CPU they run inside the
// kernels on the simulator, ekdaa_cuda._sim; tests in tests/gpu check them against
// ekdaa_cuda.reference).
//
//   activate(a, h)                 φ(h), φ ∈ {tanh, relu, signum, linear, sigmoid}
//   activation_derivative(a, h)    φ'(h), used by the BP rule only (EKDAA never calls it)
//   target_error(a, h, d, beta)    e = φ(h) − φ(h − βd)   (SPEC.md step 3: y = φ(h − βd), e = φ(h) − y)
//   dropout_keep                   counter-based dropout: keep(key, index), key = reference.dropout_key
//                                  (seed, step, layer) from Python, so a mask is regenerated in the
//                                  backward pass instead of stored
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define EKDAA_HD __host__ __device__ __forceinline__
#else
#define EKDAA_HD inline
#endif

namespace ekdaa {

// Integer codes shared with Python (ekdaa_cuda.reference.ACTIVATION_CODES).
enum Activation : int { kTanh = 0, kRelu = 1, kSignum = 2, kLinear = 3, kSigmoid = 4 };

template <typename T>
EKDAA_HD T activate(int act, T x) {
    switch (act) {
        case kTanh: return tanh(x);
        case kRelu: return x > T(0) ? x : T(0);
        case kSignum: return x > T(0) ? T(1) : (x < T(0) ? T(-1) : T(0));
        case kSigmoid: return T(1) / (T(1) + exp(-x));
        default: return x;  // kLinear
    }
}

// φ'(x). Signum has no useful derivative: the BP rule refuses it in Python before any launch.
template <typename T>
EKDAA_HD T activation_derivative(int act, T x) {
    switch (act) {
        case kTanh: { T t = tanh(x); return T(1) - t * t; }
        case kRelu: return x > T(0) ? T(1) : T(0);
        case kSigmoid: { T s = T(1) / (T(1) + exp(-x)); return s * (T(1) - s); }
        case kSignum: return T(0);
        default: return T(1);  // kLinear
    }
}

// EKDAA error unit from the pre-activation h and the projected error d (SPEC.md eq. 8):
// y = φ(h − βd), e = φ(h) − y. Dropout scaling is applied by the caller.
template <typename T>
EKDAA_HD T target_error(int act, T h, T d, T beta) {
    return activate<T>(act, h) - activate<T>(act, h - beta * d);
}

// lowbias32 integer hash (a bijection on 32-bit words; constants from Chris Wellons' "hash prospector").
EKDAA_HD uint32_t mix32(uint32_t x) {
    x ^= x >> 16;
    x *= 0x7feb352du;
    x ^= x >> 15;
    x *= 0x846ca68bu;
    x ^= x >> 16;
    return x;
}

// 32 random bits for element `index` (flat NCHW / [N, F] index of the logical tensor).
EKDAA_HD uint32_t dropout_bits(uint32_t key, uint32_t index) { return mix32(mix32(index ^ key) + key); }

// Keep the unit iff its top 24 random bits are >= threshold = floor(p · 2^24); p = 0 keeps all.
EKDAA_HD bool dropout_keep(uint32_t key, uint32_t index, uint32_t threshold) {
    return (dropout_bits(key, index) >> 8) >= threshold;
}

}  // namespace ekdaa

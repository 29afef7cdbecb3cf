// device_api.h — the CUDA kernel language for g++, as far as the simulator emulates it:
// qualifiers, dim3 / uint3 and the built-in indices, vector types with CUDA's alignment,
// __ldg, math intrinsics and min/max, and atomics (real atomics: blocks run on several OS
// threads). Barriers, warp collectives and shared memory live in exec.h.
//
// The built-in indices are thread-local variables of the OS thread that runs a block: the
// block scheduler (exec.h) stores a fiber's threadIdx before resuming it, so a kernel reads
// plain variables, no macros.
#pragma once

#include <math.h>  // libstdc++'s wrapper: float overloads (tanh(float), ...) in the global namespace, as in CUDA

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

// ------------------------------------------------------------------ qualifiers
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __constant__
#define __align__(n) alignas(n)
// __noinline__ is not defined: libstdc++ spells its own attribute __noinline__.
#define __launch_bounds__(...)
// __restrict__ is a g++ keyword already. __shared__ is rewritten by tools/cu2sim.py; one that
// reaches the compiler (e.g. from a macro) fails here with a clear name.
#define __shared__ EKDAA_SIM_SHARED_MUST_BE_REWRITTEN_BY_CU2SIM

// ------------------------------------------------------------------ dim3, uint3, indices
struct uint3 {
    unsigned int x, y, z;
};

struct dim3 {
    unsigned int x, y, z;
    constexpr dim3(unsigned int vx = 1, unsigned int vy = 1, unsigned int vz = 1) : x(vx), y(vy), z(vz) {}
    constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
    constexpr operator uint3() const { return uint3{x, y, z}; }
};

#define EKDAA_SIM_TLS __attribute__((tls_model("initial-exec")))
inline thread_local uint3 threadIdx EKDAA_SIM_TLS;
inline thread_local uint3 blockIdx EKDAA_SIM_TLS;
inline thread_local dim3 blockDim EKDAA_SIM_TLS;
inline thread_local dim3 gridDim EKDAA_SIM_TLS;
inline constexpr int warpSize = 32;

// ------------------------------------------------------------------ vector types
#define EKDAA_SIM_VEC2(T, name, align)                                          \
    struct alignas(align) name {                                                \
        T x, y;                                                                 \
    };                                                                          \
    inline name make_##name(T x, T y) { return name{x, y}; }
#define EKDAA_SIM_VEC3(T, name)                                                 \
    struct name {                                                               \
        T x, y, z;                                                              \
    };                                                                          \
    inline name make_##name(T x, T y, T z) { return name{x, y, z}; }
#define EKDAA_SIM_VEC4(T, name, align)                                          \
    struct alignas(align) name {                                                \
        T x, y, z, w;                                                           \
    };                                                                          \
    inline name make_##name(T x, T y, T z, T w) { return name{x, y, z, w}; }

EKDAA_SIM_VEC2(float, float2, 8)
EKDAA_SIM_VEC3(float, float3)
EKDAA_SIM_VEC4(float, float4, 16)
EKDAA_SIM_VEC2(double, double2, 16)
EKDAA_SIM_VEC2(int, int2, 8)
EKDAA_SIM_VEC3(int, int3)
EKDAA_SIM_VEC4(int, int4, 16)
EKDAA_SIM_VEC2(unsigned int, uint2, 8)
EKDAA_SIM_VEC4(unsigned int, uint4, 16)
EKDAA_SIM_VEC2(long long, longlong2, 16)
EKDAA_SIM_VEC2(short, short2, 4)
EKDAA_SIM_VEC4(short, short4, 8)
EKDAA_SIM_VEC4(signed char, char4, 4)
EKDAA_SIM_VEC4(unsigned char, uchar4, 4)
inline uint3 make_uint3(unsigned int x, unsigned int y, unsigned int z) { return uint3{x, y, z}; }
#undef EKDAA_SIM_VEC2
#undef EKDAA_SIM_VEC3
#undef EKDAA_SIM_VEC4

// ------------------------------------------------------------------ loads
template <typename T>
inline T __ldg(const T* p) {
    return *p;
}
template <typename T>
inline T __ldcs(const T* p) {
    return *p;
}
template <typename T>
inline void __stcs(T* p, T v) {
    *p = v;
}

// ------------------------------------------------------------------ math
// min/max over any two arithmetic types with the usual conversions (CUDA's device overloads).
template <typename A, typename B, std::enable_if_t<std::is_arithmetic_v<A> && std::is_arithmetic_v<B>, int> = 0>
inline std::common_type_t<A, B> min(A a, B b) {
    using C = std::common_type_t<A, B>;
    return C(b) < C(a) ? C(b) : C(a);
}
template <typename A, typename B, std::enable_if_t<std::is_arithmetic_v<A> && std::is_arithmetic_v<B>, int> = 0>
inline std::common_type_t<A, B> max(A a, B b) {
    using C = std::common_type_t<A, B>;
    return C(a) < C(b) ? C(b) : C(a);
}

// Fast-math intrinsics: computed at full precision here (a GPU's are less accurate; compare with tolerances).
inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __sinf(float x) { return sinf(x); }
inline float __cosf(float x) { return cosf(x); }
inline float __tanhf(float x) { return tanhf(x); }
inline float __powf(float x, float y) { return powf(x, y); }
inline float __fdividef(float x, float y) { return x / y; }
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __fsqrt_rn(float x) { return sqrtf(x); }
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline double rsqrt(double x) { return 1.0 / sqrt(x); }
inline float __frsqrt_rn(float x) { return 1.0f / sqrtf(x); }
inline float __saturatef(float x) { return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x); }
inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
inline double __fma_rn(double a, double b, double c) { return fma(a, b, c); }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fsub_rn(float a, float b) { return a - b; }

template <typename To, typename From>
inline To ekdaa_sim_bit_cast(From v) {
    static_assert(sizeof(To) == sizeof(From), "bit cast between types of different size");
    To out;
    std::memcpy(&out, &v, sizeof(To));
    return out;
}
inline int __float_as_int(float x) { return ekdaa_sim_bit_cast<int>(x); }
inline unsigned int __float_as_uint(float x) { return ekdaa_sim_bit_cast<unsigned int>(x); }
inline float __int_as_float(int x) { return ekdaa_sim_bit_cast<float>(x); }
inline float __uint_as_float(unsigned int x) { return ekdaa_sim_bit_cast<float>(x); }
inline long long __double_as_longlong(double x) { return ekdaa_sim_bit_cast<long long>(x); }
inline double __longlong_as_double(long long x) { return ekdaa_sim_bit_cast<double>(x); }

inline int __popc(unsigned int x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz(static_cast<unsigned int>(x)); }
inline int __clzll(long long x) { return x == 0 ? 64 : __builtin_clzll(static_cast<unsigned long long>(x)); }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __ffsll(long long x) { return __builtin_ffsll(x); }
inline unsigned int __brev(unsigned int x) {
    unsigned int r = 0;
    for (int i = 0; i < 32; ++i) r |= ((x >> i) & 1u) << (31 - i);
    return r;
}
inline unsigned int __umulhi(unsigned int a, unsigned int b) {
    return static_cast<unsigned int>((static_cast<unsigned long long>(a) * b) >> 32);
}

// ------------------------------------------------------------------ atomics
// Integer atomics map to GCC's __atomic builtins; float/double add, min, max use a CAS loop.
namespace ekdaa_sim {
template <typename T, typename F>
inline T atomic_update(T* address, F f) {
    static_assert(sizeof(T) == 4 || sizeof(T) == 8, "atomics on 4- or 8-byte types only");
    using U = std::conditional_t<sizeof(T) == 4, unsigned int, unsigned long long>;
    U* p = reinterpret_cast<U*>(address);
    U old = __atomic_load_n(p, __ATOMIC_RELAXED);
    for (;;) {
        const T value = f(ekdaa_sim_bit_cast<T>(old));
        if (__atomic_compare_exchange_n(p, &old, ekdaa_sim_bit_cast<U>(value), false, __ATOMIC_SEQ_CST,
                                        __ATOMIC_RELAXED))
            return ekdaa_sim_bit_cast<T>(old);
    }
}
}  // namespace ekdaa_sim

// Integer overloads as CUDA declares them (int, unsigned int, unsigned long long; long long for some).
#define EKDAA_SIM_INT_ATOMICS(T)                                                                             \
    inline T atomicAdd(T* p, T v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }                    \
    inline T atomicSub(T* p, T v) { return __atomic_fetch_sub(p, v, __ATOMIC_SEQ_CST); }                    \
    inline T atomicAnd(T* p, T v) { return __atomic_fetch_and(p, v, __ATOMIC_SEQ_CST); }                    \
    inline T atomicOr(T* p, T v) { return __atomic_fetch_or(p, v, __ATOMIC_SEQ_CST); }                      \
    inline T atomicXor(T* p, T v) { return __atomic_fetch_xor(p, v, __ATOMIC_SEQ_CST); }                    \
    inline T atomicExch(T* p, T v) { return __atomic_exchange_n(p, v, __ATOMIC_SEQ_CST); }                  \
    inline T atomicMax(T* p, T v) { return ekdaa_sim::atomic_update(p, [v](T o) { return o < v ? v : o; }); } \
    inline T atomicMin(T* p, T v) { return ekdaa_sim::atomic_update(p, [v](T o) { return v < o ? v : o; }); } \
    inline T atomicCAS(T* p, T compare, T v) {                                                               \
        __atomic_compare_exchange_n(p, &compare, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);              \
        return compare;                                                                                      \
    }
EKDAA_SIM_INT_ATOMICS(int)
EKDAA_SIM_INT_ATOMICS(unsigned int)
EKDAA_SIM_INT_ATOMICS(unsigned long long)
EKDAA_SIM_INT_ATOMICS(long long)
#undef EKDAA_SIM_INT_ATOMICS
inline float atomicAdd(float* p, float v) {
    return ekdaa_sim::atomic_update(p, [v](float old) { return old + v; });
}
inline double atomicAdd(double* p, double v) {
    return ekdaa_sim::atomic_update(p, [v](double old) { return old + v; });
}
inline float atomicExch(float* p, float v) {
    return ekdaa_sim::atomic_update(p, [v](float) { return v; });
}
// Memory fences: every simulated thread of a block runs on one OS thread and kernels run
// synchronously, so a full fence is always enough (the simulator cannot find missing fences).
inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void __threadfence_block() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }

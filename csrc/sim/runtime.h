// runtime.h — the subset of the CUDA runtime API the package uses, over host memory:
// error codes and the per-thread last error, cudaMalloc/Free (allocations start NaN: every
// byte 0xFF), memcpy/memset (sync and async: everything is synchronous), streams and events,
// a device query that reports one sm_90-like "ekdaa_cuda simulator" device, and
// cudaFuncSetAttribute(..., cudaFuncAttributeMaxDynamicSharedMemorySize, ...).
// Error codes have CUDA's numeric values and names, so messages read as on a GPU.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <new>
#include <unordered_map>

#include <unistd.h>

enum cudaError_t : int {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInitializationError = 3,
    cudaErrorInvalidConfiguration = 9,
    cudaErrorInvalidDevicePointer = 17,
    cudaErrorInvalidMemcpyDirection = 21,
    cudaErrorInvalidDeviceFunction = 98,
    cudaErrorNoDevice = 100,
    cudaErrorInvalidDevice = 101,
    cudaErrorInvalidResourceHandle = 400,
    cudaErrorLaunchOutOfResources = 701,
    cudaErrorLaunchFailure = 719,
    cudaErrorNotSupported = 801,
    cudaErrorUnknown = 999,
};
using cudaError = cudaError_t;

enum cudaMemcpyKind : int {
    cudaMemcpyHostToHost = 0,
    cudaMemcpyHostToDevice = 1,
    cudaMemcpyDeviceToHost = 2,
    cudaMemcpyDeviceToDevice = 3,
    cudaMemcpyDefault = 4,
};

enum cudaFuncAttribute : int {
    cudaFuncAttributeMaxDynamicSharedMemorySize = 8,
    cudaFuncAttributePreferredSharedMemoryCarveout = 9,
};

enum cudaDeviceAttr : int {
    cudaDevAttrMaxThreadsPerBlock = 1,
    cudaDevAttrMaxBlockDimX = 2,
    cudaDevAttrMaxBlockDimY = 3,
    cudaDevAttrMaxBlockDimZ = 4,
    cudaDevAttrMaxGridDimX = 5,
    cudaDevAttrMaxGridDimY = 6,
    cudaDevAttrMaxGridDimZ = 7,
    cudaDevAttrMaxSharedMemoryPerBlock = 8,
    cudaDevAttrWarpSize = 10,
    cudaDevAttrMultiProcessorCount = 16,
    cudaDevAttrComputeCapabilityMajor = 75,
    cudaDevAttrComputeCapabilityMinor = 76,
    cudaDevAttrMaxSharedMemoryPerMultiprocessor = 81,
    cudaDevAttrMaxSharedMemoryPerBlockOptin = 97,
};

struct cudaDeviceProp {
    char name[256];
    size_t totalGlobalMem;
    size_t sharedMemPerBlock;
    int regsPerBlock;
    int warpSize;
    int maxThreadsPerBlock;
    int maxThreadsDim[3];
    int maxGridSize[3];
    int major;
    int minor;
    int multiProcessorCount;
    size_t sharedMemPerBlockOptin;
    size_t sharedMemPerMultiprocessor;
    int maxThreadsPerMultiProcessor;
};

struct CUstream_st {
    int id;
};
struct CUevent_st {
    std::chrono::steady_clock::time_point when;
};
using cudaStream_t = CUstream_st*;
using cudaEvent_t = CUevent_st*;

namespace ekdaa_sim {

// The simulated device: sm_90-like limits (H100 SXM: 132 SMs, 227 KiB opt-in shared memory).
struct Limits {
    static constexpr int kMaxThreadsPerBlock = 1024;
    static constexpr int kMaxBlockDimXY = 1024;
    static constexpr int kMaxBlockDimZ = 64;
    static constexpr long long kMaxGridDimX = 2147483647LL;
    static constexpr int kMaxGridDimYZ = 65535;
    static constexpr int kSharedPerBlock = 48 * 1024;         // without the opt-in attribute
    static constexpr int kSharedPerBlockOptin = 227 * 1024;   // sm_90
    static constexpr int kSharedPerSM = 228 * 1024;
    static constexpr int kMultiprocessors = 132;
    static constexpr int kMajor = 9, kMinor = 0;
    static constexpr int kRuntimeVersion = 13000;  // the CUDA version whose semantics are emulated
};
inline constexpr const char* kDeviceName = "ekdaa_cuda simulator";

inline thread_local cudaError_t tl_last_error = cudaSuccess;

inline cudaError_t record(cudaError_t err) {
    if (err != cudaSuccess) tl_last_error = err;
    return err;
}

// Live allocations: cudaFree of anything else is cudaErrorInvalidValue, as on a GPU.
struct Allocations {
    std::mutex mutex;
    std::unordered_map<void*, size_t> sizes;
};
inline Allocations& allocations() {
    static Allocations a;
    return a;
}

// Per-kernel opt-in dynamic shared memory (cudaFuncSetAttribute), keyed by the kernel's address.
struct FuncAttributes {
    std::mutex mutex;
    std::unordered_map<const void*, int> max_dynamic_shared;
    std::unordered_map<const void*, size_t> static_shared;  // learned from the kernel's last run
};
inline FuncAttributes& func_attributes() {
    static FuncAttributes a;
    return a;
}

inline size_t physical_memory() {
    const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
    return pages > 0 && page > 0 ? size_t(pages) * size_t(page) : size_t(0);
}

}  // namespace ekdaa_sim

inline const char* cudaGetErrorName(cudaError_t err) {
    switch (err) {
        case cudaSuccess: return "cudaSuccess";
        case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
        case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
        case cudaErrorInitializationError: return "cudaErrorInitializationError";
        case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
        case cudaErrorInvalidDevicePointer: return "cudaErrorInvalidDevicePointer";
        case cudaErrorInvalidMemcpyDirection: return "cudaErrorInvalidMemcpyDirection";
        case cudaErrorInvalidDeviceFunction: return "cudaErrorInvalidDeviceFunction";
        case cudaErrorNoDevice: return "cudaErrorNoDevice";
        case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
        case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
        case cudaErrorLaunchOutOfResources: return "cudaErrorLaunchOutOfResources";
        case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
        case cudaErrorNotSupported: return "cudaErrorNotSupported";
        default: return "cudaErrorUnknown";
    }
}

inline const char* cudaGetErrorString(cudaError_t err) {
    switch (err) {
        case cudaSuccess: return "no error";
        case cudaErrorInvalidValue: return "invalid argument";
        case cudaErrorMemoryAllocation: return "out of memory";
        case cudaErrorInitializationError: return "initialization error";
        case cudaErrorInvalidConfiguration: return "invalid configuration argument";
        case cudaErrorInvalidDevicePointer: return "invalid device pointer";
        case cudaErrorInvalidMemcpyDirection: return "invalid copy direction for memcpy";
        case cudaErrorInvalidDeviceFunction: return "invalid device function";
        case cudaErrorNoDevice: return "no CUDA-capable device is detected";
        case cudaErrorInvalidDevice: return "invalid device ordinal";
        case cudaErrorInvalidResourceHandle: return "invalid resource handle";
        case cudaErrorLaunchOutOfResources: return "too many resources requested for launch";
        case cudaErrorLaunchFailure: return "unspecified launch failure";
        case cudaErrorNotSupported: return "operation not supported";
        default: return "unknown error";
    }
}

inline cudaError_t cudaGetLastError() {
    const cudaError_t err = ekdaa_sim::tl_last_error;
    ekdaa_sim::tl_last_error = cudaSuccess;
    return err;
}
inline cudaError_t cudaPeekAtLastError() { return ekdaa_sim::tl_last_error; }

// ------------------------------------------------------------------ memory
inline cudaError_t cudaMalloc(void** p, size_t size) {
    if (p == nullptr) return ekdaa_sim::record(cudaErrorInvalidValue);
    *p = nullptr;
    if (size == 0) return cudaSuccess;
    // Exact size (no rounding) so AddressSanitizer sees an overrun of the allocation.
    void* q = ::operator new(size, std::align_val_t(256), std::nothrow);
    if (q == nullptr) return ekdaa_sim::record(cudaErrorMemoryAllocation);
    std::memset(q, 0xFF, size);  // NaN in every float/double: a read before the first write shows
    auto& a = ekdaa_sim::allocations();
    std::lock_guard<std::mutex> lock(a.mutex);
    a.sizes[q] = size;
    *p = q;
    return cudaSuccess;
}
template <typename T>
inline cudaError_t cudaMalloc(T** p, size_t size) {
    return cudaMalloc(reinterpret_cast<void**>(p), size);
}
inline cudaError_t cudaFree(void* p) {
    if (p == nullptr) return cudaSuccess;
    auto& a = ekdaa_sim::allocations();
    {
        std::lock_guard<std::mutex> lock(a.mutex);
        if (a.sizes.erase(p) == 0) return ekdaa_sim::record(cudaErrorInvalidValue);
    }
    ::operator delete(p, std::align_val_t(256));
    return cudaSuccess;
}
inline cudaError_t cudaMemcpy(void* dst, const void* src, size_t n, cudaMemcpyKind kind) {
    if (kind < cudaMemcpyHostToHost || kind > cudaMemcpyDefault) return ekdaa_sim::record(cudaErrorInvalidMemcpyDirection);
    if (n != 0 && (dst == nullptr || src == nullptr)) return ekdaa_sim::record(cudaErrorInvalidValue);
    if (n != 0) std::memmove(dst, src, n);
    return cudaSuccess;
}
inline cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t n, cudaMemcpyKind kind, cudaStream_t = nullptr) {
    return cudaMemcpy(dst, src, n, kind);
}
inline cudaError_t cudaMemset(void* dst, int value, size_t n) {
    if (n != 0 && dst == nullptr) return ekdaa_sim::record(cudaErrorInvalidValue);
    if (n != 0) std::memset(dst, value, n);
    return cudaSuccess;
}
inline cudaError_t cudaMemsetAsync(void* dst, int value, size_t n, cudaStream_t = nullptr) {
    return cudaMemset(dst, value, n);
}

// ------------------------------------------------------------------ streams, events, sync
inline cudaError_t cudaStreamCreate(cudaStream_t* s) {
    if (s == nullptr) return ekdaa_sim::record(cudaErrorInvalidValue);
    *s = new CUstream_st{1};
    return cudaSuccess;
}
inline cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned int) { return cudaStreamCreate(s); }
inline cudaError_t cudaStreamDestroy(cudaStream_t s) {
    delete s;
    return cudaSuccess;
}
inline cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
inline cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }
inline cudaError_t cudaEventCreate(cudaEvent_t* e) {
    if (e == nullptr) return ekdaa_sim::record(cudaErrorInvalidValue);
    *e = new CUevent_st{std::chrono::steady_clock::now()};
    return cudaSuccess;
}
inline cudaError_t cudaEventDestroy(cudaEvent_t e) {
    delete e;
    return cudaSuccess;
}
inline cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t = nullptr) {
    if (e == nullptr) return ekdaa_sim::record(cudaErrorInvalidResourceHandle);
    e->when = std::chrono::steady_clock::now();
    return cudaSuccess;
}
inline cudaError_t cudaEventSynchronize(cudaEvent_t) { return cudaSuccess; }
inline cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
    if (ms == nullptr || start == nullptr || end == nullptr) return ekdaa_sim::record(cudaErrorInvalidValue);
    *ms = std::chrono::duration<float, std::milli>(end->when - start->when).count();
    return cudaSuccess;
}

// ------------------------------------------------------------------ device query
inline cudaError_t cudaGetDeviceCount(int* count) {
    if (count == nullptr) return ekdaa_sim::record(cudaErrorInvalidValue);
    *count = 1;
    return cudaSuccess;
}
inline cudaError_t cudaGetDevice(int* device) {
    if (device == nullptr) return ekdaa_sim::record(cudaErrorInvalidValue);
    *device = 0;
    return cudaSuccess;
}
inline cudaError_t cudaSetDevice(int device) {
    return device == 0 ? cudaSuccess : ekdaa_sim::record(cudaErrorInvalidDevice);
}
inline cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device) {
    using L = ekdaa_sim::Limits;
    if (prop == nullptr) return ekdaa_sim::record(cudaErrorInvalidValue);
    if (device != 0) return ekdaa_sim::record(cudaErrorInvalidDevice);
    std::memset(prop, 0, sizeof(*prop));
    std::snprintf(prop->name, sizeof(prop->name), "%s", ekdaa_sim::kDeviceName);
    prop->totalGlobalMem = ekdaa_sim::physical_memory();
    prop->sharedMemPerBlock = L::kSharedPerBlock;
    prop->regsPerBlock = 65536;
    prop->warpSize = 32;
    prop->maxThreadsPerBlock = L::kMaxThreadsPerBlock;
    prop->maxThreadsDim[0] = prop->maxThreadsDim[1] = L::kMaxBlockDimXY;
    prop->maxThreadsDim[2] = L::kMaxBlockDimZ;
    prop->maxGridSize[0] = int(L::kMaxGridDimX);
    prop->maxGridSize[1] = prop->maxGridSize[2] = L::kMaxGridDimYZ;
    prop->major = L::kMajor;
    prop->minor = L::kMinor;
    prop->multiProcessorCount = L::kMultiprocessors;
    prop->sharedMemPerBlockOptin = L::kSharedPerBlockOptin;
    prop->sharedMemPerMultiprocessor = L::kSharedPerSM;
    prop->maxThreadsPerMultiProcessor = 2048;
    return cudaSuccess;
}
inline cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device) {
    using L = ekdaa_sim::Limits;
    if (value == nullptr) return ekdaa_sim::record(cudaErrorInvalidValue);
    if (device != 0) return ekdaa_sim::record(cudaErrorInvalidDevice);
    switch (attr) {
        case cudaDevAttrMaxThreadsPerBlock: *value = L::kMaxThreadsPerBlock; break;
        case cudaDevAttrMaxBlockDimX:
        case cudaDevAttrMaxBlockDimY: *value = L::kMaxBlockDimXY; break;
        case cudaDevAttrMaxBlockDimZ: *value = L::kMaxBlockDimZ; break;
        case cudaDevAttrMaxGridDimX: *value = int(L::kMaxGridDimX); break;
        case cudaDevAttrMaxGridDimY:
        case cudaDevAttrMaxGridDimZ: *value = L::kMaxGridDimYZ; break;
        case cudaDevAttrMaxSharedMemoryPerBlock: *value = L::kSharedPerBlock; break;
        case cudaDevAttrWarpSize: *value = 32; break;
        case cudaDevAttrMultiProcessorCount: *value = L::kMultiprocessors; break;
        case cudaDevAttrComputeCapabilityMajor: *value = L::kMajor; break;
        case cudaDevAttrComputeCapabilityMinor: *value = L::kMinor; break;
        case cudaDevAttrMaxSharedMemoryPerMultiprocessor: *value = L::kSharedPerSM; break;
        case cudaDevAttrMaxSharedMemoryPerBlockOptin: *value = L::kSharedPerBlockOptin; break;
        default: return ekdaa_sim::record(cudaErrorInvalidValue);
    }
    return cudaSuccess;
}
inline cudaError_t cudaRuntimeGetVersion(int* v) {
    if (v == nullptr) return ekdaa_sim::record(cudaErrorInvalidValue);
    *v = ekdaa_sim::Limits::kRuntimeVersion;
    return cudaSuccess;
}
inline cudaError_t cudaDriverGetVersion(int* v) { return cudaRuntimeGetVersion(v); }

// ------------------------------------------------------------------ function attributes
inline cudaError_t cudaFuncSetAttribute(const void* func, cudaFuncAttribute attr, int value) {
    if (func == nullptr) return ekdaa_sim::record(cudaErrorInvalidDeviceFunction);
    if (attr == cudaFuncAttributePreferredSharedMemoryCarveout)
        return value >= -1 && value <= 100 ? cudaSuccess : ekdaa_sim::record(cudaErrorInvalidValue);
    if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize) return ekdaa_sim::record(cudaErrorInvalidValue);
    auto& fa = ekdaa_sim::func_attributes();
    std::lock_guard<std::mutex> lock(fa.mutex);
    const auto s = fa.static_shared.find(func);
    const long long static_bytes = s == fa.static_shared.end() ? 0 : (long long)s->second;
    if (value < 0 || value + static_bytes > ekdaa_sim::Limits::kSharedPerBlockOptin)
        return ekdaa_sim::record(cudaErrorInvalidValue);
    fa.max_dynamic_shared[func] = value;
    return cudaSuccess;
}
template <typename R, typename... P>
inline cudaError_t cudaFuncSetAttribute(R (*func)(P...), cudaFuncAttribute attr, int value) {
    return cudaFuncSetAttribute(reinterpret_cast<const void*>(func), attr, value);
}

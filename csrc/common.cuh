// common.cuh — error handling shared by every launcher in csrc/.
//
// Library code never prints or exits: a failed CUDA call or launch throws
// std::runtime_error naming the op, the file:line, the expression and the CUDA
// error string; pybind11 turns it into a Python RuntimeError. Argument errors
// found by a launcher throw std::invalid_argument (-> ValueError).
// Setting EKDAA_SYNC_LAUNCHES=1 in the environment synchronises the stream after
// every launch, so an asynchronous fault is reported by the op that caused it.
#pragma once

#include <cuda_runtime.h>

#include <cstdlib>
#include <stdexcept>
#include <string>

namespace ekdaa {

inline std::string cuda_error_message(const char* op, const char* expr, const char* file, int line,
                                      cudaError_t err) {
    return std::string(op) + ": CUDA error at " + file + ":" + std::to_string(line) + " in `" + expr +
           "`: " + cudaGetErrorName(err) + " (" + cudaGetErrorString(err) + ")";
}

inline void cuda_check(cudaError_t err, const char* op, const char* expr, const char* file, int line) {
    if (err != cudaSuccess) {
        cudaGetLastError();  // clear the sticky-free error state so later calls are not blamed
        throw std::runtime_error(cuda_error_message(op, expr, file, line, err));
    }
}

inline bool sync_after_launch() {
    static const bool enabled = [] {
        const char* v = std::getenv("EKDAA_SYNC_LAUNCHES");
        return v != nullptr && v[0] != '\0' && v[0] != '0';
    }();
    return enabled;
}

inline void check_launch(const char* op, cudaStream_t stream, const char* file, int line) {
    cuda_check(cudaGetLastError(), op, "kernel launch", file, line);
    if (sync_after_launch()) cuda_check(cudaStreamSynchronize(stream), op, "cudaStreamSynchronize", file, line);
}

// Throws std::invalid_argument("<op>: <what>") when `cond` is false.
inline void require(bool cond, const char* op, const std::string& what) {
    if (!cond) throw std::invalid_argument(std::string(op) + ": " + what);
}

inline unsigned int ceil_div(long long a, long long b) { return static_cast<unsigned int>((a + b - 1) / b); }

}  // namespace ekdaa

// CUDA_CHECK_THROW(op, expr): run a CUDA runtime call, throw on failure.
#define CUDA_CHECK_THROW(op, expr) ::ekdaa::cuda_check((expr), (op), #expr, __FILE__, __LINE__)
// CUDA_CHECK_LAUNCH(op, stream): call right after every <<<...>>> launch.
#define CUDA_CHECK_LAUNCH(op, stream) ::ekdaa::check_launch((op), (stream), __FILE__, __LINE__)

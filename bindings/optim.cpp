// optim.cpp — bindings of the multi-tensor optimizer launchers (csrc/optim.h): argument
// conversion only. Tables arrive as raw device addresses (int), built and validated by
// ekdaa_cuda.ops.optim. Built into _C (GPU) and _sim (the CPU simulator) alike.
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

#include "common.cuh"
#include "optim.h"
#include "registry.h"

namespace py = pybind11;

namespace {

template <typename T>
T* ptr(std::uintptr_t address) {
    return reinterpret_cast<T*>(address);
}

ekdaa::OptimHyper hyper_of(const char* op, int kind, float momentum, float beta1, float beta2,
                           float bias_correction1, float bias_correction2, float decay, float eps, float rho,
                           float weight_decay) {
    ekdaa::require(kind == ekdaa::kSgd || kind == ekdaa::kAdam || kind == ekdaa::kRmsprop, op,
                   "kind must be 0 (sgd), 1 (adam) or 2 (rmsprop), got " + std::to_string(kind));
    if (kind == ekdaa::kAdam)
        ekdaa::require(bias_correction1 > 0.0f && bias_correction2 > 0.0f, op,
                       "adam bias corrections 1 - beta^t must be > 0 (t >= 1)");
    return ekdaa::OptimHyper{kind, momentum, beta1, beta2, bias_correction1, bias_correction2, decay, eps, rho,
                             weight_decay};
}

}  // namespace

void register_optim(py::module_& m) {
    m.attr("OPTIM_CHUNK") = ekdaa::kOptimChunk;
    m.def(
        "optim_sq_norm",
        [](std::uintptr_t grad_ptrs, std::uintptr_t sizes, std::uintptr_t chunk_offsets, std::uintptr_t partial,
           std::int64_t T, std::int64_t n_chunks, std::uintptr_t stream) {
            ekdaa::launch_optim_sq_norm(ptr<const std::int64_t>(grad_ptrs), ptr<const std::int64_t>(sizes),
                                        ptr<const std::int64_t>(chunk_offsets), ptr<float>(partial), T, n_chunks,
                                        reinterpret_cast<cudaStream_t>(stream));
        },
        py::arg("grad_ptrs"), py::arg("sizes"), py::arg("chunk_offsets"), py::arg("partial"), py::arg("T"),
        py::arg("n_chunks"), py::arg("stream"),
        "Launch 1: partial[c] = sum of squared updates in chunk c (raw launcher; use ekdaa_cuda.ops.optim).");
    m.def(
        "optim_update",
        [](std::uintptr_t param_ptrs, std::uintptr_t grad_ptrs, std::uintptr_t state1_ptrs, std::uintptr_t state2_ptrs,
           std::uintptr_t sizes, std::uintptr_t chunk_offsets, std::uintptr_t lrs, std::uintptr_t partial,
           std::uintptr_t nonfinite, std::int64_t T, std::int64_t n_chunks, int kind, float momentum, float beta1,
           float beta2, float bias_correction1, float bias_correction2, float decay, float eps, float rho,
           float weight_decay, std::uintptr_t stream) {
            const ekdaa::OptimHyper hp = hyper_of("optim_update", kind, momentum, beta1, beta2, bias_correction1,
                                                  bias_correction2, decay, eps, rho, weight_decay);
            ekdaa::launch_optim_update(ptr<const std::int64_t>(param_ptrs), ptr<const std::int64_t>(grad_ptrs),
                                       ptr<const std::int64_t>(state1_ptrs), ptr<const std::int64_t>(state2_ptrs),
                                       ptr<const std::int64_t>(sizes), ptr<const std::int64_t>(chunk_offsets),
                                       ptr<const float>(lrs), ptr<const float>(partial), ptr<int>(nonfinite), T,
                                       n_chunks, hp, reinterpret_cast<cudaStream_t>(stream));
        },
        py::arg("param_ptrs"), py::arg("grad_ptrs"), py::arg("state1_ptrs"), py::arg("state2_ptrs"), py::arg("sizes"),
        py::arg("chunk_offsets"), py::arg("lrs"), py::arg("partial"), py::arg("nonfinite"), py::arg("T"),
        py::arg("n_chunks"), py::arg("kind"), py::arg("momentum"), py::arg("beta1"), py::arg("beta2"), py::arg("bias_correction1"),
        py::arg("bias_correction2"), py::arg("decay"), py::arg("eps"), py::arg("rho"),
        py::arg("weight_decay"), py::arg("stream"),
        "Launch 2: Pascanu rescaling and the optimizer step on every tensor, in place; nonfinite[t] = 1 when "
        "tensor t turns non-finite (raw launcher).");

}

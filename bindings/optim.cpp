// optim.cpp — bindings of the multi-tensor optimizer launchers (csrc/optim.h): argument
// conversion only. Tables arrive as raw device addresses (int), built and validated by
// ekdaa_cuda.ops.optim. host_optim_step runs the kernels' per-element code on the CPU over one
// NumPy tensor, in place, for tests/test_optim_host.py.
#include <pybind11/numpy.h>
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
                           float bias_correction1, float bias_correction2, float decay, float eps, float rho) {
    ekdaa::require(kind == ekdaa::kSgd || kind == ekdaa::kAdam || kind == ekdaa::kRmsprop, op,
                   "kind must be 0 (sgd), 1 (adam) or 2 (rmsprop), got " + std::to_string(kind));
    if (kind == ekdaa::kAdam)
        ekdaa::require(bias_correction1 > 0.0f && bias_correction2 > 0.0f, op,
                       "adam bias corrections 1 - beta^t must be > 0 (t >= 1)");
    return ekdaa::OptimHyper{kind, momentum, beta1, beta2, bias_correction1, bias_correction2, decay, eps, rho};
}

using FloatArray = py::array_t<float, py::array::c_style>;  // no forcecast: updated in place

void host_optim_step(int kind, FloatArray p, FloatArray g, FloatArray s1, FloatArray s2, float lr, float momentum,
                     float beta1, float beta2, float bias_correction1, float bias_correction2, float decay, float eps,
                     float rho) {
    const char* op = "host_optim_step";
    const ekdaa::OptimHyper hp =
        hyper_of(op, kind, momentum, beta1, beta2, bias_correction1, bias_correction2, decay, eps, rho);
    const py::ssize_t n = p.size();
    ekdaa::require(g.size() == n && s1.size() == n && s2.size() == n, op,
                   "p, g, s1 and s2 must have the same number of elements");
    float* pp = p.mutable_data();
    const float* gp = g.data();
    float* s1p = s1.mutable_data();
    float* s2p = s2.mutable_data();
    float sq = 0.0f;
    for (py::ssize_t i = 0; i < n; ++i) sq += gp[i] * gp[i];
    const float factor = ekdaa::pascanu_factor(sq, rho);
    for (py::ssize_t i = 0; i < n; ++i) ekdaa::optim_apply(hp, lr, gp[i] * factor, pp[i], s1p[i], s2p[i]);
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
           std::int64_t T, std::int64_t n_chunks, int kind, float momentum, float beta1, float beta2,
           float bias_correction1, float bias_correction2, float decay, float eps, float rho, std::uintptr_t stream) {
            const ekdaa::OptimHyper hp = hyper_of("optim_update", kind, momentum, beta1, beta2, bias_correction1,
                                                  bias_correction2, decay, eps, rho);
            ekdaa::launch_optim_update(ptr<const std::int64_t>(param_ptrs), ptr<const std::int64_t>(grad_ptrs),
                                       ptr<const std::int64_t>(state1_ptrs), ptr<const std::int64_t>(state2_ptrs),
                                       ptr<const std::int64_t>(sizes), ptr<const std::int64_t>(chunk_offsets),
                                       ptr<const float>(lrs), ptr<const float>(partial), T, n_chunks, hp,
                                       reinterpret_cast<cudaStream_t>(stream));
        },
        py::arg("param_ptrs"), py::arg("grad_ptrs"), py::arg("state1_ptrs"), py::arg("state2_ptrs"), py::arg("sizes"),
        py::arg("chunk_offsets"), py::arg("lrs"), py::arg("partial"), py::arg("T"), py::arg("n_chunks"),
        py::arg("kind"), py::arg("momentum"), py::arg("beta1"), py::arg("beta2"), py::arg("bias_correction1"),
        py::arg("bias_correction2"), py::arg("decay"), py::arg("eps"), py::arg("rho"), py::arg("stream"),
        "Launch 2: Pascanu rescaling and the optimizer step on every tensor, in place (raw launcher).");

    m.def("host_optim_step", &host_optim_step, py::arg("kind"), py::arg("p").noconvert(), py::arg("g").noconvert(),
          py::arg("s1").noconvert(), py::arg("s2").noconvert(), py::arg("lr"), py::arg("momentum"), py::arg("beta1"),
          py::arg("beta2"), py::arg("bias_correction1"), py::arg("bias_correction2"), py::arg("decay"), py::arg("eps"),
          py::arg("rho"),
          "One optimizer step of one tensor on the CPU with the kernels' per-element code, in place (test hook).");
}

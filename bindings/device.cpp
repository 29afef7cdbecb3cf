// device.cpp — bindings for the device query (csrc/device.h) and the host-compiled
// per-element functions of csrc/elementwise.cuh (host_* entry points), which the CPU test
// suite checks against ekdaa_cuda.reference (tests/test_build.py). The host_* functions are
// test hooks, not a CPU backend: they run a plain loop on the CPU.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "common.cuh"
#include "device.h"
#include "elementwise.cuh"
#include "registry.h"

namespace py = pybind11;

namespace {

template <typename T>
using Array = py::array_t<T, py::array::c_style | py::array::forcecast>;

void check_activation(const char* op, int act) {
    ekdaa::require(act >= ekdaa::kTanh && act <= ekdaa::kSigmoid, op,
                   "act must be an activation code in [0, 4], got " + std::to_string(act));
}

template <typename T>
Array<T> empty_like(const Array<T>& x) {
    return Array<T>(std::vector<py::ssize_t>(x.shape(), x.shape() + x.ndim()));
}

template <typename T>
Array<T> host_activate(int act, Array<T> x) {
    check_activation("host_activate", act);
    Array<T> y = empty_like(x);
    const T* in = x.data();
    T* out = y.mutable_data();
    for (py::ssize_t i = 0; i < x.size(); ++i) out[i] = ekdaa::activate<T>(act, in[i]);
    return y;
}

template <typename T>
Array<T> host_activation_derivative(int act, Array<T> x) {
    check_activation("host_activation_derivative", act);
    Array<T> y = empty_like(x);
    const T* in = x.data();
    T* out = y.mutable_data();
    for (py::ssize_t i = 0; i < x.size(); ++i) out[i] = ekdaa::activation_derivative<T>(act, in[i]);
    return y;
}

template <typename T>
Array<T> host_target_error(int act, Array<T> h, Array<T> d, double beta) {
    check_activation("host_target_error", act);
    ekdaa::require(h.ndim() == d.ndim() && h.size() == d.size(), "host_target_error",
                   "h and d must have the same shape");
    for (py::ssize_t a = 0; a < h.ndim(); ++a)
        ekdaa::require(h.shape(a) == d.shape(a), "host_target_error", "h and d must have the same shape");
    Array<T> e = empty_like(h);
    const T* hp = h.data();
    const T* dp = d.data();
    T* out = e.mutable_data();
    for (py::ssize_t i = 0; i < h.size(); ++i) out[i] = ekdaa::target_error<T>(act, hp[i], dp[i], T(beta));
    return e;
}

py::array_t<bool> host_dropout_keep(uint32_t key, py::ssize_t n, uint32_t threshold) {
    ekdaa::require(n >= 0 && n <= (py::ssize_t(1) << 32), "host_dropout_keep",
                   "n must be in [0, 2^32], got " + std::to_string(n));
    py::array_t<bool> keep(n);
    bool* out = keep.mutable_data();
    for (py::ssize_t i = 0; i < n; ++i) out[i] = ekdaa::dropout_keep(key, static_cast<uint32_t>(i), threshold);
    return keep;
}

}  // namespace

void register_device(py::module_& m) {
    m.def(
        "device_count", [] { return ekdaa::device_count().count; },
        "Number of CUDA devices; 0 when there is no driver or device (never raises).");
    m.def(
        "device_error", [] { return ekdaa::device_count().error; },
        "Why device_count() is 0: '<cudaErrorName>: <description>', or '' when the query succeeded.");
    m.def(
        "device_properties",
        [](int device) {
            ekdaa::DeviceProperties p = ekdaa::device_properties(device);
            py::dict d;
            if (!p.error.empty()) {
                d["error"] = p.error;
                return d;
            }
            d["name"] = p.name;
            d["compute_capability"] = py::make_tuple(p.major, p.minor);
            d["total_memory"] = p.total_memory;
            d["multiprocessor_count"] = p.multiprocessor_count;
            return d;
        },
        py::arg("device") = 0,
        "Dict with name, compute_capability (major, minor), total_memory (bytes), multiprocessor_count; "
        "or {'error': message} when the device cannot be queried (never raises).");
    m.def("runtime_version", &ekdaa::runtime_version, "CUDA runtime version linked into _C, e.g. 13000.");
    m.def("driver_version", &ekdaa::driver_version,
          "Highest CUDA version the installed driver supports, e.g. 13000; 0 when no driver is installed.");

    // Host-compiled elementwise.cuh, for CPU tests against ekdaa_cuda.reference.
    m.def("host_activate", &host_activate<float>, py::arg("act").noconvert(), py::arg("x").noconvert());
    m.def("host_activate", &host_activate<double>, py::arg("act"), py::arg("x"),
          "φ(x) elementwise on the CPU with the kernels' code; float32 in -> float32 out, else float64.");
    m.def("host_activation_derivative", &host_activation_derivative<float>, py::arg("act").noconvert(),
          py::arg("x").noconvert());
    m.def("host_activation_derivative", &host_activation_derivative<double>, py::arg("act"), py::arg("x"),
          "φ'(x) elementwise on the CPU with the kernels' code.");
    m.def("host_target_error", &host_target_error<float>, py::arg("act").noconvert(), py::arg("h").noconvert(),
          py::arg("d").noconvert(), py::arg("beta"));
    m.def("host_target_error", &host_target_error<double>, py::arg("act"), py::arg("h"), py::arg("d"),
          py::arg("beta"), "φ(h) − φ(h − βd) elementwise on the CPU with the kernels' code.");
    m.def("host_dropout_key", &ekdaa::dropout_key, py::arg("seed"), py::arg("step"), py::arg("layer"),
          "Per-(seed, step, layer) dropout key, as computed on the host before a launch.");
    m.def("host_dropout_keep", &host_dropout_keep, py::arg("key"), py::arg("n"), py::arg("threshold"),
          "Bool array keep[i] = dropout_keep(key, i, threshold) for flat indices i = 0..n-1.");
}

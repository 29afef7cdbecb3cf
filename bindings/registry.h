// registry.h — one register_<family>(m) per bindings/<family>.cpp; module.cpp calls them all.
// Also the argument conversions every launcher binding shares: device arrays arrive from
// ekdaa_cuda.ops as raw addresses (arr.data.ptr) and the stream as its handle (int).
#pragma once

#include <cuda_runtime.h>
#include <pybind11/pybind11.h>

#include <cstdint>

void register_device(pybind11::module_& m);  // bindings/device.cpp: device query
void register_conv(pybind11::module_& m);    // bindings/conv.cpp: conv-family launchers
void register_fc(pybind11::module_& m);      // bindings/fc.cpp: fully-connected launchers
void register_optim(pybind11::module_& m);   // bindings/optim.cpp: optimizer launchers
#ifdef EKDAA_SIM
void register_sim(pybind11::module_& m);     // csrc/sim/python.cpp: simulator settings, counters, self-tests
#endif

namespace bindings {

// A device address from Python (0 means "absent" and becomes nullptr).
template <typename T>
T* ptr(std::uintptr_t address) {
    return reinterpret_cast<T*>(address);
}

inline cudaStream_t stream_of(std::uintptr_t handle) { return reinterpret_cast<cudaStream_t>(handle); }

}  // namespace bindings

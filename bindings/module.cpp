// module.cpp — the extension module ekdaa_cuda._C, and (the same sources compiled with g++ and
// EKDAA_SIM defined, see csrc/sim/README.md) ekdaa_cuda._sim. Each op family registers its
// functions from its own bindings/<family>.cpp (see registry.h).
#include <pybind11/pybind11.h>

#include "registry.h"

#ifndef EKDAA_MODULE_NAME
#define EKDAA_MODULE_NAME _C
#endif

PYBIND11_MODULE(EKDAA_MODULE_NAME, m) {
#ifdef EKDAA_SIM
    m.doc() = "EKDAA CUDA kernels on the CPU simulator (same raw launchers as _C; host addresses for device pointers)";
    register_sim(m);
#else
    m.doc() = "EKDAA CUDA kernels (raw launchers; use ekdaa_cuda.ops for the checked Python API)";
#endif
    register_device(m);
    register_conv(m);
    register_fc(m);
    register_optim(m);
}

// module.cpp — the extension module ekdaa_cuda._C. Each op family registers its functions
// from its own bindings/<family>.cpp (see registry.h).
#include <pybind11/pybind11.h>

#include "registry.h"

PYBIND11_MODULE(_C, m) {
    m.doc() = "EKDAA CUDA kernels (raw launchers; use ekdaa_cuda.ops for the checked Python API)";
    register_device(m);
    register_conv(m);
    register_fc(m);
    register_optim(m);
}

// Python bindings for the multi-tensor optimizer kernels (stub; filled in below).
#include <pybind11/pybind11.h>

void register_optim(pybind11::module_& m) {}

// Python bindings for the fully-connected kernels (stub; filled in below).
#include <pybind11/pybind11.h>

void register_fc(pybind11::module_& m) {}

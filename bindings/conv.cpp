// conv.cpp — bindings for the conv-family launchers (csrc/conv.h). Filled in below.
#include <pybind11/pybind11.h>

#include "registry.h"

void register_conv(pybind11::module_& m) {}

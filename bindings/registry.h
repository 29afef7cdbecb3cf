// registry.h — one register_<family>(m) per bindings/<family>.cpp; module.cpp calls them all.
#pragma once

#include <pybind11/pybind11.h>

void register_device(pybind11::module_& m);  // bindings/device.cpp: device query + host_* elementwise test hooks
void register_conv(pybind11::module_& m);    // bindings/conv.cpp: conv-family launchers + host index helpers
void register_fc(pybind11::module_& m);      // bindings/fc.cpp: fully-connected launchers
void register_optim(pybind11::module_& m);   // bindings/optim.cpp: optimizer launchers

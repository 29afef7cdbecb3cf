// device.cpp — bindings for the device query (csrc/device.h); on the CPU simulator (_sim) it
// reports the simulated device.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "device.h"
#include "registry.h"

namespace py = pybind11;

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

}

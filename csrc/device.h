// device.h — CUDA device query that never throws (declarations; implementation in device.cu).
//
// Used by ekdaa_cuda._device.cuda_status() to explain why CUDA is unusable on a machine
// (no driver, driver too old, no device) instead of failing inside an op.
#pragma once

#include <cstddef>
#include <string>

namespace ekdaa {

struct DeviceCount {
    int count;          // 0 when the query failed
    std::string error;  // "" on success, else "<cudaErrorName>: <description>"
};

struct DeviceProperties {
    std::string name;
    int major = 0, minor = 0;       // compute capability
    std::size_t total_memory = 0;   // bytes of global memory
    int multiprocessor_count = 0;   // SMs
    std::string error;              // "" on success
};

DeviceCount device_count();
DeviceProperties device_properties(int device);
int runtime_version();  // CUDA runtime linked into _C, e.g. 13000
int driver_version();   // highest CUDA version the driver supports, 0 when no driver is installed

}  // namespace ekdaa

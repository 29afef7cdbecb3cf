// device.cu — CUDA device query for ekdaa_cuda._C (device_count, device_properties,
// runtime_version, driver_version). Every function reports failure in its return value
// and never throws, so `import ekdaa_cuda` and cuda_status() work on machines without a
// driver or device (CI). Tested by tests/test_build.py (`pytest tests/test_build.py`).
#include "device.h"

#include <cuda_runtime.h>

namespace ekdaa {

namespace {
std::string describe(cudaError_t err) {
    cudaGetLastError();  // clear the error so later calls are not blamed for it
    return std::string(cudaGetErrorName(err)) + ": " + cudaGetErrorString(err);
}
}  // namespace

DeviceCount device_count() {
    int count = 0;
    cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess) return {0, describe(err)};
    return {count, ""};
}

DeviceProperties device_properties(int device) {
    DeviceProperties out;
    DeviceCount c = device_count();
    if (!c.error.empty()) {
        out.error = c.error;
    } else if (device < 0 || device >= c.count) {
        out.error = "device index " + std::to_string(device) + " out of range [0, " + std::to_string(c.count) + ")";
    } else {
        cudaDeviceProp prop;
        cudaError_t err = cudaGetDeviceProperties(&prop, device);
        if (err != cudaSuccess) {
            out.error = describe(err);
        } else {
            out.name = prop.name;
            out.major = prop.major;
            out.minor = prop.minor;
            out.total_memory = prop.totalGlobalMem;
            out.multiprocessor_count = prop.multiProcessorCount;
        }
    }
    return out;
}

int runtime_version() {
    int v = 0;
    if (cudaRuntimeGetVersion(&v) != cudaSuccess) return 0;
    return v;
}

int driver_version() {
    int v = 0;
    if (cudaDriverGetVersion(&v) != cudaSuccess) return 0;
    return v;
}

}  // namespace ekdaa

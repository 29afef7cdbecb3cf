// cuda_runtime.h (simulator) — stands in for the CUDA toolkit's header when csrc/ and bindings/
// are compiled with g++ into ekdaa_cuda._sim: the kernel language (device_api.h), the runtime
// subset (runtime.h) and the execution model (exec.h). See csrc/sim/README.md.
#pragma once

#define EKDAA_SIM 1

#include "../device_api.h"
#include "../exec.h"
#include "../runtime.h"

// selftest.h — launchers of the simulator's own test kernels (selftest.cu), bound as
// ekdaa_cuda._sim.selftest_* by csrc/sim/python.cpp. Pointers are host addresses.
#pragma once

#include <vector>

namespace ekdaa_sim_selftest {

void tiled_gemm(const float* a, const float* b, float* c, int M, int N, int K, int skip_sync);
void barrier(float* out, int mode);
void warp_reduce(const float* in, float* out, int threads, int active);
void shuffle(const float* in, float* out, int src, int delta, int lane_mask, int width);
void deadlock(float* out);
void dynamic_shared(float* out, int n, int opt_in_bytes);
void static_shared(float* out, int* counter, int blocks);
void vector_load(const float* in, float* out, int threads, int offset);
void launch_empty(unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz, float* out);
void out_of_bounds_read(int n, int overrun);
std::vector<float> fresh_allocation(int n);

}  // namespace ekdaa_sim_selftest

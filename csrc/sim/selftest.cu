// selftest.cu — small CUDA kernels that test the simulator itself (tests/sim/test_simulator.py),
// compiled only into ekdaa_cuda._sim (as _sim.selftest_* entry points) and through the same
// rewrite as csrc/*.cu. Some have a switch that plants a known bug (a missing barrier, a
// divergent barrier, exited lanes in a shuffle mask, an out-of-bounds read) so the tests can
// check that the simulator reports it. Plain CUDA: nvcc would compile this file too.
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "selftest.h"

namespace ekdaa_sim_selftest {
namespace {

constexpr int kTile = 16;

void check(cudaError_t err, const char* what) {
    if (err != cudaSuccess)
        throw std::runtime_error(std::string("selftest: ") + what + ": " + cudaGetErrorName(err) + " (" +
                                 cudaGetErrorString(err) + ")");
}

// C[M, N] = A[M, K]·B[K, N], 16x16 shared-memory tiles. skip_sync = 1 or 2 drops the first
// (after loading) or the second (before overwriting) barrier of the loop: a planted race.
__global__ void tiled_gemm_kernel(const float* a, const float* b, float* c, int M, int N, int K, int skip_sync) {
    __shared__ float as[kTile][kTile];
    __shared__ float bs[kTile][kTile];
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int row = blockIdx.y * kTile + ty, col = blockIdx.x * kTile + tx;
    float acc = 0.0f;
    for (int k0 = 0; k0 < K; k0 += kTile) {
        as[ty][tx] = (row < M && k0 + tx < K) ? a[row * K + k0 + tx] : 0.0f;
        bs[ty][tx] = (k0 + ty < K && col < N) ? b[(k0 + ty) * N + col] : 0.0f;
        if (skip_sync != 1) __syncthreads();
        for (int kk = 0; kk < kTile; ++kk) acc += as[ty][kk] * bs[kk][tx];
        if (skip_sync != 2) __syncthreads();
    }
    if (row < M && col < N) c[row * N + col] = acc;
}

// mode 0: every thread at one barrier (fine); 1: two halves at different __syncthreads;
// 2: the upper half returns while the lower half waits at a barrier.
__global__ void barrier_kernel(float* out, int mode) {
    const int t = threadIdx.x;
    if (mode == 1) {
        if (t < 16) {
            __syncthreads();  // [lower half]
        } else {
            __syncthreads();  // [upper half]
        }
    } else if (mode == 2) {
        if (t >= 16) return;  // [exit]
        __syncthreads();      // [wait]
    } else {
        __syncthreads();
    }
    out[t] = float(t);
}

// Warp sum by __shfl_xor_sync (butterfly) and by __shfl_down_sync; lanes >= active return first,
// so active < 32 with the full mask is a planted bug (a mask naming exited lanes).
__global__ void warp_reduce_kernel(const float* in, float* out, int active) {
    const int t = threadIdx.x;
    const int lane = t % warpSize;
    if (lane >= active) return;
    float v = in[t];
    float x = v;
    for (int m = 16; m >= 1; m /= 2) x += __shfl_xor_sync(0xffffffffu, x, m);  // [xor]
    float d = v;
    for (int s = 16; s >= 1; s /= 2) d += __shfl_down_sync(0xffffffffu, d, s);
    const unsigned int ballot = __ballot_sync(0xffffffffu, v > 0.0f);
    out[4 * t + 0] = x;
    out[4 * t + 1] = __shfl_sync(0xffffffffu, d, 0);
    out[4 * t + 2] = float(__popc(ballot));
    out[4 * t + 3] = float(__any_sync(0xffffffffu, v > 100.0f) + 2 * __all_sync(0xffffffffu, v > -100.0f));
}

// Every shuffle flavour with a sub-warp width, for the PTX segment semantics:
// out[4t..4t+3] = shfl(src), shfl_up(delta), shfl_down(delta), shfl_xor(lane_mask) of in[t].
__global__ void shuffle_kernel(const float* in, float* out, int src, int delta, int lane_mask, int width) {
    const int t = threadIdx.x;
    const float v = in[t];
    out[4 * t + 0] = __shfl_sync(0xffffffffu, v, src, width);
    out[4 * t + 1] = __shfl_up_sync(0xffffffffu, v, delta, width);
    out[4 * t + 2] = __shfl_down_sync(0xffffffffu, v, delta, width);
    out[4 * t + 3] = __shfl_xor_sync(0xffffffffu, v, lane_mask, width);
}

// Lane 0 waits at a shuffle for lane 1, which waits at __syncthreads: a deadlock.
__global__ void deadlock_kernel(float* out) {
    float v = float(threadIdx.x);
    if (threadIdx.x == 0) {
        v = __shfl_sync(0x3u, v, 1);  // [deadlock shfl]
    } else {
        __syncthreads();
    }
    out[threadIdx.x] = v;
}

// Copies the block's dynamic shared memory (n floats) to out before and after writing it:
// out[0:n] shows the initial contents (NaN), out[n:2n] = the values written.
__global__ void dynamic_shared_kernel(float* out, int n) {
    extern __shared__ float smem[];
    for (int i = threadIdx.x; i < n; i += blockDim.x) out[i] = smem[i];
    __syncthreads();
    for (int i = threadIdx.x; i < n; i += blockDim.x) smem[i] = float(i);
    __syncthreads();
    for (int i = threadIdx.x; i < n; i += blockDim.x) out[n + i] = smem[n - 1 - i];
}

// out[t] = the static shared array's contents before any write (NaN), then atomics on out[n].
__global__ void static_shared_kernel(float* out, int* counter) {
    __shared__ float fresh[256];
    out[threadIdx.x] = fresh[threadIdx.x];
    atomicAdd(counter, 1);
}

// out[i] = in[i] for i < n + overrun: overrun > 0 reads past the end of `in`.
__global__ void copy_kernel(const float* in, float* out, int n, int overrun) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n + overrun) out[i] = in[i];  // [overrun]
}

// out[t] = the sum of the float4 at in + offset + 4t; offset 1 is misaligned (a planted bug that
// UndefinedBehaviorSanitizer reports; on a GPU it is a misaligned-address fault).
__global__ void vector_load_kernel(const float* in, float* out, int offset) {
    const float4 v = *reinterpret_cast<const float4*>(in + offset + 4 * threadIdx.x);  // [float4]
    out[threadIdx.x] = v.x + v.y + v.z + v.w;
}

__global__ void empty_kernel(float* out) {
    if (out != nullptr && threadIdx.x == 0 && blockIdx.x == 0) out[0] = 1.0f;
}

}  // namespace

void tiled_gemm(const float* a, const float* b, float* c, int M, int N, int K, int skip_sync) {
    const dim3 grid((N + kTile - 1) / kTile, (M + kTile - 1) / kTile);
    tiled_gemm_kernel<<<grid, dim3(kTile, kTile)>>>(a, b, c, M, N, K, skip_sync);
    check(cudaGetLastError(), "tiled_gemm launch");
}

void barrier(float* out, int mode) {
    barrier_kernel<<<1, 32>>>(out, mode);
    check(cudaGetLastError(), "barrier launch");
}

void warp_reduce(const float* in, float* out, int threads, int active) {
    warp_reduce_kernel<<<1, threads>>>(in, out, active);
    check(cudaGetLastError(), "warp_reduce launch");
}

void shuffle(const float* in, float* out, int src, int delta, int lane_mask, int width) {
    shuffle_kernel<<<1, 32>>>(in, out, src, delta, lane_mask, width);
    check(cudaGetLastError(), "shuffle launch");
}

void deadlock(float* out) {
    deadlock_kernel<<<1, 2>>>(out);
    check(cudaGetLastError(), "deadlock launch");
}

void dynamic_shared(float* out, int n, int opt_in_bytes) {
    if (opt_in_bytes > 0)
        check(cudaFuncSetAttribute(dynamic_shared_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, opt_in_bytes),
              "cudaFuncSetAttribute");
    dynamic_shared_kernel<<<1, 128, size_t(n) * sizeof(float)>>>(out, n);
    check(cudaGetLastError(), "dynamic_shared launch");
}

void static_shared(float* out, int* counter, int blocks) {
    static_shared_kernel<<<blocks, 256>>>(out, counter);
    check(cudaGetLastError(), "static_shared launch");
}

void vector_load(const float* in, float* out, int threads, int offset) {
    vector_load_kernel<<<1, threads>>>(in, out, offset);
    check(cudaGetLastError(), "vector_load launch");
}

void launch_empty(unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz, float* out) {
    empty_kernel<<<dim3(gx, gy, gz), dim3(bx, by, bz)>>>(out);
    check(cudaGetLastError(), "empty launch");
}

// Reads n + overrun floats from a fresh cudaMalloc of n floats: the sanitizer build reports it.
void out_of_bounds_read(int n, int overrun) {
    float* in = nullptr;
    float* out = nullptr;
    check(cudaMalloc(&in, size_t(n) * sizeof(float)), "cudaMalloc");
    check(cudaMalloc(&out, size_t(n + overrun) * sizeof(float)), "cudaMalloc");
    copy_kernel<<<(n + overrun + 63) / 64, 64>>>(in, out, n, overrun);
    const cudaError_t err = cudaGetLastError();
    cudaFree(in);
    cudaFree(out);
    check(err, "copy launch");
}

std::vector<float> fresh_allocation(int n) {
    float* p = nullptr;
    check(cudaMalloc(&p, size_t(n) * sizeof(float)), "cudaMalloc");
    std::vector<float> out(static_cast<size_t>(n));
    check(cudaMemcpy(out.data(), p, size_t(n) * sizeof(float), cudaMemcpyDeviceToHost), "cudaMemcpy");
    check(cudaFree(p), "cudaFree");
    return out;
}

}  // namespace ekdaa_sim_selftest

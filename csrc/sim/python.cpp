// python.cpp — the simulator-only part of ekdaa_cuda._sim (bindings/module.cpp calls
// register_sim when built with EKDAA_SIM): KernelError, launch counting, the thread schedule,
// the number of worker threads, and the selftest_* entry points of csrc/sim/selftest.cu.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <thread>

#include "cuda_runtime.h"
#include "selftest.h"

namespace py = pybind11;

namespace {

const char* schedule_name(ekdaa_sim::Schedule s) {
    switch (s) {
        case ekdaa_sim::Schedule::kReverse: return "reverse";
        case ekdaa_sim::Schedule::kShuffle: return "shuffle";
        default: return "forward";
    }
}

template <typename T>
T* ptr(std::uintptr_t address) {
    return reinterpret_cast<T*>(address);
}

// Built with -mfma (EKDAA_SIM_FMA): refuse to load on a CPU without FMA instead of dying of SIGILL
// in the first kernel. Only the kernel objects use FMA instructions; this file does not.
void check_cpu() {
#if defined(EKDAA_SIM_FMA) && (defined(__x86_64__) || defined(__i386__))
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("fma") || !__builtin_cpu_supports("avx"))
        throw std::runtime_error(
            "ekdaa_cuda._sim was built with FMA instructions (EKDAA_SIM_FMA) but this CPU has none; "
            "reinstall with EKDAA_SIM_FMA=OFF");
#endif
}

}  // namespace

void register_sim(py::module_& m) {
    check_cpu();
    py::register_exception<ekdaa_sim::KernelError>(m, "KernelError", PyExc_RuntimeError);
    m.attr("SIMULATOR") = true;
#if defined(EKDAA_SIM_FMA)
    m.attr("FMA") = true;
#else
    m.attr("FMA") = false;
#endif
#if defined(__SANITIZE_ADDRESS__)
    m.attr("SANITIZED") = true;
#else
    m.attr("SANITIZED") = false;
#endif
    m.def(
        "launch_count", [] { return ekdaa_sim::settings().launches.load(); },
        "Kernel launches that ran since the module was loaded or reset_launch_count() was called "
        "(a launch refused for its configuration does not count).");
    m.def(
        "reset_launch_count", [] { ekdaa_sim::settings().launches = 0; }, "Set launch_count() to 0.");
    m.def(
        "set_schedule",
        [](const std::string& name, unsigned long long seed) {
            ekdaa_sim::Schedule s;
            if (name == "forward") s = ekdaa_sim::Schedule::kForward;
            else if (name == "reverse") s = ekdaa_sim::Schedule::kReverse;
            else if (name == "shuffle") s = ekdaa_sim::Schedule::kShuffle;
            else throw std::invalid_argument("set_schedule: name must be 'forward', 'reverse' or 'shuffle', got '" + name + "'");
            ekdaa_sim::settings().schedule = int(s);
            ekdaa_sim::settings().seed = seed;
        },
        py::arg("name"), py::arg("seed") = 0,
        "Order in which a block's threads resume after each barrier or warp collective: 'forward' (thread "
        "0 first), 'reverse', or 'shuffle' (a permutation drawn from seed and the block index at every "
        "barrier). 'reverse' also runs the blocks in reverse order.");
    m.def(
        "schedule",
        [] {
            return py::make_tuple(schedule_name(ekdaa_sim::Schedule(ekdaa_sim::settings().schedule.load())),
                                  ekdaa_sim::settings().seed.load());
        },
        "The current schedule as (name, seed).");
    m.def(
        "set_workers",
        [](int n) {
            if (n < 1 || n > 256) throw std::invalid_argument("set_workers: n must be in [1, 256], got " + std::to_string(n));
            ekdaa_sim::settings().workers = n;
        },
        py::arg("n"), "Number of OS threads that run a launch's blocks (default 1).");
    m.def(
        "workers", [] { return ekdaa_sim::settings().workers.load(); }, "Number of OS threads that run blocks.");

    namespace st = ekdaa_sim_selftest;
    using A = std::uintptr_t;
    m.def(
        "selftest_tiled_gemm",
        [](A a, A b, A c, int M, int N, int K, int skip_sync) {
            st::tiled_gemm(ptr<const float>(a), ptr<const float>(b), ptr<float>(c), M, N, K, skip_sync);
        },
        py::arg("a"), py::arg("b"), py::arg("c"), py::arg("M"), py::arg("N"), py::arg("K"), py::arg("skip_sync") = 0,
        "Simulator test: C[M, N] = A[M, K]·B[K, N] by 16x16 shared-memory tiles; skip_sync = 1 or 2 drops a barrier.");
    m.def(
        "selftest_barrier", [](A out, int mode) { st::barrier(ptr<float>(out), mode); }, py::arg("out"),
        py::arg("mode"), "Simulator test: 32 threads, mode 0 fine, 1 divergent barrier, 2 exit while others wait.");
    m.def(
        "selftest_warp_reduce",
        [](A in, A out, int threads, int active) { st::warp_reduce(ptr<const float>(in), ptr<float>(out), threads, active); },
        py::arg("in_"), py::arg("out"), py::arg("threads"), py::arg("active"),
        "Simulator test: full-mask warp sums; lanes >= active exit first.");
    m.def(
        "selftest_shuffle",
        [](A in, A out, int src, int delta, int lane_mask, int width) {
            st::shuffle(ptr<const float>(in), ptr<float>(out), src, delta, lane_mask, width);
        },
        py::arg("in_"), py::arg("out"), py::arg("src"), py::arg("delta"), py::arg("lane_mask"), py::arg("width"),
        "Simulator test: __shfl_sync / _up / _down / _xor with a width.");
    m.def(
        "selftest_deadlock", [](A out) { st::deadlock(ptr<float>(out)); }, py::arg("out"),
        "Simulator test: a shuffle waiting for a lane that waits at __syncthreads.");
    m.def(
        "selftest_dynamic_shared", [](A out, int n, int opt_in) { st::dynamic_shared(ptr<float>(out), n, opt_in); },
        py::arg("out"), py::arg("n"), py::arg("opt_in_bytes") = 0,
        "Simulator test: n floats of dynamic shared memory (opt_in_bytes > 0: cudaFuncSetAttribute first).");
    m.def(
        "selftest_static_shared",
        [](A out, A counter, int blocks) { st::static_shared(ptr<float>(out), ptr<int>(counter), blocks); },
        py::arg("out"), py::arg("counter"), py::arg("blocks"),
        "Simulator test: initial static shared memory of one block; atomicAdd(counter, 1) per thread.");
    m.def(
        "selftest_launch",
        [](std::tuple<unsigned, unsigned, unsigned> grid, std::tuple<unsigned, unsigned, unsigned> block, A out) {
            st::launch_empty(std::get<0>(grid), std::get<1>(grid), std::get<2>(grid), std::get<0>(block),
                             std::get<1>(block), std::get<2>(block), ptr<float>(out));
        },
        py::arg("grid"), py::arg("block"), py::arg("out") = 0,
        "Simulator test: launch an (almost) empty kernel with this configuration; errors as from a GPU.");
    m.def(
        "selftest_vector_load",
        [](A in, A out, int threads, int offset) { st::vector_load(ptr<const float>(in), ptr<float>(out), threads, offset); },
        py::arg("in_"), py::arg("out"), py::arg("threads"), py::arg("offset"),
        "Simulator test: out[t] = sum of the float4 at in + offset + 4t (offset 1: misaligned, for the sanitizer build).");
    m.def("selftest_out_of_bounds_read", &st::out_of_bounds_read, py::arg("n"), py::arg("overrun"),
          "Simulator test: a kernel reads `overrun` floats past a cudaMalloc'ed array (for the sanitizer build).");
    m.def("selftest_fresh_allocation", &st::fresh_allocation, py::arg("n"),
          "Simulator test: the contents of a fresh cudaMalloc of n floats (NaN).");
}

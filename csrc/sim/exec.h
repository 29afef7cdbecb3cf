// exec.h — the CUDA execution model on the CPU.
//
// A launch is checked as CUDA checks it (block and grid limits, dynamic shared memory against
// 48 KiB or the kernel's opt-in attribute); a bad configuration is reported through
// cudaGetLastError() and nothing runs. Otherwise the grid's blocks are shared out to
// `workers()` OS threads; each block runs its CUDA threads as fibers (Boost.Context fcontext,
// 64 KiB pooled stacks with a guard page). A fiber runs until it exits or reaches
// __syncthreads() or a warp collective; then the block's scheduler resumes the others, in the
// order the schedule gives (forward, reverse, or a seeded shuffle redrawn at every barrier).
// Kernel bugs the scheduler sees — threads of a block at different __syncthreads, a thread
// exiting while others wait at a barrier, a warp mask naming an exited or nonexistent lane,
// a deadlock — throw ekdaa_sim::KernelError naming kernel, block, thread and file:line.
// Shared memory is a fresh heap buffer per block and declaration, every byte 0xFF (NaN).
#pragma once

#include <boost/context/detail/fcontext.hpp>
#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <functional>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "device_api.h"
#include "runtime.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#define EKDAA_SIM_ASAN 1
#else
#define EKDAA_SIM_ASAN 0
#endif

namespace ekdaa_sim {

namespace bctx = boost::context::detail;

// A bug in a kernel found while it ran (Python: ekdaa_cuda._sim.KernelError, a RuntimeError).
class KernelError : public std::runtime_error {
   public:
    using std::runtime_error::runtime_error;
};

enum class Schedule { kForward, kReverse, kShuffle };

// Global settings and counters (set from Python through ekdaa_cuda._sim).
struct Settings {
    std::atomic<int> schedule{int(Schedule::kForward)};
    std::atomic<unsigned long long> seed{0};
    std::atomic<int> workers{1};
    std::atomic<unsigned long long> launches{0};
};
inline Settings& settings() {
    static Settings s;
    return s;
}

// ------------------------------------------------------------------ stacks
#if EKDAA_SIM_ASAN
inline constexpr size_t kStackBytes = 256 * 1024;  // sanitizer frames are larger
#else
inline constexpr size_t kStackBytes = 64 * 1024;
#endif

// One mmap'ed stack with a PROT_NONE guard page below it: an overflow faults instead of
// corrupting the next stack.
struct Stack {
    void* base = nullptr;  // start of the mapping (the guard page)
    size_t mapped = 0;
    void* top() const { return static_cast<char*>(base) + mapped; }
    size_t usable() const { return mapped - guard(); }
    static size_t guard() { return size_t(sysconf(_SC_PAGESIZE)); }
};

inline Stack make_stack() {
    Stack s;
    s.mapped = kStackBytes + Stack::guard();
    s.base = mmap(nullptr, s.mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (s.base == MAP_FAILED) throw std::bad_alloc();
    if (mprotect(s.base, Stack::guard(), PROT_NONE) != 0) {
        munmap(s.base, s.mapped);
        throw std::bad_alloc();
    }
    return s;
}

// ------------------------------------------------------------------ simulated threads
enum class State { kReady, kBarrier, kWarp, kExited };
enum class WarpOp { kSync, kShfl, kShflUp, kShflDown, kShflXor, kBallot, kAny, kAll };
enum class BarrierOp { kPlain, kCount, kAnd, kOr };

inline const char* warp_op_name(WarpOp op) {
    switch (op) {
        case WarpOp::kSync: return "__syncwarp";
        case WarpOp::kShfl: return "__shfl_sync";
        case WarpOp::kShflUp: return "__shfl_up_sync";
        case WarpOp::kShflDown: return "__shfl_down_sync";
        case WarpOp::kShflXor: return "__shfl_xor_sync";
        case WarpOp::kBallot: return "__ballot_sync";
        case WarpOp::kAny: return "__any_sync";
        default: return "__all_sync";
    }
}

struct SimThread {
    bctx::fcontext_t ctx = nullptr;
    uint3 idx{0, 0, 0};
    int linear = 0;
    State state = State::kReady;
    const char* file = "";  // where it waits
    int line = 0;
    // barrier / warp collective request and result
    BarrierOp bop = BarrierOp::kPlain;
    WarpOp op = WarpOp::kSync;
    unsigned int mask = 0;
    int arg = 0, width = 32;
    unsigned long long value = 0, result = 0;
    std::exception_ptr error;
};

struct SharedSlot {
    const void* tag;
    void* ptr;
    size_t align;
};

struct LaunchInfo {
    const char* kernel;
    const void* kernel_address;
    const char* file;
    int line;
    dim3 grid, block;
    size_t dynamic_shared;
    void (*invoke)(const void* data);
    const void* data;
};

inline std::string fmt3(const uint3& v) {
    return "(" + std::to_string(v.x) + ", " + std::to_string(v.y) + ", " + std::to_string(v.z) + ")";
}
inline std::string where(const char* file, int line) { return std::string(file) + ":" + std::to_string(line); }

// Runs blocks on one OS thread. One per worker thread (thread_local), reused across launches.
class BlockRunner {
   public:
    ~BlockRunner() {
        for (Stack& s : stacks_) munmap(s.base, s.mapped);
    }

    // The runner of the calling OS thread, and the simulated thread it is running (inside a kernel).
    static BlockRunner*& current() {
        static thread_local BlockRunner* r EKDAA_SIM_TLS = nullptr;
        return r;
    }
    SimThread& self() { return threads_[running_]; }
    // "kernel K (launched at file:line), block (x, y, z), thread (x, y, z)" of the running thread.
    std::string running_thread_name() const { return thread_name(threads_[size_t(running_)]); }

    void run_block(const LaunchInfo& L, uint3 block, unsigned long long block_linear) {
        info_ = &L;
        blockIdx = block;
        blockDim = L.block;
        gridDim = L.grid;
        const int n = int(L.block.x * L.block.y * L.block.z);
        threads_.assign(size_t(n), SimThread{});
        while (stacks_.size() < size_t(n)) stacks_.push_back(make_stack());
        for (int i = 0; i < n; ++i) {
            SimThread& t = threads_[size_t(i)];
            t.linear = i;
            t.idx = uint3{unsigned(i) % L.block.x, (unsigned(i) / L.block.x) % L.block.y,
                          unsigned(i) / (L.block.x * L.block.y)};
            // Stagger the stack tops within a page: otherwise every fiber's hot frames map to the
            // same L1 cache sets and evict each other at each switch.
            const size_t stagger = size_t(i) * 320 % 4096;
            t.ctx = bctx::make_fcontext(static_cast<char*>(stacks_[size_t(i)].top()) - stagger,
                                        stacks_[size_t(i)].usable() - stagger, &BlockRunner::entry);
        }
        free_shared();
        if (L.dynamic_shared > 0) {
            dynamic_ = ::operator new(L.dynamic_shared, std::align_val_t(16));
            std::memset(dynamic_, 0xFF, L.dynamic_shared);
        }
        rng_ = (settings().seed.load() + 1) * 0x9E3779B97F4A7C15ULL ^ (block_linear * 0xBF58476D1CE4E5B9ULL);
        const Schedule schedule = Schedule(settings().schedule.load());
        std::vector<int> order(static_cast<size_t>(n), 0);
        struct Cleanup {
            BlockRunner* r;
            ~Cleanup() { r->free_shared(); }
        } cleanup{this};

        int living = n;
        for (;;) {
            make_order(schedule, order);
            for (int i : order) {
                SimThread& t = threads_[size_t(i)];
                if (t.state != State::kReady) continue;
                resume(i);
                if (t.error) rethrow_in_kernel(t);
                if (t.state == State::kExited) --living;
            }
            if (living == 0) break;
            if (resolve_warps()) continue;
            release_barrier(living);
        }
    }

    // Static shared memory of the last finished block (summed over its __shared__ declarations).
    size_t static_shared_bytes() const { return static_bytes_; }

    // ---- called from inside a kernel (on a fiber)
    void* shared_slot(const void* tag, size_t size, size_t align) {
        for (const SharedSlot& s : slots_)
            if (s.tag == tag) return s.ptr;
        const size_t a = std::max<size_t>(align, 16);
        void* p = ::operator new(size, std::align_val_t(a));
        std::memset(p, 0xFF, size);  // NaN: a read before the first write shows
        slots_.push_back(SharedSlot{tag, p, a});
        slot_sizes_.push_back(size);
        return p;
    }
    void* dynamic_shared() { return dynamic_; }

    int barrier(const char* file, int line, BarrierOp op, int pred) {
        SimThread& t = self();
        t.state = State::kBarrier;
        t.file = file;
        t.line = line;
        t.bop = op;
        t.value = pred != 0;
        yield();
        return int(t.result);
    }

    unsigned long long warp(WarpOp op, unsigned int mask, unsigned long long value, int arg, int width,
                            const char* file, int line) {
        SimThread& t = self();
        t.state = State::kWarp;
        t.op = op;
        t.mask = mask;
        t.value = value;
        t.arg = arg;
        t.width = width;
        t.file = file;
        t.line = line;
        yield();
        return t.result;
    }

    unsigned int active_mask() {
        const int w = self().linear / 32;
        unsigned int m = 0;
        for (int l = 0; l < 32; ++l) {
            const int i = w * 32 + l;
            if (i < int(threads_.size()) && threads_[size_t(i)].state != State::kExited) m |= 1u << l;
        }
        return m;
    }

   private:
    static void entry(bctx::transfer_t from) {
        BlockRunner* r = current();
#if EKDAA_SIM_ASAN
        __sanitizer_finish_switch_fiber(nullptr, &r->sched_stack_bottom_, &r->sched_stack_size_);
#endif
        r->sched_ = from.fctx;
        SimThread& t = r->self();
        try {
            r->info_->invoke(r->info_->data);
        } catch (...) {
            t.error = std::current_exception();
        }
        t.state = State::kExited;
        r->switch_to_scheduler(true);
    }

    void switch_to_scheduler(bool exiting) {
#if EKDAA_SIM_ASAN
        __sanitizer_start_switch_fiber(exiting ? nullptr : &fake_stack_, sched_stack_bottom_, sched_stack_size_);
#else
        (void)exiting;
#endif
        bctx::transfer_t back = bctx::jump_fcontext(sched_, nullptr);
#if EKDAA_SIM_ASAN
        __sanitizer_finish_switch_fiber(fake_stack_, &sched_stack_bottom_, &sched_stack_size_);
#endif
        sched_ = back.fctx;
    }

    void yield() { switch_to_scheduler(false); }

    void resume(int i) {
        running_ = i;
        SimThread& t = threads_[size_t(i)];
        threadIdx = t.idx;
#if EKDAA_SIM_ASAN
        void* fake = nullptr;
        __sanitizer_start_switch_fiber(&fake, static_cast<char*>(stacks_[size_t(i)].top()) - stacks_[size_t(i)].usable(),
                                       stacks_[size_t(i)].usable());
#endif
        bctx::transfer_t back = bctx::jump_fcontext(t.ctx, nullptr);
#if EKDAA_SIM_ASAN
        __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#endif
        t.ctx = back.fctx;
    }

    std::string thread_name(const SimThread& t) const {
        return "kernel " + std::string(info_->kernel) + " (launched at " + where(info_->file, info_->line) +
               "), block " + fmt3(blockIdx) + ", thread " + fmt3(t.idx);
    }

    [[noreturn]] void rethrow_in_kernel(const SimThread& t) {
        std::string what = "unknown exception";
        try {
            std::rethrow_exception(t.error);
        } catch (const std::exception& e) {
            what = e.what();
        } catch (...) {
        }
        throw KernelError(thread_name(t) + ": exception thrown inside the kernel: " + what);
    }

    void make_order(Schedule schedule, std::vector<int>& order) {
        const int n = int(order.size());
        for (int i = 0; i < n; ++i) order[size_t(i)] = schedule == Schedule::kReverse ? n - 1 - i : i;
        if (schedule != Schedule::kShuffle) return;
        for (int i = n - 1; i > 0; --i) std::swap(order[size_t(i)], order[size_t(next_random() % unsigned(i + 1))]);
    }

    unsigned long long next_random() {  // splitmix64
        unsigned long long z = (rng_ += 0x9E3779B97F4A7C15ULL);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
        return z ^ (z >> 31);
    }

    // Resolve every warp collective whose named lanes have all arrived. True if any thread became ready.
    bool resolve_warps() {
        bool progress = false;
        const int n = int(threads_.size());
        for (SimThread& t : threads_) {
            if (t.state != State::kWarp) continue;
            const int base = t.linear / 32 * 32, lane = t.linear - base;
            if (!(t.mask >> lane & 1u))
                throw KernelError(thread_name(t) + " at " + where(t.file, t.line) + ": " + warp_op_name(t.op) +
                                  " mask " + hex(t.mask) + " does not name the calling lane " + std::to_string(lane));
            if (t.op != WarpOp::kSync && t.op != WarpOp::kBallot && t.op != WarpOp::kAny && t.op != WarpOp::kAll &&
                (t.width < 1 || t.width > 32 || (t.width & (t.width - 1)) != 0))
                throw KernelError(thread_name(t) + " at " + where(t.file, t.line) + ": " + warp_op_name(t.op) +
                                  " width " + std::to_string(t.width) + " is not a power of 2 in [1, 32]");
            bool all_here = true;
            for (int l = 0; l < 32; ++l) {
                if (!(t.mask >> l & 1u)) continue;
                const int i = base + l;
                if (i >= n)
                    throw KernelError(thread_name(t) + " at " + where(t.file, t.line) + ": " + warp_op_name(t.op) +
                                      " mask " + hex(t.mask) + " names lane " + std::to_string(l) +
                                      ", which does not exist (the block has " + std::to_string(n) + " threads)");
                const SimThread& u = threads_[size_t(i)];
                if (u.state == State::kExited)
                    throw KernelError(thread_name(t) + " at " + where(t.file, t.line) + ": " + warp_op_name(t.op) +
                                      " mask " + hex(t.mask) + " names lane " + std::to_string(l) +
                                      ", which has exited");
                if (u.state != State::kWarp || u.mask != t.mask) all_here = false;
            }
            if (!all_here) continue;
            for (int l = 0; l < 32; ++l) {
                if (!(t.mask >> l & 1u)) continue;
                const SimThread& u = threads_[size_t(base + l)];
                if (u.op != t.op)
                    throw KernelError(thread_name(u) + " at " + where(u.file, u.line) + ": " + warp_op_name(u.op) +
                                      " meets " + warp_op_name(t.op) + " of lane " + std::to_string(lane) + " at " +
                                      where(t.file, t.line) + " with the same mask " + hex(t.mask));
            }
            complete_warp_op(base, t.mask);
            progress = true;
        }
        return progress;
    }

    void complete_warp_op(int base, unsigned int mask) {
        unsigned int votes = 0;
        for (int l = 0; l < 32; ++l)
            if ((mask >> l & 1u) && threads_[size_t(base + l)].value != 0) votes |= 1u << l;
        for (int l = 0; l < 32; ++l) {
            if (!(mask >> l & 1u)) continue;
            SimThread& u = threads_[size_t(base + l)];
            switch (u.op) {
                case WarpOp::kSync: u.result = 0; break;
                case WarpOp::kBallot: u.result = votes; break;
                case WarpOp::kAny: u.result = votes != 0; break;
                case WarpOp::kAll: u.result = votes == mask; break;
                default: {
                    // PTX shfl.sync: lanes form segments of `width`; a source outside the lane's
                    // segment (up/down/xor) yields the lane's own value.
                    const int seg = l & ~(u.width - 1);
                    int src = l;
                    if (u.op == WarpOp::kShfl) src = seg + (u.arg & (u.width - 1));
                    else if (u.op == WarpOp::kShflUp) src = l - u.arg;
                    else if (u.op == WarpOp::kShflDown) src = l + u.arg;
                    else src = l ^ u.arg;
                    if (src < seg || src >= seg + u.width) src = l;
                    if (!(mask >> src & 1u))
                        throw KernelError(thread_name(u) + " at " + where(u.file, u.line) + ": " + warp_op_name(u.op) +
                                          " reads lane " + std::to_string(src) + ", which is not in the mask " +
                                          hex(mask) + " (its value is undefined on a GPU)");
                    u.result = threads_[size_t(base + src)].value;
                }
            }
        }
        for (int l = 0; l < 32; ++l)
            if (mask >> l & 1u) threads_[size_t(base + l)].state = State::kReady;
    }

    // Every living thread must be at the same __syncthreads; none may have exited.
    void release_barrier(int living) {
        const SimThread* first = nullptr;
        const SimThread* exited = nullptr;
        const SimThread* warp_waiter = nullptr;
        for (const SimThread& t : threads_) {
            if (t.state == State::kExited && exited == nullptr) exited = &t;
            if (t.state == State::kWarp && warp_waiter == nullptr) warp_waiter = &t;
            if (t.state == State::kBarrier && first == nullptr) first = &t;
        }
        if (warp_waiter != nullptr) {
            std::string others;
            for (int l = 0; l < 32; ++l) {
                const int i = warp_waiter->linear / 32 * 32 + l;
                if (!(warp_waiter->mask >> l & 1u) || i >= int(threads_.size())) continue;
                const SimThread& u = threads_[size_t(i)];
                if (u.state == State::kBarrier) {
                    others = "; lane " + std::to_string(l) + " " + fmt3(u.idx) + " waits at __syncthreads at " +
                             where(u.file, u.line);
                    break;
                }
            }
            throw KernelError("deadlock: " + thread_name(*warp_waiter) + " waits at " +
                              warp_op_name(warp_waiter->op) + " at " + where(warp_waiter->file, warp_waiter->line) +
                              " (mask " + hex(warp_waiter->mask) + ") for lanes that never arrive" + others);
        }
        for (const SimThread& t : threads_) {
            if (t.state != State::kBarrier) continue;
            if (t.line != first->line || std::strcmp(t.file, first->file) != 0)
                throw KernelError("barrier divergence: " + thread_name(t) + " waits at __syncthreads at " +
                                  where(t.file, t.line) + " while thread " + fmt3(first->idx) +
                                  " waits at __syncthreads at " + where(first->file, first->line));
        }
        if (exited != nullptr)
            throw KernelError(thread_name(*exited) + " exited while " + std::to_string(living) +
                              " thread(s) wait at __syncthreads at " + where(first->file, first->line) +
                              " (e.g. thread " + fmt3(first->idx) + ")");
        int count = 0;
        for (const SimThread& t : threads_) count += int(t.value != 0);
        for (SimThread& t : threads_) {
            switch (t.bop) {
                case BarrierOp::kPlain: t.result = 0; break;
                case BarrierOp::kCount: t.result = (unsigned long long)count; break;
                case BarrierOp::kAnd: t.result = count == living; break;
                case BarrierOp::kOr: t.result = count != 0; break;
            }
            t.state = State::kReady;
        }
    }

    static std::string hex(unsigned int m) {
        char buf[16];
        std::snprintf(buf, sizeof(buf), "0x%08x", m);
        return buf;
    }

    void free_shared() {
        static_bytes_ = 0;
        for (size_t i = 0; i < slots_.size(); ++i) {
            static_bytes_ += slot_sizes_[i];
            ::operator delete(slots_[i].ptr, std::align_val_t(slots_[i].align));
        }
        slots_.clear();
        slot_sizes_.clear();
        if (dynamic_ != nullptr) ::operator delete(dynamic_, std::align_val_t(16));
        dynamic_ = nullptr;
    }

    const LaunchInfo* info_ = nullptr;
    std::vector<SimThread> threads_;
    std::vector<Stack> stacks_;
    std::vector<SharedSlot> slots_;
    std::vector<size_t> slot_sizes_;
    void* dynamic_ = nullptr;
    size_t static_bytes_ = 0;
    int running_ = 0;
    bctx::fcontext_t sched_ = nullptr;
    unsigned long long rng_ = 0;
#if EKDAA_SIM_ASAN
    void* fake_stack_ = nullptr;
    const void* sched_stack_bottom_ = nullptr;
    size_t sched_stack_size_ = 0;
#endif
};

#if EKDAA_SIM_ASAN
// Sanitizer build: when ASan/UBSan abort inside a kernel, name the CUDA block and thread beside
// their report (the report itself gives the kernel's source line).
inline void report_kernel_thread_on_death() {
    const BlockRunner* r = BlockRunner::current();
    if (r == nullptr) return;
    const std::string line = "ekdaa_sim: the sanitizer error above happened in " + r->running_thread_name() + "\n";
    std::fputs(line.c_str(), stderr);
}
#endif

inline BlockRunner& runner_of_this_thread() {
#if EKDAA_SIM_ASAN
    static const bool registered = (__sanitizer_set_death_callback(&report_kernel_thread_on_death), true);
    (void)registered;
#endif
    static thread_local BlockRunner runner;
    BlockRunner::current() = &runner;
    return runner;
}

inline BlockRunner& in_kernel(const char* what) {
    BlockRunner* r = BlockRunner::current();
    if (r == nullptr) throw std::logic_error(std::string(what) + " called outside a kernel");
    return *r;
}

// ------------------------------------------------------------------ launch
inline cudaError_t check_configuration(const LaunchInfo& L) {
    using Lim = Limits;
    const dim3 b = L.block, g = L.grid;
    if (b.x == 0 || b.y == 0 || b.z == 0 || b.x > unsigned(Lim::kMaxBlockDimXY) || b.y > unsigned(Lim::kMaxBlockDimXY) ||
        b.z > unsigned(Lim::kMaxBlockDimZ) ||
        (unsigned long long)b.x * b.y * b.z > (unsigned long long)Lim::kMaxThreadsPerBlock)
        return cudaErrorInvalidConfiguration;
    if (g.x == 0 || g.y == 0 || g.z == 0 || g.x > (unsigned long long)Lim::kMaxGridDimX ||
        g.y > unsigned(Lim::kMaxGridDimYZ) || g.z > unsigned(Lim::kMaxGridDimYZ))
        return cudaErrorInvalidConfiguration;
    auto& fa = func_attributes();
    std::lock_guard<std::mutex> lock(fa.mutex);
    const auto s = fa.static_shared.find(L.kernel_address);
    const size_t static_bytes = s == fa.static_shared.end() ? 0 : s->second;
    const auto opt = fa.max_dynamic_shared.find(L.kernel_address);
    const size_t limit = opt != fa.max_dynamic_shared.end()
                             ? std::max<size_t>(size_t(opt->second), size_t(Lim::kSharedPerBlock) - std::min<size_t>(static_bytes, Lim::kSharedPerBlock))
                             : size_t(Lim::kSharedPerBlock) - std::min<size_t>(static_bytes, Lim::kSharedPerBlock);
    if (L.dynamic_shared > limit) return cudaErrorInvalidValue;
    return cudaSuccess;
}

// Persistent OS threads that help run a launch's blocks (created on first use, kept so each
// keeps its fiber stacks), plus the launching thread. One launch at a time.
class WorkerPool {
   public:
    static WorkerPool& get() {
        static WorkerPool pool;
        return pool;
    }

    // Runs `job` on the calling thread and on `extra` pool threads; returns when all have finished.
    void run(int extra, const std::function<void()>& job) {
        std::lock_guard<std::mutex> one_launch(launch_mutex_);
        if (extra <= 0) {
            job();
            return;
        }
        {
            std::lock_guard<std::mutex> lock(mutex_);
            while (int(threads_.size()) < extra) threads_.emplace_back([this] { loop(); });
            job_ = &job;
            wanted_ = extra;
            taken_ = 0;
            done_ = 0;
            ++generation_;
        }
        wake_.notify_all();
        job();
        std::unique_lock<std::mutex> lock(mutex_);
        finished_.wait(lock, [&] { return done_ == wanted_; });
        job_ = nullptr;
    }

    ~WorkerPool() {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            stop_ = true;
        }
        wake_.notify_all();
        for (std::thread& t : threads_) t.join();
    }

   private:
    void loop() {
        unsigned long long seen = 0;
        std::unique_lock<std::mutex> lock(mutex_);
        for (;;) {
            wake_.wait(lock, [&] { return stop_ || (generation_ != seen && taken_ < wanted_); });
            if (stop_) return;
            seen = generation_;
            ++taken_;
            const std::function<void()>* job = job_;
            lock.unlock();
            (*job)();
            lock.lock();
            ++done_;
            finished_.notify_all();
        }
    }

    std::mutex launch_mutex_, mutex_;
    std::condition_variable wake_, finished_;
    std::vector<std::thread> threads_;
    const std::function<void()>* job_ = nullptr;
    int wanted_ = 0, taken_ = 0, done_ = 0;
    unsigned long long generation_ = 0;
    bool stop_ = false;
};

inline void run_grid(const LaunchInfo& L) {
    const unsigned long long gx = L.grid.x, gy = L.grid.y, gz = L.grid.z, total = gx * gy * gz;
    const Schedule schedule = Schedule(settings().schedule.load());
    auto block_of = [&](unsigned long long k) {
        const unsigned long long b = schedule == Schedule::kReverse ? total - 1 - k : k;
        return std::make_pair(uint3{unsigned(b % gx), unsigned(b / gx % gy), unsigned(b / (gx * gy))}, b);
    };
    const int workers = int(std::min<unsigned long long>((unsigned long long)std::max(1, settings().workers.load()), total));
    std::atomic<unsigned long long> next{0};
    std::atomic<bool> stop{false};
    std::mutex mutex;  // guards error and static_bytes
    std::exception_ptr error;
    size_t static_bytes = 0;
    const std::function<void()> work = [&] {
        BlockRunner& r = runner_of_this_thread();
        size_t mine = 0;
        try {
            for (;;) {
                if (stop.load(std::memory_order_relaxed)) break;
                const unsigned long long k = next.fetch_add(1);
                if (k >= total) break;
                const auto [block, linear] = block_of(k);
                r.run_block(L, block, linear);
                mine = std::max(mine, r.static_shared_bytes());
            }
        } catch (...) {
            std::lock_guard<std::mutex> lock(mutex);
            if (!error) error = std::current_exception();
            stop = true;
        }
        BlockRunner::current() = nullptr;
        std::lock_guard<std::mutex> lock(mutex);
        static_bytes = std::max(static_bytes, mine);
    };
    WorkerPool::get().run(workers - 1, work);
    {
        auto& fa = func_attributes();
        std::lock_guard<std::mutex> lock(fa.mutex);
        fa.static_shared[L.kernel_address] = std::max(fa.static_shared[L.kernel_address], static_bytes);
    }
    if (error) std::rethrow_exception(error);
    const size_t limit = [&] {
        auto& fa = func_attributes();
        std::lock_guard<std::mutex> lock(fa.mutex);
        const auto opt = fa.max_dynamic_shared.find(L.kernel_address);
        return opt != fa.max_dynamic_shared.end() ? size_t(Limits::kSharedPerBlockOptin) : size_t(Limits::kSharedPerBlock);
    }();
    if (static_bytes + L.dynamic_shared > limit)
        throw KernelError("kernel " + std::string(L.kernel) + " (launched at " + where(L.file, L.line) + ") uses " +
                          std::to_string(static_bytes) + " B of static and " + std::to_string(L.dynamic_shared) +
                          " B of dynamic shared memory, over the " + std::to_string(limit) + " B a block may have");
}

template <typename... P>
struct KernelArgs {
    void (*fn)(P...);
    std::tuple<std::decay_t<P>...> args;
    static void invoke(const void* data) {
        const auto* self = static_cast<const KernelArgs*>(data);
        std::apply(self->fn, self->args);  // each simulated thread gets its own copies of the parameters
    }
};

// k<<<grid, block, smem, stream>>>(args) becomes ekdaa_sim::configure(k, "k", __FILE__, __LINE__, grid,
// block, smem, stream)(args) (tools/cu2sim.py); the call runs the whole grid before it returns.
template <typename... P>
class Launch {
   public:
    Launch(void (*fn)(P...), const char* name, const char* file, int line, dim3 grid, dim3 block, size_t smem)
        : fn_(fn), name_(name), file_(file), line_(line), grid_(grid), block_(block), smem_(smem) {}

    template <typename... A>
    void operator()(A&&... a) const {
        static_assert(sizeof...(A) == sizeof...(P), "kernel launched with the wrong number of arguments");
        KernelArgs<P...> data{fn_, std::tuple<std::decay_t<P>...>(std::forward<A>(a)...)};
        LaunchInfo L{name_, reinterpret_cast<const void*>(fn_), file_, line_, grid_, block_, smem_,
                     &KernelArgs<P...>::invoke, &data};
        const cudaError_t err = check_configuration(L);
        if (err != cudaSuccess) {
            record(err);
            return;
        }
        settings().launches.fetch_add(1);
        BlockRunner* outer = BlockRunner::current();
        if (outer != nullptr) throw std::logic_error("kernel launch from inside a kernel (dynamic parallelism)");
        run_grid(L);
    }

   private:
    void (*fn_)(P...);
    const char* name_;
    const char* file_;
    int line_;
    dim3 grid_, block_;
    size_t smem_;
};

template <typename... P>
inline Launch<P...> configure(void (*fn)(P...), const char* name, const char* file, int line, dim3 grid, dim3 block,
                              size_t smem = 0, cudaStream_t = nullptr) {
    return Launch<P...>(fn, name, file, line, grid, block, smem);
}

// Function-scope __shared__ (rewritten by tools/cu2sim.py): one buffer per block and declaration.
template <typename T>
inline T& shared_var(const void* tag) {
    return *static_cast<T*>(in_kernel("__shared__").shared_slot(tag, sizeof(T), alignof(T)));
}
template <typename T>
inline T* dynamic_shared() {
    return static_cast<T*>(in_kernel("extern __shared__").dynamic_shared());
}

template <typename T>
inline unsigned long long to_bits(T v) {
    static_assert(sizeof(T) <= 8 && std::is_trivially_copyable_v<T>, "warp shuffles move values of at most 8 bytes");
    unsigned long long b = 0;
    std::memcpy(&b, &v, sizeof(T));
    return b;
}
template <typename T>
inline T from_bits(unsigned long long b) {
    T v;
    std::memcpy(&v, &b, sizeof(T));
    return v;
}

}  // namespace ekdaa_sim

// ------------------------------------------------------------------ barriers and warp collectives
// The call site (file:line) is recorded so errors point at the kernel's source line.
#define EKDAA_SIM_SITE __builtin_FILE(), __builtin_LINE()

inline void __syncthreads(const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    ekdaa_sim::in_kernel("__syncthreads").barrier(file, line, ekdaa_sim::BarrierOp::kPlain, 0);
}
inline int __syncthreads_count(int pred, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    return ekdaa_sim::in_kernel("__syncthreads_count").barrier(file, line, ekdaa_sim::BarrierOp::kCount, pred);
}
inline int __syncthreads_and(int pred, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    return ekdaa_sim::in_kernel("__syncthreads_and").barrier(file, line, ekdaa_sim::BarrierOp::kAnd, pred);
}
inline int __syncthreads_or(int pred, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    return ekdaa_sim::in_kernel("__syncthreads_or").barrier(file, line, ekdaa_sim::BarrierOp::kOr, pred);
}
inline void __syncwarp(unsigned int mask = 0xffffffffu, const char* file = __builtin_FILE(),
                       int line = __builtin_LINE()) {
    ekdaa_sim::in_kernel("__syncwarp").warp(ekdaa_sim::WarpOp::kSync, mask, 0, 0, 32, file, line);
}
inline unsigned int __activemask() { return ekdaa_sim::in_kernel("__activemask").active_mask(); }

#define EKDAA_SIM_SHFL(name, op)                                                                              \
    template <typename T>                                                                                     \
    inline T name(unsigned int mask, T var, int arg, int width = 32, const char* file = __builtin_FILE(),     \
                  int line = __builtin_LINE()) {                                                              \
        return ekdaa_sim::from_bits<T>(ekdaa_sim::in_kernel(#name).warp(ekdaa_sim::WarpOp::op, mask,          \
                                                                         ekdaa_sim::to_bits(var), arg, width, \
                                                                         file, line));                        \
    }
EKDAA_SIM_SHFL(__shfl_sync, kShfl)
EKDAA_SIM_SHFL(__shfl_up_sync, kShflUp)
EKDAA_SIM_SHFL(__shfl_down_sync, kShflDown)
EKDAA_SIM_SHFL(__shfl_xor_sync, kShflXor)
#undef EKDAA_SIM_SHFL

inline unsigned int __ballot_sync(unsigned int mask, int pred, const char* file = __builtin_FILE(),
                                  int line = __builtin_LINE()) {
    return unsigned(ekdaa_sim::in_kernel("__ballot_sync").warp(ekdaa_sim::WarpOp::kBallot, mask, pred != 0, 0, 32, file, line));
}
inline int __any_sync(unsigned int mask, int pred, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    return int(ekdaa_sim::in_kernel("__any_sync").warp(ekdaa_sim::WarpOp::kAny, mask, pred != 0, 0, 32, file, line));
}
inline int __all_sync(unsigned int mask, int pred, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    return int(ekdaa_sim::in_kernel("__all_sync").warp(ekdaa_sim::WarpOp::kAll, mask, pred != 0, 0, 32, file, line));
}

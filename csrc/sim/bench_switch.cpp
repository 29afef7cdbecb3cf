// bench_switch.cpp — measures one context switch of the two fiber libraries the simulator could
// use: Boost.Context's fcontext (the one it uses) and POSIX ucontext (swapcontext). Not part of
// the build; the numbers are recorded in csrc/sim/README.md.
//
//   g++ -O2 -std=c++17 csrc/sim/bench_switch.cpp -lboost_context -o /tmp/bench_switch && /tmp/bench_switch
#include <boost/context/detail/fcontext.hpp>
#include <ucontext.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

namespace bctx = boost::context::detail;

namespace {

constexpr long kSwitches = 2000000;  // round trips per measurement (2 switches each)
constexpr size_t kStack = 64 * 1024;

// ---- fcontext: a fiber that jumps straight back, forever
void fcontext_body(bctx::transfer_t t) {
    for (;;) t = bctx::jump_fcontext(t.fctx, nullptr);
}

double fcontext_ns() {
    std::vector<char> stack(kStack);
    bctx::fcontext_t f = bctx::make_fcontext(stack.data() + stack.size(), stack.size(), fcontext_body);
    const auto t0 = std::chrono::steady_clock::now();
    for (long i = 0; i < kSwitches; ++i) f = bctx::jump_fcontext(f, nullptr).fctx;
    const auto t1 = std::chrono::steady_clock::now();
    return std::chrono::duration<double, std::nano>(t1 - t0).count() / (2.0 * kSwitches);
}

// ---- ucontext
ucontext_t main_ctx, fiber_ctx;
void ucontext_body() {
    for (;;) swapcontext(&fiber_ctx, &main_ctx);
}

double ucontext_ns() {
    std::vector<char> stack(kStack);
    getcontext(&fiber_ctx);
    fiber_ctx.uc_stack.ss_sp = stack.data();
    fiber_ctx.uc_stack.ss_size = stack.size();
    fiber_ctx.uc_link = nullptr;
    makecontext(&fiber_ctx, ucontext_body, 0);
    const long n = kSwitches / 10;  // ~30x slower: fewer rounds
    const auto t0 = std::chrono::steady_clock::now();
    for (long i = 0; i < n; ++i) swapcontext(&main_ctx, &fiber_ctx);
    const auto t1 = std::chrono::steady_clock::now();
    return std::chrono::duration<double, std::nano>(t1 - t0).count() / (2.0 * n);
}

}  // namespace

int main() {
    std::vector<double> f, u;
    for (int r = 0; r < 5; ++r) {
        f.push_back(fcontext_ns());
        u.push_back(ucontext_ns());
    }
    std::sort(f.begin(), f.end());
    std::sort(u.begin(), u.end());
    std::printf("one switch, median (min..max) of 5 runs:\n");
    std::printf("  boost fcontext: %.1f ns (%.1f..%.1f)\n", f[2], f[0], f[4]);
    std::printf("  ucontext:       %.1f ns (%.1f..%.1f)\n", u[2], u[0], u[4]);
    return 0;
}

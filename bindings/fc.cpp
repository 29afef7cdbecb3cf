// fc.cpp — bindings of the fully-connected launchers (csrc/fc.h): argument conversion only.
// Device arrays arrive as raw addresses (int) and the stream as its handle (int); shapes and
// dtypes are checked by ekdaa_cuda.ops.fc, the launchers re-check sizes and codes and throw
// std::invalid_argument (-> ValueError). Built into _C (GPU) and _sim (the CPU simulator) alike.
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

#include "common.cuh"
#include "fc.h"
#include "registry.h"

namespace py = pybind11;

namespace {

template <typename T>
T* ptr(std::uintptr_t address) {
    return reinterpret_cast<T*>(address);
}

cudaStream_t stream_of(std::uintptr_t handle) { return reinterpret_cast<cudaStream_t>(handle); }

ekdaa::Dropout dropout_of(const char* op, std::uint32_t key, std::uint32_t threshold, float scale) {
    ekdaa::require(threshold < (1u << 24), op,
                   "dropout threshold must be < 2^24 (p < 1), got " + std::to_string(threshold));
    ekdaa::require(scale >= 1.0f, op, "dropout scale must be 1/(1-p) >= 1, got " + std::to_string(scale));
    return ekdaa::Dropout{key, threshold, scale};
}

}  // namespace

void register_fc(py::module_& m) {
    m.def(
        "fc_fwd_sizes",
        [](std::int64_t N, std::int64_t F_in, std::int64_t F_out, std::int64_t splits) {
            const ekdaa::FcFwdSizes s = ekdaa::fc_fwd_sizes(N, F_in, F_out, splits);
            return py::make_tuple(s.splits, s.floats, s.tickets);
        },
        py::arg("N"), py::arg("F_in"), py::arg("F_out"), py::arg("splits"),
        "(splits, workspace floats, workspace tickets) of fc_fwd for these sizes (splits = 0: chosen).");
    m.def(
        "fc_fwd",
        [](std::uintptr_t z, std::uintptr_t w, std::uintptr_t b, std::uintptr_t h, std::uintptr_t out,
           std::uintptr_t partials, std::uintptr_t tickets, std::int64_t partial_floats, std::int64_t ticket_count,
           std::int64_t N, std::int64_t F_in, std::int64_t F_out, int act, bool apply_activation, std::uint32_t key,
           std::uint32_t threshold, float scale, std::int64_t splits, std::uintptr_t stream) {
            ekdaa::launch_fc_fwd(ptr<const float>(z), ptr<const float>(w), ptr<const float>(b), ptr<float>(h),
                                 ptr<float>(out), ptr<float>(partials), ptr<unsigned int>(tickets), partial_floats,
                                 ticket_count, N, F_in, F_out, act, apply_activation,
                                 dropout_of("fc_fwd", key, threshold, scale), splits, stream_of(stream));
        },
        py::arg("z"), py::arg("w"), py::arg("b"), py::arg("h"), py::arg("out"), py::arg("partials"),
        py::arg("tickets"), py::arg("partial_floats"), py::arg("ticket_count"), py::arg("N"), py::arg("F_in"),
        py::arg("F_out"), py::arg("act"), py::arg("apply_activation"), py::arg("key"), py::arg("threshold"),
        py::arg("scale"), py::arg("splits"), py::arg("stream"),
        "h = z·Wᵀ + b, out = φ(h)·m/(1−p), split-K (raw launcher; b = 0 for no bias, splits = 0: chosen). "
        "Use ekdaa_cuda.ops.fc.fc_fwd.");
    m.def(
        "fc_fwd_v1",
        [](std::uintptr_t z, std::uintptr_t w, std::uintptr_t b, std::uintptr_t h, std::uintptr_t out, std::int64_t N,
           std::int64_t F_in, std::int64_t F_out, int act, bool apply_activation, std::uint32_t key,
           std::uint32_t threshold, float scale, std::uintptr_t stream) {
            ekdaa::launch_fc_fwd_v1(ptr<const float>(z), ptr<const float>(w), ptr<const float>(b), ptr<float>(h),
                                    ptr<float>(out), N, F_in, F_out, act, apply_activation,
                                    dropout_of("fc_fwd", key, threshold, scale), stream_of(stream));
        },
        py::arg("z"), py::arg("w"), py::arg("b"), py::arg("h"), py::arg("out"), py::arg("N"), py::arg("F_in"),
        py::arg("F_out"), py::arg("act"), py::arg("apply_activation"), py::arg("key"), py::arg("threshold"),
        py::arg("scale"), py::arg("stream"),
        "fc_fwd's first kernel (benchmark-only; raw launcher). Use ekdaa_cuda.ops.fc.fc_fwd(version=1).");
    m.def(
        "fc_proj",
        [](std::uintptr_t e, std::uintptr_t weight, std::uintptr_t d, std::int64_t N, std::int64_t F_in,
           std::int64_t F_out, int layout, std::uintptr_t stream) {
            ekdaa::launch_fc_proj(ptr<const float>(e), ptr<const float>(weight), ptr<float>(d), N, F_in, F_out, layout,
                                  stream_of(stream));
        },
        py::arg("e"), py::arg("weight"), py::arg("d"), py::arg("N"), py::arg("F_in"), py::arg("F_out"),
        py::arg("layout"), py::arg("stream"), "d = e·W (layout 0) or e·Eᵀ (layout 1) (raw launcher).");
    m.def(
        "fc_error_proj",
        [](std::uintptr_t e, std::uintptr_t weight, std::uintptr_t h, std::uintptr_t e_below, std::int64_t N,
           std::int64_t F_in, std::int64_t F_out, int layout, int rule, int act, float beta, std::uint32_t key,
           std::uint32_t threshold, float scale, std::uintptr_t stream) {
            ekdaa::launch_fc_error_proj(ptr<const float>(e), ptr<const float>(weight), ptr<const float>(h),
                                        ptr<float>(e_below), N, F_in, F_out, layout, rule, act, beta,
                                        dropout_of("fc_error_proj", key, threshold, scale), stream_of(stream));
        },
        py::arg("e"), py::arg("weight"), py::arg("h"), py::arg("e_below"), py::arg("N"), py::arg("F_in"),
        py::arg("F_out"), py::arg("layout"), py::arg("rule"), py::arg("act"), py::arg("beta"), py::arg("key"),
        py::arg("threshold"), py::arg("scale"), py::arg("stream"),
        "e_below = error_unit(h, e·M)·m/(1−p) (raw launcher).");
    m.def(
        "error_epilogue",
        [](std::uintptr_t d, std::uintptr_t h, std::uintptr_t e, std::int64_t count, int rule, int act, float beta,
           std::uint32_t key, std::uint32_t threshold, float scale, std::uintptr_t stream) {
            ekdaa::launch_error_epilogue(ptr<const float>(d), ptr<const float>(h), ptr<float>(e), count, rule, act,
                                         beta, dropout_of("error_epilogue", key, threshold, scale), stream_of(stream));
        },
        py::arg("d"), py::arg("h"), py::arg("e"), py::arg("count"), py::arg("rule"), py::arg("act"), py::arg("beta"),
        py::arg("key"), py::arg("threshold"), py::arg("scale"), py::arg("stream"),
        "e = error_unit(h, d)·m/(1−p) elementwise over a flat tensor (raw launcher).");
    m.def(
        "fc_update",
        [](std::uintptr_t z, std::uintptr_t e, std::uintptr_t dw, std::uintptr_t de, std::int64_t N, std::int64_t F_in,
           std::int64_t F_out, float gamma, std::uintptr_t stream) {
            ekdaa::launch_fc_update(ptr<const float>(z), ptr<const float>(e), ptr<float>(dw), ptr<float>(de), N, F_in,
                                    F_out, gamma, stream_of(stream));
        },
        py::arg("z"), py::arg("e"), py::arg("dw"), py::arg("de"), py::arg("N"), py::arg("F_in"), py::arg("F_out"),
        py::arg("gamma"), py::arg("stream"), "ΔW = eᵀ·z, ΔE = γ·ΔWᵀ (raw launcher).");
    m.def(
        "fc_bias_update",
        [](std::uintptr_t e, std::uintptr_t db, std::int64_t N, std::int64_t F_out, std::uintptr_t stream) {
            ekdaa::launch_fc_bias_update(ptr<const float>(e), ptr<float>(db), N, F_out, stream_of(stream));
        },
        py::arg("e"), py::arg("db"), py::arg("N"), py::arg("F_out"), py::arg("stream"), "Δb = Σ_n e (raw launcher).");
    m.def(
        "softmax_error",
        [](std::uintptr_t h, std::uintptr_t labels, std::uintptr_t probs, std::uintptr_t e, std::uintptr_t loss,
           std::int64_t N, std::int64_t C, std::uintptr_t stream) {
            ekdaa::launch_softmax_error(ptr<const float>(h), ptr<const std::int32_t>(labels), ptr<float>(probs),
                                        ptr<float>(e), ptr<float>(loss), N, C, stream_of(stream));
        },
        py::arg("h"), py::arg("labels"), py::arg("probs"), py::arg("e"), py::arg("loss"), py::arg("N"), py::arg("C"),
        py::arg("stream"), "probs = softmax(h), e = probs − onehot(labels), loss = −log probs[label] (raw launcher).");

    m.def(
        "fc_update_proj",
        [](std::uintptr_t z, std::uintptr_t e, std::uintptr_t weight, std::uintptr_t h, std::uintptr_t dw,
           std::uintptr_t db, std::uintptr_t de, std::uintptr_t below, std::int64_t N, std::int64_t F_in,
           std::int64_t F_out, float gamma, int layout, int rule, int act, float beta, std::uint32_t key,
           std::uint32_t threshold, float scale, std::uintptr_t stream) {
            ekdaa::launch_fc_update_proj(ptr<const float>(z), ptr<const float>(e), ptr<const float>(weight),
                                         ptr<const float>(h), ptr<float>(dw), ptr<float>(db), ptr<float>(de),
                                         ptr<float>(below), N, F_in, F_out, gamma, layout, rule, act, beta,
                                         dropout_of("fc_update_proj", key, threshold, scale), stream_of(stream));
        },
        py::arg("z"), py::arg("e"), py::arg("weight"), py::arg("h"), py::arg("dw"), py::arg("db"), py::arg("de"),
        py::arg("below"), py::arg("N"), py::arg("F_in"), py::arg("F_out"), py::arg("gamma"), py::arg("layout"),
        py::arg("rule"), py::arg("act"), py::arg("beta"), py::arg("key"), py::arg("threshold"), py::arg("scale"),
        py::arg("stream"),
        "ΔW = eᵀ·z, ΔE = γ·ΔWᵀ, Δb = Σ_n e and the projection of e to the layer below, one launch "
        "(raw launcher; 0 = absent). Use ekdaa_cuda.ops.fc.fc_update_proj.");
    m.def("fc_softmax_error_blocks", &ekdaa::fc_softmax_error_blocks, py::arg("N"),
          "Blocks (= partials) of fc_softmax_error for N rows.");
    m.def(
        "fc_softmax_error",
        [](std::uintptr_t z, std::uintptr_t w, std::uintptr_t b, std::uintptr_t labels, std::uintptr_t h,
           std::uintptr_t probs, std::uintptr_t e, std::uintptr_t partial_loss, std::uintptr_t partial_correct,
           std::uintptr_t ticket, std::uintptr_t loss, std::uintptr_t correct, std::int64_t N, std::int64_t F_in,
           std::int64_t C, std::uintptr_t stream) {
            ekdaa::launch_fc_softmax_error(ptr<const float>(z), ptr<const float>(w), ptr<const float>(b),
                                           ptr<const std::int32_t>(labels), ptr<float>(h), ptr<float>(probs),
                                           ptr<float>(e), ptr<double>(partial_loss), ptr<int>(partial_correct),
                                           ptr<unsigned int>(ticket), ptr<double>(loss), ptr<int>(correct), N, F_in,
                                           C, stream_of(stream));
        },
        py::arg("z"), py::arg("w"), py::arg("b"), py::arg("labels"), py::arg("h"), py::arg("probs"), py::arg("e"),
        py::arg("partial_loss"), py::arg("partial_correct"), py::arg("ticket"), py::arg("loss"), py::arg("correct"),
        py::arg("N"), py::arg("F_in"), py::arg("C"), py::arg("stream"),
        "The output layer: h = z·Wᵀ + b, softmax, e = probs − onehot, Σ loss and correct count (raw launcher; "
        "use ekdaa_cuda.ops.fc.fc_softmax_error).");

}

// conv.cpp — bindings of the conv-family launchers (csrc/conv.h): argument conversion only.
// Device arrays arrive as raw addresses and the stream as its handle; ekdaa_cuda.ops.conv
// checks dtypes and shapes, the launchers re-check sizes and codes (std::invalid_argument ->
// ValueError).
//
// host_conv_* run the kernels' per-thread bodies (conv.h) in plain CPU loops over NumPy
// float32 arrays: test hooks for tests/test_conv_indexing.py, not a CPU backend.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <optional>
#include <vector>

#include "common.cuh"
#include "conv.h"
#include "registry.h"

namespace py = pybind11;
using bindings::ptr;
using bindings::stream_of;

namespace {

using FloatArray = py::array_t<float, py::array::c_style | py::array::forcecast>;
using CodeArray = py::array_t<uint8_t, py::array::c_style | py::array::forcecast>;

// Shape of a host array that must be 4-D (NCHW / [C_out, C_in, k, k]).
std::vector<int64_t> shape4(const char* op, const char* name, const py::array& a) {
    ekdaa::require(a.ndim() == 4, op, std::string(name) + " must be 4-D");
    return {a.shape(0), a.shape(1), a.shape(2), a.shape(3)};
}

ekdaa::Dropout dropout_of(uint32_t key, uint32_t threshold, float scale) { return ekdaa::Dropout{key, threshold, scale}; }

py::tuple host_conv_block_fwd(FloatArray x, FloatArray w, std::optional<FloatArray> b, int act, bool apply_activation,
                              bool pool, uint32_t key, uint32_t threshold, float scale) {
    const char* op = "host_conv_block_fwd";
    const auto xs = shape4(op, "x", x), ws = shape4(op, "w", w);
    ekdaa::require(ws[1] == xs[1] && ws[2] == ws[3], op, "w must be [C_out, C_in, k, k] with x's C_in");
    ekdaa::require(!b || (b->ndim() == 1 && b->shape(0) == ws[0]), op, "b must be [C_out]");
    const int64_t N = xs[0], C_out = ws[0], H = xs[2], W = xs[3];
    FloatArray h({N, C_out, H, W});
    FloatArray out = pool ? FloatArray({N, C_out, H / 2, W / 2}) : FloatArray({N, C_out, H, W});
    CodeArray argmax({N, C_out, pool ? H / 2 : 0, pool ? W / 2 : 0});
    const ekdaa::ConvBlockFwdArgs a{x.data(),          w.data(),          b ? b->data() : nullptr,
                                    h.mutable_data(),  out.mutable_data(), argmax.mutable_data(),
                                    N,                 xs[1],             C_out,
                                    H,                 W,                 ws[2],
                                    act,               apply_activation,  pool,
                                    dropout_of(key, threshold, scale)};
    ekdaa::check_conv_block_fwd(op, a);
    for (int64_t t = 0; t < ekdaa::conv_block_fwd_threads(a); ++t) ekdaa::conv_block_fwd_at(a, t);
    return py::make_tuple(h, out, pool ? py::object(argmax) : py::none());
}

FloatArray host_error_proj(const char* op, const ekdaa::ErrorProjArgs& a, FloatArray e_below) {
    ekdaa::check_error_proj(op, a);
    for (int64_t t = 0; t < ekdaa::error_proj_threads(a); ++t) ekdaa::error_proj_at(a, t);
    return e_below;
}

FloatArray host_conv_error_proj(FloatArray e, FloatArray kernel, FloatArray h, std::optional<CodeArray> argmax,
                                int rule, int act, float beta, uint32_t key, uint32_t threshold, float scale) {
    const char* op = "host_conv_error_proj";
    const auto es = shape4(op, "e", e), ks = shape4(op, "kernel", kernel), hs = shape4(op, "h", h);
    ekdaa::require(ks[0] == es[1] && ks[1] == hs[1] && ks[2] == ks[3], op, "kernel must be [C_out, C_in, k, k]");
    ekdaa::require(es[0] == hs[0], op, "e and h must have the same N");
    if (argmax) ekdaa::require(shape4(op, "argmax", *argmax) == std::vector<int64_t>{hs[0], hs[1], es[2], es[3]}, op,
                               "argmax must be [N, C_in, Hp, Wp]");
    FloatArray e_below({hs[0], hs[1], hs[2], hs[3]});
    const ekdaa::ErrorProjArgs a{e.data(), kernel.data(), nullptr, h.data(), argmax ? argmax->data() : nullptr,
                                 e_below.mutable_data(), hs[0], hs[1], es[1], es[2], es[3], hs[2], hs[3], ks[2], true,
                                 argmax.has_value(), rule, act, beta, dropout_of(key, threshold, scale)};
    return host_error_proj(op, a, e_below);
}

FloatArray host_unpool_error(FloatArray d, FloatArray h, CodeArray argmax, int rule, int act, float beta, uint32_t key,
                             uint32_t threshold, float scale) {
    const char* op = "host_unpool_error";
    const auto ds = shape4(op, "d", d), hs = shape4(op, "h", h);
    ekdaa::require(shape4(op, "argmax", argmax) == ds && ds[0] == hs[0] && ds[1] == hs[1], op,
                   "argmax must be d's shape [N, C, Hp, Wp], h [N, C, Hh, Wh]");
    FloatArray e({hs[0], hs[1], hs[2], hs[3]});
    const ekdaa::ErrorProjArgs a{nullptr, nullptr, d.data(), h.data(), argmax.data(), e.mutable_data(), hs[0], hs[1], 0,
                                 ds[2], ds[3], hs[2], hs[3], 1, false, true, rule, act, beta,
                                 dropout_of(key, threshold, scale)};
    return host_error_proj(op, a, e);
}

FloatArray host_conv_proj(FloatArray e, FloatArray K) {
    const char* op = "host_conv_proj";
    const auto es = shape4(op, "e", e), ks = shape4(op, "K", K);
    ekdaa::require(ks[0] == es[1] && ks[2] == ks[3] && ks[2] % 2 == 1, op, "K must be [C_out, C_in, k, k], k odd");
    FloatArray d({es[0], ks[1], es[2], es[3]});
    for (int64_t t = 0; t < d.size(); ++t)
        ekdaa::conv_proj_at(e.data(), K.data(), d.mutable_data(), ks[1], es[1], es[2], es[3], ks[2], t);
    return d;
}

FloatArray host_unpool_bilinear(FloatArray d, int64_t H, int64_t W) {
    const char* op = "host_unpool_bilinear";
    const auto ds = shape4(op, "d", d);
    ekdaa::require(ds[2] > 0 && ds[3] > 0 && H >= 0 && W >= 0, op, "need a non-empty input plane and H, W >= 0");
    FloatArray out({ds[0], ds[1], H, W});
    for (int64_t t = 0; t < out.size(); ++t) ekdaa::unpool_bilinear_at(d.data(), out.mutable_data(), ds[2], ds[3], H, W, t);
    return out;
}

// gpu_order: sum each output as the kernel does (kFilterUpdateThreads strided partial sums, then its
// tree), else in plain ascending order.
py::tuple host_conv_filter_update(FloatArray z, FloatArray e, int64_t k, float gamma, bool bias, bool gpu_order) {
    const char* op = "host_conv_filter_update";
    const auto zs = shape4(op, "z", z), es = shape4(op, "e", e);
    ekdaa::require(zs[0] == es[0] && zs[2] == es[2] && zs[3] == es[3], op, "z and e must share N, H, W");
    const int64_t C_in = zs[1], C_out = es[1];
    FloatArray dw({C_out, C_in, k, k}), de({C_out, C_in, k, k}), db(std::vector<int64_t>{C_out});
    const ekdaa::FilterUpdateArgs a{z.data(), e.data(), dw.mutable_data(), bias ? db.mutable_data() : nullptr,
                                    de.mutable_data(), zs[0], C_in, C_out, zs[2], zs[3], k, gamma};
    ekdaa::check_filter_update(op, a);
    std::vector<float> partial(ekdaa::kFilterUpdateThreads);
    for (int64_t o = 0; o < ekdaa::filter_update_outputs(a); ++o) {
        if (!gpu_order) {
            ekdaa::filter_update_store(a, o, ekdaa::filter_update_partial(a, o, 0, 1));
            continue;
        }
        for (int i = 0; i < ekdaa::kFilterUpdateThreads; ++i)
            partial[i] = ekdaa::filter_update_partial(a, o, i, ekdaa::kFilterUpdateThreads);
        for (int s = ekdaa::kFilterUpdateThreads / 2; s > 0; s >>= 1)
            for (int i = 0; i < s; ++i) partial[i] += partial[i + s];
        ekdaa::filter_update_store(a, o, partial[0]);
    }
    return py::make_tuple(dw, bias ? py::object(db) : py::none(), de);
}

py::tuple host_bilinear_source(int64_t n_in, int64_t n_out) {
    ekdaa::require(n_in > 0 && n_out >= 0, "host_bilinear_source", "need n_in > 0, n_out >= 0");
    py::array_t<int64_t> lo(n_out), hi(n_out);
    py::array_t<float> frac(n_out);
    for (int64_t i = 0; i < n_out; ++i)
        ekdaa::bilinear_source(i, n_in, n_out, lo.mutable_data()[i], hi.mutable_data()[i], frac.mutable_data()[i]);
    return py::make_tuple(lo, hi, frac);
}

}  // namespace

void register_conv(py::module_& m) {
    using A = std::uintptr_t;
    m.def(
        "conv_block_fwd",
        [](A x, A w, A b, A h, A out, A argmax, int64_t N, int64_t C_in, int64_t C_out, int64_t H, int64_t W, int64_t k,
           int act, bool apply_activation, bool pool, uint32_t key, uint32_t threshold, float scale, A stream) {
            ekdaa::launch_conv_block_fwd(ptr<const float>(x), ptr<const float>(w), ptr<const float>(b), ptr<float>(h),
                                         ptr<float>(out), ptr<uint8_t>(argmax), N, C_in, C_out, H, W, k, act,
                                         apply_activation, pool, dropout_of(key, threshold, scale), stream_of(stream));
        },
        py::arg("x"), py::arg("w"), py::arg("b"), py::arg("h"), py::arg("out"), py::arg("argmax"), py::arg("N"),
        py::arg("C_in"), py::arg("C_out"), py::arg("H"), py::arg("W"), py::arg("k"), py::arg("act"),
        py::arg("apply_activation"), py::arg("pool"), py::arg("key"), py::arg("threshold"), py::arg("scale"),
        py::arg("stream"), "Raw launcher (b = 0: no bias). Use ekdaa_cuda.ops.conv.conv_block_fwd.");
    m.def(
        "conv_error_proj",
        [](A e, A kernel, A h, A argmax, A e_below, int64_t N, int64_t C_in, int64_t C_out, int64_t Hp, int64_t Wp,
           int64_t Hh, int64_t Wh, int64_t k, bool pool, int rule, int act, float beta, uint32_t key,
           uint32_t threshold, float scale, A stream) {
            ekdaa::launch_conv_error_proj(ptr<const float>(e), ptr<const float>(kernel), ptr<const float>(h),
                                          ptr<const uint8_t>(argmax), ptr<float>(e_below), N, C_in, C_out, Hp, Wp, Hh,
                                          Wh, k, pool, rule, act, beta, dropout_of(key, threshold, scale),
                                          stream_of(stream));
        },
        py::arg("e"), py::arg("kernel"), py::arg("h"), py::arg("argmax"), py::arg("e_below"), py::arg("N"),
        py::arg("C_in"), py::arg("C_out"), py::arg("Hp"), py::arg("Wp"), py::arg("Hh"), py::arg("Wh"), py::arg("k"),
        py::arg("pool"), py::arg("rule"), py::arg("act"), py::arg("beta"), py::arg("key"), py::arg("threshold"),
        py::arg("scale"), py::arg("stream"),
        "Raw launcher (pool = False: no unpooling, argmax unused). Use ekdaa_cuda.ops.conv.conv_error_proj.");
    m.def(
        "unpool_error",
        [](A d, A h, A argmax, A e, int64_t N, int64_t C, int64_t Hp, int64_t Wp, int64_t Hh, int64_t Wh, int rule,
           int act, float beta, uint32_t key, uint32_t threshold, float scale, A stream) {
            ekdaa::launch_unpool_error(ptr<const float>(d), ptr<const float>(h), ptr<const uint8_t>(argmax),
                                       ptr<float>(e), N, C, Hp, Wp, Hh, Wh, rule, act, beta,
                                       dropout_of(key, threshold, scale), stream_of(stream));
        },
        py::arg("d"), py::arg("h"), py::arg("argmax"), py::arg("e"), py::arg("N"), py::arg("C"), py::arg("Hp"),
        py::arg("Wp"), py::arg("Hh"), py::arg("Wh"), py::arg("rule"), py::arg("act"), py::arg("beta"), py::arg("key"),
        py::arg("threshold"), py::arg("scale"), py::arg("stream"),
        "Raw launcher. Use ekdaa_cuda.ops.conv.unpool_error.");
    m.def(
        "conv_proj",
        [](A e, A K, A d, int64_t N, int64_t C_in, int64_t C_out, int64_t H, int64_t W, int64_t k, A stream) {
            ekdaa::launch_conv_proj(ptr<const float>(e), ptr<const float>(K), ptr<float>(d), N, C_in, C_out, H, W, k,
                                    stream_of(stream));
        },
        py::arg("e"), py::arg("K"), py::arg("d"), py::arg("N"), py::arg("C_in"), py::arg("C_out"), py::arg("H"),
        py::arg("W"), py::arg("k"), py::arg("stream"), "Raw launcher. Use ekdaa_cuda.ops.conv.conv_proj.");
    m.def(
        "unpool_bilinear",
        [](A d, A out, int64_t N, int64_t C, int64_t h, int64_t w, int64_t H, int64_t W, A stream) {
            ekdaa::launch_unpool_bilinear(ptr<const float>(d), ptr<float>(out), N, C, h, w, H, W, stream_of(stream));
        },
        py::arg("d"), py::arg("out"), py::arg("N"), py::arg("C"), py::arg("h"), py::arg("w"), py::arg("H"),
        py::arg("W"), py::arg("stream"), "Raw launcher. Use ekdaa_cuda.ops.conv.unpool_bilinear.");
    m.def(
        "conv_filter_update",
        [](A z, A e, A dw, A db, A de, A workspace, int64_t workspace_floats, int64_t N, int64_t C_in, int64_t C_out,
           int64_t H, int64_t W, int64_t k, float gamma, A stream) {
            ekdaa::launch_conv_filter_update(ptr<const float>(z), ptr<const float>(e), ptr<float>(dw), ptr<float>(db),
                                             ptr<float>(de), ptr<float>(workspace), workspace_floats, N, C_in, C_out,
                                             H, W, k, gamma, stream_of(stream));
        },
        py::arg("z"), py::arg("e"), py::arg("dw"), py::arg("db"), py::arg("de"), py::arg("workspace"),
        py::arg("workspace_floats"), py::arg("N"), py::arg("C_in"), py::arg("C_out"), py::arg("H"), py::arg("W"),
        py::arg("k"), py::arg("gamma"), py::arg("stream"),
        "Raw launcher, split-K GEMM (db = 0: no bias). Use ekdaa_cuda.ops.conv.conv_filter_update.");
    m.def("conv_filter_update_workspace_floats", &ekdaa::conv_filter_update_workspace_floats, py::arg("N"),
          py::arg("C_in"), py::arg("C_out"), py::arg("H"), py::arg("W"), py::arg("k"), py::arg("bias"),
          "Floats of workspace conv_filter_update needs for these sizes.");
    m.def(
        "conv_filter_update_v1",
        [](A z, A e, A dw, A db, A de, int64_t N, int64_t C_in, int64_t C_out, int64_t H, int64_t W, int64_t k,
           float gamma, A stream) {
            ekdaa::launch_conv_filter_update_v1(ptr<const float>(z), ptr<const float>(e), ptr<float>(dw),
                                                ptr<float>(db), ptr<float>(de), N, C_in, C_out, H, W, k, gamma,
                                                stream_of(stream));
        },
        py::arg("z"), py::arg("e"), py::arg("dw"), py::arg("db"), py::arg("de"), py::arg("N"), py::arg("C_in"),
        py::arg("C_out"), py::arg("H"), py::arg("W"), py::arg("k"), py::arg("gamma"), py::arg("stream"),
        "Benchmark-only: version 1 of the filter update (one block per output). Use conv_filter_update.");

    // CPU test hooks: the kernels' per-thread bodies in host loops.
    m.def("host_conv_block_fwd", &host_conv_block_fwd, py::arg("x"), py::arg("w"), py::arg("b"), py::arg("act"),
          py::arg("apply_activation"), py::arg("pool"), py::arg("key"), py::arg("threshold"), py::arg("scale"),
          "conv_block_fwd's body on the CPU -> (h, out, argmax or None).");
    m.def("host_conv_error_proj", &host_conv_error_proj, py::arg("e"), py::arg("kernel"), py::arg("h"),
          py::arg("argmax"), py::arg("rule"), py::arg("act"), py::arg("beta"), py::arg("key"), py::arg("threshold"),
          py::arg("scale"), "conv_error_proj's body on the CPU -> e_below.");
    m.def("host_unpool_error", &host_unpool_error, py::arg("d"), py::arg("h"), py::arg("argmax"), py::arg("rule"),
          py::arg("act"), py::arg("beta"), py::arg("key"), py::arg("threshold"), py::arg("scale"),
          "unpool_error's body on the CPU -> e.");
    m.def("host_conv_proj", &host_conv_proj, py::arg("e"), py::arg("K"), "conv_proj's body on the CPU -> d.");
    m.def("host_unpool_bilinear", &host_unpool_bilinear, py::arg("d"), py::arg("H"), py::arg("W"),
          "unpool_bilinear's body on the CPU -> [N, C, H, W].");
    m.def("host_conv_filter_update", &host_conv_filter_update, py::arg("z"), py::arg("e"), py::arg("k"),
          py::arg("gamma"), py::arg("bias"), py::arg("gpu_order") = false,
          "conv_filter_update's bodies on the CPU -> (dW, db or None, dE); gpu_order: the kernel's summation order.");
    m.def("host_bilinear_source", &host_bilinear_source, py::arg("n_in"), py::arg("n_out"),
          "bilinear_source for dst = 0..n_out-1 -> (lo, hi, frac) arrays.");
}

// conv.cpp — bindings of the conv-family launchers (csrc/conv.h): argument conversion only.
// Device arrays arrive as raw addresses and the stream as its handle; ekdaa_cuda.ops.conv
// checks dtypes and shapes, the launchers re-check sizes and codes (std::invalid_argument ->
// ValueError). Built into _C (GPU) and _sim (the CPU simulator) alike.
#include <pybind11/pybind11.h>

#include <cstdint>

#include "common.cuh"
#include "conv.h"
#include "registry.h"

namespace py = pybind11;
using bindings::ptr;
using bindings::stream_of;

namespace {

ekdaa::Dropout dropout_of(uint32_t key, uint32_t threshold, float scale) {
    return ekdaa::Dropout{key, threshold, scale};
}

}  // namespace

void register_conv(py::module_& m) {
    using A = std::uintptr_t;
    m.def(
        "conv_block_fwd",
        [](A x, A w, A b, A h, A out, A argmax, int64_t N, int64_t C_in, int64_t C_out, int64_t H, int64_t W, int64_t k,
           int act, bool apply_activation, bool pool, uint32_t key, uint32_t threshold, float scale, A stream,
           int tile) {
            ekdaa::launch_conv_block_fwd(ptr<const float>(x), ptr<const float>(w), ptr<const float>(b), ptr<float>(h),
                                         ptr<float>(out), ptr<uint8_t>(argmax), N, C_in, C_out, H, W, k, act,
                                         apply_activation, pool, dropout_of(key, threshold, scale), stream_of(stream),
                                         tile);
        },
        py::arg("x"), py::arg("w"), py::arg("b"), py::arg("h"), py::arg("out"), py::arg("argmax"), py::arg("N"),
        py::arg("C_in"), py::arg("C_out"), py::arg("H"), py::arg("W"), py::arg("k"), py::arg("act"),
        py::arg("apply_activation"), py::arg("pool"), py::arg("key"), py::arg("threshold"), py::arg("scale"),
        py::arg("stream"), py::arg("tile") = -1,
        "Raw launcher, implicit GEMM (b = 0: no bias; tile: index into igemm_tiles(), -1 by shape). "
        "Use ekdaa_cuda.ops.conv.conv_block_fwd.");
    m.def(
        "conv_block_fwd_v1",
        [](A x, A w, A b, A h, A out, A argmax, int64_t N, int64_t C_in, int64_t C_out, int64_t H, int64_t W, int64_t k,
           int act, bool apply_activation, bool pool, uint32_t key, uint32_t threshold, float scale, A stream) {
            ekdaa::launch_conv_block_fwd_v1(ptr<const float>(x), ptr<const float>(w), ptr<const float>(b),
                                            ptr<float>(h), ptr<float>(out), ptr<uint8_t>(argmax), N, C_in, C_out, H, W,
                                            k, act, apply_activation, pool, dropout_of(key, threshold, scale),
                                            stream_of(stream));
        },
        py::arg("x"), py::arg("w"), py::arg("b"), py::arg("h"), py::arg("out"), py::arg("argmax"), py::arg("N"),
        py::arg("C_in"), py::arg("C_out"), py::arg("H"), py::arg("W"), py::arg("k"), py::arg("act"),
        py::arg("apply_activation"), py::arg("pool"), py::arg("key"), py::arg("threshold"), py::arg("scale"),
        py::arg("stream"), "Benchmark-only: version 1 of conv_block_fwd (one thread per output). Use conv_block_fwd.");
    m.def(
        "conv_error_proj",
        [](A e, A kernel, A h, A argmax, A e_below, int64_t N, int64_t C_in, int64_t C_out, int64_t Hp, int64_t Wp,
           int64_t Hh, int64_t Wh, int64_t k, bool pool, int rule, int act, float beta, uint32_t key,
           uint32_t threshold, float scale, A stream, int tile) {
            ekdaa::launch_conv_error_proj(ptr<const float>(e), ptr<const float>(kernel), ptr<const float>(h),
                                          ptr<const uint8_t>(argmax), ptr<float>(e_below), N, C_in, C_out, Hp, Wp, Hh,
                                          Wh, k, pool, rule, act, beta, dropout_of(key, threshold, scale),
                                          stream_of(stream), tile);
        },
        py::arg("e"), py::arg("kernel"), py::arg("h"), py::arg("argmax"), py::arg("e_below"), py::arg("N"),
        py::arg("C_in"), py::arg("C_out"), py::arg("Hp"), py::arg("Wp"), py::arg("Hh"), py::arg("Wh"), py::arg("k"),
        py::arg("pool"), py::arg("rule"), py::arg("act"), py::arg("beta"), py::arg("key"), py::arg("threshold"),
        py::arg("scale"), py::arg("stream"), py::arg("tile") = -1,
        "Raw launcher, implicit GEMM (pool = False: no unpooling, argmax unused; tile as conv_block_fwd). "
        "Use ekdaa_cuda.ops.conv.conv_error_proj.");
    m.def(
        "conv_error_proj_v1",
        [](A e, A kernel, A h, A argmax, A e_below, int64_t N, int64_t C_in, int64_t C_out, int64_t Hp, int64_t Wp,
           int64_t Hh, int64_t Wh, int64_t k, bool pool, int rule, int act, float beta, uint32_t key,
           uint32_t threshold, float scale, A stream) {
            ekdaa::launch_conv_error_proj_v1(ptr<const float>(e), ptr<const float>(kernel), ptr<const float>(h),
                                             ptr<const uint8_t>(argmax), ptr<float>(e_below), N, C_in, C_out, Hp, Wp,
                                             Hh, Wh, k, pool, rule, act, beta, dropout_of(key, threshold, scale),
                                             stream_of(stream));
        },
        py::arg("e"), py::arg("kernel"), py::arg("h"), py::arg("argmax"), py::arg("e_below"), py::arg("N"),
        py::arg("C_in"), py::arg("C_out"), py::arg("Hp"), py::arg("Wp"), py::arg("Hh"), py::arg("Wh"), py::arg("k"),
        py::arg("pool"), py::arg("rule"), py::arg("act"), py::arg("beta"), py::arg("key"), py::arg("threshold"),
        py::arg("scale"), py::arg("stream"),
        "Benchmark-only: version 1 of conv_error_proj (one thread per output). Use conv_error_proj.");
    m.def(
        "igemm_tiles",
        [] {
            py::list out;
            for (const auto& t : ekdaa::igemm_tiles()) out.append(py::make_tuple(t[0], t[1], t[2]));
            return out;
        },
        "The (BM, BN, KS) block tiles (rows, columns, depth groups) of the implicit-GEMM conv kernels, indexed by "
        "their `tile` argument.");
    m.def("igemm_tile_for", &ekdaa::igemm_tile_for, py::arg("rows"), py::arg("cols"),
          "Index of the tile the conv launchers choose for a GEMM of rows x cols.");
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
        "conv_filter_update_pooled",
        [](A z, A e, A argmax, A dw, A db, A de, A workspace, int64_t workspace_floats, int64_t N, int64_t C_in,
           int64_t C_out, int64_t H, int64_t W, int64_t Hp, int64_t Wp, int64_t k, float gamma, A stream) {
            ekdaa::launch_conv_filter_update_pooled(ptr<const float>(z), ptr<const float>(e),
                                                    ptr<const uint8_t>(argmax), ptr<float>(dw), ptr<float>(db),
                                                    ptr<float>(de), ptr<float>(workspace), workspace_floats, N, C_in,
                                                    C_out, H, W, Hp, Wp, k, gamma, stream_of(stream));
        },
        py::arg("z"), py::arg("e"), py::arg("argmax"), py::arg("dw"), py::arg("db"), py::arg("de"),
        py::arg("workspace"), py::arg("workspace_floats"), py::arg("N"), py::arg("C_in"), py::arg("C_out"),
        py::arg("H"), py::arg("W"), py::arg("Hp"), py::arg("Wp"), py::arg("k"), py::arg("gamma"), py::arg("stream"),
        "Raw launcher, filter update v3 for an e nonzero only at the pool argmax (db = 0: no bias). "
        "Use ekdaa_cuda.ops.conv.conv_filter_update_pooled.");
    m.def("conv_filter_update_pooled_workspace_floats", &ekdaa::conv_filter_update_pooled_workspace_floats,
          py::arg("N"), py::arg("C_in"), py::arg("C_out"), py::arg("H"), py::arg("W"), py::arg("k"), py::arg("bias"),
          "Floats of workspace conv_filter_update_pooled needs for these sizes.");
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

}

"""Each fused kernel of ``ekdaa_cuda.ops`` against the cuDNN/cuBLAS sequence doing the same work in PyTorch.

    python bench/micro.py --out micro.jsonl [--peaks peaks.json] [--presets fmnist,cifar] [--batches 50,1024,256]

For every layer shape of the presets at each batch size, the ops the CUDA backend calls in one
update (``ekdaa_cuda/backend_cuda.py``):

| ekdaa_cuda op                 | PyTorch sequence timed against it                                        |
|-------------------------------|--------------------------------------------------------------------------|
| conv_block_fwd                | conv2d (+ bias) + tanh + max_pool2d(return_indices=True)                 |
| conv_error_proj (ekdaa / bp)  | conv_transpose2d (cuDNN backward-data) + max_unpool2d + epilogue         |
| unpool_error / error_epilogue | max_unpool2d + epilogue / the epilogue alone                             |
| fc_proj, fc_error_proj        | mm (+ epilogue)                                                          |
| fc_fwd (v1/v2)                | linear (+ tanh)                                                          |
| softmax_error                 | softmax, − one_hot, −log p[label]                                        |
| conv_filter_update (v1/v2/v3) | torch.nn.grad.conv2d_weight (cuDNN backward-filter) (+ bias sum) + γ·ΔW  |
| fc_update                     | mm(eᵀ, z) (+ bias sum) + γ·ΔWᵀ                                           |
| optimizer (MultiTensorOptimizer) | torch.optim.SGD(momentum=0.9), fused (else foreach), same tensors     |

Pooled layers' filter update also gets a v3 row (``conv_filter_update_pooled``: the same e, zero
off the argmax, with its codes; one term per 2x2 window).

The epilogue is EKDAA's target error z − tanh(h − βd) (z = tanh(h), which autograd would have
saved) or BP's tanh_backward d·(1 − z²).

Validation first: each op's output is compared, as ‖out − ref‖/‖ref‖, against the PyTorch
sequence run in float64 on the same inputs (outputs poisoned with NaN beforehand); it passes
when its error is ≤ max(1e-4, 8·2⁻²⁴·√(terms summed per output), 10 × the error of PyTorch's
own float32 run) (``tolerance``), and argmax codes
must agree with PyTorch's float32 max-pool indices except at ≤ 1e-4 of the windows (near-ties).
A failing op is reported (``status: "mismatch"``) and not timed.

Timing (``Timer``): CUDA events around one call; before each call the L2 cache is flushed by
writing a buffer of twice its size and the stream is held by a spin kernel longer than the call's
host-side time, so the Python-side launch cost of either side stays outside the measured
interval (it is reported separately as ``host_ms``); warm-up calls
first (cuDNN benchmark mode picks its algorithms there), then as many repeats as fit in
``--budget-s`` (5 to 200), and the median. All in one process, on one stream: CuPy's and
PyTorch's default streams are the same legacy stream, and the ekdaa_cuda ops get PyTorch's
tensors zero-copy through DLPack. PyTorch runs with TF32 off (IEEE float32, the arithmetic
of ekdaa_cuda's kernels); ``--tf32`` also times it with TF32 on (PyTorch's default for convs).

One JSON line per row: op, preset, layer, batch, rule, shape, ms of both, ratio (ekdaa / torch),
achieved TFLOP/s and GB/s from ``floors.py``'s counts and, with ``--peaks``, the fraction of the
FP32 floor. Without a usable GPU (``--device cpu``) the PyTorch side still runs and the
ekdaa_cuda side is reported as unavailable: a smoke test of the harness.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

import floors

BETA, GAMMA = 0.9, 0.1
DEFAULT_ORDER = (50, 1024, 256)  # the batches the targets name first, in case the time limit cuts the run


# ---------------------------------------------------------------- cases


@dataclass
class Case:
    op: str
    preset: str
    layer: str
    batch: int
    rule: str
    shape: dict = field(default_factory=dict)

    def key(self) -> str:
        version = f"/v{self.shape['version']}" if "version" in self.shape else ""
        return f"{self.preset}/{self.layer}/{self.op}{version}/{self.rule}/b{self.batch}"


def cases_for(preset: str, batch: int, bias: bool | None = None, widths=None) -> list[Case]:
    """The ops the CUDA backend runs in one update of ``preset`` at ``batch``, with their shapes
    (``widths`` resizes the preset's layers, for quick tests)."""
    blocks = floors.blocks_of(preset, bias=bool(bias), widths=widths)
    n, out = batch, []

    def add(op, layer, rule="ekdaa", **shape):
        out.append(Case(op, preset, layer, n, rule, shape))

    for b in blocks:
        if b.kind == "conv":
            c, h, w = b.in_shape
            for version in (2, 1):  # 2: implicit GEMM; 1: the previous kernel (one thread per output)
                add("conv_block_fwd", b.name, c_in=c, c_out=b.size, h=h, w=w, k=b.kernel, pool=b.pool, bias=b.bias,
                    first=b.index == 0, version=version)
        else:
            for version in (2, 1):  # 2: split-K GEMM; 1: the previous kernel (16 x 16 tiles, K serial)
                add("fc_fwd", b.name, f_in=b.in_shape[0], f_out=b.size, act=b.kind != "output", bias=b.bias,
                    version=version)
    add("softmax_error", blocks[-1].name, classes=blocks[-1].size)
    for i in range(len(blocks) - 1, 0, -1):
        b, below = blocks[i], blocks[i - 1]
        for rule in ("ekdaa", "bp"):
            if b.kind == "conv":
                c_in, hp, wp = b.in_shape
                _, hh, wh = below.h_shape
                for version in (2, 1):  # as conv_block_fwd
                    add("conv_error_proj", b.name, rule, c_out=b.size, c_in=c_in, hp=hp, wp=wp, hh=hh, wh=wh,
                        k=b.kernel, pooled=below.pool, sparse=b.pool, version=version)
                continue
            add("fc_proj", b.name, rule, f_in=b.in_shape[0], f_out=b.size)
            if below.kind == "conv" and below.pool:
                c, hp, wp = below.out_shape
                _, hh, wh = below.h_shape
                add("unpool_error", below.name, rule, c=c, hp=hp, wp=wp, hh=hh, wh=wh)
            else:
                add("error_epilogue", below.name, rule, shape=below.h_shape)
            if below.kind != "conv":
                add("fc_error_proj", b.name, rule, f_in=b.in_shape[0], f_out=b.size)
    for b in blocks:
        if b.kind == "conv":
            c, h, w = b.in_shape
            # 3 (pooled layers): one term per 2x2 window (e is zero off the argmax); 2: split-K implicit GEMM;
            # 1: the previous kernel (one block per output)
            for version in (3, 2, 1) if b.pool else (2, 1):
                add("conv_filter_update", b.name, c_in=c, c_out=b.size, h=h, w=w, k=b.kernel, bias=b.bias,
                    sparse=b.pool, version=version)
        else:
            add("fc_update", b.name, f_in=b.in_shape[0], f_out=b.size, bias=b.bias)
    for rule in ("ekdaa", "bp"):
        shapes = [list(b.weight_shape) for b in blocks]
        if rule == "ekdaa":
            shapes += [list(b.error_shape) for b in blocks]
        shapes += [[b.size] for b in blocks if b.bias]
        add("optimizer", "all", rule, shapes=shapes)
    return out


def counts(case: Case) -> dict:
    """floors.py's FLOPs and bytes for one op."""
    s, n = case.shape, case.batch
    op = case.op
    if op == "conv_block_fwd":
        return floors.conv_fwd(n, s["c_in"], s["c_out"], s["h"], s["w"], s["k"], s["pool"], s["bias"])
    if op == "conv_error_proj":
        return floors.conv_error_proj(n, s["c_out"], s["c_in"], s["hp"], s["wp"], s["hh"], s["wh"], s["k"], s["pooled"])
    if op == "unpool_error":
        return floors.unpool_error(n, s["c"], s["hp"], s["wp"], s["hh"], s["wh"])
    if op == "error_epilogue":
        return floors.error_epilogue(n * math.prod(s["shape"]))
    if op == "fc_proj":
        return floors.fc_proj(n, s["f_in"], s["f_out"])
    if op == "fc_error_proj":
        return floors.fc_error_proj(n, s["f_in"], s["f_out"])
    if op == "fc_fwd":
        return floors.fc_fwd(n, s["f_in"], s["f_out"], write_out=True, bias=s["bias"])  # the op writes h and out
    if op == "softmax_error":
        row = floors.softmax_error(n, s["classes"])
        row["bytes"] += 4 * (n * s["classes"] + n)  # the op also writes probs and the per-sample loss
        return row
    if op == "conv_filter_update":
        return floors.conv_filter_update(n, s["c_in"], s["c_out"], s["h"], s["w"], s["k"], True, s["bias"])
    if op == "fc_update":
        return floors.fc_update(n, s["f_in"], s["f_out"], True, s["bias"])
    if op == "optimizer":
        return floors.optimizer(sum(math.prod(sh) for sh in s["shapes"]))
    raise ValueError(f"unknown op {op!r}")


# ---------------------------------------------------------------- inputs and the PyTorch sequences


def _glorot(shape, gen, device):
    fan_in, fan_out = (shape[1] * shape[2] * shape[3], shape[0] * shape[2] * shape[3]) if len(shape) == 4 else \
        (shape[1], shape[0])
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return (torch.rand(shape, generator=gen, device=device) * 2 - 1) * limit


def _uniform(shape, gen, device, scale=1.0):
    return (torch.rand(shape, generator=gen, device=device) * 2 - 1) * scale


def _normal(shape, gen, device, scale=1.0):
    return torch.randn(shape, generator=gen, device=device) * scale


def _pool_indices(h):
    """PyTorch's max-pool indices of tanh(h) (flat y*W + x in each plane)."""
    return F.max_pool2d(torch.tanh(h), 2, return_indices=True)[1]


def indices_to_codes(idx, width: int):
    """PyTorch's flat max-pool indices -> ekdaa_cuda's argmax codes 2*dy + dx (uint8)."""
    row, col = torch.div(idx, width, rounding_mode="floor"), idx % width
    return ((row % 2) * 2 + col % 2).to(torch.uint8)


def _pool_sparse(e, gen, codes=False):
    """Zero 3 of every 2x2 window, as an error unpooled at the argmax is (the conv layers' e); with
    ``codes``, also the kept positions as argmax codes 2·dy + dx (uint8 [N, C, H//2, W//2])."""
    n, c, h, w = e.shape
    keep = torch.randint(0, 4, (n, c, h // 2, w // 2), generator=gen, device=e.device)
    mask = torch.zeros(n, c, h // 2, w // 2, 4, device=e.device).scatter_(-1, keep[..., None], 1.0)
    mask = mask.view(n, c, h // 2, w // 2, 2, 2).permute(0, 1, 2, 4, 3, 5).reshape(n, c, h // 2 * 2, w // 2 * 2)
    out = torch.zeros_like(e)
    out[:, :, : h // 2 * 2, : w // 2 * 2] = e[:, :, : h // 2 * 2, : w // 2 * 2] * mask
    return (out, keep.to(torch.uint8)) if codes else out


def epilogue(d, h, z, rule):
    """EKDAA: z − tanh(h − βd) with z = tanh(h); BP: tanh_backward(d, z) = d·(1 − z²)."""
    if rule == "ekdaa":
        return z - torch.tanh(torch.add(h, d, alpha=-BETA))
    return torch.ops.aten.tanh_backward(d, z)


def make_inputs(case: Case, gen, device) -> dict:
    """Float32 inputs of a case (random, never zeros), plus integer side inputs (indices, labels)."""
    s, n = case.shape, case.batch
    op = case.op
    if op == "conv_block_fwd":
        inp = {"x": _uniform((n, s["c_in"], s["h"], s["w"]), gen, device, 0.5 if s["first"] else 1.0),
               "w": _glorot((s["c_out"], s["c_in"], s["k"], s["k"]), gen, device)}
        if s["bias"]:
            inp["b"] = _uniform((s["c_out"],), gen, device, 0.1)
        return inp
    if op == "conv_error_proj":
        e = _normal((n, s["c_out"], s["hp"], s["wp"]), gen, device, 0.1)
        inp = {"e": _pool_sparse(e, gen) if s["sparse"] else e,
               "kernel": _glorot((s["c_out"], s["c_in"], s["k"], s["k"]), gen, device),
               "h": _normal((n, s["c_in"], s["hh"], s["wh"]), gen, device)}
        if s["pooled"]:
            inp["idx"] = _pool_indices(inp["h"])
            inp["codes"] = indices_to_codes(inp["idx"], s["wh"])
        inp["z"] = torch.tanh(inp["h"])
        return inp
    if op == "unpool_error":
        h = _normal((n, s["c"], s["hh"], s["wh"]), gen, device)
        idx = _pool_indices(h)
        return {"d": _normal((n, s["c"], s["hp"], s["wp"]), gen, device, 0.1), "h": h, "z": torch.tanh(h),
                "idx": idx, "codes": indices_to_codes(idx, s["wh"])}
    if op == "error_epilogue":
        h = _normal((n, *s["shape"]), gen, device)
        return {"d": _normal((n, *s["shape"]), gen, device, 0.1), "h": h, "z": torch.tanh(h)}
    if op in ("fc_proj", "fc_error_proj"):
        wshape = (s["f_in"], s["f_out"]) if case.rule == "ekdaa" else (s["f_out"], s["f_in"])
        inp = {"e": _normal((n, s["f_out"]), gen, device, 0.1), "weight": _glorot(wshape, gen, device)}
        if op == "fc_error_proj":
            inp["h"] = _normal((n, s["f_in"]), gen, device)
            inp["z"] = torch.tanh(inp["h"])
        return inp
    if op == "fc_fwd":
        inp = {"z": _uniform((n, s["f_in"]), gen, device), "w": _glorot((s["f_out"], s["f_in"]), gen, device)}
        if s["bias"]:
            inp["b"] = _uniform((s["f_out"],), gen, device, 0.1)
        return inp
    if op == "softmax_error":
        return {"h": _normal((n, s["classes"]), gen, device, 3.0),
                "labels": torch.randint(0, s["classes"], (n,), generator=gen, device=device)}
    if op == "conv_filter_update":
        e = _normal((n, s["c_out"], s["h"], s["w"]), gen, device, 0.1)
        inp = {"z": _uniform((n, s["c_in"], s["h"], s["w"]), gen, device)}
        if s["sparse"]:
            inp["e"], inp["codes"] = _pool_sparse(e, gen, codes=True)
        else:
            inp["e"] = e
        return inp
    if op == "fc_update":
        return {"z": _uniform((n, s["f_in"]), gen, device), "e": _normal((n, s["f_out"]), gen, device, 0.1)}
    if op == "optimizer":
        return {"params": [_uniform(tuple(sh), gen, device, 0.1) for sh in s["shapes"]],
                "grads": [_normal(tuple(sh), gen, device, 1.0) for sh in s["shapes"]]}
    raise ValueError(f"unknown op {op!r}")


TORCH_SEQUENCE = {
    "conv_block_fwd": "conv2d + tanh + max_pool2d(return_indices)",
    "conv_error_proj": "conv_transpose2d + max_unpool2d + epilogue",
    "unpool_error": "max_unpool2d + epilogue",
    "error_epilogue": "epilogue",
    "fc_proj": "mm",
    "fc_error_proj": "mm + epilogue",
    "fc_fwd": "linear + tanh",
    "softmax_error": "softmax - one_hot, -log p[label]",
    "conv_filter_update": "nn.grad.conv2d_weight + gamma*dW",
    "fc_update": "mm(e^T, z) + gamma*dW^T",
    "optimizer": "optim.SGD(momentum) fused/foreach",
}


def torch_sequence(case: Case, inp: dict) -> tuple:
    """The PyTorch ops doing the case's work; returns its outputs (in the order ekdaa_outputs uses)."""
    s, op = case.shape, case.op
    if op == "conv_block_fwd":
        h = F.conv2d(inp["x"], inp["w"], inp.get("b"), padding=s["k"] // 2)
        z = torch.tanh(h)
        if s["pool"]:
            out, idx = F.max_pool2d(z, 2, return_indices=True)
            return h, out, idx
        return h, z
    if op == "conv_error_proj":
        d = F.conv_transpose2d(inp["e"], inp["kernel"], padding=s["k"] // 2)
        if s["pooled"]:
            d = F.max_unpool2d(d, inp["idx"], 2, output_size=(s["hh"], s["wh"]))
        return (epilogue(d, inp["h"], inp["z"], case.rule),)
    if op == "unpool_error":
        d = F.max_unpool2d(inp["d"], inp["idx"], 2, output_size=(s["hh"], s["wh"]))
        return (epilogue(d, inp["h"], inp["z"], case.rule),)
    if op == "error_epilogue":
        return (epilogue(inp["d"], inp["h"], inp["z"], case.rule),)
    if op in ("fc_proj", "fc_error_proj"):
        w = inp["weight"]
        d = torch.mm(inp["e"], w.t() if case.rule == "ekdaa" else w)
        return (d,) if op == "fc_proj" else (epilogue(d, inp["h"], inp["z"], case.rule),)
    if op == "fc_fwd":
        h = F.linear(inp["z"], inp["w"], inp.get("b"))
        return (h, torch.tanh(h)) if s["act"] else (h,)
    if op == "softmax_error":
        p = torch.softmax(inp["h"], 1)
        e = p - F.one_hot(inp["labels"], s["classes"]).to(p.dtype)
        loss = -torch.log(p.gather(1, inp["labels"][:, None]))[:, 0]
        return p, e, loss
    if op == "conv_filter_update":
        z, e = inp["z"], inp["e"]
        dw = torch.nn.grad.conv2d_weight(z, (s["c_out"], s["c_in"], s["k"], s["k"]), e, padding=s["k"] // 2)
        outs = (dw, dw * GAMMA)
        return (*outs, e.sum((0, 2, 3))) if s["bias"] else outs
    if op == "fc_update":
        dw = torch.mm(inp["e"].t(), inp["z"])
        outs = (dw, dw.t() * GAMMA)
        return (*outs, inp["e"].sum(0)) if s["bias"] else outs
    raise ValueError(f"no plain sequence for {op!r}")


# ---------------------------------------------------------------- the ekdaa_cuda side


def to_cupy(t, cupy=None):
    """A zero-copy CuPy view of a contiguous CUDA tensor: DLPack, or (if this CuPy/torch pair
    refuses it) a CuPy array over the tensor's memory that keeps the tensor alive."""
    if cupy is None:
        import cupy
    t = t.detach()
    try:
        return cupy.from_dlpack(t)
    except Exception:
        if not t.is_contiguous():
            raise
        dtype = {torch.float32: "float32", torch.float64: "float64", torch.uint8: "uint8", torch.int32: "int32",
                 torch.int64: "int64"}[t.dtype]
        mem = cupy.cuda.UnownedMemory(t.data_ptr(), t.numel() * t.element_size(), t, t.device.index or 0)
        return cupy.ndarray(tuple(t.shape), dtype=dtype, memptr=cupy.cuda.MemoryPointer(mem, 0))


class CudaExt:
    """ekdaa_cuda's ops on CuPy views (DLPack, zero-copy) of PyTorch tensors."""

    name = "ekdaa_cuda"

    def __init__(self):
        import ekdaa_cuda

        if not ekdaa_cuda.cuda_available():
            raise RuntimeError(ekdaa_cuda.cuda_status())
        import cupy

        from ekdaa_cuda.ops import conv, fc, optim

        self.cp, self.conv, self.fc, self.optim = cupy, conv, fc, optim

    def arr(self, t):
        return to_cupy(t, self.cp)


def ekdaa_call(case: Case, inp: dict, ext) -> tuple:
    """(call, outputs): ``call()`` runs the ekdaa_cuda op writing into ``outputs`` (PyTorch tensors,
    preallocated, in torch_sequence's order; argmax codes where PyTorch returns indices)."""
    s, op, a = case.shape, case.op, ext.arr
    dev = next(v for v in inp.values() if isinstance(v, torch.Tensor)).device
    empty = lambda *shape, dtype=torch.float32: torch.empty(shape, dtype=dtype, device=dev)  # noqa: E731
    n = case.batch
    if op == "conv_block_fwd":
        ho, wo = (s["h"] // 2, s["w"] // 2) if s["pool"] else (s["h"], s["w"])
        outs = (empty(n, s["c_out"], s["h"], s["w"]), empty(n, s["c_out"], ho, wo))
        if s["pool"]:
            outs += (empty(n, s["c_out"], ho, wo, dtype=torch.uint8),)
        x, w, b = a(inp["x"]), a(inp["w"]), a(inp["b"]) if "b" in inp else None
        out = tuple(a(t) for t in outs) + (() if s["pool"] else (None,))
        version = s.get("version", 2)
        return (lambda: ext.conv.conv_block_fwd(x, w, b, activation="tanh", apply_activation=True, pool=s["pool"],
                                                out=out, version=version)), outs
    if op == "conv_error_proj":
        outs = (empty(n, s["c_in"], s["hh"], s["wh"]),)
        e, k, h = a(inp["e"]), a(inp["kernel"]), a(inp["h"])
        codes, o = (a(inp["codes"]) if s["pooled"] else None), a(outs[0])
        version = s.get("version", 2)
        return (lambda: ext.conv.conv_error_proj(e, k, h, codes, activation="tanh", beta=BETA, rule=case.rule,
                                                 out=o, version=version)), outs
    if op == "unpool_error":
        outs = (empty(n, s["c"], s["hh"], s["wh"]),)
        d, h, codes, o = a(inp["d"]), a(inp["h"]), a(inp["codes"]), a(outs[0])
        return (lambda: ext.conv.unpool_error(d, h, codes, activation="tanh", beta=BETA, rule=case.rule,
                                              out=o)), outs
    if op == "error_epilogue":
        outs = (torch.empty_like(inp["d"]),)
        d, h, o = a(inp["d"]), a(inp["h"]), a(outs[0])
        return (lambda: ext.fc.error_epilogue(d, h, activation="tanh", beta=BETA, rule=case.rule, out=o)), outs
    if op in ("fc_proj", "fc_error_proj"):
        layout = "in_out" if case.rule == "ekdaa" else "out_in"
        outs = (empty(n, s["f_in"]),)
        e, w, o = a(inp["e"]), a(inp["weight"]), a(outs[0])
        if op == "fc_proj":
            return (lambda: ext.fc.fc_proj(e, w, weight_layout=layout, out=o)), outs
        h = a(inp["h"])
        return (lambda: ext.fc.fc_error_proj(e, w, h, weight_layout=layout, activation="tanh", beta=BETA,
                                             rule=case.rule, out=o)), outs
    if op == "fc_fwd":
        outs = (empty(n, s["f_out"]), empty(n, s["f_out"]))
        z, w, b = a(inp["z"]), a(inp["w"]), a(inp["b"]) if "b" in inp else None
        out = tuple(a(t) for t in outs)
        act = "tanh" if s["act"] else "linear"
        version = s.get("version", 2)
        ws = ext.fc.fc_fwd_workspace(z, s["f_out"]) if version == 2 else None
        call = lambda: ext.fc.fc_fwd(z, w, b, activation=act, apply_activation=s["act"], out=out,  # noqa: E731
                                     workspace=ws, version=version)
        return call, (outs if s["act"] else outs[:1])
    if op == "softmax_error":
        c = s["classes"]
        outs = (empty(n, c), empty(n, c), empty(n))
        h, labels = a(inp["h"]), a(inp["labels"].to(torch.int32))
        out = tuple(a(t) for t in outs)
        return (lambda: ext.fc.softmax_error(h, labels, out=out)), outs
    if op == "conv_filter_update":
        wshape = (s["c_out"], s["c_in"], s["k"], s["k"])
        outs = (empty(*wshape), empty(*wshape)) + ((empty(s["c_out"]),) if s["bias"] else ())
        z, e = a(inp["z"]), a(inp["e"])
        out = (a(outs[0]), a(outs[2]) if s["bias"] else None, a(outs[1]))
        version = s.get("version", 2)
        if version == 3:  # the argmax-sparse kernel, on the same e and its codes
            codes = a(inp["codes"])
            ws = ext.conv.conv_filter_update_pooled_workspace(z, s["c_out"], s["k"], bias=s["bias"])
            return (lambda: ext.conv.conv_filter_update_pooled(z, e, codes, s["k"], gamma=GAMMA, bias=s["bias"],
                                                               out=out, workspace=ws)), outs
        ws = ext.conv.conv_filter_update_workspace(z, s["c_out"], s["k"], bias=s["bias"]) if version == 2 else None
        return (lambda: ext.conv.conv_filter_update(z, e, s["k"], gamma=GAMMA, bias=s["bias"], out=out, workspace=ws,
                                                    version=version)), outs
    if op == "fc_update":
        outs = (empty(s["f_out"], s["f_in"]), empty(s["f_in"], s["f_out"]))
        outs += (empty(s["f_out"]),) if s["bias"] else ()
        z, e = a(inp["z"]), a(inp["e"])
        out = (a(outs[0]), a(outs[2]) if s["bias"] else None, a(outs[1]))
        return (lambda: ext.fc.fc_update(z, e, gamma=GAMMA, bias=s["bias"], out=out)), outs
    raise ValueError(f"no ekdaa_cuda call for {op!r}")


# ---------------------------------------------------------------- validation


def rel_err(out, ref) -> float:
    """‖out − ref‖ / ‖ref‖ in float64 (‖out − ref‖ when ref is zero); inf when out has NaN/inf."""
    out, ref = out.detach().double(), ref.detach().double()
    if out.shape != ref.shape:
        return math.inf
    if not bool(torch.isfinite(out).all()):
        return math.inf
    num, den = float(torch.linalg.vector_norm(out - ref)), float(torch.linalg.vector_norm(ref))
    return num / den if den > 0 else num


def _cast(inp: dict, dtype) -> dict:
    out = {}
    for k, v in inp.items():
        if isinstance(v, list):
            out[k] = [t.to(dtype) for t in v]
        else:
            out[k] = v.to(dtype) if v.is_floating_point() else v
    return out


def reduction_length(case: Case) -> int:
    """How many products each output of the op sums (its float32 rounding grows like √length)."""
    s, n = case.shape, case.batch
    return {"conv_block_fwd": lambda: s["c_in"] * s["k"] ** 2,
            "conv_error_proj": lambda: s["c_out"] * s["k"] ** 2,
            "fc_proj": lambda: s["f_out"], "fc_error_proj": lambda: s["f_out"], "fc_fwd": lambda: s["f_in"],
            "conv_filter_update": lambda: n * s["h"] * s["w"], "fc_update": lambda: n,
            "softmax_error": lambda: s["classes"]}.get(case.op, lambda: 1)()


def tolerance(case: Case, torch_err: float, factor: float = 10.0) -> float:
    """Pass bound on ‖out − ref‖/‖ref‖: max(1e-4, 8·2⁻²⁴·√(reduction length), factor × PyTorch
    float32's own error). An indexing bug gives errors of order 1; float32 summation order does not."""
    return max(1e-4, 8 * 2.0**-24 * math.sqrt(reduction_length(case)), factor * torch_err)


def validate(case: Case, inp: dict, ext, code_tol: float = 1e-4) -> dict:
    """Run the PyTorch sequence in float64 and float32 and the ekdaa_cuda op; compare every output."""
    ref = torch_sequence(case, _cast(inp, torch.float64))
    t32 = torch_sequence(case, inp)
    result = {"errors": {}, "torch_errors": {}, "status": "ok"}
    call, outs = ekdaa_call(case, inp, ext)
    for t in outs:
        t.fill_(255 if t.dtype == torch.uint8 else float("nan"))
    call()
    _sync(outs[0].device)
    width = case.shape.get("w") or case.shape.get("wh")
    for i, (mine, r64, r32) in enumerate(zip(outs, ref, t32)):
        name = f"out{i}"
        if mine.dtype == torch.uint8:  # argmax codes against PyTorch's float32 indices
            want = indices_to_codes(r32, width)
            frac = float((mine != want).float().mean())
            result["errors"][f"{name}_code_mismatch"] = frac
            ok = frac <= code_tol
        else:
            err, terr = rel_err(mine, r64), rel_err(r32, r64)
            result["errors"][name], result["torch_errors"][name] = err, terr
            result.setdefault("tolerances", {})[name] = tol = tolerance(case, terr)
            ok = err <= tol
        if not ok:
            result["status"] = "mismatch"
    return result


# ---------------------------------------------------------------- the optimizer case


LR, MOMENTUM = 5e-4, 0.9


def torch_optimizer(inp: dict, impl: str = "auto"):
    """(step, params, impl): torch.optim.SGD(momentum) over copies of the case's parameters with
    their .grad set; impl "fused" or "foreach" ("auto": fused where available, else foreach)."""
    params = [torch.nn.Parameter(p.clone()) for p in inp["params"]]
    for p, g in zip(params, inp["grads"]):
        p.grad = g.clone()
    last = None
    for kind in ((impl,) if impl != "auto" else ("fused", "foreach")):
        try:
            opt = torch.optim.SGD(params, lr=LR, momentum=MOMENTUM, **{kind: True})
            opt.step()  # fused/foreach may only refuse at the first step
            for p, p0 in zip(params, inp["params"]):  # back to the start; the momentum buffers are reset below
                p.data.copy_(p0)
            opt.state.clear()
            return opt.step, params, kind
        except (TypeError, RuntimeError, ValueError) as exc:
            last = exc
    raise RuntimeError(f"no torch SGD implementation among {impl!r}: {last}")


def optimizer_check(inp: dict, ext, th_step, th_params) -> tuple:
    """(ekdaa_step, result): ekdaa_cuda's MultiTensorOptimizer over copies of the same tensors; one
    step of each from equal states (v = 0), both compared with p − λ(μ·0 + g)."""
    ek_params = [p.clone() for p in inp["params"]]
    ek_opt = ext.optim.MultiTensorOptimizer([ext.arr(p) for p in ek_params], kind="sgd", lr=LR, momentum=MOMENTUM)
    grads = [ext.arr(g) for g in inp["grads"]]
    ek_opt.step(grads)
    th_step()
    _sync(ek_params[0].device)
    errs, ref_errs = {}, {}
    for i, (a, b, p0, g) in enumerate(zip(ek_params, th_params, inp["params"], inp["grads"])):
        want = -LR * g.double()
        errs[f"out{i}"] = rel_err(a.double() - p0.double(), want)
        ref_errs[f"out{i}"] = rel_err(b.detach().double() - p0.double(), want)
    ok = all(errs[k] <= max(1e-4, 10 * ref_errs[k]) for k in errs)
    return (lambda: ek_opt.step(grads)), {"errors": errs, "torch_errors": ref_errs,
                                          "status": "ok" if ok else "mismatch"}


# ---------------------------------------------------------------- timing


def _sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


class Timer:
    """Median time of ``fn()`` in ms. CUDA: events around each call, L2 flushed and the stream held
    by a spin kernel before it, long enough (1.5 x the call's host-side time + 30 us, measured in
    the warm-up) that the events time the device work, not Python. CPU: wall clock (no flush), for
    smoke tests only. Each result also gives ``host_ms``: the host-side time of one call."""

    def __init__(self, device, budget_s=0.2, min_reps=5, max_reps=200, warmup=3, flush_bytes=None):
        self.device = torch.device(device)
        self.budget_s, self.min_reps, self.max_reps, self.warmup = budget_s, min_reps, max_reps, max(1, warmup)
        self.cuda = self.device.type == "cuda"
        self.flush = None
        self.spin = getattr(torch.cuda, "_sleep", None) if self.cuda else None
        self.cycles_per_us = 0.0
        if self.cuda:
            l2 = int(getattr(torch.cuda.get_device_properties(self.device), "L2_cache_size", 0)) or 64 << 20
            self.flush_bytes = flush_bytes or max(2 * l2, 64 << 20)
            self.flush = torch.empty(self.flush_bytes // 4, dtype=torch.float32, device=self.device)
            if self.spin:
                s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                for _ in range(2):  # the first launch loads the module
                    s.record()
                    self.spin(1_000_000)
                    e.record()
                    e.synchronize()
                self.cycles_per_us = 1_000_000 / max(s.elapsed_time(e) * 1e3, 1e-3)
        else:
            self.flush_bytes = 0

    def describe(self) -> str:
        if not self.cuda:
            return "wall clock, no flush (CPU smoke test)"
        spin = (f"spin kernel of 1.5 x host time + 30 us ({self.cycles_per_us:.0f} cycles/us)" if self.spin
                else "no spin kernel")
        return (f"CUDA events per call; before each: L2 flush (write {self.flush_bytes >> 20} MiB), {spin}; "
                f"warm-up {self.warmup}, repeats {self.min_reps}-{self.max_reps} within {self.budget_s} s, median")

    def __call__(self, fn) -> dict:
        host = []
        for _ in range(self.warmup):
            t0 = time.perf_counter()
            fn()
            host.append(time.perf_counter() - t0)
            _sync(self.device)
        host_s = min(host)
        if not self.cuda:
            t0 = time.perf_counter()
            fn()
            est = time.perf_counter() - t0
            reps = int(min(self.max_reps, max(self.min_reps, self.budget_s / max(est, 1e-6))))
            times = []
            for _ in range(reps):
                t0 = time.perf_counter()
                fn()
                times.append((time.perf_counter() - t0) * 1e3)
            return {**_stats(times), "host_ms": host_s * 1e3}
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        est_s = start.elapsed_time(end) * 1e-3 + self.flush_bytes / 2e12 + 1.5 * host_s + 3e-5
        reps = int(min(self.max_reps, max(self.min_reps, self.budget_s / est_s)))
        spin_cycles = int(self.cycles_per_us * min(5000.0, 1.5 * host_s * 1e6 + 30.0))
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(reps)]
        for s, e in events:
            self.flush.zero_()
            if self.spin:
                self.spin(spin_cycles)
            s.record()
            fn()
            e.record()
        torch.cuda.synchronize()
        return {**_stats([s.elapsed_time(e) for s, e in events]), "host_ms": host_s * 1e3}


def _stats(times: list[float]) -> dict:
    times = sorted(times)
    q = lambda f: times[min(len(times) - 1, int(f * len(times)))]  # noqa: E731
    return {"ms": statistics.median(times), "p10_ms": q(0.1), "p90_ms": q(0.9), "reps": len(times)}


# ---------------------------------------------------------------- driver


def environment(device) -> dict:
    """Card, driver and library versions, commit."""
    env = {"type": "env", "torch": torch.__version__, "device": str(device),
           "commit": os.environ.get("EKDAA_COMMIT") or _git_commit()}
    try:
        import ekdaa_cuda

        env["ekdaa_cuda_status"] = ekdaa_cuda.cuda_status()
        env["ekdaa_cuda_file"] = ekdaa_cuda.__file__
    except Exception as exc:
        env["ekdaa_cuda_status"] = f"import failed: {exc}"
    if torch.device(device).type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update(card=props.name, sm_count=props.multi_processor_count,
                   l2_bytes=int(getattr(props, "L2_cache_size", 0)), cuda=torch.version.cuda,
                   cudnn=torch.backends.cudnn.version())
        try:
            env["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                           capture_output=True, text=True, timeout=20).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            env["driver"] = None
        try:
            import cupy

            env["cupy"] = cupy.__version__
        except ImportError:
            env["cupy"] = None
    else:
        env["card"] = "cpu"
    return env


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def run_case(case: Case, ext, timer: Timer, device, gen, peaks=None, tf32=False, opt_impl="auto") -> dict:
    """Validate, then time both sides of one case; returns its JSON row."""
    c = counts(case)
    row = {"type": "micro", "op": case.op, "preset": case.preset, "layer": case.layer, "batch": case.batch,
           "rule": case.rule, "shape": case.shape, "flops": c["flops"], "bytes": c["bytes"],
           "torch_sequence": TORCH_SEQUENCE[case.op]}
    if torch.device(device).type == "cuda":
        floors.set_tf32(torch, False)
    inp = make_inputs(case, gen, device)
    if case.op == "optimizer":
        return _run_optimizer(case, inp, ext, timer, row, peaks, opt_impl)
    ek = None
    if ext is None:
        row["status"] = "unavailable"
    else:
        try:
            row.update(validate(case, inp, ext))
            if row["status"] == "ok":
                ek, _ = ekdaa_call(case, inp, ext)
        except Exception as exc:
            row["status"] = "error"
            row["message"] = f"{type(exc).__name__}: {exc}"[:500]
    row["torch"] = timer(lambda: torch_sequence(case, inp))
    if tf32 and torch.device(device).type == "cuda" and case.op in ("conv_block_fwd", "conv_error_proj",
                                                                      "conv_filter_update", "fc_proj", "fc_fwd",
                                                                      "fc_update", "fc_error_proj"):
        floors.set_tf32(torch, True)
        row["torch_tf32"] = timer(lambda: torch_sequence(case, inp))
        floors.set_tf32(torch, False)
    if ek is not None:
        row["ekdaa"] = timer(ek)
    return _finish(row, peaks)


def _run_optimizer(case, inp, ext, timer, row, peaks, impl):
    th_step, th_params, impl = torch_optimizer(inp, impl)
    row["torch_sequence"] = f"optim.SGD(momentum=0.9, {impl}=True)"
    ek_step = None
    if ext is None:
        row["status"] = "unavailable"
    else:
        try:
            ek_step, result = optimizer_check(inp, ext, th_step, th_params)
            row.update(result)
        except Exception as exc:
            row["status"] = "error"
            row["message"] = f"{type(exc).__name__}: {exc}"[:500]
    row["torch"] = timer(th_step)
    if ek_step is not None and row["status"] == "ok":
        row["ekdaa"] = timer(ek_step)
    return _finish(row, peaks)


def _finish(row: dict, peaks) -> dict:
    for side in ("ekdaa", "torch", "torch_tf32"):
        if side in row:
            row[f"{side}_ms"] = row[side]["ms"]
            row[f"{side}_host_ms"] = row[side]["host_ms"]
            for k, v in floors.achieved(row["flops"], row["bytes"], row[side]["ms"], peaks).items():
                row[f"{side}_{k}"] = v
    if row.get("ekdaa_ms") and row.get("torch_ms"):
        row["ratio"] = row["ekdaa_ms"] / row["torch_ms"]
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--presets", default="fmnist,cifar")
    p.add_argument("--batches", default=",".join(map(str, DEFAULT_ORDER)))
    p.add_argument("--ops", default="", help="comma-separated op names to run (default all)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", required=True, help="JSON-lines output (appended)")
    p.add_argument("--peaks", help="peaks JSON from floors.py --measure-peaks (for floor fractions)")
    p.add_argument("--budget-s", type=float, default=0.15, help="timing budget per side per case")
    p.add_argument("--deadline-s", type=float, default=0, help="stop starting cases after this many seconds")
    p.add_argument("--tf32", action="store_true", help="also time the PyTorch side with TF32 on")
    p.add_argument("--bias", action="store_true", help="give every layer a bias (the presets have none)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    t_start = time.perf_counter()
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    peaks = json.loads(Path(args.peaks).read_text()).get("peaks") if args.peaks and Path(args.peaks).exists() else None
    ext, why = None, None
    if device.type == "cuda":
        try:
            ext = CudaExt()
        except Exception as exc:
            why = f"{type(exc).__name__}: {exc}"
    else:
        why = "no CUDA device: ekdaa_cuda side not run"
    timer = Timer(device, budget_s=args.budget_s)
    env = {**environment(device), "timing": timer.describe(), "ekdaa_side": why or "ok", "peaks": peaks}
    ops = set(filter(None, args.ops.split(",")))
    todo = [c for b in map(int, args.batches.split(",")) for pre in args.presets.split(",")
            for c in cases_for(pre, b, args.bias or None) if not ops or c.op in ops]
    gen = torch.Generator(device=device).manual_seed(args.seed)
    with open(args.out, "a") as f:
        f.write(json.dumps(env) + "\n")
        print(f"# {env.get('card')} | {len(todo)} cases | ekdaa side: {env['ekdaa_side']}", flush=True)
        print(f"{'case':44s} {'ekdaa ms':>10s} {'torch ms':>10s} {'ratio':>7s}  status", flush=True)
        done = 0
        for case in todo:
            if args.deadline_s and time.perf_counter() - t_start > args.deadline_s:
                f.write(json.dumps({"type": "skipped", "reason": "deadline", "cases": [c.key() for c in todo[done:]]})
                        + "\n")
                print(f"# deadline: {len(todo) - done} cases not run", flush=True)
                break
            row = run_case(case, ext, timer, device, gen, peaks, args.tf32)
            f.write(json.dumps(row) + "\n")
            f.flush()
            done += 1
            ek_ms = f"{row['ekdaa_ms']:.4f}" if "ekdaa_ms" in row else "-"
            ratio = f"{row['ratio']:.2f}" if "ratio" in row else "-"
            print(f"{case.key():44s} {ek_ms:>10s} {row['torch_ms']:10.4f} {ratio:>7s}  {row.get('status')}"
                  + (f" {row['errors']}" if row.get("status") == "mismatch" else "")
                  + (f" {row.get('message', '')}" if row.get("status") == "error" else ""), flush=True)
            if device.type == "cuda" and done % 20 == 0:
                torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())

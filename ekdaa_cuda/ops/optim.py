"""Multi-tensor optimizer (kernels in ``csrc/optim.cu``, on the GPU or the CPU simulator): one step over every
parameter tensor of a model (W, b, E of all layers) in at most two launches.

SPEC.md "Optimisers and training": the rule's updates Δ are the gradients, W ← W − λ·step(Δ),
with Pascanu rescaling per tensor (Δ ← ρΔ/‖Δ‖_F when ‖Δ‖_F > ρ; off when ρ = 0) and

- ``sgd``:     v ← μv + Δ; p ← p − λv (PyTorch's momentum; μ = 0 is plain SGD);
- ``adam``:    m ← β1 m + (1−β1)Δ; v ← β2 v + (1−β2)Δ²; p ← p − λ (m/(1−β1^t)) / (√(v/(1−β2^t)) + ε);
- ``rmsprop``: s ← ρ_d s + (1−ρ_d)Δ²; p ← p − λΔ / (√s + ε)  (ρ_d = ``decay``);

then, with ``weight_decay`` wd > 0, the decoupled weight decay p ← p − λ·wd·p_old of every tensor
(p_old: the parameter before the step; Loshchilov & Hutter's AdamW / SGDW, not an L2 term in Δ).

The kernels find the tensors through small int64 device tables (addresses and sizes) built
here once per parameter list (``tensor_table``, ``chunk_offsets``); the table of update
addresses and the per-tensor learning rates are rebuilt only when they change. Launch 1
(only when ρ > 0) writes one squared-norm partial per chunk of ``_C.OPTIM_CHUNK`` elements;
launch 2 sums a tensor's partials in a fixed order, rescales and applies the step, so a step
is bit-for-bit reproducible. Launch 2 also sets a sticky per-tensor device flag when an update or
a new parameter is not finite: ``nonfinite()`` reads the flags (one synchronisation) and
``clear_nonfinite()`` resets them, so a training loop need not test every step on the host.

Tests: ``pytest tests/gpu/test_ops_optim.py`` (on the simulator, and on the GPU when there is one).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .. import reference
from . import _check
from ._check import any_shape_spec, finite_float, resolve_device

OPTIMIZER_CODES = {name: code for code, name in enumerate(reference.OPTIMIZERS)}  # csrc/optim.h OptimKind
STATE_SLOTS = {"sgd": ("v",), "adam": ("m", "v"), "rmsprop": ("s",)}  # state1, state2 of each kind

OP = "MultiTensorOptimizer"


def chunk_offsets(sizes: Sequence[int], chunk: int) -> np.ndarray:
    """int64 [T + 1]: offsets[t] = Σ_{u<t} ceil(sizes[u] / chunk); offsets[T] = number of chunks."""
    counts = [-(-int(s) // chunk) for s in sizes]
    return np.concatenate([[0], np.cumsum(counts, dtype=np.int64)]).astype(np.int64)


def tensor_table(param_ptrs: Sequence[int], state_ptrs: Sequence[Sequence[int]], sizes: Sequence[int]) -> np.ndarray:
    """int64 [4, T]: rows = parameter addresses, state-1 addresses, state-2 addresses (0 when the
    optimizer has one state slot), element counts."""
    state1 = [s[0] for s in state_ptrs]
    state2 = [s[1] if len(s) > 1 else 0 for s in state_ptrs]
    return np.array([list(param_ptrs), state1, state2, list(sizes)], dtype=np.int64).reshape(4, len(sizes))


def _fraction(name: str, value) -> float:
    v = finite_float(OP, name, value)
    if not (0.0 <= v < 1.0):
        raise ValueError(f"{OP}: {name} must be in [0, 1), got {value!r}")
    return v


def check_hyper(kind, lr, momentum, beta1, beta2, eps, decay, rho, weight_decay) -> dict:
    """Validate the scalar settings (no device needed); returns them as floats."""
    if kind not in OPTIMIZER_CODES:
        raise ValueError(f"{OP}: kind must be one of {', '.join(OPTIMIZER_CODES)}, got {kind!r}")
    lr = finite_float(OP, "lr", lr)
    if lr <= 0:
        raise ValueError(f"{OP}: lr must be > 0, got {lr!r}")
    eps = finite_float(OP, "eps", eps)
    if eps <= 0:
        raise ValueError(f"{OP}: eps must be > 0, got {eps!r}")
    rho = finite_float(OP, "rho", rho)
    if rho < 0:
        raise ValueError(f"{OP}: rho must be >= 0 (0 turns Pascanu rescaling off), got {rho!r}")
    weight_decay = finite_float(OP, "weight_decay", weight_decay)
    if weight_decay < 0:
        raise ValueError(f"{OP}: weight_decay must be >= 0 (0 turns it off), got {weight_decay!r}")
    return {
        "lr": lr,
        "momentum": _fraction("momentum", momentum),
        "beta1": _fraction("beta1", beta1),
        "beta2": _fraction("beta2", beta2),
        "eps": eps,
        "decay": _fraction("decay", decay),
        "rho": rho,
        "weight_decay": weight_decay,
    }


def check_lr_scale(lr_scale, count: int) -> tuple[float, ...]:
    """Per-tensor learning-rate factors: None (all 1) or ``count`` finite numbers >= 0."""
    if lr_scale is None:
        return (1.0,) * count
    if isinstance(lr_scale, (str, bytes)) or not hasattr(lr_scale, "__len__") or len(lr_scale) != count:
        raise ValueError(f"{OP}.step: lr_scale must be None or a list of {count} numbers, got {lr_scale!r}")
    out = tuple(finite_float(f"{OP}.step", f"lr_scale[{i}]", s) for i, s in enumerate(lr_scale))
    for i, s in enumerate(out):
        if s < 0:
            raise ValueError(f"{OP}.step: lr_scale[{i}] must be >= 0, got {s!r}")
    return out


class MultiTensorOptimizer:
    """Optimizer over a fixed list of float32 parameter arrays of one device (CuPy arrays on "cuda",
    NumPy arrays on "cuda-sim"; ``device=`` names it, else the first parameter's type), updated in
    place by ``step``.

    ``step(grads, lr_scale=None)`` applies one step with the updates ``grads`` (same shapes as
    the parameters); ``lr_scale[i]`` multiplies ``lr`` for tensor i (e.g. error weights).
    ``t`` counts the steps taken. ``nonfinite()`` lists the tensors whose update or new value was
    NaN or ±inf in some step since the last ``clear_nonfinite()``. ``state_dict()`` returns host
    NumPy arrays ``{"t": ..., "<slot>.<i>": ...}`` (slots: sgd ``v``; adam ``m``, ``v``; rmsprop ``s``).
    """

    def __init__(
        self,
        params,
        kind="sgd",
        lr=5e-4,
        momentum=0.9,
        beta1=0.9,
        beta2=0.999,
        eps=1e-8,
        decay=0.9,
        rho=0.0,
        weight_decay=0.0,
        device=None,
    ):
        hyper = check_hyper(kind, lr, momentum, beta1, beta2, eps, decay, rho, weight_decay)
        if isinstance(params, (str, bytes)) or not hasattr(params, "__len__") or len(params) == 0:
            raise ValueError(f"{OP}: params must be a non-empty list of device arrays, got {type(params).__name__}")
        params = list(params)
        dev = self.device = resolve_device(OP, device, "params[0]", params[0])
        for i, p in enumerate(params):
            ndim = getattr(p, "ndim", 0)
            _check.check_array(dev, OP, f"params[{i}]", p, "float32", any_shape_spec(ndim))
        ptrs = [dev.ptr(p) for p in params]
        nonempty = [ptr for ptr, p in zip(ptrs, params) if p.size > 0]
        if len(set(nonempty)) != len(nonempty):
            raise ValueError(f"{OP}: params must be distinct arrays (the same array appears twice)")
        xp = dev.xp
        self.kind = kind
        self.lr, self.momentum, self.beta1, self.beta2 = hyper["lr"], hyper["momentum"], hyper["beta1"], hyper["beta2"]
        self.eps, self.decay, self.rho = hyper["eps"], hyper["decay"], hyper["rho"]
        self.weight_decay = hyper["weight_decay"]
        self.params = params
        self.t = 0
        self.state = [{slot: xp.zeros_like(p) for slot in STATE_SLOTS[kind]} for p in params]
        sizes = [p.size for p in params]
        state_ptrs = [[dev.ptr(st[slot]) for slot in STATE_SLOTS[kind]] for st in self.state]
        offsets = chunk_offsets(sizes, int(dev.ext.OPTIM_CHUNK))
        self._n_chunks = int(offsets[-1])
        self._tensors = xp.asarray(tensor_table(ptrs, state_ptrs, sizes))
        self._chunks = xp.asarray(offsets)
        self._partial = xp.empty(max(self._n_chunks, 1), dtype=np.float32)
        self._nonfinite = xp.zeros(len(params), dtype=np.int32)  # sticky flags written by optim_update
        self._grad_key = self._lr_key = None
        self._grad_ptrs = None
        self._lrs = xp.empty(len(params), dtype=np.float32)  # updated in place: a CUDA graph holds its address
        self._lrs_host = None  # the host copy of the last rates written (read by an asynchronous copy)
        self._checked_grads: list | None = None  # the grads last validated (the same arrays skip validation)

    def step(self, grads, lr_scale=None) -> None:
        op = f"{OP}.step"
        count = len(self.params)
        if isinstance(grads, (str, bytes)) or not hasattr(grads, "__len__") or len(grads) != count:
            got = f"{type(grads).__name__} of length {len(grads)}" if hasattr(grads, "__len__") else repr(grads)
            raise ValueError(f"{op}: grads must be a list of {count} arrays (one per parameter), got {got}")
        checked = self._checked_grads
        if checked is None or any(g is not c for g, c in zip(grads, checked)):  # validated once per grads list
            for i, (g, p) in enumerate(zip(grads, self.params)):
                _check.check_array(self.device, op, f"grads[{i}]", g, "float32", any_shape_spec(p.ndim), p.shape)
            self._checked_grads = list(grads)
        hyper = self.prepare_lrs(lr_scale)
        dev = self.device
        grad_key = tuple(dev.ptr(g) for g in grads)
        if grad_key != self._grad_key:
            self._grad_ptrs, self._grad_key = dev.xp.asarray(np.array(grad_key, dtype=np.int64)), grad_key

        t = self.t + 1
        adam = self.kind == "adam"
        bias_correction1 = 1.0 - hyper["beta1"] ** t if adam else 1.0
        bias_correction2 = 1.0 - hyper["beta2"] ** t if adam else 1.0
        stream = dev.stream()
        tensors, ptr = self._tensors, dev.ptr
        if hyper["rho"] > 0:
            dev.launch(
                op,
                "optim_sq_norm",
                ptr(self._grad_ptrs),
                ptr(tensors[3]),
                ptr(self._chunks),
                ptr(self._partial),
                count,
                self._n_chunks,
                stream,
            )
        dev.launch(
            op,
            "optim_update",
            ptr(tensors[0]),
            ptr(self._grad_ptrs),
            ptr(tensors[1]),
            ptr(tensors[2]),
            ptr(tensors[3]),
            ptr(self._chunks),
            ptr(self._lrs),
            ptr(self._partial),
            ptr(self._nonfinite),
            count,
            self._n_chunks,
            OPTIMIZER_CODES[self.kind],
            hyper["momentum"],
            hyper["beta1"],
            hyper["beta2"],
            bias_correction1,
            bias_correction2,
            hyper["decay"],
            hyper["eps"],
            hyper["rho"],
            hyper["weight_decay"],
            stream,
        )
        self.t = t

    def prepare_lrs(self, lr_scale=None) -> dict:
        """Validate the settings and ``lr_scale`` and write the per-tensor learning rates into their
        device table (in place, only when they change); returns the validated settings."""
        scales = check_lr_scale(lr_scale, len(self.params))
        hyper = check_hyper(self.kind, self.lr, self.momentum, self.beta1, self.beta2, self.eps, self.decay, self.rho,
                            self.weight_decay)
        lr_key = (hyper["lr"], scales)
        if lr_key != self._lr_key:  # e.g. every step under a schedule: no synchronisation
            self._lrs_host = np.array([hyper["lr"] * s for s in scales], dtype=np.float32)
            self.device.copy_from_host_async(self._lrs, self._lrs_host)
            self._lr_key = lr_key
        return hyper

    def nonfinite(self) -> list[int]:
        """Indices of the tensors flagged non-finite since the last ``clear_nonfinite`` (synchronises)."""
        return [int(i) for i in np.flatnonzero(self.device.to_numpy(self._nonfinite))]

    def clear_nonfinite(self) -> None:
        self._nonfinite[...] = 0

    def state_dict(self) -> dict:
        """Host copies: ``{"t": int64 scalar array, "<slot>.<i>": float32 array of parameter i's shape}``."""
        out = {"t": np.array(self.t, dtype=np.int64)}
        for i, st in enumerate(self.state):
            for slot, arr in st.items():
                out[f"{slot}.{i}"] = self.device.to_numpy(arr)
        return out

    def load_state_dict(self, state: dict) -> None:
        """Copy a ``state_dict()`` of an optimizer of the same kind over the same shapes into this one."""
        op = f"{OP}.load_state_dict"
        expected = {"t"} | {f"{slot}.{i}" for i, st in enumerate(self.state) for slot in st}
        if set(state) != expected:
            raise ValueError(
                f"{op}: state keys {sorted(state)} do not match this {self.kind} optimizer's {sorted(expected)}"
            )
        t = int(np.asarray(state["t"]))
        if t < 0:
            raise ValueError(f"{op}: t must be >= 0, got {t}")
        host = {}
        for i, st in enumerate(self.state):
            for slot, arr in st.items():
                value = np.asarray(state[f"{slot}.{i}"])
                if value.shape != arr.shape or not np.all(np.isfinite(value)):
                    raise ValueError(
                        f"{op}: {slot}.{i} must be a finite array of shape {arr.shape}, got {value.dtype} {value.shape}"
                    )
                host[(i, slot)] = np.ascontiguousarray(value, dtype=np.float32)
        for (i, slot), value in host.items():
            self.device.copy_from_host(self.state[i][slot], value)  # in place: the device tables hold these addresses
        self.t = t

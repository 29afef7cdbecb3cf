"""Argument validation shared by every op in ``ekdaa_cuda.ops``.

Each op checks its arguments here before a raw pointer crosses into C++, so a mistake
surfaces as a ``ValueError`` that names the op, the argument and the value it got, e.g.
``conv_block_fwd: x must be float32 [N, C, H, W], got float64 (2, 3)``. Nothing is copied to
make an array contiguous: non-contiguous input is refused.

Every op runs on one ``Device`` (``ekdaa_cuda._device``): "cuda" (CuPy arrays, ``_C`` on the
GPU) or "cuda-sim" (NumPy arrays, ``_sim`` running the same kernels on the CPU). An op takes
it as ``device=`` (the backend passes its own) or infers it from the type of its first array
argument; every other array must then belong to the same device.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .. import reference
from .._device import DEVICES, Device, get_device, is_cupy_array

RULE_CODES = {"ekdaa": 0, "bp": 1}  # csrc/fc.h ErrorRule: the epilogue of the error projections
COUNTER_RANGE = 1 << 32  # dropout counters are uint32 flat indices


def resolve_device(op: str, device, name: str, arr) -> Device:
    """The device an op runs on: ``device`` when given (a Device or its name), else the one that
    owns ``arr`` (the op's first array argument, called ``name``): cupy -> "cuda", numpy -> "cuda-sim"."""
    if isinstance(device, Device):
        return device
    if device is None:
        if is_cupy_array(arr):
            device = "cuda"
        elif isinstance(arr, np.ndarray):
            device = "cuda-sim"
        else:
            raise ValueError(
                f"{op}: {name} must be a cupy.ndarray (device 'cuda') or a numpy.ndarray (device 'cuda-sim'), "
                f"got {type(arr).__name__}"
            )
    elif device not in DEVICES:
        raise ValueError(f"{op}: device must be one of {', '.join(DEVICES)}, got {device!r}")
    try:
        return get_device(device)
    except RuntimeError as exc:
        raise RuntimeError(f"{op}: {exc}") from None


def describe(shape_spec: Sequence) -> str:
    return "[" + ", ".join(str(s) for s in shape_spec) + "]"


def check_array(dev: Device, op: str, name: str, arr, dtype: str, shape_spec: Sequence, shape: Sequence | None = None):
    """Validate an array argument of an op running on ``dev`` and return it.

    ``shape_spec`` names the dimensions for messages (e.g. ``("N", "C", "H", "W")``);
    ``shape`` gives the required sizes, with ``None`` where any size is accepted.
    """
    want = f"{dtype} {describe(shape_spec)}"
    if not dev.owns(arr):
        got = type(arr).__name__
        if is_cupy_array(arr) or isinstance(arr, np.ndarray):
            got = f"{type(arr).__module__.split('.')[0]}.ndarray"
        raise ValueError(f"{op}: {name} must be a {dev.array_name} on device '{dev.name}' ({want}), got {got}")
    if arr.dtype != np.dtype(dtype) or arr.ndim != len(shape_spec):
        raise ValueError(f"{op}: {name} must be {want}, got {arr.dtype} {tuple(arr.shape)}")
    if shape is not None:
        for axis, (got, need, label) in enumerate(zip(arr.shape, shape, shape_spec)):
            if need is not None and got != need:
                raise ValueError(
                    f"{op}: {name} must be {want} with {label}={need} (axis {axis}), got {tuple(arr.shape)}"
                )
    if not arr.flags.c_contiguous:
        raise ValueError(
            f"{op}: {name} must be C-contiguous, got strides {arr.strides}; "
            f"pass {dev.xp.__name__}.ascontiguousarray({name})"
        )
    dev.check_placement(op, name, arr)
    return arr


def check_positive(op: str, name: str, value: int) -> int:
    if int(value) != value or value < 1:
        raise ValueError(f"{op}: {name} must be a positive integer, got {value!r}")
    return int(value)


def address(dev: Device, arr) -> int:
    """The raw address a launcher takes for ``arr``; 0 for an absent (None) optional array."""
    return 0 if arr is None else dev.ptr(arr)


def activation_code(op: str, activation) -> int:
    if activation not in reference.ACTIVATION_CODES:
        raise ValueError(f"{op}: activation must be one of {', '.join(reference.ACTIVATIONS)}, got {activation!r}")
    return reference.ACTIVATION_CODES[activation]


def rule_code(op: str, rule, activation) -> int:
    if rule not in RULE_CODES:
        raise ValueError(f"{op}: rule must be one of {', '.join(RULE_CODES)}, got {rule!r}")
    if rule == "bp" and activation == "signum":
        raise ValueError(f"{op}: rule 'bp' needs φ', which signum does not have (activation='signum')")
    return RULE_CODES[rule]


def epilogue_args(op: str, activation, rule, beta) -> tuple[int, int, float]:
    """(rule code, activation code, β) of an error epilogue, validated, in the order the launchers
    take them (the dropout arguments from ``dropout_args`` follow)."""
    return rule_code(op, rule, activation), activation_code(op, activation), finite_float(op, "beta", beta)


def finite_float(op: str, name: str, value) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{op}: {name} must be a finite number, got {value!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"{op}: {name} must be a finite number, got {value!r}")
    return v


def dropout_args(op: str, p, key, numel: int) -> tuple[int, int, float]:
    """(key, threshold, scale) for the launchers, validated; scale = float32(1/(1−p))."""
    p = finite_float(op, "dropout", p)
    if not 0.0 <= p < 1.0:
        raise ValueError(f"{op}: dropout must be in [0, 1), got {p!r}")
    if isinstance(key, bool) or not isinstance(key, (int, np.integer)) or not 0 <= key < COUNTER_RANGE:
        raise ValueError(f"{op}: dropout_key must be an integer in [0, 2^32), got {key!r}")
    if p > 0.0 and numel > COUNTER_RANGE:
        raise ValueError(f"{op}: dropout over {numel} elements exceeds the 2^32 counter range")
    return int(key), reference.dropout_threshold(p), float(np.float32(1.0 / (1.0 - p)))


def any_shape_spec(ndim: int) -> tuple:
    """Dimension names for an array of any shape, for check_array's messages."""
    return tuple(f"d{i}" for i in range(ndim))


def output_array(dev: Device, op: str, name: str, arr, spec: tuple, shape: tuple, dtype: str = "float32"):
    """``arr`` checked as an output of ``shape``, or a new uninitialised array when it is None."""
    if arr is None:
        return dev.xp.empty(shape, dtype=dtype)
    return check_array(dev, op, name, arr, dtype, spec, shape)


def output_arrays(op: str, out, count: int) -> tuple:
    if out is None:
        return (None,) * count
    if not isinstance(out, (tuple, list)) or len(out) != count:
        raise ValueError(f"{op}: out must be None or a tuple of {count} arrays, got {out!r}")
    return tuple(out)

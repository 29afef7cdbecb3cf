"""Argument validation shared by every op in ``ekdaa_cuda.ops``.

Each op checks its CuPy arguments here before a raw pointer crosses into C++, so a
mistake surfaces as a ``ValueError`` that names the op, the argument and the value
it got, e.g. ``conv_block_fwd: x must be float32 [N, C, H, W], got float64 (2, 3)``.
Nothing is copied to make an array contiguous: non-contiguous input is refused.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .. import reference

RULE_CODES = {"ekdaa": 0, "bp": 1}  # csrc/fc.h ErrorRule: the epilogue of the error projections
COUNTER_RANGE = 1 << 32  # dropout counters are uint32 flat indices


def _cupy():
    import cupy  # imported lazily: the package imports on machines without CUDA

    return cupy


def describe(shape_spec: Sequence) -> str:
    return "[" + ", ".join(str(s) for s in shape_spec) + "]"


def check_array(op: str, name: str, arr, dtype: str, shape_spec: Sequence, shape: Sequence | None = None):
    """Validate a device array argument and return it.

    ``shape_spec`` names the dimensions for messages (e.g. ``("N", "C", "H", "W")``);
    ``shape`` gives the required sizes, with ``None`` where any size is accepted.
    """
    cp = _cupy()
    want = f"{dtype} {describe(shape_spec)}"
    if not isinstance(arr, cp.ndarray):
        raise ValueError(f"{op}: {name} must be a cupy.ndarray ({want}), got {type(arr).__name__}")
    if arr.dtype != cp.dtype(dtype) or arr.ndim != len(shape_spec):
        raise ValueError(f"{op}: {name} must be {want}, got {arr.dtype} {tuple(arr.shape)}")
    if shape is not None:
        for axis, (got, need, label) in enumerate(zip(arr.shape, shape, shape_spec)):
            if need is not None and got != need:
                raise ValueError(
                    f"{op}: {name} must be {want} with {label}={need} (axis {axis}), got {tuple(arr.shape)}"
                )
    if not arr.flags.c_contiguous:
        raise ValueError(
            f"{op}: {name} must be C-contiguous, got strides {arr.strides}; pass cupy.ascontiguousarray({name})"
        )
    device = cp.cuda.Device().id
    if arr.device.id != device:
        raise ValueError(f"{op}: {name} lives on device {arr.device.id}, but the current device is {device}")
    return arr


def check_positive(op: str, name: str, value: int) -> int:
    if int(value) != value or value < 1:
        raise ValueError(f"{op}: {name} must be a positive integer, got {value!r}")
    return int(value)


def stream_ptr() -> int:
    """Raw handle of CuPy's current stream, passed to every launcher."""
    return _cupy().cuda.get_current_stream().ptr


def extension():
    """The compiled extension (imported on first use: the package imports without it)."""
    from .. import _C

    return _C


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


def output_array(op: str, name: str, arr, spec: tuple, shape: tuple):
    if arr is None:
        return _cupy().empty(shape, dtype=np.float32)
    return check_array(op, name, arr, "float32", spec, shape)


def output_arrays(op: str, out, count: int) -> tuple:
    if out is None:
        return (None,) * count
    if not isinstance(out, (tuple, list)) or len(out) != count:
        raise ValueError(f"{op}: out must be None or a tuple of {count} arrays, got {out!r}")
    return tuple(out)

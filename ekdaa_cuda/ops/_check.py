"""Argument validation shared by every op in ``ekdaa_cuda.ops``.

Each op checks its CuPy arguments here before a raw pointer crosses into C++, so a
mistake surfaces as a ``ValueError`` that names the op, the argument and the value
it got, e.g. ``conv_block_fwd: x must be float32 [N, C, H, W], got float64 (2, 3)``.
Nothing is copied to make an array contiguous: non-contiguous input is refused.
"""

from __future__ import annotations

from typing import Sequence


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
        raise ValueError(f"{op}: {name} must be C-contiguous, got strides {arr.strides}; pass cupy.ascontiguousarray({name})")
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

"""Can this process run the CUDA ops? ``cuda_available()`` answers, ``cuda_status()`` says why not.

The GPU path needs four things: the extension ``ekdaa_cuda._C`` (built only when nvcc was
found at install time), a CUDA driver recent enough for the runtime linked into ``_C``, a
device, and CuPy (which allocates the arrays the kernels read and write). Neither function
ever raises: they are called at import time and by the test suite on machines without CUDA.
"""

from __future__ import annotations

import importlib.util

CUPY_HINT = "cupy not installed: pip install cupy-cuda13x"


def _version(v: int) -> str:
    return f"{v // 1000}.{v % 1000 // 10}"


def cuda_status() -> str:
    """``"ok: <device name>, compute capability X.Y"``, or the first reason CUDA is unusable."""
    if importlib.util.find_spec(f"{__package__}._C") is None:
        return ("extension ekdaa_cuda._C not built (installed without a CUDA compiler, or imported from a "
                "source checkout: pip install . with nvcc on PATH builds it)")
    try:
        from . import _C
    except ImportError as exc:
        return f"extension ekdaa_cuda._C failed to import: {exc}"
    try:
        driver = _C.driver_version()
        if driver == 0:
            return "no CUDA driver"
        runtime = _C.runtime_version()
        if _C.device_count() == 0:
            error = _C.device_error()
            if driver < runtime:
                return (
                    f"no CUDA device: the driver supports CUDA {_version(driver)}, older than the CUDA "
                    f"{_version(runtime)} runtime ekdaa_cuda._C was built with ({error})"
                )
            return f"no CUDA device ({error})" if error else "no CUDA device"
        props = _C.device_properties(0)
        if "error" in props:
            return f"no CUDA device ({props['error']})"
        try:
            import cupy
        except ImportError:
            return CUPY_HINT
        if not cupy.cuda.is_available():
            return "cupy is installed but cannot use the CUDA device (check that its CUDA version matches the driver)"
        major, minor = props["compute_capability"]
        return f"ok: {props['name']}, compute capability {major}.{minor}"
    except Exception as exc:
        return f"CUDA check failed: {type(exc).__name__}: {exc}"


def cuda_available() -> bool:
    """True iff the extension is built and a CUDA driver, a device and CuPy are all usable."""
    return cuda_status().startswith("ok:")

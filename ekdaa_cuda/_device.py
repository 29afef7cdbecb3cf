"""Where the CUDA ops run, and whether they can: ``Device``, ``cuda_status()``, ``sim_status()``.

The same kernels run in two places:

- ``"cuda"``: the extension ``ekdaa_cuda._C`` (built only when nvcc was found at install time) on
  a GPU, with CuPy allocating the arrays. It needs a CUDA driver recent enough for the runtime
  linked into ``_C``, a device, and CuPy.
- ``"cuda-sim"``: the extension ``ekdaa_cuda._sim``, built with the host compiler from the same
  ``csrc/`` and ``bindings/`` sources, which executes every kernel on the CPU with the CUDA
  execution model emulated (docs/cuda-sim.md). Arrays are NumPy arrays; a device pointer is the
  array's host address.

A ``Device`` bundles the choice (array module, extension, pointer and stream conventions); it is
made once per backend or per call site, never kept as global state. The status functions never
raise: they are called at import time and by the test suite on machines without CUDA.
"""

from __future__ import annotations

import importlib
import importlib.util

import numpy as np

CUPY_HINT = "cupy not installed: pip install cupy-cuda13x"
DEVICES = ("cuda", "cuda-sim")
SIM_SCHEDULES = ("forward", "reverse", "shuffle")


def _version(v: int) -> str:
    return f"{v // 1000}.{v % 1000 // 10}"


def _extension(name: str, not_built: str):
    """(module, None) for the extension ``ekdaa_cuda.<name>``, or (None, why it cannot be imported)."""
    if importlib.util.find_spec(f"{__package__}.{name}") is None:
        return None, f"extension ekdaa_cuda.{name} not built ({not_built})"
    try:
        return importlib.import_module(f"{__package__}.{name}"), None
    except ImportError as exc:
        return None, f"extension ekdaa_cuda.{name} failed to import: {exc}"


def cuda_status() -> str:
    """``"ok: <device name>, compute capability X.Y"``, or the first reason CUDA is unusable."""
    _C, why = _extension("_C", "installed without a CUDA compiler, or imported from a source checkout: "
                               "pip install . with nvcc on PATH builds it")
    if why:
        return why
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


def sim_status() -> str:
    """``"ok: CPU simulator, <n> worker(s), schedule <name>"``, or why ``ekdaa_cuda._sim`` is unusable."""
    _sim, why = _extension("_sim", "imported from a source checkout, or an install that predates it: "
                                   "pip install . builds it with the host C++ compiler")
    if why:
        return why
    try:
        name, _seed = _sim.schedule()
        return f"ok: CPU simulator, {_sim.workers()} worker(s), schedule {name}"
    except Exception as exc:
        return f"CUDA simulator check failed: {type(exc).__name__}: {exc}"


def sim_available() -> bool:
    """True iff ``ekdaa_cuda._sim`` is built and imports: the CUDA path can run on the CPU."""
    return sim_status().startswith("ok:")


def device_status(name: str) -> str:
    """``cuda_status()`` for "cuda", ``sim_status()`` for "cuda-sim"."""
    return sim_status() if name == "cuda-sim" else cuda_status()


def is_cupy_array(arr) -> bool:
    """True for a cupy.ndarray, without importing CuPy (absent on most CPU machines)."""
    return type(arr).__name__ == "ndarray" and type(arr).__module__.split(".")[0] == "cupy"


class Device:
    """The array module and kernel extension of one place the CUDA ops run.

    ``xp`` allocates arrays (cupy or numpy), ``ext`` holds the raw launchers (``_C`` or ``_sim``,
    same names and signatures), ``ptr(arr)`` is the address a launcher takes and ``stream()`` the
    stream handle (CuPy's current stream; 0 on the simulator, where every launch is synchronous).

    While ``recording`` is a list, every launch is appended to it as (op, launcher, args, tag) and every
    array whose address is taken to ``recorded_arrays`` (which keeps them alive): the CUDA backend
    records one training step this way and replays it (``backend_cuda.StepPlan``), with the
    arguments validated once. ``record_tag`` is the tag of the launches recorded meanwhile.
    """

    def __init__(self, name: str):
        if name not in DEVICES:
            raise ValueError(f"unknown device {name!r}; choose one of {', '.join(DEVICES)}")
        self.name = name
        self.simulated = name == "cuda-sim"
        if self.simulated:
            if not sim_available():
                raise RuntimeError(f"device 'cuda-sim' is not usable here: {sim_status()}")
            self.ext = importlib.import_module(f"{__package__}._sim")
            self.xp = np
        else:
            if not cuda_available():
                raise RuntimeError(f"device 'cuda' is not usable here: {cuda_status()}")
            self.ext = importlib.import_module(f"{__package__}._C")
            self.xp = importlib.import_module("cupy")
        self.array_name = f"{self.xp.__name__}.ndarray"
        self.recording: list | None = None
        self.recorded_arrays: list = []
        self.record_tag = ""

    def __repr__(self) -> str:
        return f"Device({self.name!r})"

    def owns(self, arr) -> bool:
        """Is ``arr`` an array of this device (numpy on cuda-sim, cupy on cuda)?"""
        if self.simulated:
            return isinstance(arr, np.ndarray)
        return is_cupy_array(arr)

    def ptr(self, arr) -> int:
        if self.recording is not None:
            self.recorded_arrays.append(arr)
        return int(arr.ctypes.data) if self.simulated else int(arr.data.ptr)

    def stream(self) -> int:
        return 0 if self.simulated else int(self.xp.cuda.get_current_stream().ptr)

    def check_placement(self, op: str, name: str, arr) -> None:
        """On a GPU the array must live on the current device (no-op on the simulator)."""
        if self.simulated:
            return
        current = self.xp.cuda.Device().id
        if arr.device.id != current:
            raise ValueError(f"{op}: {name} lives on device {arr.device.id}, but the current device is {current}")

    def to_numpy(self, arr) -> np.ndarray:
        return np.array(arr) if self.simulated else self.xp.asnumpy(arr)

    def copy_from_host(self, dst, src: np.ndarray) -> None:
        """Overwrite ``dst`` (same shape) in place with the host array ``src``: its address is kept."""
        if self.simulated:
            dst[...] = src
        else:
            dst.set(np.ascontiguousarray(src, dtype=dst.dtype))

    def copy_from_host_async(self, dst, src: np.ndarray) -> None:
        """``copy_from_host`` ordered on the current stream, without waiting for the device (a
        synchronous copy from pageable memory would wait for all queued work). The caller keeps
        ``src`` alive until the stream has passed the copy."""
        if self.simulated:
            dst[...] = src
        else:
            dst.set(np.ascontiguousarray(src, dtype=dst.dtype), stream=self.xp.cuda.get_current_stream())

    def launch(self, op: str, launcher: str, *args) -> None:
        """Call a raw launcher; a failure (CUDA error, or a kernel bug the simulator found) is
        re-raised with the op's name in front when the message does not already start with it."""
        if self.recording is not None:
            self.recording.append((op, launcher, args, self.record_tag))
        try:
            getattr(self.ext, launcher)(*args)
        except (RuntimeError, ValueError) as exc:
            if str(exc).startswith(f"{op}:"):
                raise
            message = f"{op}: {exc}"
            try:
                renamed = type(exc)(message)
            except Exception:
                renamed = RuntimeError(message)
            raise renamed from exc


_DEVICES: dict[str, Device] = {}


def get_device(name: str) -> Device:
    """The ``Device`` called ``name`` ("cuda" or "cuda-sim"); raises RuntimeError when unusable."""
    if name not in _DEVICES:
        _DEVICES[name] = Device(name)
    return _DEVICES[name]


"""Build and host-compiled-kernel-code checks that run without a GPU.

- The package imports and explains its CUDA status without raising.
- When the installed distribution carries the extension ``ekdaa_cuda._C``, the imported
  package must be that copy (not the source folder shadowing it, which would silently skip
  every GPU-side check).
- The device query of ``_C`` and of the CPU simulator ``_sim`` never raises. (The kernels'
  per-element functions are tested inside the kernels, on the simulator: tests/gpu.)

Run: ``pip install ".[test]" && pytest tests/test_build.py``.
"""

from __future__ import annotations

import importlib
import importlib.metadata

import pytest

import ekdaa_cuda


def _installed_extension_files() -> list[str]:
    try:
        files = importlib.metadata.distribution("ekdaa-cuda").files or []
    except importlib.metadata.PackageNotFoundError:
        return []
    return [str(f) for f in files if f.parts[:1] == ("ekdaa_cuda",) and f.name.startswith(("_C.", "_sim."))]


@pytest.fixture(scope="module", params=["_C", "_sim"])
def C(request):
    return pytest.importorskip(f"ekdaa_cuda.{request.param}", reason=f"extension ekdaa_cuda.{request.param} not built")


def test_import_and_status():
    from ekdaa_cuda._device import cuda_available, cuda_status, sim_available, sim_status

    for available, status in ((cuda_available, cuda_status()), (sim_available, sim_status())):
        assert isinstance(status, str) and status
        assert available() == status.startswith("ok:")
        print("status:", status)


def test_installed_extension_is_the_one_imported():
    built = _installed_extension_files()
    if not built:
        pytest.skip("the installed ekdaa-cuda has no extension (or the package is not installed)")
    for name in {f.split("/")[-1].split(".")[0] for f in built}:
        _import_installed(name, built)


def _import_installed(name, built):
    try:
        importlib.import_module(f"ekdaa_cuda.{name}")
    except ImportError as exc:
        pytest.fail(
            f"ekdaa-cuda was installed with {built}, but `import ekdaa_cuda.{name}` failed ({exc}); "
            f"ekdaa_cuda was imported from {list(ekdaa_cuda.__path__)}: the source folder probably shadows the "
            "installed package (run `pytest`, not `python -m pytest`, from the repository root)"
        )


def test_device_query_never_raises(C):
    count = C.device_count()
    assert isinstance(count, int) and count >= 0
    assert isinstance(C.device_error(), str)
    assert (C.device_error() == "") == (count > 0), "device_error() explains exactly the failed queries"
    assert C.runtime_version() >= 12000
    assert C.driver_version() >= 0
    props = C.device_properties(0)
    if count == 0:
        assert set(props) == {"error"}
    else:
        assert {"name", "compute_capability", "total_memory", "multiprocessor_count"} <= set(props)
    assert "error" in C.device_properties(count)  # out of range: reported, not raised

"""Shared pytest setup.

- Tests in tests/gpu run the CUDA kernels on each usable device: the GPU ("cuda") and the CPU
  simulator ("cuda-sim"); see tests/gpu/conftest.py. ``--device cuda|cuda-sim|all`` (or
  ``EKDAA_TEST_DEVICE``) selects the devices; an unusable one is skipped with its status.
- ``EKDAA_NO_CUPY_POOL=1`` turns CuPy's memory pool off (for compute-sanitizer runs).
- ``rng`` gives each test a fresh NumPy generator and prints its seed, so a failure
  on random shapes can be replayed with ``EKDAA_TEST_SEED=<seed>``.
"""

import os
import secrets

import numpy as np
import pytest


def pytest_addoption(parser):
    parser.addoption(
        "--device",
        choices=("cuda", "cuda-sim", "all"),
        default=os.environ.get("EKDAA_TEST_DEVICE", "all"),
        help="where the tests in tests/gpu run: cuda (the GPU), cuda-sim (the CPU simulator) or all "
        "(default; a device that is not usable here is skipped)",
    )


def pytest_configure(config):
    if os.environ.get("EKDAA_NO_CUPY_POOL", "0") not in ("", "0"):
        try:
            import cupy
        except ImportError:
            return
        cupy.cuda.set_allocator(None)  # every array its own cudaMalloc: sanitizers see overruns
        cupy.cuda.set_pinned_memory_allocator(None)


@pytest.fixture
def rng(request):
    seed = int(os.environ.get("EKDAA_TEST_SEED", secrets.randbits(32)))
    print(f"[{request.node.name}] EKDAA_TEST_SEED={seed}")
    return np.random.default_rng(seed)


@pytest.fixture
def isolated(monkeypatch, tmp_path):
    """No data anywhere by default: empty HOME and cache, no $EKDAA_DATA, no Debian files and no
    torchvision. Returns a scratch folder (tests/test_data.py, tests/test_data_fuzz.py)."""
    import sys

    from ekdaa_cuda import data

    for sub in ("home", "cache"):
        (tmp_path / sub).mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv(data.ENV_VAR, raising=False)
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST_DIR", tmp_path / "no-debian")
    monkeypatch.setitem(sys.modules, "torchvision", None)
    monkeypatch.setitem(sys.modules, "torchvision.datasets", None)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    return scratch

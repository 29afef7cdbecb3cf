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

"""Shared pytest setup.

- Tests marked ``gpu`` are skipped, with the reason from ``ekdaa_cuda.cuda_status()``,
  unless a usable CUDA device and the compiled extension are present.
- ``rng`` gives each test a fresh NumPy generator and prints its seed, so a failure
  on random shapes can be replayed with ``EKDAA_TEST_SEED=<seed>``.
"""

import os
import secrets

import numpy as np
import pytest


def pytest_collection_modifyitems(config, items):
    gpu_items = [item for item in items if "gpu" in item.keywords]
    if not gpu_items:
        return
    import ekdaa_cuda

    if ekdaa_cuda.cuda_available():
        return
    skip = pytest.mark.skip(reason=f"no usable CUDA device: {ekdaa_cuda.cuda_status()}")
    for item in gpu_items:
        item.add_marker(skip)


@pytest.fixture
def rng(request):
    seed = int(os.environ.get("EKDAA_TEST_SEED", secrets.randbits(32)))
    print(f"[{request.node.name}] EKDAA_TEST_SEED={seed}")
    return np.random.default_rng(seed)

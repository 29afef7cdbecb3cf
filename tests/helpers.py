"""Small shared test data (importable from the tests: pyproject sets pytest's pythonpath)."""

import numpy as np


def template_data(n_train=120, n_test=40, seed=0, noise=0.2):
    """A learnable Fashion-MNIST-shaped task: ten fixed random templates plus Gaussian noise.
    Returns (x_train, y_train, x_test, y_test) with x float32 [N, 1, 28, 28]."""
    rng = np.random.default_rng(seed)
    templates = rng.uniform(-0.5, 0.5, (10, 1, 28, 28))
    ytr, yte = rng.integers(0, 10, n_train), rng.integers(0, 10, n_test)

    def images(labels):
        return (templates[labels] + noise * rng.standard_normal((len(labels), 1, 28, 28))).astype(np.float32)

    return images(ytr), ytr, images(yte), yte


# The layer widths of the presets on the CPU simulator (tests/gpu): small, so a model step takes
# seconds there; a GPU runs the presets' own widths.
SIM_WIDTHS = {"fmnist": (4, 8, 8, 16), "cifar": (4, 4, 8, 8, 8, 8, 16), "fmnist-fc": (16, 16)}


def model_widths(device, preset):
    """The ``widths`` option the GPU tests build ``preset`` with: SIM_WIDTHS on the simulator, None (the
    preset's own) on a GPU."""
    return SIM_WIDTHS[preset] if device.simulated else None


def host(a):
    """A device array (cupy or numpy, as on the CPU simulator) as a NumPy array."""
    return a.get() if hasattr(a, "get") else np.array(a)  # a copy on both


class _StubCupyArray:
    """Stands in for a cupy.ndarray where CuPy is not installed: the ops tell arrays apart by type."""

    __module__ = "cupy._core.core"
    ndim, dtype, shape = 2, np.dtype(np.float32), (4, 5)


_StubCupyArray.__name__ = _StubCupyArray.__qualname__ = "ndarray"


def foreign(xp, shape):
    """An array of the other device: numpy when ``xp`` is cupy, a (stub) cupy array when it is numpy."""
    return _StubCupyArray() if xp is np else np.zeros(shape, np.float32)

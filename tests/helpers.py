"""Small shared test data (importable from the tests: pyproject sets pytest's pythonpath)."""

import math

import numpy as np

from ekdaa_cuda import reference


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


# A 2x2 pool window is a near-tie when its two largest entries differ by at most this fraction of the
# layer's largest |entry|: ~4x the largest difference between the numpy and CUDA backends' pre-pool
# values measured (2.6e-7). Argmax routing is discontinuous there: two computations that round
# differently may pick different pixels, and the routed error then moves a whole filter's update.
# The same bound applies to ReLU's kink: a pre-activation within NEAR_TIE of the layer's peak of 0 may
# fall on either side on the two backends, which flips its derivative (BP) and so its error. CI seed
# 3420445951 hit one at 3.6e-8 of the peak (BP, relu, cifar: conv1.bias 6% apart after 3 steps).
NEAR_TIE = 1e-6
TIE_FREE_DRAWS = 30


class NearTies:
    """While active, records the smallest gap between the two largest entries of any 2x2 window the
    numpy backend max-pools (``reference.maxpool2x2_nhwc``), and the smallest nonzero |h| that it
    passes through ReLU (``reference.activate``), each relative to that layer's largest |entry|.
    Exact ties of zeros (ReLU, dropout) and exact zeros of h are left out: every backend produces
    them exactly and treats them alike."""

    def __enter__(self):
        self.smallest, self.pool, self.activate = math.inf, reference.maxpool2x2_nhwc, reference.activate

        def recording_pool(z):
            corners = np.sort(np.stack(reference.pool_corners(z), -1), -1)
            first, second = corners[..., 3].astype(np.float64), corners[..., 2].astype(np.float64)
            gap = np.where((first == 0) & (second == 0), np.inf, first - second)
            if gap.size:
                self.smallest = min(self.smallest, float(gap.min()) / max(float(np.abs(z).max()), 1e-30))
            return self.pool(z)

        def recording_activate(name, h):
            if name == "relu":
                size = np.abs(np.asarray(h, dtype=np.float64))
                nonzero = size[size > 0]
                if nonzero.size:
                    self.smallest = min(self.smallest, float(nonzero.min()) / float(size.max()))
            return self.activate(name, h)

        reference.maxpool2x2_nhwc = recording_pool
        reference.activate = recording_activate
        return self

    def __exit__(self, *exc):
        reference.maxpool2x2_nhwc = self.pool
        reference.activate = self.activate


def tie_free_draw(draw, run_numpy):
    """``(drawn, run_numpy(*drawn))`` for the first of up to TIE_FREE_DRAWS ``draw()`` results on which
    ``run_numpy`` (a run on backend "numpy") max-pools no near-tie and passes no ReLU input near its
    kink; AssertionError if every draw does."""
    for _ in range(TIE_FREE_DRAWS):
        drawn = draw()
        with NearTies() as gaps:
            result = run_numpy(*drawn)
        if gaps.smallest > NEAR_TIE:
            return drawn, result
    raise AssertionError(f"{TIE_FREE_DRAWS} draws all max-pooled a near-tie or put a ReLU input near 0 (gap <= "
                         f"{NEAR_TIE:g} of the layer's peak)")


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

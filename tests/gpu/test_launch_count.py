"""Kernel launches of one Fashion-MNIST update, counted by the CPU simulator (``_sim.launch_count()``).

The count is recorded (printed, and in the test id) and must equal what the backend's code path
issues, layer by layer, so a change in the number of launches is visible. Issue 9 asks for at
most 16 launches per training step (forward, errors, updates and optimizer; docs/kernels.md
"The host path"). Launches of the array library (CuPy's copies of the batch into the recorded
input buffers and of the two sums; NumPy on the simulator) are not counted: they are not
kernels of this package, and none of them synchronises with the host.
"""

import importlib
import sys
from pathlib import Path

import numpy as np
import pytest

import ekdaa_cuda as ek

pytestmark = pytest.mark.gpu

SMALL = (4, 8, 8, 16)  # the count does not depend on the widths
TARGET = 16  # issue 9: launches per fmnist EKDAA training step (SGD, no Pascanu rescaling)

# fmnist: conv32+pool, conv64+pool, conv128, fc128, out10; EKDAA, argmax unpool, no dropout
FORWARD = 3 + 1 + 1  # conv_block_fwd per conv layer (bias, φ, pool fused), fc_fwd, fc_softmax_error
# fc_softmax_error is the output layer whole: h = zWᵀ + b, softmax, e_y, Σ loss and correct count
# fc_update_proj per FC layer: ΔW, ΔE = γΔWᵀ, Δb (with bias) and the projection of e to the layer
# below with that layer's epilogue, one launch (both read only e)
FC_UPDATES_AND_ERRORS = {
    "out: update + error of fc1": 1,
    "fc1: update + error of conv3": 1,  # conv3 does not pool: the flat epilogue applies
}
CONV_ERRORS = {
    "conv3 -> conv2": 1,  # conv_error_proj: transposed conv + argmax unpool + epilogue fused
    "conv2 -> conv1": 1,
}
CONV_UPDATES = 3 * 2  # conv_filter_update per conv: split-K GEMM + fixed-order reduce (ΔW, Δb, ΔE)
OPTIMIZER = {"sgd": 1, "adam": 1, "sgd+pascanu": 2}  # optim_update (+ optim_sq_norm when rho > 0)
UPDATE_LAUNCHES = FORWARD + sum(FC_UPDATES_AND_ERRORS.values()) + sum(CONV_ERRORS.values()) + CONV_UPDATES


@pytest.fixture
def sim(device):
    if not device.simulated:
        pytest.skip("launches are counted by the simulator")
    return device.ext


def fmnist_batch(n=5):
    rng = np.random.default_rng(0)
    return rng.uniform(-0.5, 0.5, (n, 1, 28, 28)).astype(np.float32), rng.integers(0, 10, n)


@pytest.mark.parametrize("bias", [False, True])
def test_launches_of_one_fmnist_update(sim, bias):
    """Bias updates add no launch: Δb is a part of fc_update_proj's and conv_filter_update's grids."""
    model = ek.build_model("fmnist", backend="cuda-sim", widths=SMALL, bias=bias)
    x, labels = fmnist_batch()
    model.updates(x, labels)  # warm-up: allocations, tables
    sim.reset_launch_count()
    model.updates(x, labels)
    counted = sim.launch_count()
    print(f"fmnist EKDAA updates() bias={bias}: {counted} kernel launches")
    assert counted == UPDATE_LAUNCHES == 15


@pytest.mark.parametrize("optimizer", OPTIMIZER)
def test_launches_of_one_fmnist_training_step(sim, optimizer):
    """Steps 1 (eager), 2 (recorded) and 3 (replayed) launch the same kernels, at most 16 with SGD."""
    kind, _, pascanu = optimizer.partition("+")
    model = ek.build_model("fmnist", backend="cuda-sim", widths=SMALL, optimizer=kind, rho=1.0 if pascanu else 0.0)
    x, labels = fmnist_batch()
    counts = []
    for _ in range(3):
        sim.reset_launch_count()
        model.step_arrays(model.backend.input(x), model.backend.labels(labels), check_finite=False)
        counts.append(sim.launch_count())
    print(f"fmnist EKDAA step() with {optimizer}: {counts} kernel launches (eager, recorded, replayed)")
    assert counts == [UPDATE_LAUNCHES + OPTIMIZER[optimizer]] * 3
    if optimizer == "sgd":
        assert counts[-1] <= TARGET


@pytest.mark.parametrize("preset, widths, shape", [("fmnist", SMALL, (1, 28, 28)),
                                                   ("cifar", (4, 4, 8, 8, 8, 8, 16), (3, 32, 32))])
def test_static_report_models_the_counted_launches(sim, preset, widths, shape):
    """bench/static_report.py's launch model (from the NumPy backend's call sequence) predicts the
    simulator's count of a replayed step (cifar: + unpool_error after fc1, its conv6 pools)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
    try:
        sr = importlib.import_module("static_report")
    finally:
        sys.path.pop(0)
    model = ek.build_model(preset, backend="cuda-sim", widths=widths)
    rng = np.random.default_rng(0)
    x, labels = rng.uniform(-0.5, 0.5, (3, *shape)).astype(np.float32), rng.integers(0, 10, 3)
    be = model.backend
    for _ in range(3):
        sim.reset_launch_count()
        model.step_arrays(be.input(x), be.labels(labels), check_finite=False)
    counted = sim.launch_count()
    assert counted == sr.launch_sequence(preset)["ekdaa_kernel_launches"] == {"fmnist": 16, "cifar": 29}[preset]

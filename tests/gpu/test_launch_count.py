"""Kernel launches of one Fashion-MNIST update, counted by the CPU simulator (``_sim.launch_count()``).

The count is recorded (printed, and in the test id) and must equal what the backend's code path
issues, layer by layer, so a change in the number of launches is visible. Issue 9 aims at <= 16;
this file only pins the current number. Launches of the array library (CuPy's own elementwise
kernels for the output softmax, the loss and the finiteness check on a GPU; NumPy on the
simulator) are not counted: they are not kernels of this package.
"""

import numpy as np
import pytest

import ekdaa_cuda as ek

pytestmark = pytest.mark.gpu

SMALL = (4, 8, 8, 16)  # the count does not depend on the widths

# fmnist: conv32+pool, conv64+pool, conv128, fc128, out10; EKDAA, no bias, argmax unpool, no dropout
FORWARD = 3 + 2  # conv_block_fwd per conv layer (bias, φ, pool fused), fc_fwd per FC layer
OUTPUT_ERROR = 1  # softmax_error
# conv_filter_update per conv: split-K GEMM + fixed-order reduce (ΔW, ΔE); fc_update (ΔW, ΔE) per FC;
# fc_bias_update only with bias
UPDATES = 3 * 2 + 2
ERRORS = {
    "out -> fc1": 2,  # fc_proj, error_epilogue
    "fc1 -> conv3": 2,  # fc_proj, error_epilogue (conv3 has no pool)
    "conv3 -> conv2": 1,  # conv_error_proj: transposed conv + argmax unpool + epilogue fused
    "conv2 -> conv1": 1,  # conv_error_proj
}
OPTIMIZER = {"sgd": 1, "adam": 1, "sgd+pascanu": 2}  # optim_update (+ optim_sq_norm when rho > 0)
UPDATE_LAUNCHES = FORWARD + OUTPUT_ERROR + UPDATES + sum(ERRORS.values())


@pytest.fixture
def sim(device):
    if not device.simulated:
        pytest.skip("launches are counted by the simulator")
    return device.ext


def fmnist_batch(n=5):
    rng = np.random.default_rng(0)
    return rng.uniform(-0.5, 0.5, (n, 1, 28, 28)).astype(np.float32), rng.integers(0, 10, n)


def test_launches_of_one_fmnist_update(sim):
    model = ek.build_model("fmnist", backend="cuda-sim", widths=SMALL)
    x, labels = fmnist_batch()
    model.updates(x, labels)  # warm-up: allocations, tables
    sim.reset_launch_count()
    model.updates(x, labels)
    counted = sim.launch_count()
    print(f"fmnist EKDAA updates(): {counted} kernel launches")
    assert counted == UPDATE_LAUNCHES == 20


@pytest.mark.parametrize("optimizer", OPTIMIZER)
def test_launches_of_one_fmnist_training_step(sim, optimizer):
    kind, _, pascanu = optimizer.partition("+")
    model = ek.build_model("fmnist", backend="cuda-sim", widths=SMALL, optimizer=kind, rho=1.0 if pascanu else 0.0)
    x, labels = fmnist_batch()
    model.step(x, labels)
    sim.reset_launch_count()
    model.step(x, labels)
    counted = sim.launch_count()
    print(f"fmnist EKDAA step() with {optimizer}: {counted} kernel launches")
    assert counted == UPDATE_LAUNCHES + OPTIMIZER[optimizer]

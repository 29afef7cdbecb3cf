"""Tests of ``ekdaa_cuda.ops.optim.MultiTensorOptimizer`` (kernels in ``csrc/optim.cu``).

Several steps of sgd / adam / rmsprop over a list of tensors of awkward sizes (1, primes,
chunk ± 1, several chunks) with per-tensor learning rates, Pascanu rescaling off and on, decoupled
weight decay off and on, are
compared with the NumPy backend's optimizer (``ekdaa_cuda.optim.Optimizer``, built on the
``ekdaa_cuda.reference`` update functions) run in float64. Also: steps are bit-for-bit
reproducible, the update-address table is rebuilt when the update arrays change, state
dicts round-trip, and bad arguments raise ValueError naming the argument.

Run: ``pytest tests/gpu/test_ops_optim.py`` (on the CPU simulator, and on the GPU when there is
one; ``--device`` picks one). On the simulator every op call also runs under several thread
schedules and worker counts, bitwise equal (tests/gpu/conftest.py).
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import foreign, host

from ekdaa_cuda import reference
from ekdaa_cuda.optim import Optimizer

pytestmark = pytest.mark.gpu

HYPER = {"momentum": 0.9, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "decay": 0.9, "weight_decay": 0.0}
LR, STEPS, RHO = 1e-2, 4, 1.0




@pytest.fixture
def optim():
    from ekdaa_cuda.ops import optim

    return optim


@pytest.fixture
def shapes(device):
    chunk = int(device.ext.OPTIM_CHUNK)
    return [(17, 33), (17,), (33, 17), (1,), (3, 3, 3, 3), (chunk - 1,), (chunk + 1,), (2 * chunk + 5,)]


def random_grads(rng, shapes, rescale):
    """One update per tensor; with rescaling, tensor norms alternate between 1.25ρ and 0.8ρ:
    close enough to ρ to catch a wrong threshold, far enough (vs float32's ~1e-6 relative norm
    error) that float32 and float64 agree on which tensors get rescaled."""
    grads = []
    for i, shape in enumerate(shapes):
        g = rng.standard_normal(shape)
        if rescale:
            g *= (1.25 if i % 2 == 0 else 0.8) * RHO / np.linalg.norm(g)
        grads.append(g.astype(np.float32))
    return grads


@pytest.mark.parametrize("kind", reference.OPTIMIZERS)
@pytest.mark.parametrize("rescale", [False, True], ids=["rho_off", "rho_on"])
@pytest.mark.parametrize("weight_decay", [0.0, 3.0], ids=["wd_off", "wd_on"])
def test_steps_match_reference(xp, optim, rng, shapes, kind, rescale, weight_decay):
    # wd 3 with λ up to 2·LR takes up to 6% of p per step: far above the float32 rounding checked below
    rho = RHO if rescale else 0.0
    hyper = {**HYPER, "weight_decay": weight_decay}
    params = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    lr_scale = [float(rng.choice([0.5, 1.0, 2.0])) for _ in shapes]
    gpu_params = [xp.array(p) for p in params]
    opt = optim.MultiTensorOptimizer(gpu_params, kind=kind, lr=LR, rho=rho, **hyper)
    oracles = [Optimizer(kind, lr=LR * s, rho=rho, **hyper) for s in lr_scale]
    ref_params = [{"p": p.astype(np.float64)} for p in params]
    for _ in range(STEPS):
        grads = random_grads(rng, shapes, rescale)
        opt.step([xp.array(g) for g in grads], lr_scale=lr_scale)
        for i, (oracle, g) in enumerate(zip(oracles, grads)):
            ref_params[i], state, t = oracle.apply(ref_params[i], {"p": g.astype(np.float64)})
            oracle.commit(state, t)
    assert opt.t == STEPS
    state = opt.state_dict()
    assert int(state["t"]) == STEPS
    for i, (p, ref, oracle) in enumerate(zip(gpu_params, ref_params, oracles)):
        # float32 steps: a few ulp of |p| ~ 1 plus the rounding of lr-sized updates, 4 steps.
        np.testing.assert_allclose(host(p), ref["p"], rtol=1e-5, atol=1e-6, err_msg=f"{kind} params[{i}]")
        for slot in optim.STATE_SLOTS[kind]:
            # state: float32 running sums of O(1) terms; ~STEPS ulp(1) absolute where terms cancel
            np.testing.assert_allclose(
                state[f"{slot}.{i}"], oracle.state["p"][slot], rtol=1e-5, atol=1e-6, err_msg=f"{kind} {slot}.{i}"
            )


@pytest.mark.parametrize("kind", reference.OPTIMIZERS)
def test_steps_are_reproducible(xp, optim, rng, shapes, kind):
    params = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    runs = []
    for _ in range(2):
        gpu_params = [xp.array(p) for p in params]
        opt = optim.MultiTensorOptimizer(gpu_params, kind=kind, lr=LR, rho=RHO, **HYPER)
        runs.append((gpu_params, opt))
    for _ in range(3):
        grads = [xp.array(g) for g in random_grads(rng, shapes, True)]
        for _, opt in runs:
            opt.step(grads)
    for a, b in zip(runs[0][0], runs[1][0]):
        assert host(a).tobytes() == host(b).tobytes()


def test_update_arrays_reused_in_place(xp, optim, rng, shapes):
    """Same update values through fresh arrays each step or through arrays overwritten in place."""
    params = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    grads = [random_grads(rng, shapes, True) for _ in range(3)]
    fresh_params = [xp.array(p) for p in params]
    reused_params = [xp.array(p) for p in params]
    fresh = optim.MultiTensorOptimizer(fresh_params, kind="adam", lr=LR, rho=RHO)
    reused = optim.MultiTensorOptimizer(reused_params, kind="adam", lr=LR, rho=RHO)
    buffers = [xp.empty(s, dtype=np.float32) for s in shapes]
    for step_grads in grads:
        fresh.step([xp.array(g) for g in step_grads], lr_scale=[2.0] * len(shapes))
        for buf, g in zip(buffers, step_grads):
            buf[...] = xp.array(g)
        reused.step(buffers, lr_scale=[2.0] * len(shapes))
    for a, b in zip(fresh_params, reused_params):
        assert host(a).tobytes() == host(b).tobytes()


@pytest.mark.parametrize("kind", reference.OPTIMIZERS)
@pytest.mark.parametrize("bad", ["nan update", "inf update", "parameter overflows"])
def test_nonfinite_flags(xp, optim, rng, shapes, kind, bad):
    """optim_update flags exactly the tensors whose update or new value is NaN/±inf; the flags stay
    set over later good steps until cleared (training reads them only now and then)."""
    params = [xp.array(rng.standard_normal(s).astype(np.float32)) for s in shapes]
    opt = optim.MultiTensorOptimizer(params, kind=kind, lr=LR, **HYPER)
    grads = random_grads(rng, shapes, False)
    opt.step([xp.array(g) for g in grads])
    assert opt.nonfinite() == []
    hit = sorted({1, len(shapes) - 1})  # a small tensor and the last chunk of the largest
    scales = [1.0] * len(shapes)
    for i in hit:
        g = grads[i].reshape(-1)
        if bad == "parameter overflows":  # a finite update of size ~1e38 on a parameter of 3e38
            params[i][...] = xp.float32(3e38)
            g[...] = -1.0
            scales[i] = 1e38 / LR
        else:
            g[-1] = np.nan if bad == "nan update" else np.inf
    opt.step([xp.array(g) for g in grads], lr_scale=scales)
    assert opt.nonfinite() == hit
    opt.step([xp.array(np.zeros(s, np.float32)) for s in shapes])
    assert opt.nonfinite() == hit  # sticky
    opt.clear_nonfinite()
    assert opt.nonfinite() == []


def test_zero_lr_scale_freezes_a_tensor(xp, optim, rng):
    p0, p1 = (rng.standard_normal(s).astype(np.float32) for s in [(5, 7), (11,)])
    params = [xp.array(p0), xp.array(p1)]
    opt = optim.MultiTensorOptimizer(params, kind="sgd", lr=LR, momentum=0.9)
    for _ in range(2):
        opt.step([xp.array(rng.standard_normal(p.shape).astype(np.float32)) for p in params], lr_scale=[0.0, 1.0])
    np.testing.assert_array_equal(host(params[0]), p0)
    assert not np.array_equal(host(params[1]), p1)


def test_empty_tensor_in_list(xp, optim, rng):
    params = [xp.zeros((0,), dtype=np.float32), xp.array(rng.standard_normal(13).astype(np.float32))]
    before = host(params[1])
    opt = optim.MultiTensorOptimizer(params, kind="sgd", lr=LR, momentum=0.0, rho=RHO)
    g = rng.standard_normal(13).astype(np.float32)
    opt.step([xp.zeros((0,), dtype=np.float32), xp.array(g)])
    g64 = reference.pascanu_rescale(g.astype(np.float64), RHO)
    np.testing.assert_allclose(host(params[1]), before - LR * g64, rtol=1e-6, atol=1e-7)  # one float32 step


@pytest.mark.parametrize("kind", reference.OPTIMIZERS)
def test_state_dict_round_trip(xp, optim, rng, shapes, kind):
    params = [xp.array(rng.standard_normal(s).astype(np.float32)) for s in shapes]
    a = optim.MultiTensorOptimizer(params, kind=kind, lr=LR, rho=RHO)
    for _ in range(2):
        a.step([xp.array(g) for g in random_grads(rng, shapes, True)])
    copies = [p.copy() for p in params]
    b = optim.MultiTensorOptimizer(copies, kind=kind, lr=LR, rho=RHO)
    b.load_state_dict(a.state_dict())
    assert b.t == a.t == 2
    for _ in range(2):
        grads = [xp.array(g) for g in random_grads(rng, shapes, True)]
        a.step(grads)
        b.step(grads)
    for pa, pb in zip(params, copies):
        assert host(pa).tobytes() == host(pb).tobytes()


def test_load_state_dict_rejects_mismatch(xp, optim, rng):
    params = [xp.zeros((3, 4), dtype=np.float32)]
    opt = optim.MultiTensorOptimizer(params, kind="adam")
    state = opt.state_dict()
    with pytest.raises(ValueError, match=r"MultiTensorOptimizer.load_state_dict: state keys"):
        opt.load_state_dict({"t": state["t"], "v.0": state["v.0"]})
    with pytest.raises(ValueError, match=r"MultiTensorOptimizer.load_state_dict: m.0 must be a finite array"):
        opt.load_state_dict({**state, "m.0": np.zeros((4, 3), np.float32)})


def _bad_step(optim, xp, grads, lr_scale=None):
    opt = optim.MultiTensorOptimizer([xp.zeros((3, 4), np.float32), xp.zeros(5, np.float32)])
    opt.step(grads(xp), lr_scale=lr_scale)


BAD_CASES = {
    "grads count": (
        lambda optim, xp: _bad_step(optim, xp, lambda xp: [xp.zeros((3, 4), np.float32)]),
        r"MultiTensorOptimizer.step: grads must be a list of 2 arrays",
    ),
    "grads shape": (
        lambda optim, xp: _bad_step(optim, xp, lambda xp: [xp.zeros((3, 4), np.float32), xp.zeros(6, np.float32)]),
        r"MultiTensorOptimizer.step: grads\[1\] must be float32 .* d0=5",
    ),
    "grads dtype": (
        lambda optim, xp: _bad_step(optim, xp, lambda xp: [xp.zeros((3, 4)), xp.zeros(5, np.float32)]),
        r"MultiTensorOptimizer.step: grads\[0\] must be float32",
    ),
    "lr_scale": (
        lambda optim, xp: _bad_step(
            optim, xp, lambda xp: [xp.zeros((3, 4), np.float32), xp.zeros(5, np.float32)], lr_scale=[1.0, -1.0]
        ),
        r"MultiTensorOptimizer.step: lr_scale\[1\] must be >= 0",
    ),
    "params dtype": (
        lambda optim, xp: optim.MultiTensorOptimizer([xp.zeros(3)]),
        r"MultiTensorOptimizer: params\[0\] must be float32",
    ),
    "params strided": (
        lambda optim, xp: optim.MultiTensorOptimizer([xp.zeros((4, 3), np.float32).T]),
        r"MultiTensorOptimizer: params\[0\] must be C-contiguous",
    ),
    "params repeated": (
        lambda optim, xp: optim.MultiTensorOptimizer([xp.zeros(3, np.float32)] * 2),
        r"MultiTensorOptimizer: params must be distinct",
    ),
    "grads other device": (
        lambda optim, xp: _bad_step(optim, xp, lambda xp: [xp.zeros((3, 4), np.float32), foreign(xp, (5,))]),
        r"MultiTensorOptimizer.step: grads\[1\] must be a .*ndarray on device",
    ),
    "kind": (
        lambda optim, xp: optim.MultiTensorOptimizer([xp.zeros(3, np.float32)], kind="adagrad"),
        r"MultiTensorOptimizer: kind must be one of",
    ),
}


@pytest.mark.parametrize("case", list(BAD_CASES))
def test_bad_arguments(xp, optim, case):
    call, match = BAD_CASES[case]
    with pytest.raises(ValueError, match=match):
        call(optim, xp)


def test_launcher_rechecks_the_optimizer_kind(device):
    """Below the Python checks, the raw launcher refuses an unknown optimizer code itself."""
    with pytest.raises(ValueError, match=r"^optim_update: kind must be 0 \(sgd\), 1 \(adam\) or 2 \(rmsprop\), got 7"):
        device.ext.optim_update(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7, 0.9, 0.9, 0.999, 1.0, 1.0, 0.9, 1e-8, 0.0, 0.0, 0)

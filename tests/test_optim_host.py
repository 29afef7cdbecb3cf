"""CPU checks of the fc and optimizer ops (no GPU needed).

- The device tables of ``ekdaa_cuda.ops.optim`` (chunk offsets, tensor table) and the scalar
  argument checks of ``ekdaa_cuda.ops.optim`` / ``ekdaa_cuda.ops.fc``.
- The kernels' per-element code compiled for the host (``_C.host_optim_step``: Pascanu
  rescaling + sgd/adam/rmsprop from ``csrc/optim.h``; ``_C.host_error_epilogue``: the fc
  error epilogue from ``csrc/fc.h``) against the float64 NumPy reference over several steps.

Run: ``pytest tests/test_optim_host.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

from ekdaa_cuda import reference
from ekdaa_cuda.ops import _check
from ekdaa_cuda.ops import optim as optim_ops
from ekdaa_cuda.ops._check import RULE_CODES
from ekdaa_cuda.optim import DEFAULT_HYPER, Optimizer

HYPER = {"momentum": 0.9, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "decay": 0.9}


@pytest.fixture(scope="module")
def C():
    return pytest.importorskip(
        "ekdaa_cuda._C", reason="extension ekdaa_cuda._C not built (no CUDA compiler at build time)"
    )


# ---------------------------------------------------------------- tables


def test_chunk_offsets():
    chunk = 8
    sizes = [0, 1, 8, 9, 24, 0, 17]
    np.testing.assert_array_equal(optim_ops.chunk_offsets(sizes, chunk), [0, 0, 1, 2, 4, 7, 7, 10])
    assert optim_ops.chunk_offsets(sizes, chunk).dtype == np.int64


def test_chunk_offsets_cover_every_element_once(rng):
    chunk = int(rng.integers(1, 50))
    sizes = rng.integers(0, 200, size=int(rng.integers(1, 12)))
    offsets = optim_ops.chunk_offsets(sizes, chunk)
    # Replay the kernels' chunk -> (tensor, element range) mapping on the host.
    seen = [np.zeros(s, dtype=int) for s in sizes]
    for c in range(int(offsets[-1])):
        t = int(np.searchsorted(offsets, c, side="right") - 1)  # offsets[t] <= c < offsets[t + 1]
        begin = (c - offsets[t]) * chunk
        assert begin < sizes[t]
        seen[t][begin : min(begin + chunk, sizes[t])] += 1
    for s in seen:
        assert np.all(s == 1)


def test_tensor_table_layout():
    table = optim_ops.tensor_table([100, 200], [[300, 400], [500, 600]], [5, 7])
    np.testing.assert_array_equal(table, [[100, 200], [300, 500], [400, 600], [5, 7]])
    one_slot = optim_ops.tensor_table([100], [[300]], [5])
    np.testing.assert_array_equal(one_slot, [[100], [300], [0], [5]])
    assert table.dtype == np.int64 and table.flags.c_contiguous


def test_state_slots_match_numpy_optimizer():
    assert set(optim_ops.OPTIMIZER_CODES) == set(reference.OPTIMIZERS)
    assert set(optim_ops.STATE_SLOTS) == set(reference.OPTIMIZERS)
    assert set(HYPER) == set(DEFAULT_HYPER)


# ---------------------------------------------------------------- scalar argument checks


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"kind": "lbfgs"}, "MultiTensorOptimizer: kind"),
        ({"lr": 0.0}, "MultiTensorOptimizer: lr"),
        ({"lr": float("nan")}, "MultiTensorOptimizer: lr"),
        ({"momentum": 1.0}, "MultiTensorOptimizer: momentum"),
        ({"beta1": -0.1}, "MultiTensorOptimizer: beta1"),
        ({"beta2": "x"}, "MultiTensorOptimizer: beta2"),
        ({"eps": 0.0}, "MultiTensorOptimizer: eps"),
        ({"decay": 1.5}, "MultiTensorOptimizer: decay"),
        ({"rho": -1.0}, "MultiTensorOptimizer: rho"),
        ({"rho": float("inf")}, "MultiTensorOptimizer: rho"),
    ],
)
def test_optimizer_rejects_bad_settings_before_touching_arrays(kwargs, match):
    with pytest.raises(ValueError, match=match):
        optim_ops.MultiTensorOptimizer([object()], **kwargs)


def test_optimizer_rejects_empty_params():
    with pytest.raises(ValueError, match="MultiTensorOptimizer: params"):
        optim_ops.MultiTensorOptimizer([])


def test_lr_scale_checks():
    assert optim_ops.check_lr_scale(None, 3) == (1.0, 1.0, 1.0)
    assert optim_ops.check_lr_scale([1, 0.5], 2) == (1.0, 0.5)
    with pytest.raises(ValueError, match=r"MultiTensorOptimizer.step: lr_scale must be"):
        optim_ops.check_lr_scale([1.0], 2)
    with pytest.raises(ValueError, match=r"lr_scale\[1\] must be >= 0"):
        optim_ops.check_lr_scale([1.0, -1.0], 2)
    with pytest.raises(ValueError, match=r"lr_scale\[0\] must be a finite number"):
        optim_ops.check_lr_scale([float("nan"), 1.0], 2)


def test_fc_scalar_checks():
    assert _check.activation_code("fc_fwd", "sigmoid") == reference.ACTIVATION_CODES["sigmoid"]
    with pytest.raises(ValueError, match="fc_fwd: activation must be one of"):
        _check.activation_code("fc_fwd", "gelu")
    assert _check.rule_code("error_epilogue", "bp", "tanh") == RULE_CODES["bp"]
    with pytest.raises(ValueError, match="error_epilogue: rule must be one of"):
        _check.rule_code("error_epilogue", "fa", "tanh")
    with pytest.raises(ValueError, match="error_epilogue: rule 'bp' needs"):
        _check.rule_code("error_epilogue", "bp", "signum")
    with pytest.raises(ValueError, match="fc_error_proj: beta must be a finite number"):
        _check.finite_float("fc_error_proj", "beta", float("nan"))


@pytest.mark.parametrize("p", [0.0, 0.1, 0.3, 0.5, 0.999])
def test_dropout_args_match_reference(p):
    key, threshold, scale = _check.dropout_args("fc_fwd", p, 12345, 10)
    assert key == 12345
    assert threshold == reference.dropout_threshold(p)
    assert np.float32(scale) == reference.dropout_scale(p, np.float32)
    assert scale == float(np.float32(scale))  # passes through the float binding unchanged


@pytest.mark.parametrize(
    "p, key, numel, match",
    [
        (1.0, 0, 1, "fc_fwd: dropout must be in"),
        (-0.1, 0, 1, "fc_fwd: dropout must be in"),
        (float("nan"), 0, 1, "fc_fwd: dropout must be a finite number"),
        (0.1, -1, 1, "fc_fwd: dropout_key must be"),
        (0.1, 1 << 32, 1, "fc_fwd: dropout_key must be"),
        (0.1, 1.5, 1, "fc_fwd: dropout_key must be"),
        (0.1, 0, (1 << 32) + 1, "counter range"),
    ],
)
def test_dropout_args_rejects(p, key, numel, match):
    with pytest.raises(ValueError, match=match):
        _check.dropout_args("fc_fwd", p, key, numel)


# ---------------------------------------------------------------- host-compiled kernel code


@pytest.mark.parametrize("kind", reference.OPTIMIZERS)
@pytest.mark.parametrize("rescale", ["off", "on"])
def test_host_optim_step_matches_reference(C, rng, kind, rescale):
    n, lr, steps = int(rng.integers(1, 300)), 1e-2, 5
    p32 = rng.standard_normal(n).astype(np.float32)
    s1, s2 = np.zeros(n, np.float32), np.zeros(n, np.float32)
    grads = [rng.standard_normal(n).astype(np.float32) for _ in range(steps)]
    norms = [float(np.linalg.norm(g.astype(np.float64))) for g in grads]
    # rho far from every norm, so float32 and float64 agree on whether to rescale
    rho = 0.0 if rescale == "off" else 0.5 * min(norms)
    oracle = Optimizer(kind, lr=lr, rho=rho, **HYPER)
    p64 = {"p": p32.astype(np.float64)}
    for t, g in enumerate(grads, start=1):
        bc1 = 1 - HYPER["beta1"] ** t if kind == "adam" else 1.0
        bc2 = 1 - HYPER["beta2"] ** t if kind == "adam" else 1.0
        C.host_optim_step(
            optim_ops.OPTIMIZER_CODES[kind],
            p32,
            g,
            s1,
            s2,
            lr,
            HYPER["momentum"],
            HYPER["beta1"],
            HYPER["beta2"],
            bc1,
            bc2,
            HYPER["decay"],
            HYPER["eps"],
            rho,
        )
        p64, state, t64 = oracle.apply(p64, {"p": g.astype(np.float64)})
        oracle.commit(state, t64)
    # float32 arithmetic over 5 steps: a few ulp of |p| ~ 1 plus lr-scaled rounding of the update.
    np.testing.assert_allclose(p32, p64["p"], rtol=1e-5, atol=1e-6)
    # state: float32 sums of O(1) terms over 5 steps, so ~5 ulp(1) absolute where terms cancel.
    slots = optim_ops.STATE_SLOTS[kind]
    for slot, got in zip(slots, (s1, s2)):
        np.testing.assert_allclose(got, oracle.state["p"][slot], rtol=1e-5, atol=1e-6)
    if len(slots) == 1:
        assert np.all(s2 == 0)  # unused slot untouched


def test_host_optim_step_rejects_bad_kind(C):
    z = np.zeros(3, np.float32)
    with pytest.raises(ValueError, match="host_optim_step: kind"):
        C.host_optim_step(7, z, z.copy(), z.copy(), z.copy(), 0.1, 0.9, 0.9, 0.999, 1.0, 1.0, 0.9, 1e-8, 0.0)


@pytest.mark.parametrize("activation", reference.ACTIVATIONS)
@pytest.mark.parametrize("rule", ["ekdaa", "bp"])
@pytest.mark.parametrize("p", [0.0, 0.3])
def test_host_error_epilogue_matches_reference(C, rng, activation, rule, p):
    if rule == "bp" and activation == "signum":
        pytest.skip("bp has no signum derivative (refused by the Python op)")
    n, beta = int(rng.integers(1, 500)), 0.5
    # h in Z + 1/4 and beta·d in Z/2: h − βd is exact in float32 and never 0 (signum has no tie).
    h = (rng.integers(-3, 4, size=n) + 0.25).astype(np.float32)
    d = rng.integers(-4, 5, size=n).astype(np.float32)
    key = reference.dropout_key(int(rng.integers(1 << 31)), 3, 1)
    _, threshold, scale = _check.dropout_args("test", p, key, n)
    got = C.host_error_epilogue(
        RULE_CODES[rule], reference.ACTIVATION_CODES[activation], h, d, beta, key, threshold, scale
    )
    h64, d64 = h.astype(np.float64), d.astype(np.float64)
    if rule == "ekdaa":
        want = reference.target_error(activation, h64, d64, beta)
    else:
        want = d64 * reference.activation_derivative(activation, h64)
    mask = reference.dropout_keep(key, (n,), p).astype(np.float64) * float(scale)
    want = want * mask
    assert np.all(got[mask == 0] == 0)
    # float32 φ: a few ulp of values in [-1, 1] (or of h), times |d| for bp and the dropout scale.
    tol = 1e-6 * (1 + np.abs(d64)) * float(scale) + 1e-5 * np.abs(want)
    assert np.all(np.isfinite(got))
    err = np.abs(got - want)
    assert np.all(err <= tol), f"worst element {np.argmax(err - tol)}: got {got[np.argmax(err - tol)]}"

"""Argument checks of the fc and optimizer ops that need no kernel: the device tables of
``ekdaa_cuda.ops.optim`` (chunk offsets, tensor table) and the scalar argument checks of
``ekdaa_cuda.ops.optim`` / ``ekdaa_cuda.ops.fc``. The kernels themselves are tested in
tests/gpu/test_ops_optim.py and tests/gpu/test_ops_fc.py (on the CPU simulator, and on a GPU).

Run: ``pytest tests/test_optim_args.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

from ekdaa_cuda import reference
from ekdaa_cuda.ops import _check
from ekdaa_cuda.ops import optim as optim_ops
from ekdaa_cuda.ops._check import RULE_CODES
from ekdaa_cuda.optim import DEFAULT_HYPER

HYPER = {"momentum": 0.9, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "decay": 0.9, "weight_decay": 0.0}


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
        ({"weight_decay": -1e-3}, "MultiTensorOptimizer: weight_decay"),
        ({"weight_decay": float("nan")}, "MultiTensorOptimizer: weight_decay"),
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

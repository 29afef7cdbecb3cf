"""End to end: the CUDA backend's argmax-sparse filter update (``conv_filter_update_pooled``, v3)
against the dense v2 filter update on whole models (``CudaBackend.pooled_filter_update``).

The backend takes the sparse path exactly for the pooled conv layers whose error it unpooled at
the argmax itself (layer-wise rules EKDAA, BP, FA, KP with unpool="argmax": conv_error_proj /
unpool_error write exactly 0 off the argmax whatever the epilogue); DFA-style rules (their error
is d·φ'(h) at every position), the bilinear unpool and unpooled layers stay dense. Both paths sum
the same nonzero products in float32, in different orders (v2: positions (n, y, x) in splits of
the full-resolution grid; v3: pooled cells (n, i, j) in splits of the pooled grid), so single ΔW
entries differ by a few ulps of Σ|terms|, and so do the parameters after a few steps (see the
tolerance below): not bitwise.
"""

import numpy as np
import pytest
from helpers import model_widths, tie_free_draw

import ekdaa_cuda as ek
from ekdaa_cuda.ops import conv as conv_ops

pytestmark = pytest.mark.gpu

INPUT = {"fmnist": (1, 28, 28), "cifar": (3, 32, 32)}
POOLED_CONVS = {"fmnist": 2, "cifar": 3}


def _model(device, preset, rule, sparse, **kw):
    model = ek.build_model(preset, backend=device.name, rule=rule, seed=5,
                           widths=model_widths(device, preset), **kw)
    model.backend.pooled_filter_update = sparse
    # Every step through the ops, so the counter below sees each layer's path (from the third step on
    # a model replays its recorded launches; tests/gpu/test_graph.py checks replay against eager).
    model.backend.replay = False
    return model


@pytest.mark.parametrize("preset, rule, options", [
    ("fmnist", "ekdaa", {}),
    ("fmnist", "ekdaa", {"dropout_conv": 0.1, "bias": True}),
    ("cifar", "bp", {"activation": "relu", "bias": True}),
    ("fmnist", "fa", {}),
    ("fmnist", "kp", {"bias": True}),
    ("fmnist", "ekdaa", {"normalize": "rms"}),  # d normalized, then unpool_error: still the sparse path
    ("fmnist", "dfa", {}),  # direct rule: e is dense, never the sparse path
    ("fmnist", "ekdaa", {"variant": "release"}),  # bilinear unpool: dense
])
def test_sparse_filter_update_trains_like_dense(device, rng, monkeypatch, preset, rule, options):
    n = 8 if device.simulated else 3  # full widths pool 8-16x the windows per image: see tie_free_draw

    def draw():
        return rng.uniform(-0.5, 0.5, (n, *INPUT[preset])).astype(np.float32), rng.integers(0, 10, n)

    def three_numpy_steps(x, labels):
        model = ek.build_model(preset, backend="numpy", rule=rule, seed=5, widths=model_widths(device, preset),
                               **options)
        for _ in range(3):
            model.step(x, labels)

    # The two paths' parameters differ by ulps after the first step, so a pool window near a tie could
    # route the error to another pixel in each model: a batch on which the numpy model (its pre-pool
    # values within ~3e-7 of the device's) pools no near-tie over the three steps avoids that.
    (x, labels), _ = tie_free_draw(draw, three_numpy_steps)
    calls = []
    pooled = conv_ops.conv_filter_update_pooled
    monkeypatch.setattr(conv_ops, "conv_filter_update_pooled", lambda *a, **k: calls.append(1) or pooled(*a, **k))
    sparse, dense = _model(device, preset, rule, True, **options), _model(device, preset, rule, False, **options)
    for _ in range(3):
        a, b = sparse.step(x, labels), dense.step(x, labels)
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
    takes_sparse = rule in ("ekdaa", "bp", "fa", "kp") and options.get("variant") != "release"
    assert len(calls) == (3 * POOLED_CONVS[preset] if takes_sparse else 0), "which layers took the sparse path"
    got, want = sparse.state_dict(), dense.state_dict()
    assert sorted(got) == sorted(want)
    for key in want:
        # Per step each ΔW entry differs by at most ~m·2^-24·Σ|terms| (m <= 400 terms per entry here);
        # the optimizer scales it by the learning rate and three steps carry it through the network:
        # the parameters agree to ~1e-6 of their scale (observed <= 5e-7 on the simulator); 2e-6 leaves a margin.
        scale = max(float(np.abs(want[key]).max()), 1e-30)
        np.testing.assert_allclose(got[key], want[key], rtol=0, atol=2e-6 * scale, err_msg=key)
        if not takes_sparse:
            assert np.array_equal(got[key], want[key]), f"{key}: the dense path must be unchanged"

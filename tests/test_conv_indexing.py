"""The conv kernels' per-thread bodies (csrc/conv.h), run on the CPU, against ekdaa_cuda.reference.

``_C.host_conv_*`` execute exactly the functions the CUDA kernels call for each thread (index
math, conv / transposed-conv sums, 2x2 window argmax with ties, argmax unpooling, the dropout mask,
the EKDAA/BP epilogue, bilinear source rows, the filter-gradient sums) in plain loops over
float32 NumPy arrays, so most kernel bugs show up here without a GPU. Convolutions use small
integer-valued inputs, which float32 sums exactly: those checks are ``==``.

Run: ``pytest tests/test_conv_indexing.py`` (skipped when the extension was not built).
"""

from __future__ import annotations

import numpy as np
import pytest

from ekdaa_cuda import reference
from ekdaa_cuda.ops._check import RULE_CODES

ACT = reference.ACTIVATION_CODES
ACTIVATIONS = list(ACT)
# bp needs φ', which signum lacks: that pair is refused before any launch (tested below).
RULE_ACTIVATIONS = [(a, r) for r in RULE_CODES for a in ACTIVATIONS if (a, r) != ("signum", "bp")]


@pytest.fixture(scope="module")
def C():
    return pytest.importorskip(
        "ekdaa_cuda._C", reason="extension ekdaa_cuda._C not built (no CUDA compiler at build time)"
    )


def ints(rng, shape, bound=3):
    """Integers in [-bound, bound] as float32: conv sums of these are exact in float32."""
    return rng.integers(-bound, bound + 1, size=shape).astype(np.float32)


def draw(rng, *names):
    """Awkward sizes: 1, primes, odd and even spatial sizes."""
    choices = {
        "N": [1, 2, 3],
        "C": [1, 3, 5, 17],
        "HW": [1, 2, 3, 5, 7, 8, 13],
        "k": [1, 3, 5],
    }
    return [int(rng.choice(choices[n])) for n in names]


def dropout(rng, p, shape):
    """(key, threshold, scale, float32 mask m/(1−p)) for a layer's mask over ``shape``."""
    key = reference.dropout_key(int(rng.integers(2**32)), int(rng.integers(1000)), int(rng.integers(8)))
    mask = reference.dropout_keep(key, shape, p).astype(np.float32) * reference.dropout_scale(p, np.float32)
    return key, reference.dropout_threshold(p), float(reference.dropout_scale(p, np.float32)), mask


# ---------------------------------------------------------------- index helpers


@pytest.mark.parametrize("n_in, n_out", [(1, 1), (1, 5), (2, 4), (3, 7), (7, 14), (7, 15), (14, 28), (5, 3), (13, 6)])
def test_bilinear_source_matches_tf_half_pixel(C, n_in, n_out):
    lo, hi, frac = C.host_bilinear_source(n_in, n_out)
    assert np.all((0 <= lo) & (lo <= hi) & (hi < n_in) & (hi - lo <= 1))
    a = np.zeros((n_out, n_in))
    np.add.at(a, (np.arange(n_out), lo), 1 - frac.astype(np.float64))
    np.add.at(a, (np.arange(n_out), hi), frac.astype(np.float64))
    # frac is a float32 computation of the float64 reference's position: within a few float32 ulps
    np.testing.assert_allclose(a, reference.bilinear_matrix(n_in, n_out), rtol=0, atol=1e-6)


def identity_conv(c):
    return np.eye(c, dtype=np.float32)[:, :, None, None]


def test_window_argmax_codes_and_ties(C):
    # One window per channel: the maximum at q = 0, 1, 2, 3, then ties that must pick the first.
    windows = np.array(
        [
            [[5, 1], [1, 1]],
            [[0, 5], [1, 1]],
            [[0, 1], [5, 1]],
            [[0, 1], [1, 5]],
            [[1, 1], [1, 1]],
            [[0, 2], [2, 2]],
            [[0, 0], [2, 2]],
            [[-1, -2], [-1, -1]],
        ],
        dtype=np.float32,
    )[None]
    _, out, argmax = C.host_conv_block_fwd(windows, identity_conv(8), None, ACT["linear"], False, True, 0, 0, 1.0)
    np.testing.assert_array_equal(argmax.ravel(), [0, 1, 2, 3, 0, 1, 2, 0])
    np.testing.assert_array_equal(out.ravel(), [5, 5, 5, 5, 1, 2, 2, -1])


def test_window_argmax_random_ties_and_odd_sizes(C, rng):
    n, c, height, width = draw(rng, "N", "C", "HW", "HW")
    x = rng.integers(0, 2, size=(n, c, height, width)).astype(np.float32)  # 0/1: ties everywhere
    h, out, argmax = C.host_conv_block_fwd(x, identity_conv(c), None, ACT["linear"], False, True, 0, 0, 1.0)
    want_out, want_idx = reference.maxpool2x2(x)
    np.testing.assert_array_equal(h, x)  # the odd trailing row/column of h is written too
    np.testing.assert_array_equal(out, want_out)
    np.testing.assert_array_equal(argmax, want_idx)


@pytest.mark.parametrize("p", [0.0, 0.4])
def test_unpool_positions(C, rng, p):
    # rule bp with φ = linear makes the epilogue the identity: e = unpool_argmax(d) ⊙ m/(1−p) exactly.
    n, c, hh, wh = draw(rng, "N", "C", "HW", "HW")
    hp, wp = hh // 2, wh // 2
    d = rng.standard_normal((n, c, hp, wp)).astype(np.float32)
    idx = rng.integers(0, 4, size=(n, c, hp, wp)).astype(np.uint8)
    h = rng.standard_normal((n, c, hh, wh)).astype(np.float32)
    key, threshold, scale, mask = dropout(rng, p, h.shape)
    e = C.host_unpool_error(d, h, idx, RULE_CODES["bp"], ACT["linear"], 0.9, key, threshold, scale)
    np.testing.assert_array_equal(e, reference.unpool_argmax(d, idx, (hh, wh)) * mask)


# ---------------------------------------------------------------- whole per-thread bodies


@pytest.mark.parametrize("pool", [True, False])
@pytest.mark.parametrize("p", [0.0, 0.3])
@pytest.mark.parametrize("act", [*ACTIVATIONS, None])  # None: apply_activation=False
def test_conv_block_fwd(C, rng, act, p, pool):
    n, c_in, c_out, height, width, k = draw(rng, "N", "C", "C", "HW", "HW", "k")
    x, w, b = ints(rng, (n, c_in, height, width)), ints(rng, (c_out, c_in, k, k)), ints(rng, (c_out,))
    bias = None if rng.random() < 0.5 else b
    key, threshold, scale, mask = dropout(rng, p, (n, c_out, height, width))
    code = ACT[act or "linear"]
    h, out, argmax = C.host_conv_block_fwd(x, w, bias, code, act is not None, pool, key, threshold, scale)
    want_h = reference.conv2d(
        x.astype(np.float64), w.astype(np.float64), None if bias is None else bias.astype(np.float64)
    )
    np.testing.assert_array_equal(h, want_h)  # small integers: exact
    # z in float32 exactly as the kernel forms it: φ from the host-compiled activation (checked
    # against the reference in test_build.py), times the float32 mask.
    z = (C.host_activate(code, h) if act is not None else h) * mask
    if pool:
        want_out, want_idx = reference.maxpool2x2(z)
        np.testing.assert_array_equal(out, want_out)
        np.testing.assert_array_equal(argmax, want_idx)
    else:
        assert argmax is None
        np.testing.assert_array_equal(out, z)


def epilogue64(rule, act, h, d, beta, mask):
    if rule == "bp":
        return d * reference.activation_derivative(act, h) * mask
    return reference.target_error(act, h, d, beta) * mask


@pytest.mark.parametrize("pooled", [True, False])
@pytest.mark.parametrize("p", [0.0, 0.3])
@pytest.mark.parametrize("act, rule", RULE_ACTIVATIONS)
def test_conv_error_proj(C, rng, act, rule, p, pooled):
    n, c_in, c_out, hh, wh, k = draw(rng, "N", "C", "C", "HW", "HW", "k")
    hp, wp = (hh // 2, wh // 2) if pooled else (hh, wh)
    e, kernel = ints(rng, (n, c_out, hp, wp)), ints(rng, (c_out, c_in, k, k))
    h = (rng.standard_normal((n, c_in, hh, wh)) * 2).astype(np.float32)
    idx = rng.integers(0, 4, size=(n, c_in, hp, wp)).astype(np.uint8) if pooled else None
    key, threshold, scale, mask = dropout(rng, p, h.shape)
    beta = 0.9
    got = C.host_conv_error_proj(e, kernel, h, idx, RULE_CODES[rule], ACT[act], beta, key, threshold, scale)

    d = np.zeros((n, c_in, hp, wp))  # the reference's im2col needs a non-empty plane (hh or wh = 1 pools to 0)
    if hp and wp:
        d = reference.conv2d_transpose(e.astype(np.float64), kernel.astype(np.float64))
    if pooled:
        d = reference.unpool_argmax(d, idx, (hh, wh))
        at_argmax = reference.unpool_argmax(np.ones((n, c_in, hp, wp)), idx, (hh, wh)) > 0
        assert np.all(got[~at_argmax] == 0), "non-argmax positions and the dropped row/column must be exactly 0"
    want = epilogue64(rule, act, h.astype(np.float64), d, beta, mask.astype(np.float64))
    # float32 epilogue: h − βd and φ rounded once each (φ is 1-Lipschitz here), so |error| is a few
    # float32 ulps of |h| + |βd| + 1, times the mask's scale.
    tol = 1e-6 * (1 + np.abs(h) + beta * np.abs(d)) * scale
    if rule == "bp":
        tol = 1e-6 * np.abs(d) * scale
    bad = np.abs(got - want) > tol
    assert not bad.any(), f"{bad.sum()} of {bad.size} differ, e.g. got {got[bad][:4]} want {want[bad][:4]}"


def test_unpool_error_ekdaa(C, rng):
    n, c, hh, wh = draw(rng, "N", "C", "HW", "HW")
    hp, wp = hh // 2, wh // 2
    d = rng.standard_normal((n, c, hp, wp)).astype(np.float32)
    idx = rng.integers(0, 4, size=(n, c, hp, wp)).astype(np.uint8)
    h = rng.standard_normal((n, c, hh, wh)).astype(np.float32)
    key, threshold, scale, mask = dropout(rng, 0.2, h.shape)
    got = C.host_unpool_error(d, h, idx, RULE_CODES["ekdaa"], ACT["tanh"], 0.9, key, threshold, scale)
    d_full = reference.unpool_argmax(d.astype(np.float64), idx, (hh, wh))
    want = reference.target_error("tanh", h.astype(np.float64), d_full, 0.9) * mask
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6 * scale)  # float32 tanh of O(1) values


def test_conv_proj(C, rng):
    n, c_in, c_out, height, width, k = draw(rng, "N", "C", "C", "HW", "HW", "k")
    e, kernel = ints(rng, (n, c_out, height, width)), ints(rng, (c_out, c_in, k, k))
    want = reference.conv2d_transpose(e.astype(np.float64), kernel.astype(np.float64))
    np.testing.assert_array_equal(C.host_conv_proj(e, kernel), want)


@pytest.mark.parametrize(
    "hw, out_hw", [((7, 7), (14, 14)), ((7, 3), (15, 7)), ((3, 5), (3, 5)), ((4, 6), (3, 2)), ((1, 1), (2, 3))]
)
def test_unpool_bilinear(C, rng, hw, out_hw):
    d = rng.standard_normal((2, 3, *hw)).astype(np.float32)
    want = reference.unpool_bilinear(d.astype(np.float64), out_hw)
    # two float32 lerps of O(1) values with float32 weights
    np.testing.assert_allclose(C.host_unpool_bilinear(d, *out_hw), want, rtol=0, atol=2e-6)


@pytest.mark.parametrize("gpu_order", [False, True])  # True: the kernel's strided partial sums and tree
@pytest.mark.parametrize("bias", [True, False])
def test_conv_filter_update(C, rng, bias, gpu_order):
    n, c_in, c_out, height, width, k = draw(rng, "N", "C", "C", "HW", "HW", "k")
    if gpu_order and rng.random() < 0.5:  # more terms than the block's threads: each thread sums several
        n, height, width = 3, 13, 8
    z, e = ints(rng, (n, c_in, height, width)), ints(rng, (n, c_out, height, width))
    gamma = 0.1
    dw, db, de = C.host_conv_filter_update(z, e, k, gamma, bias, gpu_order)
    want = reference.conv2d_filter_grad(z.astype(np.float64), e.astype(np.float64), k)
    np.testing.assert_array_equal(dw, want)
    np.testing.assert_array_equal(de, np.float32(gamma) * dw)  # ΔE = γ·ΔW in float32, as the kernel
    if bias:
        np.testing.assert_array_equal(db, e.astype(np.float64).sum(axis=(0, 2, 3)))
    else:
        assert db is None


def test_empty_batch(C):
    z, e = np.zeros((0, 2, 5, 5), np.float32), np.zeros((0, 3, 5, 5), np.float32)
    dw, db, _ = C.host_conv_filter_update(z, e, 3, 0.1, True)
    assert np.all(dw == 0) and np.all(db == 0)  # an empty sum is 0, not garbage
    h, out, argmax = C.host_conv_block_fwd(z, np.ones((3, 2, 3, 3), np.float32), None, 0, True, True, 0, 0, 1.0)
    assert h.shape == (0, 3, 5, 5) and out.shape == argmax.shape == (0, 3, 2, 2)


def test_bad_sizes_raise(C):
    z = np.zeros((1, 2, 5, 5), np.float32)
    with pytest.raises(ValueError, match="host_conv_filter_update: kernel size k must be odd"):
        C.host_conv_filter_update(z, z, 2, 0.1, True)
    with pytest.raises(ValueError, match="host_conv_error_proj: pooled size"):
        C.host_conv_error_proj(
            z, np.zeros((2, 2, 3, 3), np.float32), z, np.zeros((1, 2, 5, 5), np.uint8), 0, 0, 0.9, 0, 0, 1.0
        )
    with pytest.raises(ValueError, match="host_conv_error_proj: rule bp needs"):
        C.host_conv_error_proj(z, np.zeros((2, 2, 3, 3), np.float32), z, None, 1, ACT["signum"], 0.9, 0, 0, 1.0)
    with pytest.raises(ValueError, match="host_conv_block_fwd: dropout threshold"):
        C.host_conv_block_fwd(z, np.zeros((2, 2, 3, 3), np.float32), None, 0, True, True, 0, 1 << 24, 1.0)

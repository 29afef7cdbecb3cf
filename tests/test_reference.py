"""The NumPy reference ops against naive loops and hand computations (float64 unless noted).

Random shapes come from the ``rng`` fixture (its seed is printed); integer-valued inputs
make the convolutions exact, so those comparisons use ``==``.
"""

import math

import numpy as np
import pytest

from ekdaa_cuda import reference as ref
from ekdaa_cuda.optim import Optimizer


def naive_conv(x, w, b=None):
    n, _, h, wd = x.shape
    co, _, k, _ = w.shape
    p = k // 2
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    out = np.zeros((n, co, h, wd), dtype=np.result_type(x, w))
    for y in range(h):
        for xx in range(wd):
            out[:, :, y, xx] = np.einsum("nckl,ockl->no", xp[:, :, y:y + k, xx:xx + k], w)
    return out if b is None else out + b[None, :, None, None]


def naive_conv_transpose(e, w):
    """d[n, ci, y, x] = Σ e[n, co, y', x'] w[co, ci, y − y' + p, x − x' + p] (scatter form)."""
    n, _, h, wd = e.shape
    _, ci, k, _ = w.shape
    p = k // 2
    d = np.zeros((n, ci, h + 2 * p, wd + 2 * p))
    for y in range(h):
        for xx in range(wd):
            d[:, :, y:y + k, xx:xx + k] += np.einsum("no,ockl->nckl", e[:, :, y, xx], w)
    return d[:, :, p:p + h, p:p + wd]


def naive_filter_grad(z, e, k):
    p = k // 2
    zp = np.pad(z, ((0, 0), (0, 0), (p, p), (p, p)))
    h, wd = z.shape[2:]
    g = np.zeros((e.shape[1], z.shape[1], k, k))
    for ky in range(k):
        for kx in range(k):
            g[:, :, ky, kx] = np.einsum("nohw,nchw->oc", e, zp[:, :, ky:ky + h, kx:kx + wd])
    return g


def random_conv_shape(rng):
    return dict(n=int(rng.choice([1, 2, 3])), ci=int(rng.choice([1, 3, 5])), co=int(rng.choice([1, 2, 7])),
                h=int(rng.choice([1, 2, 5, 7])), w=int(rng.choice([1, 3, 6, 11])), k=int(rng.choice([1, 3, 5])))


@pytest.mark.parametrize("trial", range(4))
def test_conv_ops_match_naive_loops(rng, trial):
    s = random_conv_shape(rng)
    x = rng.standard_normal((s["n"], s["ci"], s["h"], s["w"]))
    w = rng.standard_normal((s["co"], s["ci"], s["k"], s["k"]))
    b = rng.standard_normal(s["co"])
    e = rng.standard_normal((s["n"], s["co"], s["h"], s["w"]))
    np.testing.assert_allclose(ref.conv2d(x, w, b), naive_conv(x, w, b), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ref.conv2d_transpose(e, w), naive_conv_transpose(e, w), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ref.conv2d_filter_grad(x, e, s["k"]), naive_filter_grad(x, e, s["k"]),
                               rtol=1e-12, atol=1e-12)


def test_conv_ops_exact_on_integers(rng):
    """Small integers in float32: every product and sum is exact, so indexing errors cannot hide."""
    x = rng.integers(-3, 4, (2, 3, 5, 7)).astype(np.float32)
    w = rng.integers(-3, 4, (4, 3, 3, 3)).astype(np.float32)
    e = rng.integers(-3, 4, (2, 4, 5, 7)).astype(np.float32)
    assert np.array_equal(ref.conv2d(x, w), naive_conv(x, w))
    assert np.array_equal(ref.conv2d_transpose(e, w), naive_conv_transpose(e, w))
    assert np.array_equal(ref.conv2d_filter_grad(x, e, 3), naive_filter_grad(x, e, 3))
    assert ref.conv2d(x, w).dtype == np.float32


def test_conv_ops_on_empty_planes():
    w = np.ones((2, 3, 3, 3))
    for shape in [(2, 3, 0, 4), (2, 3, 1, 0), (0, 3, 4, 4)]:
        x = np.zeros(shape)
        e = np.zeros((shape[0], 2, *shape[2:]))
        assert ref.conv2d(x, w).shape == e.shape
        assert ref.conv2d_transpose(e, w).shape == shape
        assert np.array_equal(ref.conv2d_filter_grad(x, e, 3), np.zeros(w.shape))


def test_transposed_conv_is_the_adjoint_and_filter_grad_the_derivative(rng):
    x = rng.standard_normal((2, 3, 6, 5))
    w = rng.standard_normal((4, 3, 3, 3))
    e = rng.standard_normal((2, 4, 6, 5))
    assert np.sum(ref.conv2d(x, w) * e) == pytest.approx(np.sum(x * ref.conv2d_transpose(e, w)), rel=1e-12)
    # <conv(x, w), e> is linear in w with gradient conv2d_filter_grad(x, e)
    g = ref.conv2d_filter_grad(x, e, 3)
    v = rng.standard_normal(w.shape)
    assert np.sum(ref.conv2d(x, v) * e) == pytest.approx(np.sum(g * v), rel=1e-12)


def test_maxpool_argmax_ties_and_floor():
    z = np.zeros((1, 1, 5, 5))
    z[0, 0, 0, 1] = z[0, 0, 1, 0] = 2.0  # tie inside window (0, 0): first in row-major order is (0, 1)
    z[0, 0, 3, 3] = 1.0
    z[0, 0, 4, :] = 9.0  # the trailing odd row is dropped
    pooled, idx = ref.maxpool2x2(z)
    assert pooled.shape == idx.shape == (1, 1, 2, 2) and idx.dtype == np.uint8
    assert pooled[0, 0].tolist() == [[2.0, 0.0], [0.0, 1.0]]
    assert idx[0, 0].tolist() == [[1, 0], [0, 3]]  # all-zero windows tie at position 0


def test_maxpool_matches_loop_and_unpool_inverts(rng):
    z = rng.standard_normal((2, 3, 7, 6))
    pooled, idx = ref.maxpool2x2(z)
    for n, c, i, j in np.ndindex(*pooled.shape):
        win = z[n, c, 2 * i:2 * i + 2, 2 * j:2 * j + 2].ravel()
        assert pooled[n, c, i, j] == win.max() and idx[n, c, i, j] == int(np.argmax(win))
    up = ref.unpool_argmax(pooled, idx, (7, 6))
    assert up.shape == z.shape
    # each window holds exactly its max, at the argmax; the dropped row is zero
    again, idx2 = ref.maxpool2x2(np.where(up != 0, up, -np.inf))
    assert np.array_equal(again, pooled) and np.array_equal(idx2, idx)
    assert not up[:, :, 6, :].any()
    assert np.count_nonzero(up) == pooled.size


def test_bilinear_upsampling_half_pixel_centres():
    d = np.arange(4.0).reshape(1, 1, 2, 2)
    up = ref.unpool_bilinear(d, (4, 4))[0, 0]
    # tf.image.resize([[0, 1], [2, 3]], (4, 4), "bilinear") with half-pixel centres
    expected = np.array([[0, 0.25, 0.75, 1], [0.5, 0.75, 1.25, 1.5], [1.5, 1.75, 2.25, 2.5], [2, 2.25, 2.75, 3]])
    np.testing.assert_allclose(up, expected, atol=1e-15)
    const = np.full((2, 3, 3, 5), 1.5)
    np.testing.assert_allclose(ref.unpool_bilinear(const, (7, 10)), 1.5, atol=1e-14)


def test_activations_and_target_error():
    h = np.array([-2.0, -0.0, 0.0, 0.5, 800.0, -800.0])
    assert ref.activate("signum", h).tolist() == [-1, 0, 0, 1, 1, -1]
    s = ref.activate("sigmoid", h)
    assert np.all(np.isfinite(s)) and s[4] == 1.0 and s[5] == 0.0
    assert ref.activate("relu", h).tolist() == [0, 0, 0, 0.5, 800, 0]
    d = np.array([1.0, -1.0, 2.0, 0.25, 1.0, 1.0])
    for name in ref.ACTIVATIONS:
        e = ref.target_error(name, h, d, 0.9)
        np.testing.assert_allclose(e, ref.activate(name, h) - ref.activate(name, h - 0.9 * d))
    with pytest.raises(ValueError, match="signum"):
        ref.activation_derivative("signum", h)
    with pytest.raises(ValueError, match="unknown activation"):
        ref.activate("swish", h)
    x = np.linspace(-3, 3, 13)
    for name in ("tanh", "sigmoid", "linear"):
        fd = (ref.activate(name, x + 1e-6) - ref.activate(name, x - 1e-6)) / 2e-6
        np.testing.assert_allclose(ref.activation_derivative(name, x), fd, rtol=1e-7, atol=1e-9)


def test_dropout_mask_is_a_pure_function_of_seed_step_layer_element():
    # pinned values: the CUDA kernels hash the same way, so these must never change silently
    assert ref.dropout_key(0, 0, 0) == 2488251732
    assert ref.dropout_keep(ref.dropout_key(1, 2, 3), (10,), 0.5).astype(int).tolist() == [0, 1, 1, 0, 1, 1, 1,
                                                                                             0, 0, 1]
    a = ref.dropout_mask(7, 3, 1, (4, 5, 6, 7), 0.3)
    assert np.array_equal(a, ref.dropout_mask(7, 3, 1, (4, 5, 6, 7), 0.3))
    assert not np.array_equal(a, ref.dropout_mask(7, 4, 1, (4, 5, 6, 7), 0.3))
    assert not np.array_equal(a, ref.dropout_mask(7, 3, 2, (4, 5, 6, 7), 0.3))
    assert not np.array_equal(a, ref.dropout_mask(8, 3, 1, (4, 5, 6, 7), 0.3))
    assert set(np.unique(a)) == {np.float32(0), ref.dropout_scale(0.3, np.float32)}
    # element i uses counter i of the flat C-order index: a prefix of a larger tensor agrees
    flat = ref.dropout_mask(7, 3, 1, (4 * 5 * 6 * 7 + 13,), 0.3)
    assert np.array_equal(a.ravel(), flat[: a.size])
    keep = ref.dropout_keep(ref.dropout_key(0, 1, 2), (200_000,), 0.3)
    assert abs(keep.mean() - 0.7) < 0.005  # 200k Bernoulli draws: std 0.001
    assert ref.dropout_keep(123, (5, 5), 0.0).all()
    assert ref.dropout_threshold(0.5) == 1 << 23
    with pytest.raises(ValueError, match="dropout"):
        ref.dropout_threshold(1.0)


def test_optimizers_by_hand():
    p = np.array([1.0, -2.0])
    g = np.array([0.5, 0.25])
    p1, v1 = ref.sgd_momentum_update(p, g, np.zeros(2), lr=0.1, momentum=0.9)
    p2, v2 = ref.sgd_momentum_update(p1, g, v1, lr=0.1, momentum=0.9)
    np.testing.assert_allclose(v2, 1.9 * g)
    np.testing.assert_allclose(p2, p - 0.1 * g - 0.1 * 1.9 * g)
    pa, _, _ = ref.adam_update(p, g, np.zeros(2), np.zeros(2), 1, lr=0.1)
    np.testing.assert_allclose(pa, p - 0.1 * g / (np.abs(g) + 1e-8))  # first Adam step moves by lr·sign
    pr, s = ref.rmsprop_update(p, g, np.zeros(2), lr=0.1, decay=0.9)
    np.testing.assert_allclose(s, 0.1 * g * g)
    np.testing.assert_allclose(pr, p - 0.1 * g / (np.sqrt(0.1) * np.abs(g) + 1e-8))
    # decoupled weight decay shrinks the parameter from before the step, whatever the step was
    np.testing.assert_allclose(ref.decoupled_weight_decay(p1, p, lr=0.1, weight_decay=0.5), p1 - 0.05 * p)


def test_weight_decay_in_the_optimizer_by_hand():
    """Integer-valued parameters, steps and rates that are powers of 2: every product is exact."""
    p = {"w": np.array([4.0, -8.0, 2.0])}
    g = {"w": np.array([1.0, 2.0, -4.0])}
    sgd = Optimizer("sgd", lr=0.5, momentum=0.0, weight_decay=0.25)
    np.testing.assert_array_equal(sgd.step(p, g)["w"], p["w"] - 0.5 * g["w"] - 0.125 * p["w"])
    adam = Optimizer("adam", lr=0.5, weight_decay=0.25)  # a first Adam step moves by lr·sign(g) (to ε)
    np.testing.assert_allclose(adam.step(p, g)["w"], p["w"] - 0.5 * np.sign(g["w"]) - 0.125 * p["w"], rtol=1e-7)
    still = Optimizer("rmsprop", lr=0.5, weight_decay=0.25)  # a zero update: decay alone
    np.testing.assert_array_equal(still.step(p, {"w": np.zeros(3)})["w"], 0.875 * p["w"])
    assert Optimizer("sgd", lr=0.5).hyper["weight_decay"] == 0.0  # off by default


@pytest.mark.parametrize("kind", ["sgd", "adam", "rmsprop"])
def test_lr_factors_step_each_tensor_as_its_own_learning_rate(kind):
    """A tensor with factor f steps exactly as under an optimizer of learning rate lr·f (powers of 2:
    the products are exact), weight decay included; f = 0 freezes it; tensors not named keep lr."""
    rng = np.random.default_rng(5)
    p = {k: rng.integers(-8, 9, 6).astype(np.float64) for k in "abc"}
    factored = Optimizer(kind, lr=0.5, weight_decay=0.25, lr_factors={"a": 0.25, "b": 0.0})
    alone = {"a": Optimizer(kind, lr=0.125, weight_decay=0.25), "c": Optimizer(kind, lr=0.5, weight_decay=0.25)}
    got = dict(p)
    want = {k: p[k] for k in alone}
    for step in range(3):
        g = {k: rng.integers(-8, 9, 6).astype(np.float64) for k in "abc"}
        got = factored.step(got, g, lr_scale=0.5 if step == 2 else 1.0)
        for k, opt in alone.items():
            want[k] = opt.step({k: want[k]}, {k: g[k]}, lr_scale=0.5 if step == 2 else 1.0)[k]
    for k in alone:
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)
    np.testing.assert_array_equal(got["b"], p["b"])
    with pytest.raises(ValueError, match="factors must be finite numbers >= 0"):
        Optimizer(kind, lr_factors={"a": -1.0})


def test_optimizer_pascanu():
    big = np.array([3.0, 4.0])
    np.testing.assert_allclose(ref.pascanu_rescale(big, 1.0), [0.6, 0.8])
    assert ref.pascanu_rescale(big, 10.0) is big and ref.pascanu_rescale(big, 0.0) is big


def test_glorot_bounds(rng):
    w = ref.glorot(rng, (64, 32, 3, 3), "uniform", np.float32)
    limit = math.sqrt(6 / (32 * 9 + 64 * 9))
    assert w.dtype == np.float32 and np.abs(w).max() <= limit and np.abs(w).max() > 0.95 * limit
    wn = ref.glorot(rng, (500, 400), "normal", np.float64)
    assert wn.std() == pytest.approx(math.sqrt(2 / 900), rel=0.02)
    with pytest.raises(ValueError, match="init"):
        ref.glorot(rng, (2, 2), "he")

"""Model API, BP against finite differences, the BP limit of EKDAA, signum, dropout, input checks."""

import numpy as np
import pytest

import ekdaa_cuda as ek
from ekdaa_cuda import reference as ref

SMALL = (3, 4, 5, 6)  # fmnist preset shape with small widths


def batch(rng, n, shape=(1, 28, 28), dtype=np.float64):
    return rng.uniform(-0.5, 0.5, (n, *shape)).astype(dtype), rng.integers(0, 10, n)


def learnable_batch(rng, n, dtype=np.float32):
    """Ten fixed random templates plus noise: a task small models learn in a few steps."""
    templates = np.random.default_rng(1234).uniform(-0.5, 0.5, (10, 1, 28, 28))
    labels = rng.integers(0, 10, n)
    return (templates[labels] + 0.1 * rng.standard_normal((n, 1, 28, 28))).astype(dtype), labels


def summed_ce(model, x, labels):
    return ref.cross_entropy(model._forward(model.backend.input(x), model.step_count)[0], labels)


NETS = {
    "fmnist-small-bias": dict(preset_or_layers="fmnist", widths=SMALL, bias=True),
    "k5-k1-odd-pool-sigmoid": dict(
        preset_or_layers=[{"type": "conv", "channels": 3, "kernel": 5}, "maxpool",
                          {"type": "conv", "channels": 2, "kernel": 1, "activation": "linear"}, "maxpool",
                          "flatten", "fc7", {"type": "fc", "units": 5, "activation": "relu"}, "out4"],
        input_shape=(2, 9, 7), activation="sigmoid", bias=True),
}


@pytest.mark.parametrize("net", NETS)
def test_bp_gradients_equal_finite_differences(rng, net):
    """Central differences (step 1e-6, float64: truncation + rounding error ~1e-9 relative) for every layer type."""
    spec = dict(NETS[net])
    model = ek.build_model(spec.pop("preset_or_layers"), rule="bp", dtype="float64", seed=3, **spec)
    x, labels = batch(rng, 3, model.input_shape)
    labels = labels % model.classes
    grads = model.gradients(x, labels)
    assert not any(k.endswith("error_weight") for k in grads)
    for key, g in grads.items():
        p = model.params[key]
        for _ in range(3):
            i = tuple(int(rng.integers(0, s)) for s in p.shape)
            old = p[i]
            p[i] = old + 1e-6
            up = summed_ce(model, x, labels)
            p[i] = old - 1e-6
            down = summed_ce(model, x, labels)
            p[i] = old
            fd = (up - down) / 2e-6
            assert g[i] == pytest.approx(fd, rel=1e-6, abs=1e-8), f"{key}{i}"


def limit_errors(beta, activation, bias, seed=1):
    """Relative error of ΔW_l/β^(k+1) against backprop's gradient for every layer, top down."""
    model = ek.build_model("fmnist", widths=SMALL, dtype="float64", error_init="forward", beta=beta,
                           activation=activation, bias=bias, seed=seed)
    r = np.random.default_rng(seed)
    x, labels = batch(r, 4)
    upd, grad = model.updates(x, labels), model.gradients(x, labels)
    out = {}
    for k, b in enumerate(reversed(model.blocks)):
        key = f"{b.name}.weight"
        out[b.name] = np.linalg.norm(upd[key] / beta**k - grad[key]) / np.linalg.norm(grad[key])
    return out


def test_bp_limit_of_ekdaa_tanh():
    """SPEC.md check: E = W (Wᵀ), β = 1e-2, float64: ΔW_l/β^(k+1) equals backprop's gradient to first order.

    The output update is exact; hidden layers agree to < 1e-2 relative at β = 1e-2 (measured ≈ 3-5e-3),
    and halving β halves the discrepancy, i.e. it is the O(β) term of the expansion, not a bug.
    """
    e1, e2 = limit_errors(1e-2, "tanh", False), limit_errors(5e-3, "tanh", False)
    assert e1["out"] == 0.0
    for name in ("fc1", "conv3", "conv2", "conv1"):
        assert e1[name] < 1e-2, (name, e1[name])
        assert 0.4 < e2[name] / e1[name] < 0.6, (name, e1[name], e2[name])


def test_bp_limit_of_ekdaa_relu_with_bias():
    """ReLU is piecewise linear: when no unit crosses the kink, EKDAA's e/β^(k+1) equals δ exactly
    (up to float64 cancellation, which grows as β^-(k+1) toward conv1: measured 1e-14 at fc1 to ~1e-4 at
    conv1 for β = 2e-3 over six seeds; at β = 1e-2 a unit near its kink can flip and break exactness)."""
    errs = limit_errors(2e-3, "relu", True)
    assert errs["out"] == 0.0
    for name in ("fc1", "conv3", "conv2", "conv1"):
        assert errs[name] < 1e-3, (name, errs[name])


def test_error_weight_updates_and_state_dict_layout(rng):
    model = ek.build_model("fmnist", gamma=0.25, bias=True)
    sd = model.state_dict()
    expected = {"conv1.weight": (32, 1, 3, 3), "conv2.weight": (64, 32, 3, 3), "conv3.weight": (128, 64, 3, 3),
                "fc1.weight": (128, 6272), "out.weight": (10, 128), "fc1.error_weight": (6272, 128),
                "out.error_weight": (128, 10), "conv2.error_weight": (64, 32, 3, 3), "out.bias": (10,)}
    for key, shape in expected.items():
        assert sd[key].shape == shape and sd[key].dtype == np.float32, key
    assert len(sd) == 15
    x, labels = batch(rng, 2, dtype=np.float32)
    upd = model.updates(x, labels)
    assert set(upd) == set(sd)
    for b in model.blocks:
        dw = upd[f"{b.name}.weight"]
        want = 0.25 * (dw if b.kind == "conv" else dw.T)
        np.testing.assert_allclose(upd[f"{b.name}.error_weight"], want, rtol=1e-6)
    # the output update is the exact gradient whatever E is
    np.testing.assert_allclose(upd["out.weight"], model.gradients(x, labels)["out.weight"], rtol=1e-5, atol=1e-7)


def test_state_dict_round_trip_and_mismatch():
    a = ek.build_model("fmnist", widths=SMALL, seed=1)
    b = ek.build_model("fmnist", widths=SMALL, seed=2)
    b.load_state_dict(a.state_dict())
    x = np.zeros((1, 1, 28, 28), np.float32)
    assert np.array_equal(a.forward(x), b.forward(x))
    bad = a.state_dict()
    bad["conv1.weight"] = np.zeros((2, 2))
    with pytest.raises(ValueError, match="conv1.weight"):
        b.load_state_dict(bad)
    with pytest.raises(ValueError, match="missing"):
        b.load_state_dict({"conv1.weight": a.state_dict()["conv1.weight"]})


def test_forward_is_a_plain_cnn(rng):
    """Inference equals conv → tanh → pool ... → softmax composed from the reference ops."""
    model = ek.build_model("fmnist", widths=SMALL, dtype="float64", seed=4)
    x, _ = batch(rng, 3)
    p = model.params
    a = x
    for name, pool in (("conv1", True), ("conv2", True), ("conv3", False)):
        a = np.tanh(ref.conv2d(a, p[f"{name}.weight"]))
        if pool:
            a = ref.maxpool2x2(a)[0]
    a = np.tanh(a.reshape(3, -1) @ p["fc1.weight"].T)
    probs = ref.softmax(a @ p["out.weight"].T)
    np.testing.assert_allclose(model.forward(x), probs, rtol=1e-12)


def test_signum_trains_without_any_derivative(monkeypatch):
    """EKDAA with signum everywhere learns real Fashion-MNIST (1 epoch of 3000 images: measured 40% test
    accuracy, chance is 10%) while any call of a derivative would fail the test."""
    from ekdaa_cuda.data import DatasetNotFoundError, load_dataset

    def forbidden(name, h):
        raise AssertionError("EKDAA evaluated a derivative")

    monkeypatch.setattr(ref, "activation_derivative", forbidden)
    try:
        data = (*load_dataset("fmnist", "train", limit=3000), *load_dataset("fmnist", "test", limit=1000))
    except DatasetNotFoundError as exc:
        pytest.skip(str(exc))
    result = ek.train("fmnist", epochs=1, activation="signum", backend="numpy", progress=False, data=data)
    assert result.test_accuracy > 0.25
    with pytest.raises(ValueError, match="signum"):
        ek.build_model("fmnist", rule="bp", activation="signum")


def test_dropout_error_is_zero_at_dropped_units_and_reproducible(rng):
    model = ek.build_model("fmnist", widths=SMALL, dropout_conv=0.3, dropout_fc=0.5, seed=9)
    x, labels = batch(rng, 3, dtype=np.float32)
    errs = model.errors(x, labels)
    for b in model.blocks[:-1]:
        keep = ref.dropout_keep(ref.dropout_key(model.seed, model.step_count, b.index), (3, *b.h_shape), b.dropout)
        assert not errs[b.name][~keep].any(), b.name
        assert np.count_nonzero(errs[b.name][keep]) > 0, b.name
    twin = ek.build_model("fmnist", widths=SMALL, dropout_conv=0.3, dropout_fc=0.5, seed=9)
    u1, u2 = model.updates(x, labels), twin.updates(x, labels)
    assert all(np.array_equal(u1[k], u2[k]) for k in u1)
    model.step(x, labels)  # the next step draws new masks
    assert not np.array_equal(model.errors(x, labels)["fc1"] != 0, errs["fc1"] != 0)


def test_argmax_unpool_leaves_errors_only_at_argmax(rng):
    model = ek.build_model("fmnist", widths=SMALL, seed=2)
    x, labels = batch(rng, 2, dtype=np.float32)
    errs = model.errors(x, labels)
    e1 = errs["conv1"]  # [2, 3, 28, 28]: at most one nonzero per 2x2 window
    windows = (e1 != 0).reshape(2, 3, 14, 2, 14, 2).sum(axis=(3, 5))
    assert windows.max() == 1 and windows.sum() > 0


@pytest.mark.parametrize("bad, match", [
    (lambda x, y: (x.astype(np.uint8), y), "floating point"),
    (lambda x, y: (x[:, :, :27], y), "shape"),
    (lambda x, y: (x[0], y), "shape"),
    (lambda x, y: (np.where(x > 0.4, np.nan, x), y), "NaN"),
    (lambda x, y: (x, y + 10), r"labels must lie in \[0, 10\)"),
    (lambda x, y: (x, y[:-1]), "labels must have shape"),
    (lambda x, y: (x, y.astype(np.float32)), "labels must be integers"),
    (lambda x, y: (x.tolist(), y), "NumPy array"),
])
def test_bad_input_raises_and_leaves_model_unchanged(rng, bad, match):
    model = ek.build_model("fmnist", widths=SMALL)
    x, labels = batch(rng, 4, dtype=np.float32)
    before = model.state_dict()
    with pytest.raises(ValueError, match=match):
        model.step(*bad(x, labels))
    after = model.state_dict()
    assert model.step_count == 0 and all(np.array_equal(before[k], after[k]) for k in before)


def test_non_finite_step_leaves_model_unchanged(rng):
    model = ek.build_model("fmnist", widths=SMALL, lr=1e38, rule="bp")
    x, labels = batch(rng, 4, dtype=np.float32)
    before = model.state_dict()
    with pytest.raises(FloatingPointError, match="model unchanged"):
        for _ in range(3):
            before = model.state_dict()
            model.step(x, labels)
    after = model.state_dict()
    assert all(np.array_equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("kwargs, match", [
    (dict(rule="hebb"), "unknown rule"),
    (dict(activation="swish"), "unknown activation"),
    (dict(optimizer="lamb"), "optimizer"),
    (dict(bogus=1), "unknown option"),
    (dict(dropout=1.0), "dropout"),
    (dict(unpool="nearest"), "unpool"),
    (dict(backend="tpu"), "backend"),
    (dict(widths=(1, 2)), "widths"),
])
def test_bad_options_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ek.build_model("fmnist", **kwargs)


@pytest.mark.parametrize("layers, match", [
    (["conv4", "flatten", "out10"], None),
    (["maxpool", "conv4", "flatten", "out10"], "maxpool must directly follow"),
    (["conv4", "fc8", "out10"], "flatten"),
    (["conv4", "flatten", "fc8"], "output layer"),
    (["conv4", "flatten", "out10", "fc3"], "must be last"),
    (["conv4", "dense8", "out10"], "cannot parse"),
    ([{"type": "conv", "channels": 4, "kernel": 2}, "flatten", "out10"], "odd"),
    ([{"type": "conv", "channels": 4, "stride": 2}, "flatten", "out10"], "unknown option"),
])
def test_layer_spec_validation(layers, match):
    if match is None:
        ek.build_model(layers, input_shape=(1, 5, 5))
    else:
        with pytest.raises(ValueError, match=match):
            ek.build_model(layers, input_shape=(1, 5, 5))


def test_release_variant_runs_and_reports_alignment(rng):
    model = ek.build_model("cifar", widths=(4, 4, 4, 4, 4, 4, 8), variant="release")
    assert model.opts["unpool"] == "bilinear" and model.opts["normalize"] == "release"
    np.testing.assert_array_equal(model.params["conv2.error_weight"], model.params["conv2.weight"])
    x, labels = batch(rng, 3, (3, 32, 32), np.float32)
    stats = model.step(x, labels)
    assert np.isfinite(stats["loss"])
    angles = ek.build_model("fmnist", widths=SMALL).alignment(*batch(rng, 8, dtype=np.float32))
    assert angles["out.update_angle"] == pytest.approx(0.0, abs=1e-2)
    assert all(0.0 <= v <= 180.0 for v in angles.values())


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "rmsprop"])
def test_optimizers_reduce_loss_with_pascanu(rng, optimizer):
    """The optimizers themselves (driven by exact gradients) lower the loss, Pascanu rescaling on."""
    model = ek.build_model("fmnist", widths=SMALL, rule="bp", optimizer=optimizer, lr=1e-3, rho=5.0, seed=1)
    x, labels = learnable_batch(rng, 32)
    before = model.evaluate(x, labels)["loss"]
    for _ in range(15):
        model.step(x, labels)
    assert model.evaluate(x, labels)["loss"] < 0.95 * before


def test_normalize_rms_scales_d_to_the_rms_of_h(rng):
    """normalize="rms": the top hidden layer's target uses d · rms(h)/rms(d) (batch-wide RMS)."""
    model = ek.build_model("fmnist", widths=SMALL, activation="signum", normalize="rms", beta=0.5, dtype="float64",
                           seed=3)
    x, labels = batch(rng, 6)
    probs, caches = model._forward(model.backend.input(x), model.step_count)
    e_y = probs - ref.one_hot(labels, 10, probs.dtype)
    d = e_y @ model.params["out.error_weight"].T
    h = caches[-2]["h"]
    d = d * np.sqrt(np.mean(h * h) / np.mean(d * d))
    expected = np.sign(h) - np.sign(h - 0.5 * d)
    np.testing.assert_array_equal(model.errors(x, labels)["fc1"], expected)
    with pytest.raises(ValueError, match="normalize"):
        ek.build_model("fmnist", widths=SMALL, normalize="max")


@pytest.mark.parametrize("normalize", ["rms", "none"])
def test_normalize_rms_makes_signum_errors_independent_of_weight_scale(rng, normalize):
    """With signum the forward pass ignores the scale of the hidden layers' weights; with
    normalize="rms" the EKDAA errors (hence the updates) ignore it too, without it they do not."""
    opts = dict(widths=SMALL, activation="signum", normalize=normalize, dtype="float64", seed=5)
    a, b = ek.build_model("fmnist", **opts), ek.build_model("fmnist", **opts)
    state = b.state_dict()
    for name in ("conv1", "conv2", "conv3", "fc1"):
        state[f"{name}.weight"] = 4.0 * state[f"{name}.weight"]
    b.load_state_dict(state)
    # 32 images: without rms the two models' errors differ only if some fc1 target flips; with 8 images no
    # unit flipped for 1% of draws (2 of 200 seeds; EKDAA_TEST_SEED=734670495), with 32 for none of
    # 1,200 (at least 502 error entries differed).
    x, labels = batch(rng, 32)
    np.testing.assert_array_equal(a.forward(x), b.forward(x))
    ea, eb = a.errors(x, labels), b.errors(x, labels)
    same = all(np.array_equal(ea[k], eb[k]) for k in ea)
    assert same == (normalize == "rms")
    if normalize == "rms":
        assert any(np.count_nonzero(ea[k]) for k in ("conv1", "conv2", "conv3"))

"""The comparison rules (FA, KP, DFA, SDFA, RDFA, DRTP, LRA-E) against hand computations.

Every expected update here is recomputed from the public NCHW reference ops in float64,
independently of the model's sweep (rules.py / Model._backward)."""

import math

import numpy as np
import pytest
from helpers import template_data

import ekdaa_cuda as ek
from ekdaa_cuda import reference as ref
from ekdaa_cuda import rules
from ekdaa_cuda.backend_numpy import NumpyBackend

# conv (pool) -> conv -> flatten -> fc -> out: every piece a rule has to handle
TINY = [{"type": "conv", "channels": 3, "kernel": 3}, "maxpool", {"type": "conv", "channels": 2, "kernel": 3},
        "flatten", "fc5", "out4"]
TINY_SHAPE = (2, 6, 6)
SMALL = (3, 4, 5, 6)  # fmnist preset with small widths


def tiny(rule, dropout=0.0, **kw):
    return ek.build_model(TINY, rule=rule, input_shape=TINY_SHAPE, dtype="float64", bias=True, seed=5,
                          backend="numpy", dropout=dropout, **kw)


def tiny_batch(n=3, seed=0):
    r = np.random.default_rng(seed)
    return r.uniform(-1, 1, (n, *TINY_SHAPE)), r.integers(0, 4, n)


def hand_forward(p, x, masks):
    """The TINY net's forward pass from reference ops (NCHW); masks: per-layer dropout multipliers or 1."""
    n = len(x)
    h1 = ref.conv2d(x, p["conv1.weight"], p["conv1.bias"])
    a1, idx1 = ref.maxpool2x2(np.tanh(h1) * masks[0])
    h2 = ref.conv2d(a1, p["conv2.weight"], p["conv2.bias"])
    a2 = np.tanh(h2) * masks[1]
    f = a2.reshape(n, -1)
    h3 = f @ p["fc1.weight"].T + p["fc1.bias"]
    a3 = np.tanh(h3) * masks[2]
    hy = a3 @ p["out.weight"].T + p["out.bias"]
    probs = ref.softmax(hy)
    return dict(x=x, h1=h1, a1=a1, idx1=idx1, h2=h2, f=f, h3=h3, a3=a3, probs=probs)


def dtanh(h):
    return 1 - np.tanh(h) ** 2


def hand_updates(fw, deltas):
    """ΔW, Δb from the error units of conv1, conv2, fc1 and the output."""
    d1, d2, d3, ey = deltas
    return {
        "out.weight": ey.T @ fw["a3"], "out.bias": ey.sum(0),
        "fc1.weight": d3.T @ fw["f"], "fc1.bias": d3.sum(0),
        "conv2.weight": ref.conv2d_filter_grad(fw["a1"], d2, 3), "conv2.bias": d2.sum((0, 2, 3)),
        "conv1.weight": ref.conv2d_filter_grad(fw["x"], d1, 3), "conv1.bias": d1.sum((0, 2, 3)),
    }


def tiny_masks(model, n):
    return [ref.dropout_mask(model.seed, model.step_count, b.index, (n, *b.h_shape), b.dropout, np.float64)
            if b.dropout else np.ones(1) for b in model.blocks[:-1]]


def hand_layerwise(model, x, labels, kernels):
    """BP-shaped sweep with the given feedback kernels: ``kernels[name]`` multiplies like W_l ([out, in]
    for FC, conv-backward-data with it for conv)."""
    fw = hand_forward(model.state_dict(), x, masks := tiny_masks(model, len(x)))
    ey = fw["probs"] - ref.one_hot(labels, 4, np.float64)
    d3 = (ey @ kernels["out"]) * dtanh(fw["h3"]) * masks[2]
    d2 = (d3 @ kernels["fc1"]).reshape(fw["h2"].shape) * dtanh(fw["h2"]) * masks[1]
    d1 = ref.unpool_argmax(ref.conv2d_transpose(d2, kernels["conv2"]), fw["idx1"], (6, 6))
    d1 = d1 * dtanh(fw["h1"]) * masks[0]
    return hand_updates(fw, (d1, d2, d3, ey))


def hand_direct(model, x, labels, feedback, signal="error"):
    """DFA-shaped sweep: δ_l = (s B_l) ⊙ tanh'(h_l) ⊙ mask, s = e_y or −onehot."""
    fw = hand_forward(model.state_dict(), x, masks := tiny_masks(model, len(x)))
    onehot = ref.one_hot(labels, 4, np.float64)
    ey = fw["probs"] - onehot
    s = ey if signal == "error" else -onehot
    deltas = [(s @ feedback[name]).reshape(fw[h].shape) * dtanh(fw[h]) * masks[i]
              for i, (name, h) in enumerate((("conv1", "h1"), ("conv2", "h2"), ("fc1", "h3")))]
    return hand_updates(fw, (*deltas, ey))


def assert_updates(got, want, rtol=1e-10):
    for key, w in want.items():
        np.testing.assert_allclose(got[key], w, rtol=rtol, atol=1e-13, err_msg=key)


# ---------------------------------------------------------------- hand computations


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_fa_matches_hand_computation(dropout):
    model = tiny("fa", dropout)
    x, labels = tiny_batch()
    sd = model.state_dict()
    kernels = {"out": sd["out.error_weight"].T, "fc1": sd["fc1.error_weight"].T, "conv2": sd["conv2.error_weight"]}
    upd = model.updates(x, labels)
    assert_updates(upd, hand_layerwise(model, x, labels, kernels))
    assert not any(k.endswith(("error_weight", "feedback")) for k in upd)  # B is fixed


def test_fa_with_b_equal_wT_is_bp():
    model = tiny("fa", error_init="forward")
    x, labels = tiny_batch(4, seed=1)
    upd, grad = model.updates(x, labels), model.gradients(x, labels)
    assert set(upd) == set(grad)
    assert_updates(upd, grad, rtol=1e-12)
    # and on the fmnist preset shape with dropout, through the training step
    big = ek.build_model("fmnist", rule="fa", widths=SMALL, error_init="forward", dropout=0.2, dtype="float64",
                         backend="numpy")
    r = np.random.default_rng(2)
    x, labels = r.uniform(-0.5, 0.5, (3, 1, 28, 28)), r.integers(0, 10, 3)
    assert_updates(big.updates(x, labels), big.gradients(x, labels), rtol=1e-10)


@pytest.mark.parametrize("decay", [0.0, 0.05])
def test_kp_matches_hand_computation_and_b_update_is_dw_transposed(decay):
    model = tiny("kp", kp_decay=decay)
    x, labels = tiny_batch(seed=3)
    sd = model.state_dict()
    kernels = {"out": sd["out.error_weight"].T, "fc1": sd["fc1.error_weight"].T, "conv2": sd["conv2.error_weight"]}
    raw = hand_layerwise(model, x, labels, kernels)  # KP's W update is FA's, plus decay
    upd = model.updates(x, labels)
    want = {k: v + decay * sd[k] if k.endswith(".weight") else v for k, v in raw.items()}
    assert_updates(upd, want)
    for b in model.blocks:
        dw = raw[f"{b.name}.weight"]
        expected = (dw if b.kind == "conv" else dw.T) + decay * sd[f"{b.name}.error_weight"]
        np.testing.assert_allclose(upd[f"{b.name}.error_weight"], expected, rtol=1e-12, atol=1e-14)
        if decay == 0.0:  # ΔB = ΔWᵀ exactly
            np.testing.assert_array_equal(upd[f"{b.name}.error_weight"],
                                          upd[f"{b.name}.weight"] if b.kind == "conv" else upd[f"{b.name}.weight"].T)


def test_kp_decay_shrinks_w_minus_bT():
    """With plain SGD the difference W − Bᵀ shrinks by exactly (1 − λκ) per step."""
    lr, decay = 1e-2, 2.0
    model = tiny("kp", kp_decay=decay, lr=lr, momentum=0.0)
    x, labels = tiny_batch(seed=4)

    def gaps():
        sd = model.state_dict()
        return {b.name: sd[f"{b.name}.weight"] - (sd[f"{b.name}.error_weight"] if b.kind == "conv"
                                                  else sd[f"{b.name}.error_weight"].T) for b in model.blocks}

    before = gaps()
    for _ in range(3):
        model.step(x, labels)
    after = gaps()
    for name in before:
        np.testing.assert_allclose(after[name], before[name] * (1 - lr * decay) ** 3, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("dropout", [0.0, 0.25])
@pytest.mark.parametrize("rule", ["dfa", "sdfa", "drtp"])
def test_direct_rules_match_hand_computation(rule, dropout):
    model = tiny(rule, dropout)
    x, labels = tiny_batch(seed=6)
    sd = model.state_dict()
    feedback = {name: sd[f"{name}.feedback"] for name in ("conv1", "conv2", "fc1")}
    upd = model.updates(x, labels)
    assert_updates(upd, hand_direct(model, x, labels, feedback, "target" if rule == "drtp" else "error"))
    assert set(upd) <= set(sd) and not any(k.endswith(("error_weight", "feedback")) for k in upd)


def mix32(v: int) -> int:
    """lowbias32, written out on Python ints (independent of reference._mix32)."""
    v &= 0xFFFFFFFF
    v ^= v >> 16
    v = (v * 0x7FEB352D) & 0xFFFFFFFF
    v ^= v >> 15
    v = (v * 0x846CA68B) & 0xFFFFFFFF
    return v ^ (v >> 16)


def test_uniform_hash_primitive():
    be = NumpyBackend("float32")
    key, shape, limit = 0xDEADBEEF, (3, 7), 0.37
    u = be.uniform_hash(key, shape, limit)
    assert u.shape == shape and u.dtype == np.float32
    for i in (0, 5, 20):
        bits = mix32((mix32(i ^ key) + key) & 0xFFFFFFFF)
        want = np.float32(np.float32((2 * (bits >> 8) - (2**24 - 1)) * 2.0**-24) * np.float32(limit))
        assert u.ravel()[i] == want, i
    big = NumpyBackend("float64").uniform_hash(7, (200, 500), 1.0)
    assert np.abs(big).max() < 1.0 and abs(big.mean()) < 0.01 and abs(big.var() - 1 / 3) < 0.01
    assert not np.array_equal(big, NumpyBackend("float64").uniform_hash(8, (200, 500), 1.0))


def test_rdfa_matches_hand_computation_and_redraws_every_step():
    model = tiny("rdfa", lr=1e-3)
    x, labels = tiny_batch(seed=7)
    assert not any(k.endswith("feedback") for k in model.state_dict())
    be = model.backend

    def matrices(step):
        return {b.name: be.uniform_hash(rules.rdfa_key(model.seed, step, b.index), (4, math.prod(b.h_shape)),
                                        math.sqrt(6 / (4 + math.prod(b.h_shape)))) for b in model.blocks[:-1]}

    assert_updates(model.updates(x, labels), hand_direct(model, x, labels, matrices(0)))
    model.step(x, labels)
    assert_updates(model.updates(x, labels), hand_direct(model, x, labels, matrices(1)))
    assert not np.array_equal(matrices(0)["fc1"], matrices(1)["fc1"])


def test_lra_e_is_ekdaa_on_an_fc_net():
    """LRA-E (paper Algorithm 2) by hand: d = e E, y = φ(h − βd), e = φ(h) − y, ΔW = eᵀz, ΔE = γΔWᵀ."""
    beta, gamma = 0.5, 0.2
    model = ek.build_model(["flatten", "fc6", "fc5", "out4"], rule="lra-e", input_shape=(1, 3, 3), beta=beta,
                           gamma=gamma, dtype="float64", bias=True, backend="numpy", seed=2)
    r = np.random.default_rng(8)
    x, labels = r.uniform(-1, 1, (4, 1, 3, 3)), r.integers(0, 4, 4)
    p = model.state_dict()
    z0 = x.reshape(4, -1)
    h1 = z0 @ p["fc1.weight"].T + p["fc1.bias"]
    h2 = np.tanh(h1) @ p["fc2.weight"].T + p["fc2.bias"]
    probs = ref.softmax(np.tanh(h2) @ p["out.weight"].T + p["out.bias"])
    ey = probs - ref.one_hot(labels, 4, np.float64)
    e2 = np.tanh(h2) - np.tanh(h2 - beta * (ey @ p["out.error_weight"].T))
    e1 = np.tanh(h1) - np.tanh(h1 - beta * (e2 @ p["fc2.error_weight"].T))
    want = {"out.weight": ey.T @ np.tanh(h2), "fc2.weight": e2.T @ np.tanh(h1), "fc1.weight": e1.T @ z0,
            "fc1.bias": e1.sum(0)}
    for name in ("out", "fc2", "fc1"):
        want[f"{name}.error_weight"] = gamma * want[f"{name}.weight"].T
    upd = model.updates(x, labels)
    assert_updates(upd, want)
    twin = ek.build_model(["flatten", "fc6", "fc5", "out4"], rule="ekdaa", input_shape=(1, 3, 3), beta=beta,
                          gamma=gamma, dtype="float64", bias=True, backend="numpy", seed=2)
    assert all(np.array_equal(upd[k], v) for k, v in twin.updates(x, labels).items())


def test_dfa_with_one_hidden_layer_equals_fa():
    """With a single hidden layer DFA's B_1 plays the role of FA's B_y: set B_1 = E_yᵀ and they agree."""
    layers, shape = ["flatten", "fc6", "out4"], (1, 3, 3)
    fa = ek.build_model(layers, rule="fa", input_shape=shape, dtype="float64", seed=3, backend="numpy", bias=True)
    dfa = ek.build_model(layers, rule="dfa", input_shape=shape, dtype="float64", seed=3, backend="numpy", bias=True)
    state = dfa.state_dict()
    assert np.array_equal(state["fc1.weight"], fa.state_dict()["fc1.weight"])  # W does not depend on the rule
    state["fc1.feedback"] = fa.state_dict()["out.error_weight"].T
    dfa.load_state_dict(state)
    r = np.random.default_rng(9)
    x, labels = r.uniform(-1, 1, (5, *shape)), r.integers(0, 4, 5)
    assert_updates(dfa.updates(x, labels), fa.updates(x, labels), rtol=1e-12)


# ---------------------------------------------------------------- feedback shapes, state, errors


def test_feedback_shapes_and_sparsity():
    models = {r: ek.build_model("fmnist", rule=r, widths=SMALL, backend="numpy", seed=1) for r in rules.STORED_FEEDBACK}
    for rule, model in models.items():
        sd = model.state_dict()
        for b in model.blocks[:-1]:
            fb = sd[f"{b.name}.feedback"]
            assert fb.shape == (10, math.prod(b.h_shape)) and fb.dtype == np.float32, (rule, b.name)
        assert "out.feedback" not in sd
    assert sd["conv1.feedback"].shape == (10, 3 * 28 * 28)  # pre-pool, NCHW flat order
    for b in models["sdfa"].blocks[:-1]:
        fb = models["sdfa"].state_dict()[f"{b.name}.feedback"]
        nz = fb != 0
        assert (nz.sum(axis=0) == 1).all(), b.name  # every hidden unit hears exactly one output
        per_output = nz.sum(axis=1)
        assert per_output.max() - per_output.min() <= 1, b.name  # outputs spread evenly
    dense = models["dfa"].state_dict()["conv2.feedback"]
    assert np.count_nonzero(dense) == dense.size
    limit = math.sqrt(6 / (10 + dense.shape[1]))
    assert np.abs(dense).max() <= limit and np.abs(dense).max() > 0.9 * limit
    # DFA and DRTP draw the same B for the same seed; W and E are the same under every rule
    assert np.array_equal(models["dfa"].state_dict()["fc1.feedback"], models["drtp"].state_dict()["fc1.feedback"])
    bp = ek.build_model("fmnist", rule="bp", widths=SMALL, backend="numpy", seed=1).state_dict()
    assert all(np.array_equal(bp[k], v) for k, v in models["sdfa"].state_dict().items() if k in bp)


@pytest.mark.parametrize("rule", ["dfa", "sdfa", "drtp", "kp", "fa"])
def test_state_dict_round_trip(rule):
    a = ek.build_model("fmnist", rule=rule, widths=SMALL, backend="numpy", seed=1, dtype="float64")
    b = ek.build_model("fmnist", rule=rule, widths=SMALL, backend="numpy", seed=2, dtype="float64")
    r = np.random.default_rng(0)
    x, labels = r.uniform(-0.5, 0.5, (3, 1, 28, 28)), r.integers(0, 10, 3)
    a.step(x, labels)
    b.load_state_dict(a.state_dict())
    b.step_count = a.step_count
    ua, ub = a.updates(x, labels), b.updates(x, labels)
    assert set(ua) == set(ub) and set(ua) <= set(a.state_dict())
    assert all(np.array_equal(ua[k], ub[k]) for k in ua)


def test_rdfa_resume_is_exact(tmp_path):
    data = template_data()
    kw = dict(widths=(4, 6, 8, 16), backend="numpy", progress=False, rule="rdfa", batch_size=20, dropout=0.2,
              optimizer="adam", lr=1e-3)
    full = ek.train("fmnist", epochs=2, data=data, **kw)
    ek.train("fmnist", epochs=1, data=data, out_dir=tmp_path, **kw)
    resumed = ek.train("fmnist", epochs=2, data=data, out_dir=tmp_path, resume=True, **kw)
    sa, sb = full.model.state_dict(), resumed.model.state_dict()
    assert sa.keys() == sb.keys() and all(np.array_equal(sa[k], sb[k]) for k in sa)
    assert full.history[-1]["test_accuracy"] == resumed.history[-1]["test_accuracy"]


@pytest.mark.parametrize("kwargs, match", [
    (dict(preset_or_layers="fmnist", rule="lra-e"), "fully-connected"),
    (dict(preset_or_layers="fmnist", rule="sgd"), "unknown rule"),
    (dict(preset_or_layers="fmnist-fc", rule="kp", kp_decay=-1.0), "kp_decay"),
    *[(dict(preset_or_layers="fmnist", rule=r, activation="signum"), f"rule '{r}' needs a differentiable")
      for r in rules.NEEDS_DERIVATIVE],
    (dict(preset_or_layers="fmnist-fc", rule="dfa", activation="signum"), "signum"),
])
def test_bad_rule_combinations_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ek.build_model(backend="numpy", **kwargs)


def test_signum_is_fine_for_ekdaa_and_lra_e_and_errors_needs_feedback():
    ek.build_model("fmnist-fc", rule="lra-e", activation="signum", backend="numpy")
    model = ek.build_model("fmnist", widths=SMALL, backend="numpy")
    x, labels = np.zeros((2, 1, 28, 28), np.float32), np.array([1, 2])
    assert set(model.errors(x, labels, rule="rdfa")) == {"conv1", "conv2", "conv3", "fc1", "out"}
    with pytest.raises(ValueError, match="feedback"):
        model.errors(x, labels, rule="dfa")


def test_fc_presets():
    for name, shape in (("fmnist-fc", (1, 28, 28)), ("cifar-fc", (3, 32, 32)), ("svhn-fc", (3, 32, 32))):
        model = ek.build_model(name, rule="lra-e", backend="numpy")
        assert model.input_shape == shape
        assert [(b.kind, b.weight_shape) for b in model.blocks] == [
            ("fc", (128, math.prod(shape))), ("fc", (128, 128)), ("output", (10, 128))]


def test_hidden_features():
    model = tiny("bp")
    x, _ = tiny_batch(5)
    fw = hand_forward(model.state_dict(), x, [np.ones(1)] * 3)
    np.testing.assert_allclose(model.hidden_features(x), fw["a3"], rtol=1e-12)
    np.testing.assert_allclose(model.hidden_features(x, "conv1"), fw["a1"], rtol=1e-12)
    with pytest.raises(ValueError, match="unknown hidden layer"):
        model.hidden_features(x, "out")


# ---------------------------------------------------------------- learning



@pytest.mark.parametrize("rule, preset, extra", [
    *[(r, "fmnist-fc", {}) for r in ("fa", "kp", "dfa", "sdfa", "rdfa", "drtp", "lra-e")],
    ("kp", "fmnist-fc", {"kp_decay": 0.5}),
    ("fa", "fmnist", {"lr": 1e-2}),
])
def test_every_rule_lowers_the_loss(rule, preset, extra):
    """24 SGD steps on 64 noisy copies of 10 templates (measured: every rule at most 0.4x the initial
    loss on the FC net; FA on the small CNN 0.04x; KP and the direct rules learn this tiny conv task only
    slowly and erratically, so their CNN path is exercised by the hand computations and real-data runs)."""
    widths = (32, 32) if preset == "fmnist-fc" else (4, 4, 8, 32)
    model = ek.build_model(preset, rule=rule, widths=widths, backend="numpy", seed=1,
                           **{"optimizer": "sgd", "lr": 2e-3, **extra})
    x, labels, _, _ = template_data(64)
    before = model.evaluate(x, labels)["loss"]
    for _ in range(6 if preset == "fmnist-fc" else 8):
        for i in range(0, 64, 16):
            model.step(x[i:i + 16], labels[i:i + 16])
    after = model.evaluate(x, labels)["loss"]
    assert after < 0.6 * before, (before, after)

"""The CUDA backend's Python layer on the CPU, with the kernels replaced by their documented
semantics written from the NumPy reference (NCHW, as the kernels see it).

This checks everything between the model and the kernels before any GPU time is spent:
which op is called with which kernel, rule and activation, the NCHW flatten/unflatten, the
fused paths versus the unfused ones, dropout keys, ΔE from the update kernels, and the
optimizer adapter's state layout. The kernels themselves are checked in tests/gpu/.
"""

from types import SimpleNamespace

import numpy as np
import pytest
from helpers import template_data

import ekdaa_cuda as ek
from ekdaa_cuda import backend_cuda
from ekdaa_cuda import reference as ref
from ekdaa_cuda.optim import Optimizer


def _mask(shape, p, key):
    if p == 0.0:
        return 1.0
    return ref.dropout_keep(key, shape, p).astype(np.float32) * ref.dropout_scale(p, np.float32)


def _epilogue(d, h, activation, beta, dropout, dropout_key, rule):
    e = ref.target_error(activation, h, d, beta) if rule == "ekdaa" else d * ref.activation_derivative(activation, h)
    return (e * _mask(h.shape, dropout, dropout_key)).astype(np.float32)


def conv_block_fwd(x, w, b=None, *, activation, apply_activation, pool, dropout, dropout_key):
    h = ref.conv2d(x, w, b)
    a = (ref.activate(activation, h) if apply_activation else h) * _mask(h.shape, dropout, dropout_key)
    out, idx = ref.maxpool2x2(a) if pool else (a, None)
    return h, out.astype(np.float32), idx


def conv_error_proj(e, kernel, h, argmax=None, *, activation, beta, dropout, dropout_key, rule):
    d = ref.conv2d_transpose(e, kernel)
    if argmax is not None:
        d = ref.unpool_argmax(d, argmax, h.shape[2:])
    return _epilogue(d, h, activation, beta, dropout, dropout_key, rule)


def unpool_error(d, h, argmax, *, activation, beta, dropout, dropout_key, rule):
    return _epilogue(ref.unpool_argmax(d, argmax, h.shape[2:]), h, activation, beta, dropout, dropout_key, rule)


def _into(out, results):
    """Write results into the caller's out= arrays, as the kernels do."""
    if out is None:
        return results
    for buf, value in zip(out, results):
        if buf is not None:
            buf[...] = value
    return tuple(out)


def conv_filter_update(z, e, k, *, gamma, bias, out=None):
    dw = ref.conv2d_filter_grad(z, e, k)
    return _into(out, (dw, (e.sum(axis=(0, 2, 3)) if bias else None), np.float32(gamma) * dw))


def fc_fwd(z, w, b=None, *, activation, apply_activation=True, dropout=0.0, dropout_key=0):
    h = ref.linear(z, w, b)
    a = (ref.activate(activation, h) if apply_activation else h) * _mask(h.shape, dropout, dropout_key)
    return h, a.astype(np.float32)


def fc_update(z, e, *, gamma, bias, out=None):
    dw = e.T @ z
    return _into(out, (dw, (e.sum(axis=0) if bias else None), np.ascontiguousarray(np.float32(gamma) * dw.T)))


def softmax_error(h, labels):
    probs = ref.softmax(h)
    return probs, probs - ref.one_hot(labels, h.shape[1], h.dtype), None


FAKE_CONV = SimpleNamespace(conv_block_fwd=conv_block_fwd, conv_error_proj=conv_error_proj,
                            conv_proj=ref.conv2d_transpose, unpool_error=unpool_error,
                            unpool_bilinear=lambda d, hw: ref.unpool_bilinear(d, tuple(hw)),
                            conv_filter_update=conv_filter_update)
FAKE_FC = SimpleNamespace(fc_fwd=fc_fwd, fc_update=fc_update, softmax_error=softmax_error,
                          fc_proj=lambda e, w, weight_layout: e @ (w if weight_layout == "out_in" else w.T),
                          error_epilogue=lambda d, h, **kw: _epilogue(d, h, **kw))


class FakeMultiTensorOptimizer:
    """MultiTensorOptimizer's contract (in-place list update, ``{"t", "<slot>.<i>"}`` state) over NumPy."""

    def __init__(self, params, kind, lr, rho, **hyper):
        self.params, self.opt = params, Optimizer(kind, lr, rho, **hyper)

    @property
    def t(self):
        return self.opt.t

    def step(self, grads, lr_scale=None):
        scale = 1.0 if lr_scale is None else lr_scale[0]
        # like the kernels: no finiteness test here (the NumPy Optimizer.step would raise)
        new, state, t = self.opt.apply(self._named(self.params), self._named(grads), scale)
        self.opt.commit(state, t)
        for i, p in enumerate(self.params):
            p[...] = new[str(i)]

    @staticmethod
    def _named(arrays):
        return {str(i): a for i, a in enumerate(arrays)}

    def state_dict(self):
        flat = self.opt.state_dict()
        return {"t": flat.pop("optimizer.t"), **{k.split(".", 1)[1]: v for k, v in flat.items()}}

    def load_state_dict(self, state):
        flat = {"optimizer.t": state["t"]}
        flat.update({f"optimizer.{k}": v for k, v in state.items() if k != "t"})
        self.opt.load_state_dict(flat, self._named(self.params))


class NumpyAsCupy:
    """NumPy under CuPy's name for the few cupy-only functions the backend uses."""

    ndarray = np.ndarray

    @staticmethod
    def asnumpy(a):
        return np.array(a)

    def __getattr__(self, name):
        return getattr(np, name)


@pytest.fixture
def fake_cuda(monkeypatch):
    monkeypatch.setattr(backend_cuda, "conv_ops", FAKE_CONV)
    monkeypatch.setattr(backend_cuda, "fc_ops", FAKE_FC)
    monkeypatch.setattr(backend_cuda, "MultiTensorOptimizer", FakeMultiTensorOptimizer)
    return lambda: backend_cuda.CudaBackend(xp=NumpyAsCupy())


CONFIGS = {
    "fmnist-ekdaa": dict(preset="fmnist", widths=(3, 4, 5, 6)),
    "fmnist-bp-bias-dropout": dict(preset="fmnist", widths=(3, 4, 5, 6), rule="bp", bias=True, dropout=0.2),
    "fmnist-ekdaa-dropout-adam": dict(preset="fmnist", widths=(3, 4, 5, 6), dropout_conv=0.1, dropout_fc=0.3,
                                      optimizer="adam", rho=1.0),
    "cifar-ekdaa-relu-bias": dict(preset="cifar", widths=(3, 4, 3, 5, 4, 3, 7), activation="relu", bias=True),
    "cifar-release": dict(preset="cifar", widths=(3, 4, 3, 5, 4, 3, 7), variant="release", optimizer="rmsprop"),
    "cifar-bp-release": dict(preset="cifar", widths=(3, 4, 3, 5, 4, 3, 7), variant="release", rule="bp"),
    **{f"fmnist-{rule}": dict(preset="fmnist", widths=(3, 4, 5, 6), rule=rule, dropout=0.1)
       for rule in ("fa", "kp", "dfa", "sdfa", "rdfa", "drtp")},
    "fmnist-fc-lra-e": dict(preset="fmnist-fc", rule="lra-e"),
}


@pytest.mark.parametrize("name", CONFIGS)
def test_cuda_backend_layer_matches_numpy_backend(fake_cuda, rng, name):
    cfg = dict(CONFIGS[name])
    preset = cfg.pop("preset")
    ref_model = ek.build_model(preset, backend="numpy", seed=5, **cfg)
    gpu_model = ek.build_model(preset, backend=fake_cuda(), seed=5, **cfg)
    assert gpu_model.backend.name == "cuda"
    shape = ref_model.input_shape
    x = rng.uniform(-0.5, 0.5, (3, *shape)).astype(np.float32)
    labels = rng.integers(0, 10, 3)

    def close(a, b, what):
        # float32 with other summation orders (NCHW vs NHWC im2col): ~1e-6 relative; 1e-4 leaves room
        for k in a:
            np.testing.assert_allclose(b[k], a[k], rtol=1e-4, atol=1e-6 * max(1.0, float(np.abs(a[k]).max())),
                                       err_msg=f"{what}: {k}")

    close(ref_model.updates(x, labels), gpu_model.updates(x, labels), "updates")
    close(ref_model.errors(x, labels), gpu_model.errors(x, labels), "errors")
    for _ in range(3):
        s1, s2 = ref_model.step(x, labels), gpu_model.step(x, labels)
        assert s2["loss"] == pytest.approx(s1["loss"], rel=1e-4) and s2["accuracy"] == s1["accuracy"]
    close(ref_model.state_dict(), gpu_model.state_dict(), "parameters after 3 steps")
    buffers = {k: tuple(map(id, v)) for k, v in gpu_model.backend._update_buffers.items()}
    gpu_model.step(x, labels)  # the update buffers are reused, not reallocated
    assert buffers == {k: tuple(map(id, v)) for k, v in gpu_model.backend._update_buffers.items()}
    ref_model.step(x, labels)
    np.testing.assert_allclose(gpu_model.forward(x), ref_model.forward(x), rtol=1e-4, atol=1e-6)

    # checkpoints move between backends: the optimizer state is keyed the same way
    a1, a2 = ref_model.checkpoint_arrays(), gpu_model.checkpoint_arrays()
    assert sorted(a1) == sorted(a2)
    twin = ek.build_model(preset, backend=fake_cuda(), seed=5, **cfg)
    twin.load_checkpoint_arrays(a1)
    s1, s2 = ref_model.step(x, labels), twin.step(x, labels)
    assert s2["loss"] == pytest.approx(s1["loss"], rel=1e-4)
    close(ref_model.state_dict(), twin.state_dict(), "parameters after resuming from a NumPy checkpoint")


def test_cuda_backend_trains_through_the_training_loop(fake_cuda, tmp_path):
    kw = dict(widths=(3, 4, 5, 6), epochs=2, batch_size=20, data=template_data(60, 20, noise=0.1), progress=False,
              dropout=0.1)
    a = ek.train("fmnist", backend="numpy", **kw)
    b = ek.train("fmnist", backend=fake_cuda(), out_dir=tmp_path, **kw)
    assert b.history[-1]["test_accuracy"] == a.history[-1]["test_accuracy"]
    assert b.history[-1]["train_loss"] == pytest.approx(a.history[-1]["train_loss"], rel=1e-4)


def test_cuda_training_loop_detects_divergence_without_per_step_checks(fake_cuda, tmp_path, monkeypatch):
    """On the GPU the loop does not test each update (that would synchronise every step); the
    running loss catches the first non-finite update and no bad model reaches the checkpoint."""
    from ekdaa_cuda import training

    calls = {"n": 0}
    real = ek.Model.step_arrays

    def spy(self, *args, check_finite=True, **kwargs):
        calls["n"] += 1
        assert check_finite is False
        return real(self, *args, check_finite=check_finite, **kwargs)

    monkeypatch.setattr(ek.Model, "step_arrays", spy)
    # the loss bound would stop this run one update before the loss turns non-finite; switch it off so
    # that the NaN/inf detection itself is what is tested here (tests/test_cli.py tests the bound)
    monkeypatch.setattr(training, "LOSS_BOUND_FACTOR", float("inf"))
    rng = np.random.default_rng(0)
    x = rng.uniform(-0.5, 0.5, (60, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, 60)
    with pytest.raises(training.TrainingDiverged, match="not finite.*last good checkpoint"):
        ek.train("fmnist", backend=fake_cuda(), widths=(3, 4, 5, 6), epochs=30, batch_size=20, data=(x, y, x, y),
                 progress=False, out_dir=tmp_path, rule="bp", activation="linear", lr=10.0, checkpoint_every=1)
    assert calls["n"] >= 1
    arrays, _ = training.load_checkpoint(tmp_path / "checkpoint.npz")
    assert all(np.all(np.isfinite(v)) for k, v in arrays.items() if k.startswith("param."))

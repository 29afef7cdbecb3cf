"""The ops wrappers' calls into the raw launchers, checked on the CPU.

``ekdaa_cuda.ops`` passes device addresses and sizes to ``_C``'s raw launchers positionally, so
a swapped pair of ints (C_in/C_out, Hp/Hh, F_in/F_out, ...) or a wrong pointer would only show
on a GPU. Here the ops run unchanged over a NumPy stand-in for CuPy, and ``_C`` is replaced by
``HostLaunchers``: one function per raw launcher, with the binding's exact parameter names
(checked against the compiled module's signatures), which reads each address back as the array
the launcher's header comment says it is ([N, C_in, H, W], ...) and runs the kernels' own
per-thread bodies (``_C.host_conv_*``, ``host_error_epilogue``, ``host_optim_step``) or, for the
GEMMs and softmax, their documented semantics in NumPy. The results are compared with
``ekdaa_cuda.reference`` on shapes where every size differs from every other, and the whole
CUDA backend (ops, MultiTensorOptimizer and its device tables) is run against the NumPy backend.

Addresses are resolved only through the arrays whose ``.data.ptr`` the wrappers took, with a
size check, so a wrong size or pointer fails a test instead of reading stray memory.

Run: ``pytest tests/test_ops_host_launch.py`` (skipped when the extension was not built).
"""

from __future__ import annotations

import inspect
import math
import re
from types import SimpleNamespace

import numpy as np
import pytest

import ekdaa_cuda as ek
from ekdaa_cuda import reference
from ekdaa_cuda.ops import _check
from ekdaa_cuda.ops import conv as conv_ops
from ekdaa_cuda.ops import fc as fc_ops
from ekdaa_cuda.ops import optim as optim_ops
from ekdaa_cuda.optim import Optimizer

STREAM = 0x5EED  # the fake current stream: every launch must receive it
ACT = reference.ACTIVATION_CODES


@pytest.fixture(scope="module")
def C():
    return pytest.importorskip(
        "ekdaa_cuda._C", reason="extension ekdaa_cuda._C not built (no CUDA compiler at build time)"
    )


# ---------------------------------------------------------------- a NumPy stand-in for CuPy

_REGISTRY: dict[int, list] = {}  # address -> arrays whose .data.ptr was taken there (kept alive)


class FakeArray(np.ndarray):
    """A NumPy array with CuPy's ``.data.ptr`` (0 for an empty array), ``.device``, ``.get``, ``.set``."""

    @property
    def data(self):
        if self.size == 0:
            return SimpleNamespace(ptr=0)
        assert self.flags.c_contiguous, "a wrapper took the address of a non-contiguous array"
        ptr = self.ctypes.data
        _REGISTRY.setdefault(ptr, []).append(self)
        return SimpleNamespace(ptr=ptr)

    @property
    def device(self):
        return SimpleNamespace(id=0)

    def get(self):
        return np.array(self)

    def set(self, value):
        self[...] = value


def _fake(x):
    return x.view(FakeArray) if isinstance(x, np.ndarray) and not isinstance(x, FakeArray) else x


class FakeCupy:
    ndarray = FakeArray
    dtype = staticmethod(np.dtype)
    cuda = SimpleNamespace(Device=lambda: SimpleNamespace(id=0),
                           get_current_stream=lambda: SimpleNamespace(ptr=STREAM))

    @staticmethod
    def asnumpy(a):
        return np.array(a)

    def __getattr__(self, name):
        f = getattr(np, name)
        if not callable(f) or isinstance(f, type):
            return f
        return lambda *args, **kwargs: _fake(f(*args, **kwargs))


FAKE_CP = FakeCupy()


def fake(a, dtype=None):
    """A host array as a fake device array (a copy)."""
    return np.array(a, dtype=dtype).view(FakeArray)


def at(addr: int, shape, dtype=np.float32) -> np.ndarray:
    """The array of ``shape`` the launcher would access at ``addr``: a view of memory a wrapper handed over."""
    shape = tuple(int(s) for s in shape)
    n = math.prod(shape)
    if n == 0:
        return np.zeros(shape, dtype)  # the kernels never touch the pointer of an empty tensor
    assert addr in _REGISTRY, f"address {addr:#x} is not the start of any array the wrappers passed"
    need = n * np.dtype(dtype).itemsize
    base = max(_REGISTRY[addr], key=lambda a: a.nbytes)
    assert base.nbytes >= need, f"launcher would access {need} bytes at {addr:#x}, the array has {base.nbytes}"
    return base.view(np.ndarray).reshape(-1).view(np.uint8)[:need].view(dtype).reshape(shape)


# ---------------------------------------------------------------- the raw launchers, run on the host


class HostLaunchers:
    """``_C``'s raw launchers with the bindings' parameter names, run with the kernels' host-compiled bodies."""

    OPTIM_CHUNK = 8192

    def __init__(self, C):
        self.C = C
        self.OPTIM_CHUNK = int(C.OPTIM_CHUNK)
        self.streams = []

    def _mask(self, key, threshold, scale, count):
        keep = self.C.host_dropout_keep(key, count, threshold)
        return keep.astype(np.float32) * np.float32(scale)

    def conv_block_fwd(self, x, w, b, h, out, argmax, N, C_in, C_out, H, W, k, act, apply_activation, pool, key,
                       threshold, scale, stream):
        self.streams.append(stream)
        hh, oo, aa = self.C.host_conv_block_fwd(
            at(x, (N, C_in, H, W)), at(w, (C_out, C_in, k, k)), at(b, (C_out,)) if b else None, act,
            apply_activation, pool, key, threshold, scale)
        at(h, (N, C_out, H, W))[...] = hh
        out_shape = (N, C_out, H // 2, W // 2) if pool else (N, C_out, H, W)
        at(out, out_shape)[...] = oo
        if pool:
            at(argmax, out_shape, np.uint8)[...] = aa

    def conv_error_proj(self, e, kernel, h, argmax, e_below, N, C_in, C_out, Hp, Wp, Hh, Wh, k, pool, rule, act,
                        beta, key, threshold, scale, stream):
        self.streams.append(stream)
        codes = at(argmax, (N, C_in, Hp, Wp), np.uint8) if pool else None
        at(e_below, (N, C_in, Hh, Wh))[...] = self.C.host_conv_error_proj(
            at(e, (N, C_out, Hp, Wp)), at(kernel, (C_out, C_in, k, k)), at(h, (N, C_in, Hh, Wh)), codes, rule, act,
            beta, key, threshold, scale)

    def unpool_error(self, d, h, argmax, e, N, C, Hp, Wp, Hh, Wh, rule, act, beta, key, threshold, scale, stream):
        self.streams.append(stream)
        at(e, (N, C, Hh, Wh))[...] = self.C.host_unpool_error(
            at(d, (N, C, Hp, Wp)), at(h, (N, C, Hh, Wh)), at(argmax, (N, C, Hp, Wp), np.uint8), rule, act, beta, key,
            threshold, scale)

    def conv_proj(self, e, K, d, N, C_in, C_out, H, W, k, stream):
        self.streams.append(stream)
        at(d, (N, C_in, H, W))[...] = self.C.host_conv_proj(at(e, (N, C_out, H, W)), at(K, (C_out, C_in, k, k)))

    def unpool_bilinear(self, d, out, N, C, h, w, H, W, stream):
        self.streams.append(stream)
        at(out, (N, C, H, W))[...] = self.C.host_unpool_bilinear(at(d, (N, C, h, w)), H, W)

    def conv_filter_update(self, z, e, dw, db, de, N, C_in, C_out, H, W, k, gamma, stream):
        self.streams.append(stream)
        gw, gb, ge = self.C.host_conv_filter_update(at(z, (N, C_in, H, W)), at(e, (N, C_out, H, W)), k, gamma,
                                                    db != 0, True)  # the kernel's summation order
        at(dw, (C_out, C_in, k, k))[...] = gw
        at(de, (C_out, C_in, k, k))[...] = ge
        if db:
            at(db, (C_out,))[...] = gb

    def fc_fwd(self, z, w, b, h, out, N, F_in, F_out, act, apply_activation, key, threshold, scale, stream):
        self.streams.append(stream)
        hv = at(z, (N, F_in)).astype(np.float64) @ at(w, (F_out, F_in)).astype(np.float64).T
        if b:
            hv += at(b, (F_out,))
        hv = hv.astype(np.float32)
        at(h, (N, F_out))[...] = hv
        a = self.C.host_activate(act, hv.reshape(-1)) if apply_activation else hv.reshape(-1)
        at(out, (N, F_out))[...] = (a * self._mask(key, threshold, scale, N * F_out)).reshape(N, F_out)

    def _project(self, e, weight, N, F_in, F_out, layout):
        m = at(weight, (F_out, F_in) if layout == 0 else (F_in, F_out)).astype(np.float64)
        return (at(e, (N, F_out)).astype(np.float64) @ (m if layout == 0 else m.T)).astype(np.float32)

    def fc_proj(self, e, weight, d, N, F_in, F_out, layout, stream):
        self.streams.append(stream)
        at(d, (N, F_in))[...] = self._project(e, weight, N, F_in, F_out, layout)

    def fc_error_proj(self, e, weight, h, e_below, N, F_in, F_out, layout, rule, act, beta, key, threshold, scale,
                      stream):
        self.streams.append(stream)
        d = self._project(e, weight, N, F_in, F_out, layout).reshape(-1)
        hv = np.ascontiguousarray(at(h, (N, F_in))).reshape(-1)
        at(e_below, (N, F_in))[...] = self.C.host_error_epilogue(rule, act, hv, d, beta, key, threshold,
                                                                 scale).reshape(N, F_in)

    def error_epilogue(self, d, h, e, count, rule, act, beta, key, threshold, scale, stream):
        self.streams.append(stream)
        at(e, (count,))[...] = self.C.host_error_epilogue(rule, act, np.array(at(h, (count,))),
                                                          np.array(at(d, (count,))), beta, key, threshold, scale)

    def fc_update(self, z, e, dw, de, N, F_in, F_out, gamma, stream):
        self.streams.append(stream)
        g = (at(e, (N, F_out)).astype(np.float64).T @ at(z, (N, F_in)).astype(np.float64)).astype(np.float32)
        at(dw, (F_out, F_in))[...] = g
        at(de, (F_in, F_out))[...] = np.float32(gamma) * g.T

    def fc_bias_update(self, e, db, N, F_out, stream):
        self.streams.append(stream)
        at(db, (F_out,))[...] = at(e, (N, F_out)).astype(np.float64).sum(axis=0)

    def softmax_error(self, h, labels, probs, e, loss, N, C, stream):
        self.streams.append(stream)
        hv, lab = at(h, (N, C)).astype(np.float64), at(labels, (N,), np.int32)
        p = reference.softmax(hv) if C else hv
        valid = (lab >= 0) & (lab < C)
        onehot = np.zeros((N, C))
        onehot[valid, lab[valid]] = 1
        err = p - onehot
        err[~valid] = np.nan
        at(probs, (N, C))[...] = p
        at(e, (N, C))[...] = err
        at(loss, (N,))[...] = [-np.log(p[n, lab[n]]) if valid[n] else np.nan for n in range(N)]

    def optim_sq_norm(self, grad_ptrs, sizes, chunk_offsets, partial, T, n_chunks, stream):
        self.streams.append(stream)
        grads, counts = at(grad_ptrs, (T,), np.int64), at(sizes, (T,), np.int64)
        offsets = at(chunk_offsets, (T + 1,), np.int64)
        out = at(partial, (n_chunks,))
        assert offsets[-1] == n_chunks
        for t in range(T):
            g = at(int(grads[t]), (int(counts[t]),))
            for c in range(int(offsets[t]), int(offsets[t + 1])):
                begin = (c - offsets[t]) * self.OPTIM_CHUNK
                out[c] = np.sum(np.square(g[begin : begin + self.OPTIM_CHUNK], dtype=np.float64))

    def optim_update(self, param_ptrs, grad_ptrs, state1_ptrs, state2_ptrs, sizes, chunk_offsets, lrs, partial, T,
                     n_chunks, kind, momentum, beta1, beta2, bias_correction1, bias_correction2, decay, eps, rho,
                     stream):
        self.streams.append(stream)
        table = [at(a, (T,), np.int64) for a in (param_ptrs, grad_ptrs, state1_ptrs, state2_ptrs, sizes)]
        offsets, rates = at(chunk_offsets, (T + 1,), np.int64), at(lrs, (T,))
        assert offsets[-1] == n_chunks
        for t in range(T):
            n = int(table[4][t])
            assert offsets[t + 1] - offsets[t] == -(-n // self.OPTIM_CHUNK), "chunk table disagrees with the sizes"
            if n == 0:
                continue
            p, g, s1 = (at(int(table[i][t]), (n,)) for i in range(3))
            s2 = at(int(table[3][t]), (n,)) if table[3][t] else np.zeros(n, np.float32)
            if rho > 0:  # the kernel sums this tensor's partials from launch 1
                sq = float(at(partial, (n_chunks,))[offsets[t] : offsets[t + 1]].sum())
                np.testing.assert_allclose(sq, np.sum(np.square(g, dtype=np.float64)), rtol=1e-5)
            self.C.host_optim_step(kind, p, g, s1, s2, float(rates[t]), momentum, beta1, beta2, bias_correction1,
                                   bias_correction2, decay, eps, rho)


LAUNCHERS = ["conv_block_fwd", "conv_error_proj", "unpool_error", "conv_proj", "unpool_bilinear",
             "conv_filter_update", "fc_fwd", "fc_proj", "fc_error_proj", "error_epilogue", "fc_update",
             "fc_bias_update", "softmax_error", "optim_sq_norm", "optim_update"]


@pytest.fixture
def launchers(C, monkeypatch):
    """The ops modules wired to FakeCupy and HostLaunchers; yields the launchers (their .streams)."""
    host = HostLaunchers(C)
    monkeypatch.setattr(_check, "_cupy", lambda: FAKE_CP)
    for module in (conv_ops, fc_ops, optim_ops):
        monkeypatch.setattr(module, "extension", lambda: host)
    _REGISTRY.clear()
    yield host
    _REGISTRY.clear()
    assert set(host.streams) <= {STREAM}, f"a launch did not get the current stream: {set(host.streams)}"


def _binding_parameters(fn) -> list[str]:
    """Parameter names from a pybind11 function's signature line, e.g. ``f(x: int, N: int) -> None``."""
    first = fn.__doc__.splitlines()[0]
    return re.findall(r"[(,]\s*(\w+)\s*:", first[first.index("(") :])


@pytest.mark.parametrize("name", LAUNCHERS)
def test_stand_in_has_the_bindings_parameters(C, name):
    want = _binding_parameters(getattr(C, name))
    got = list(inspect.signature(getattr(HostLaunchers, name)).parameters)[1:]
    assert got == want, f"{name}: the binding takes {want}"


# ---------------------------------------------------------------- each op against the reference


def ints(rng, shape, bound=3):
    return rng.integers(-bound, bound + 1, size=shape).astype(np.float32)


def f64(a):
    return np.asarray(a, dtype=np.float64)


def within(got, want, tol, what="result"):
    """|got - want| <= tol elementwise (tol may be an array); NaN fails."""
    err = np.abs(f64(got) - want)
    bad = ~(err <= tol)
    assert not bad.any(), f"{what}: {bad.sum()} of {bad.size} differ, e.g. got {f64(got)[bad][:3]} want {want[bad][:3]}"


# every size distinct, odd H and W (N, C_in, C_out, H, W, k): a swapped pair changes a shape or a result
CONV_SHAPES = [(2, 3, 5, 7, 9, 3), (3, 4, 2, 9, 6, 5), (1, 1, 6, 5, 3, 1)]


@pytest.mark.parametrize("shape", CONV_SHAPES)
@pytest.mark.parametrize("pool", [True, False])
def test_conv_block_fwd(launchers, rng, shape, pool):
    n, c_in, c_out, height, width, k = shape
    x, w, b = ints(rng, (n, c_in, height, width)), ints(rng, (c_out, c_in, k, k)), ints(rng, (c_out,))
    key = reference.dropout_key(7, 3, 1)
    h, out, idx = conv_ops.conv_block_fwd(fake(x), fake(w), fake(b), activation="relu", pool=pool, dropout=0.25,
                                          dropout_key=key)
    want_h = reference.conv2d(f64(x), f64(w), f64(b))
    np.testing.assert_array_equal(h, want_h)
    z = np.maximum(want_h, 0).astype(np.float32) * reference.dropout_mask(7, 3, 1, h.shape, 0.25)
    if pool:
        want_out, want_idx = reference.maxpool2x2(z)
        np.testing.assert_array_equal(out, want_out)
        np.testing.assert_array_equal(idx, want_idx)
    else:
        assert idx is None
        np.testing.assert_array_equal(out, z)


@pytest.mark.parametrize("shape", CONV_SHAPES)
@pytest.mark.parametrize("pooled", [True, False])
@pytest.mark.parametrize("rule", ["ekdaa", "bp"])
def test_conv_error_proj(launchers, rng, shape, pooled, rule):
    n, c_in, c_out, hh, wh, k = shape
    hp, wp = (hh // 2, wh // 2) if pooled else (hh, wh)
    e, kernel = ints(rng, (n, c_out, hp, wp)), ints(rng, (c_out, c_in, k, k))
    h = rng.standard_normal((n, c_in, hh, wh)).astype(np.float32)
    idx = reference.maxpool2x2(rng.standard_normal((n, c_in, hh, wh)))[1] if pooled else None
    key = reference.dropout_key(1, 2, 3)
    got = conv_ops.conv_error_proj(fake(e), fake(kernel), fake(h), None if idx is None else fake(idx),
                                   activation="tanh", beta=0.5, dropout=0.2, dropout_key=key, rule=rule)
    d = reference.conv2d_transpose(f64(e), f64(kernel))
    if pooled:
        d = reference.unpool_argmax(d, idx, (hh, wh))
    h64 = f64(h)
    unit = reference.target_error("tanh", h64, d, 0.5) if rule == "ekdaa" else d * (1 - np.tanh(h64) ** 2)
    want = unit * reference.dropout_mask(1, 2, 3, h.shape, 0.2)
    within(got, want, 1e-5 * (1 + np.abs(d) + np.abs(want)))


def test_unpool_error(launchers, rng):
    n, c, hh, wh = 2, 3, 7, 10
    d = rng.standard_normal((n, c, hh // 2, wh // 2)).astype(np.float32)
    idx = reference.maxpool2x2(rng.standard_normal((n, c, hh, wh)))[1]
    h = rng.standard_normal((n, c, hh, wh)).astype(np.float32)
    key = reference.dropout_key(4, 5, 6)
    got = conv_ops.unpool_error(fake(d), fake(h), fake(idx), activation="linear", rule="bp", dropout=0.3,
                                dropout_key=key)
    want = reference.unpool_argmax(d, idx, (hh, wh)) * reference.dropout_mask(4, 5, 6, h.shape, 0.3)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("shape", CONV_SHAPES)
def test_conv_proj_and_filter_update(launchers, rng, shape):
    n, c_in, c_out, height, width, k = shape
    e, kernel = ints(rng, (n, c_out, height, width)), ints(rng, (c_out, c_in, k, k))
    z = ints(rng, (n, c_in, height, width))
    d = conv_ops.conv_proj(fake(e), fake(kernel))
    np.testing.assert_array_equal(d, reference.conv2d_transpose(f64(e), f64(kernel)))
    dw, db, de = conv_ops.conv_filter_update(fake(z), fake(e), k, gamma=0.25)
    want = reference.conv2d_filter_grad(f64(z), f64(e), k)
    np.testing.assert_array_equal(dw, want)
    np.testing.assert_array_equal(de, 0.25 * want)
    np.testing.assert_array_equal(db, f64(e).sum(axis=(0, 2, 3)))
    _, db, _ = conv_ops.conv_filter_update(fake(z), fake(e), k, bias=False)
    assert db is None


def test_unpool_bilinear(launchers, rng):
    d = rng.standard_normal((2, 3, 4, 7)).astype(np.float32)
    got = conv_ops.unpool_bilinear(fake(d), (9, 14))
    np.testing.assert_allclose(got, reference.unpool_bilinear(f64(d), (9, 14)), rtol=0, atol=2e-6)


@pytest.mark.parametrize("bias", [True, False])
def test_fc_fwd(launchers, rng, bias):
    n, f_in, f_out = 5, 7, 3
    z, w, b = ints(rng, (n, f_in)), ints(rng, (f_out, f_in)), ints(rng, (f_out,)) if bias else None
    key = reference.dropout_key(9, 9, 9)
    h, out = fc_ops.fc_fwd(fake(z), fake(w), None if b is None else fake(b), activation="relu", dropout=0.5,
                           dropout_key=key)
    want = reference.linear(f64(z), f64(w), None if b is None else f64(b))
    np.testing.assert_array_equal(h, want)
    np.testing.assert_array_equal(out, np.maximum(want, 0) * reference.dropout_mask(9, 9, 9, (n, f_out), 0.5))


@pytest.mark.parametrize("layout", ["out_in", "in_out"])
@pytest.mark.parametrize("rule", ["ekdaa", "bp"])
def test_fc_proj_and_error_proj(launchers, rng, layout, rule):
    n, f_in, f_out = 5, 7, 3
    e = ints(rng, (n, f_out))
    weight = ints(rng, (f_out, f_in) if layout == "out_in" else (f_in, f_out))
    d64 = f64(e) @ (f64(weight) if layout == "out_in" else f64(weight).T)
    np.testing.assert_array_equal(fc_ops.fc_proj(fake(e), fake(weight), weight_layout=layout), d64)
    h = rng.standard_normal((n, f_in)).astype(np.float32)
    key = reference.dropout_key(3, 1, 4)
    got = fc_ops.fc_error_proj(fake(e), fake(weight), fake(h), weight_layout=layout, activation="sigmoid", beta=0.5,
                               dropout=0.3, dropout_key=key, rule=rule)
    s = 1 / (1 + np.exp(-f64(h)))
    unit = reference.target_error("sigmoid", f64(h), d64, 0.5) if rule == "ekdaa" else d64 * s * (1 - s)
    want = unit * reference.dropout_mask(3, 1, 4, (n, f_in), 0.3)
    within(got, want, 1e-6 * (1 + np.abs(d64)) + 1e-5 * np.abs(want))
    flat = fc_ops.error_epilogue(fake(d64.astype(np.float32)), fake(h), activation="sigmoid", beta=0.5, dropout=0.3,
                                 dropout_key=key, rule=rule)
    within(flat, want, 1e-6 * (1 + np.abs(d64)) + 1e-5 * np.abs(want))


def test_fc_update_and_softmax_error(launchers, rng):
    n, f_in, f_out = 5, 7, 3
    z, e = ints(rng, (n, f_in)), ints(rng, (n, f_out))
    dw, db, de = fc_ops.fc_update(fake(z), fake(e), gamma=0.5)
    np.testing.assert_array_equal(dw, f64(e).T @ f64(z))
    np.testing.assert_array_equal(de, 0.5 * (f64(e).T @ f64(z)).T)
    np.testing.assert_array_equal(db, f64(e).sum(axis=0))
    h = rng.standard_normal((n, 4)).astype(np.float32)
    labels = np.array([0, 3, 4, -1, 2], np.int32)  # 4 and -1 are out of range for 4 classes
    probs, err, loss = fc_ops.softmax_error(fake(h), fake(labels))
    p = reference.softmax(f64(h))
    np.testing.assert_allclose(probs, p, rtol=1e-6)
    good = np.array([0, 1, 4])
    np.testing.assert_allclose(err[good], (p - np.eye(4)[labels.clip(0, 3)])[good], rtol=1e-6, atol=1e-7)
    assert np.isnan(err[[2, 3]]).all() and np.isnan(loss[[2, 3]]).all()


@pytest.mark.parametrize("kind", reference.OPTIMIZERS)
@pytest.mark.parametrize("rho", [0.0, 1.0])
def test_multi_tensor_optimizer(launchers, rng, kind, rho):
    chunk = launchers.OPTIM_CHUNK
    shapes = [(3, 5), (0,), (chunk + 3,), (1,), (2, 2, 3, 3)]
    params = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    device = [fake(p) for p in params]
    scales = [1.0, 1.0, 2.0, 0.5, 1.0]
    opt = optim_ops.MultiTensorOptimizer(device, kind=kind, lr=1e-2, rho=rho)
    oracles = [Optimizer(kind, lr=1e-2 * s, rho=rho) for s in scales]
    ref_params = [{"p": f64(p)} for p in params]
    for _ in range(3):
        grads = [rng.standard_normal(s).astype(np.float32) for s in shapes]
        opt.step([fake(g) for g in grads], lr_scale=scales)
        for i, (oracle, g) in enumerate(zip(oracles, grads)):
            ref_params[i], state, t = oracle.apply(ref_params[i], {"p": f64(g)})
            oracle.commit(state, t)
    for i, (p, r) in enumerate(zip(device, ref_params)):
        np.testing.assert_allclose(p, r["p"], rtol=1e-5, atol=1e-6, err_msg=f"params[{i}]")
    assert opt.t == 3


# ---------------------------------------------------------------- the whole CUDA backend over these launchers

MODELS = {
    "fmnist-ekdaa-dropout-bias": dict(preset="fmnist", widths=(3, 4, 5, 6), dropout_conv=0.1, dropout_fc=0.3,
                                      bias=True, optimizer="adam", rho=1.0),
    "fmnist-bp": dict(preset="fmnist", widths=(3, 4, 5, 6), rule="bp", activation="relu"),
    "cifar-release": dict(preset="cifar", widths=(3, 4, 3, 5, 4, 3, 7), variant="release", optimizer="rmsprop"),
}


@pytest.mark.parametrize("name", MODELS)
def test_cuda_backend_over_host_launchers_matches_numpy_backend(launchers, rng, name):
    from ekdaa_cuda.backend_cuda import CudaBackend

    cfg = dict(MODELS[name])
    preset = cfg.pop("preset")
    cpu = ek.build_model(preset, backend="numpy", seed=2, **cfg)
    gpu = ek.build_model(preset, backend=CudaBackend(xp=FAKE_CP), seed=2, **cfg)
    x = rng.uniform(-0.5, 0.5, (3, *cpu.input_shape)).astype(np.float32)
    labels = rng.integers(0, 10, 3)

    def close(a, b, what):
        for k in a:
            np.testing.assert_allclose(np.asarray(b[k]), a[k], rtol=1e-4,
                                       atol=1e-6 * max(1.0, float(np.abs(a[k]).max())), err_msg=f"{what}: {k}")

    close(cpu.updates(x, labels), gpu.updates(x, labels), "updates")
    for _ in range(2):
        s1, s2 = cpu.step(x, labels), gpu.step(x, labels)
        assert float(s2["loss"]) == pytest.approx(float(s1["loss"]), rel=1e-4)
    close(cpu.state_dict(), gpu.state_dict(), "parameters after 2 steps")
    assert launchers.streams, "the backend never reached the launchers"

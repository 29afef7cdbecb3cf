"""NumPy reference of every op in SPEC.md: the oracle for the CUDA kernels and the
engine of the CPU backend (``backend="numpy"``).

Public functions take and return the public layouts (NCHW activations, PyTorch weight
layouts: conv ``[C_out, C_in, k, k]``, FC ``[out, in]``) and work in the dtype of their
inputs (float32 or float64). Convolutions are im2col + one BLAS matrix product; the
``*_nhwc`` helpers are the same ops on channels-last arrays, which the CPU backend keeps
internally because every conv then becomes a single large GEMM without transposes.

Conventions fixed here and mirrored bit for bit by ``csrc/elementwise.cuh``:
- convolution: odd k, stride 1, "same" zero padding, cross-correlation (PyTorch conv2d);
- 2x2/stride-2 max-pool with floor (a trailing odd row/column is dropped); the argmax is
  a uint8 code ``2*dy + dx`` inside its window, ties resolved to the first in row-major
  order;
- dropout masks from a counter-based hash of (seed, step, layer, flat NCHW index).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

ACTIVATIONS = ("tanh", "relu", "signum", "linear", "sigmoid")
ACTIVATION_CODES = {name: code for code, name in enumerate(ACTIVATIONS)}
OPTIMIZERS = ("sgd", "adam", "rmsprop")


def check_activation(name: str) -> str:
    if name not in ACTIVATION_CODES:
        raise ValueError(f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}")
    return name


# ---------------------------------------------------------------- activations


def activate(name: str, h: np.ndarray) -> np.ndarray:
    """φ(h) for φ in ACTIVATIONS. signum(x) = 1, 0, -1 for x > 0, = 0, < 0."""
    if name == "tanh":
        return np.tanh(h)
    if name == "relu":
        return np.maximum(h, 0)
    if name == "signum":
        return np.sign(h)
    if name == "linear":
        return h
    if name == "sigmoid":
        # split by sign so exp never overflows
        out = np.empty_like(h)
        pos = h >= 0
        out[pos] = 1 / (1 + np.exp(-h[pos]))
        eh = np.exp(h[~pos])
        out[~pos] = eh / (1 + eh)
        return out
    raise ValueError(f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}")


def activation_derivative(name: str, h: np.ndarray) -> np.ndarray:
    """φ'(h), used only by rules that need it (BP, FA, DFA, ...). EKDAA never calls it."""
    if name == "tanh":
        t = np.tanh(h)
        return 1 - t * t
    if name == "relu":
        return (h > 0).astype(h.dtype)
    if name == "linear":
        return np.ones_like(h)
    if name == "sigmoid":
        s = activate("sigmoid", h)
        return s * (1 - s)
    if name == "signum":
        raise ValueError("signum has no usable derivative (zero almost everywhere); rules that need φ' cannot use it")
    raise ValueError(f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}")


def target_error(name: str, h: np.ndarray, d: np.ndarray, beta: float) -> np.ndarray:
    """EKDAA error unit (SPEC.md step 3): y = φ(h − βd), e = φ(h) − y."""
    beta = h.dtype.type(beta)
    return activate(name, h) - activate(name, h - beta * d)


# ---------------------------------------------------------------- dropout

_MASK32 = 0xFFFFFFFF


def _mix32(x):
    """lowbias32 hash on uint32 (NumPy or CuPy arrays, or Python ints), as ``ekdaa::mix32``."""
    if hasattr(x, "dtype"):
        x = x ^ (x >> np.uint32(16))
        x = x * np.uint32(0x7FEB352D)
        x = x ^ (x >> np.uint32(15))
        x = x * np.uint32(0x846CA68B)
        return x ^ (x >> np.uint32(16))
    x &= _MASK32
    x ^= x >> 16
    x = (x * 0x7FEB352D) & _MASK32
    x ^= x >> 15
    x = (x * 0x846CA68B) & _MASK32
    return x ^ (x >> 16)


def dropout_key(seed: int, step: int, layer: int) -> int:
    """32-bit key of one layer's mask at one training step (``ekdaa::dropout_key``)."""
    return _mix32(_mix32(_mix32((seed & _MASK32) ^ 0x9E3779B9) ^ (step & _MASK32)) ^ (layer & _MASK32))


def dropout_threshold(p: float) -> int:
    """A unit is kept iff its top 24 random bits are >= floor(p * 2^24)."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout probability must be in [0, 1), got {p!r}")
    return math.floor(p * (1 << 24))


def dropout_scale(p: float, dtype) -> np.generic:
    """1 / (1 − p), rounded once from float64 to the working dtype (the kernels use the same value)."""
    return np.dtype(dtype).type(1.0 / (1.0 - p))


def dropout_keep(key: int, shape: tuple, p: float) -> np.ndarray:
    """Boolean keep mask of ``shape``; element i of the flat C-order index uses counter i."""
    threshold = dropout_threshold(p)
    n = math.prod(shape)
    if threshold == 0:
        return np.ones(shape, dtype=bool)
    if n > 1 << 32:
        raise ValueError(f"dropout: tensor of {n} elements exceeds the 2^32 counter range")
    with np.errstate(over="ignore"):
        idx = np.arange(n, dtype=np.uint32)
        k = np.uint32(key)
        bits = _mix32(_mix32(idx ^ k) + k)
    return ((bits >> np.uint32(8)) >= np.uint32(threshold)).reshape(shape)


def hash_uniform(key: int, shape: tuple, limit: float, dtype=np.float32, xp=np):
    """Deterministic uniform array of ``shape`` in (−limit, limit) from a 32-bit key, element i
    of the flat C order from the dropout counter hash:

        bits_i = mix32(mix32(i ^ key) + key),   u_i = (2·(bits_i >> 8) − (2^24 − 1)) · 2^-24 · limit

    The odd integer and the scaling by 2^-24 are exact in float32, so the result rounds once
    (by limit) and every array module (``xp``: numpy or cupy) gives the same bits.
    """
    n = math.prod(shape)
    with np.errstate(over="ignore"):
        k = np.uint32(key)
        bits = _mix32(_mix32(xp.arange(n, dtype=np.uint32) ^ k) + k)
    q = (bits >> np.uint32(8)).astype(np.int64) * 2 - ((1 << 24) - 1)
    t = np.dtype(dtype).type
    return (q.astype(dtype) * t(2.0**-24) * t(limit)).reshape(shape)


def dropout_mask(seed: int, step: int, layer: int, shape: tuple, p: float, dtype=np.float32) -> np.ndarray:
    """Inverted-dropout multiplier m/(1−p): 0 at dropped units, 1/(1−p) elsewhere (shape is NCHW or [N, F])."""
    keep = dropout_keep(dropout_key(seed, step, layer), shape, p)
    return keep.astype(dtype) * dropout_scale(p, dtype)


# ---------------------------------------------------------------- convolution (NHWC core)


def _im2col_nhwc(x: np.ndarray, k: int) -> np.ndarray:
    """[N, H, W, C] -> [N*H*W, k*k*C] patches of the zero-padded input, (ky, kx, c) order."""
    n, h, w, c = x.shape
    if h == 0 or w == 0:  # an empty plane (e.g. pooled from a 1-pixel map) has no patches
        return np.zeros((0, k * k * c), dtype=x.dtype)
    p = k // 2
    xp = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0))) if p else x
    win = sliding_window_view(xp, (k, k), axis=(1, 2))  # [N, H, W, C, ky, kx]
    return win.transpose(0, 1, 2, 4, 5, 3).reshape(n * h * w, k * k * c)


def _weight_matrix(w: np.ndarray) -> np.ndarray:
    """[C_out, C_in, k, k] -> [k*k*C_in, C_out], rows in im2col's (ky, kx, c) order."""
    co, ci, k, _ = w.shape
    return w.transpose(2, 3, 1, 0).reshape(k * k * ci, co)


def conv2d_nhwc(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None, return_cols: bool = False):
    """Channels-last conv; with ``return_cols`` also the im2col matrix, which the filter update reuses."""
    n, h, wd, _ = x.shape
    cols = _im2col_nhwc(x, w.shape[2])
    out = cols @ _weight_matrix(w)
    if b is not None:
        out += b
    out = out.reshape(n, h, wd, w.shape[0])
    return (out, cols) if return_cols else out


def transposed_kernel(w: np.ndarray) -> np.ndarray:
    """Kernel K' with conv(e, K') = conv-backward-data(e, K): flip both spatial axes, swap in/out."""
    return np.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))


def conv2d_transpose_nhwc(e: np.ndarray, w: np.ndarray) -> np.ndarray:
    return conv2d_nhwc(e, transposed_kernel(w))


def conv2d_filter_grad_nhwc(z: np.ndarray, e: np.ndarray, k: int, cols: np.ndarray | None = None) -> np.ndarray:
    """ΔW[co, ci, ky, kx] = Σ_{n,y,x} e[n,y,x,co] · z_pad[n, y+ky, x+kx, ci]; ``cols`` = im2col(z) if known."""
    ci, co = z.shape[3], e.shape[3]
    g = e.reshape(-1, co).T @ (_im2col_nhwc(z, k) if cols is None else cols)  # [C_out, k*k*C_in]
    return g.reshape(co, k, k, ci).transpose(0, 3, 1, 2)


def pool_corners(z: np.ndarray) -> list[np.ndarray]:
    """The four entries of every 2x2 window of z [N, H, W, C] (an odd last row or column left out), each
    [N, H//2, W//2, C], in the window's row-major order: code 2*dy + dx."""
    h2, w2 = z.shape[1] // 2, z.shape[2] // 2
    return [z[:, dy : 2 * h2 : 2, dx : 2 * w2 : 2] for dy in (0, 1) for dx in (0, 1)]


def maxpool2x2_nhwc(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    corners = pool_corners(z)
    pooled = np.maximum(np.maximum(corners[0], corners[1]), np.maximum(corners[2], corners[3]))
    idx = np.full(pooled.shape, 3, dtype=np.uint8)
    for code in (2, 1, 0):  # the first maximum in window order wins ties
        idx[corners[code] == pooled] = code
    return pooled, idx


def unpool_argmax_nhwc(d: np.ndarray, idx: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    n, h2, w2, c = d.shape
    win = np.zeros((n, h2, w2, c, 4), dtype=d.dtype)
    np.put_along_axis(win, idx[..., None].astype(np.intp), d[..., None], axis=-1)
    out = np.zeros((n, out_hw[0], out_hw[1], c), dtype=d.dtype)
    win = win.reshape(n, h2, w2, c, 2, 2).transpose(0, 1, 4, 2, 5, 3)  # -> [N, h2, dy, w2, dx, C]
    out[:, : 2 * h2, : 2 * w2] = win.reshape(n, 2 * h2, 2 * w2, c)
    return out


def bilinear_matrix(n_in: int, n_out: int, dtype=np.float64) -> np.ndarray:
    """[n_out, n_in] weights of TF2 ``tf.image.resize`` bilinear with half-pixel centres."""
    a = np.zeros((n_out, n_in), dtype=dtype)
    scale = n_in / n_out
    for o in range(n_out):
        src = (o + 0.5) * scale - 0.5
        lo = math.floor(src)
        frac = src - lo
        a[o, min(max(lo, 0), n_in - 1)] += 1 - frac
        a[o, min(max(lo + 1, 0), n_in - 1)] += frac
    return a


def unpool_bilinear_nhwc(d: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    ah = bilinear_matrix(d.shape[1], out_hw[0], d.dtype)
    aw = bilinear_matrix(d.shape[2], out_hw[1], d.dtype)
    return np.einsum("oh,nhwc,pw->nopc", ah, d, aw, optimize=True)


# ---------------------------------------------------------------- public NCHW ops


def to_nhwc(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1))


def to_nchw(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def conv2d(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """h = conv(x, w) + b.  x [N, C_in, H, W], w [C_out, C_in, k, k], b [C_out] -> [N, C_out, H, W]."""
    return to_nchw(conv2d_nhwc(to_nhwc(x), w, b))


def conv2d_transpose(e: np.ndarray, w: np.ndarray) -> np.ndarray:
    """d = conv-backward-data(e, w).  e [N, C_out, H, W], w [C_out, C_in, k, k] -> [N, C_in, H, W]."""
    return to_nchw(conv2d_transpose_nhwc(to_nhwc(e), w))


def conv2d_filter_grad(z: np.ndarray, e: np.ndarray, k: int) -> np.ndarray:
    """ΔW = z ⋆ Flip(e) (conv-backward-filter).  z [N, C_in, H, W], e [N, C_out, H, W] -> [C_out, C_in, k, k]."""
    return np.ascontiguousarray(conv2d_filter_grad_nhwc(to_nhwc(z), to_nhwc(e), k))


def conv2d_filter_grad_pooled(z: np.ndarray, e: np.ndarray, idx: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(ΔW, Δb) from one term per 2x2 pool window: e read only at each window's argmax.

    z [N, C_in, H, W], e [N, C_out, H, W], idx [N, C_out, H//2, W//2] argmax codes 2*dy + dx:
    ΔW[co, ci, ky, kx] = Σ_{n,i,j} e[n, co, 2i+dy, 2j+dx] · z[n, ci, 2i+dy+ky−k//2, 2j+dx+kx−k//2]
    (zero padding), Δb[co] = Σ_{n,i,j} e[n, co, 2i+dy, 2j+dx] with (dy, dx) = divmod(idx[n, co, i, j], 2).
    Equal to (conv2d_filter_grad(z, e, k), e.sum((0, 2, 3))) when e is zero off the argmax.
    """
    n, c_in, height, width = z.shape
    hp, wp = height // 2, width // 2
    p = k // 2
    zp = np.pad(z, ((0, 0), (0, 0), (p, p), (p, p)))
    dy, dx = (idx.astype(np.intp) >> 1), (idx.astype(np.intp) & 1)
    ii, jj = np.arange(hp)[:, None], np.arange(wp)[None, :]
    ys, xs = 2 * ii + dy, 2 * jj + dx  # [N, C_out, Hp, Wp] argmax positions
    nn, cc = np.arange(n)[:, None, None, None], np.arange(e.shape[1])[None, :, None, None]
    picked = e[nn, cc, ys, xs]  # [N, C_out, Hp, Wp]
    zt = zp.transpose(0, 2, 3, 1)  # [N, H + 2p, W + 2p, C_in]
    dw = np.zeros((e.shape[1], c_in, k, k), dtype=np.result_type(z, e))
    for ky in range(k):
        for kx in range(k):
            patch = zt[nn, ys + ky, xs + kx]  # z[n, :, argmax + (ky, kx) − p]: [N, C_out, Hp, Wp, C_in]
            dw[:, :, ky, kx] = np.einsum("ncij,ncijd->cd", picked, patch)
    return dw, picked.sum(axis=(0, 2, 3))


def maxpool2x2(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[N, C, H, W] -> (pooled [N, C, H//2, W//2], argmax code uint8 = 2*dy + dx, same shape)."""
    pooled, idx = maxpool2x2_nhwc(to_nhwc(z))
    return to_nchw(pooled), to_nchw(idx)


def unpool_argmax(d: np.ndarray, idx: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """Place each d[n, c, i, j] at its window's argmax in an [N, C, H, W] zero tensor (SPEC eq. 7)."""
    return to_nchw(unpool_argmax_nhwc(to_nhwc(d), to_nhwc(idx), out_hw))


def unpool_bilinear(d: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """Bilinear up-sampling of [N, C, h, w] to [N, C, H, W] (the authors' release)."""
    return to_nchw(unpool_bilinear_nhwc(to_nhwc(d), out_hw))


def linear(z: np.ndarray, w: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """h = z Wᵀ + b.  z [N, in], w [out, in], b [out] -> [N, out]."""
    h = z @ w.T
    if b is not None:
        h += b
    return h


def softmax(h: np.ndarray) -> np.ndarray:
    e = np.exp(h - h.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def cross_entropy(probs: np.ndarray, labels: np.ndarray) -> float:
    """Σ_n −log p[n, label_n] (summed over the batch, as the updates are)."""
    p = probs[np.arange(len(labels)), labels]
    return float(-np.log(np.maximum(p, np.finfo(probs.dtype).tiny)).sum())


def output_layer(z: np.ndarray, w: np.ndarray, b: np.ndarray | None, labels: np.ndarray):
    """The output layer of one training step, as ``ops.fc.fc_softmax_error`` forms it in one launch:
    (h = z Wᵀ + b, probs = softmax(h), e = probs − onehot(labels), Σ_n −log probs[n, label_n],
    #{n : argmax probs[n] = label_n}) in float64 (labels in [0, C))."""
    h = linear(z.astype(np.float64), w.astype(np.float64), None if b is None else b.astype(np.float64))
    probs = softmax(h)
    e = probs - one_hot(labels, h.shape[1], np.float64)
    return h, probs, e, cross_entropy(probs, labels), int(np.sum(h.argmax(axis=1) == labels))


def one_hot(labels: np.ndarray, classes: int, dtype) -> np.ndarray:
    out = np.zeros((len(labels), classes), dtype=dtype)
    out[np.arange(len(labels)), labels] = 1
    return out


# ---------------------------------------------------------------- initialisation


def fans(shape: tuple) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight: conv [C_out, C_in, k, k] -> (C_in k², C_out k²); FC [out, in] -> (in, out)."""
    if len(shape) == 4:
        rf = shape[2] * shape[3]
        return shape[1] * rf, shape[0] * rf
    return shape[1], shape[0]


def glorot(rng: np.random.Generator, shape: tuple, kind: str = "uniform", dtype=np.float32) -> np.ndarray:
    """Glorot/Xavier init: uniform ±sqrt(6/(fan_in+fan_out)) or normal with std sqrt(2/(fan_in+fan_out))."""
    fan_in, fan_out = fans(shape)
    if kind == "uniform":
        limit = math.sqrt(6.0 / (fan_in + fan_out))
        return rng.uniform(-limit, limit, size=shape).astype(dtype)
    if kind == "normal":
        return (rng.standard_normal(size=shape) * math.sqrt(2.0 / (fan_in + fan_out))).astype(dtype)
    raise ValueError(f"unknown init {kind!r}; choose 'glorot_uniform' or 'glorot_normal'")


# ---------------------------------------------------------------- optimizers (pure functions)


def pascanu_rescale(g: np.ndarray, rho: float) -> np.ndarray:
    """If ‖g‖_F > ρ: g ← ρ g / ‖g‖_F (Pascanu et al. 2013); off when ρ = 0."""
    if rho <= 0:
        return g
    norm = float(np.sqrt(np.sum(np.square(g, dtype=np.float64))))
    return g * g.dtype.type(rho / norm) if norm > rho else g


def sgd_momentum_update(p, g, v, lr, momentum):
    """v ← μ v + g; p ← p − λ v (PyTorch's form; μ = 0 is plain SGD)."""
    t = p.dtype.type
    v = t(momentum) * v + g
    return p - t(lr) * v, v


def adam_update(p, g, m, v, step, lr, beta1=0.9, beta2=0.999, eps=1e-8):
    """Adam (Kingma & Ba) with bias correction; ``step`` counts from 1."""
    t = p.dtype.type
    m = t(beta1) * m + t(1 - beta1) * g
    v = t(beta2) * v + t(1 - beta2) * g * g
    m_hat = m / t(1 - beta1**step)
    v_hat = v / t(1 - beta2**step)
    return p - t(lr) * m_hat / (np.sqrt(v_hat) + t(eps)), m, v


def rmsprop_update(p, g, s, lr, decay=0.9, eps=1e-8):
    """RMSprop: s ← ρ s + (1 − ρ) g²; p ← p − λ g / (√s + ε)."""
    t = p.dtype.type
    s = t(decay) * s + t(1 - decay) * g * g
    return p - t(lr) * g / (np.sqrt(s) + t(eps)), s


def decoupled_weight_decay(p_stepped, p, lr, weight_decay):
    """p_stepped − λ·wd·p, with p the parameter before the optimizer's step and p_stepped after it:
    weight decay kept out of the update Δ (Loshchilov & Hutter 2019, AdamW / SGDW)."""
    t = p.dtype.type
    return p_stepped - t(lr) * t(weight_decay) * p

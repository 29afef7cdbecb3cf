"""CPU backend: the model's ops composed from ``ekdaa_cuda.reference``.

Activations stay channels-last (NHWC) between ops, so every conv is one im2col GEMM and
the forward pass keeps im2col(z) for the filter update. Public arrays (inputs, errors,
parameters) keep the public layouts; ``flatten``/``to_map`` convert at the conv/FC border
in NCHW order so FC weights match PyTorch's layout. A backend is stateless apart from
its dtype; per-layer data lives in the cache dicts its forward methods return.
"""

from __future__ import annotations

import numpy as np

from . import reference as ref
from .optim import Optimizer


class NumpyBackend:
    name = "numpy"
    xp = np

    def __init__(self, dtype):
        self.dtype = np.dtype(dtype)

    # ------------------------------------------------------------ arrays

    def asarray(self, arr) -> np.ndarray:
        """A host array as a backend array of the working dtype (always a copy)."""
        return np.array(arr, dtype=self.dtype)

    def to_numpy(self, arr) -> np.ndarray:
        return np.array(arr)

    def input(self, x: np.ndarray) -> np.ndarray:
        return ref.to_nhwc(np.asarray(x, dtype=self.dtype))

    def labels(self, labels: np.ndarray) -> np.ndarray:
        return np.asarray(labels, dtype=np.int64)

    def indices(self, order: np.ndarray) -> np.ndarray:
        """A host permutation as an index array of this backend (for gathering batches)."""
        return order

    def public(self, t: np.ndarray) -> np.ndarray:
        """An activation-shaped tensor in the public layout (NCHW or [N, F])."""
        return ref.to_nchw(t) if t.ndim == 4 else t.copy()

    def all_finite(self, arrays) -> bool:
        return all(bool(np.all(np.isfinite(a))) for a in arrays)

    def make_optimizer(self, params: dict, kind: str, lr: float, rho: float, hyper: dict, lr_factors: dict):
        return Optimizer(kind, lr, rho, lr_factors, **hyper)

    # ------------------------------------------------------------ forward

    def _mask(self, key, block, n: int):
        if key is None or block.dropout == 0.0:
            return None
        keep = ref.dropout_keep(key, (n, *block.h_shape), block.dropout)
        mask = keep.astype(self.dtype) * ref.dropout_scale(block.dropout, self.dtype)
        return ref.to_nhwc(mask) if block.kind == "conv" else mask

    def conv_fwd(self, z, w, b, block, apply_activation: bool, key, training: bool):
        """conv + bias + φ (optional) + dropout + optional 2x2 max-pool with argmax."""
        if training:
            h, cols = ref.conv2d_nhwc(z, w, b, return_cols=True)
        else:
            h, cols = ref.conv2d_nhwc(z, w, b), None
        a = ref.activate(block.activation, h) if apply_activation else h
        mask = self._mask(key, block, len(z))
        if mask is not None:
            a = a * mask
        argmax = None
        if block.pool:
            a, argmax = ref.maxpool2x2_nhwc(a)
        return a, {"z": z, "h": h, "cols": cols, "mask": mask, "argmax": argmax}

    def fc_fwd(self, z, w, b, block, apply_activation: bool, key, training: bool):
        h = ref.linear(z, w, b)
        a = ref.activate(block.activation, h) if apply_activation else h
        mask = self._mask(key, block, len(z))
        if mask is not None:
            a = a * mask
        return a, {"z": z, "h": h, "mask": mask}

    def output_fwd(self, z, w, b, labels=None):
        h = ref.linear(z, w, b)
        return ref.softmax(h), {"z": z, "h": h}

    def flatten(self, a: np.ndarray) -> np.ndarray:
        """Conv map [N, H, W, C] -> [N, C*H*W] in NCHW order (PyTorch's flatten)."""
        return ref.to_nchw(a).reshape(len(a), -1)

    def to_map(self, d: np.ndarray, chw: tuple) -> np.ndarray:
        """[N, C*H*W] (NCHW order) -> the internal conv map."""
        return ref.to_nhwc(d.reshape(len(d), *chw))

    # ------------------------------------------------------------ backward pieces

    def output_error(self, probs, labels, cache):
        """e_y = z_y − onehot(label)."""
        return probs - ref.one_hot(labels, probs.shape[1], self.dtype)

    def batch_stats(self, probs, labels, cache=None) -> tuple[float, int]:
        """(summed cross-entropy, number of correct predictions) of a batch (``cache``: the output
        layer's, unused here)."""
        return ref.cross_entropy(probs, labels), int(np.sum(probs.argmax(axis=1) == labels))

    def conv_project(self, e, kernel):
        """d = conv-backward-data(e, K) at e's resolution."""
        return ref.conv2d_transpose_nhwc(e, kernel)

    def fc_project(self, e, weight, layout: str):
        """d = e W for W [out, in] (layout "out_in"), d = e Eᵀ for E [in, out] ("in_out")."""
        return e @ (weight if layout == "out_in" else weight.T)

    def unpool_epilogue(self, d, cache, block, kind: str, beta: float, forward_linear: bool, unpool_mode: str):
        """Error of a block from d at its output resolution: unpool (if the block pools, by argmax or
        bilinear up-sampling) to the pre-activation resolution, then the epilogue."""
        if block.pool:
            hw = block.h_shape[1:]
            if unpool_mode == "argmax":
                d = ref.unpool_argmax_nhwc(d, cache["argmax"], hw)
            else:
                d = ref.unpool_bilinear_nhwc(d, hw)
        return self.epilogue(d, cache, block, kind, beta, forward_linear)

    def epilogue(self, d, cache, block, kind: str, beta: float, forward_linear: bool):
        """Error unit from d at pre-activation resolution: kind "target" (EKDAA, e = φ(h) − φ(h − βd))
        or "derivative" (e = d ⊙ φ'(h)); times the layer's dropout multiplier."""
        h = cache["h"]
        if kind == "target":
            e = ref.target_error(block.activation, h, d, beta)
        else:
            e = d if forward_linear else d * ref.activation_derivative(block.activation, h)
        return e if cache["mask"] is None else e * cache["mask"]

    def conv_backproject(self, e, kernel, cache, block, kind, beta, forward_linear, unpool_mode):
        """Error of the conv block below from the error e of the conv block above (the fused
        kernel's job on the GPU): project, unpool, epilogue."""
        return self.unpool_epilogue(self.conv_project(e, kernel), cache, block, kind, beta, forward_linear,
                                    unpool_mode)

    def weight_update(self, cache, e, block, gamma: float | None):
        """(ΔW, Δb, ΔE): conv ΔW = z ⋆ Flip(e) reusing im2col(z), FC ΔW = eᵀ z; Δb = Σ e;
        ΔE = γ ΔW (conv) / γ ΔWᵀ (FC), or None when gamma is None."""
        if block.kind == "conv":
            dw = np.ascontiguousarray(ref.conv2d_filter_grad_nhwc(cache["z"], e, block.kernel, cache["cols"]))
            db = e.sum(axis=(0, 1, 2))
        else:
            dw, db = e.T @ cache["z"], e.sum(axis=0)
        de = None
        if gamma is not None:
            de = np.ascontiguousarray(self.dtype.type(gamma) * (dw if block.kind == "conv" else dw.T))
        return dw, db, de

    # ------------------------------------------------------------ added for the comparison rules (rules.py)

    def uniform_hash(self, key: int, shape: tuple, limit: float):
        """Deterministic uniform array in (−limit, limit) from a 32-bit key (RDFA's per-step
        feedback matrices): ``reference.hash_uniform``, bit for bit the same on every backend."""
        return ref.hash_uniform(key, shape, limit, self.dtype)

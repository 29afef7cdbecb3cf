"""CUDA backend: the model's ops as the fused kernels of ``ekdaa_cuda.ops``, on a GPU (backend
"cuda": CuPy arrays, ``ekdaa_cuda._C``) or on the CPU simulator (backend "cuda-sim": NumPy arrays,
``ekdaa_cuda._sim`` running the same kernels, launchers and bindings; docs/cuda-sim.md).

Same interface as ``backend_numpy.NumpyBackend``; activations stay NCHW (the public layout),
so flatten/unflatten at the conv/FC border are free reshapes. What the fusion buys:
- forward: conv + bias + φ + dropout + 2x2 max-pool with argmax in one launch per conv;
- conv → conv error: transposed conv with E, argmax unpool and the target/error epilogue
  in one launch (d never goes to memory); FC → conv: projection, then unpool + epilogue;
- updates: ΔW, Δb and ΔE = γΔW from one pass over e (conv) / ΔW, ΔE = γΔWᵀ (FC); below a pool,
  an e this backend unpooled at the argmax (zero elsewhere) takes one term per window
  (``conv_filter_update_pooled``, a quarter of the work);
- output: softmax and e_y = z_y − onehot in one launch;
- optimizer: every parameter tensor in at most two launches per step.
Dropout masks are regenerated from (seed, step, layer, element) inside the kernels.
float32 only.
"""

from __future__ import annotations

import numpy as np

from . import reference as ref
from ._device import get_device
from .ops import conv as conv_ops
from .ops import fc as fc_ops
from .ops.optim import MultiTensorOptimizer


class CudaBackend:
    """``device``: "cuda" (a GPU) or "cuda-sim" (the CPU simulator), chosen once for the backend."""

    dtype = np.dtype(np.float32)
    #: use conv_filter_update_pooled for errors this backend unpooled at the argmax (False: always dense v2)
    pooled_filter_update = True

    def __init__(self, device: str = "cuda"):
        self.device = get_device(device)
        self.name = self.device.name
        self.xp = self.device.xp
        # (ΔW, Δb, ΔE) of each layer, written in place every step: the optimizer's table of update
        # addresses then never changes, so no step uploads one
        self._update_buffers: dict = {}
        self._workspaces: dict = {}  # layer name -> ((z shape, pooled), the filter update's split-K scratch)

    # ------------------------------------------------------------ arrays

    def asarray(self, arr):
        return self.xp.array(np.asarray(arr, dtype=np.float32), dtype=np.float32)

    def to_numpy(self, arr) -> np.ndarray:
        return self.device.to_numpy(arr)

    def input(self, x):
        """A validated NCHW batch on the device (host arrays are copied once)."""
        if isinstance(x, self.xp.ndarray):
            return self.xp.ascontiguousarray(x, dtype=np.float32)
        return self.xp.asarray(np.ascontiguousarray(x, dtype=np.float32))

    def labels(self, labels):
        return self.xp.asarray(np.asarray(labels, dtype=np.int32))

    def indices(self, order: np.ndarray):
        return self.xp.asarray(order)

    def public(self, t):
        return t.copy()

    def all_finite(self, arrays) -> bool:
        """One device reduction over every array, one synchronisation."""
        xp = self.xp
        flags = [xp.isfinite(a).all() for a in arrays]
        return bool(xp.stack(flags).all()) if flags else True

    def make_optimizer(self, params: dict, kind: str, lr: float, rho: float, hyper: dict):
        return CudaOptimizer(params, kind, lr, rho, hyper, self.device)

    def uniform_hash(self, key: int, shape: tuple, limit: float):
        """``reference.hash_uniform`` on the device: the same bits as the NumPy backend's."""
        return ref.hash_uniform(key, shape, limit, np.float32, xp=self.xp)

    # ------------------------------------------------------------ forward

    @staticmethod
    def _dropout(block, key):
        return (0.0, 0) if key is None or block.dropout == 0.0 else (block.dropout, key)

    def conv_fwd(self, z, w, b, block, apply_activation: bool, key, training: bool):
        p, k = self._dropout(block, key)
        h, out, argmax = conv_ops.conv_block_fwd(z, w, b, activation=block.activation,
                                                 apply_activation=apply_activation, pool=block.pool,
                                                 dropout=p, dropout_key=k, device=self.device)
        return out, {"z": z, "h": h, "argmax": argmax, "dropout": p, "key": k}

    def fc_fwd(self, z, w, b, block, apply_activation: bool, key, training: bool):
        p, k = self._dropout(block, key)
        h, out = fc_ops.fc_fwd(z, w, b, activation=block.activation, apply_activation=apply_activation,
                               dropout=p, dropout_key=k, device=self.device)
        return out, {"z": z, "h": h, "dropout": p, "key": k}

    def output_fwd(self, z, w, b):
        h, _ = fc_ops.fc_fwd(z, w, b, activation="linear", apply_activation=False, device=self.device)
        shifted = self.xp.exp(h - h.max(axis=1, keepdims=True))
        return shifted / shifted.sum(axis=1, keepdims=True), {"z": z, "h": h}

    def flatten(self, a):
        return a.reshape(len(a), -1)  # NCHW is already PyTorch's flatten order: a free view

    def to_map(self, d, chw: tuple):
        return d.reshape(len(d), *chw)

    # ------------------------------------------------------------ backward pieces

    def output_error(self, probs, labels, cache):
        """e_y = softmax(h_y) − onehot(label), fused."""
        return fc_ops.softmax_error(cache["h"], labels, device=self.device)[1]

    def batch_stats(self, probs, labels):
        """(summed cross-entropy, correct count) as device scalars: no synchronisation."""
        xp = self.xp
        rows = xp.arange(len(labels))
        p = probs[rows, labels].astype(np.float64)
        loss = -xp.log(xp.maximum(p, np.finfo(np.float32).tiny)).sum()
        return loss, (probs.argmax(axis=1) == labels).sum()

    def conv_project(self, e, kernel):
        return conv_ops.conv_proj(e, kernel, device=self.device)

    def fc_project(self, e, weight, layout: str):
        return fc_ops.fc_proj(e, weight, weight_layout=layout, device=self.device)

    @staticmethod
    def _rule(block, kind: str, forward_linear: bool):
        """(kernel rule, activation): "derivative" is the kernels' "bp" epilogue; a linear forward
        (the release variant's conv stack) has φ' = 1."""
        if kind == "target":
            return "ekdaa", block.activation
        return "bp", "linear" if forward_linear else block.activation

    def epilogue(self, d, cache, block, kind: str, beta: float, forward_linear: bool):
        rule, act = self._rule(block, kind, forward_linear)
        return fc_ops.error_epilogue(d, cache["h"], activation=act, beta=beta, dropout=cache["dropout"],
                                     dropout_key=cache["key"], rule=rule, device=self.device)

    def unpool_epilogue(self, d, cache, block, kind: str, beta: float, forward_linear: bool, unpool_mode: str):
        if block.pool and unpool_mode == "argmax":
            rule, act = self._rule(block, kind, forward_linear)
            e = conv_ops.unpool_error(d, cache["h"], cache["argmax"], activation=act, beta=beta,
                                      dropout=cache["dropout"], dropout_key=cache["key"], rule=rule,
                                      device=self.device)
            cache["argmax_error"] = e  # zero off the argmax: weight_update may take one term per window
            return e
        if block.pool:
            d = conv_ops.unpool_bilinear(d, block.h_shape[1:], device=self.device)
        return self.epilogue(d, cache, block, kind, beta, forward_linear)

    def conv_backproject(self, e, kernel, cache, block, kind, beta, forward_linear, unpool_mode):
        """Fused: transposed conv with K, argmax unpool, epilogue (d never reaches memory)."""
        if block.pool and unpool_mode != "argmax":
            return self.unpool_epilogue(self.conv_project(e, kernel), cache, block, kind, beta, forward_linear,
                                        unpool_mode)
        rule, act = self._rule(block, kind, forward_linear)
        e_below = conv_ops.conv_error_proj(e, kernel, cache["h"], cache["argmax"], activation=act, beta=beta,
                                           dropout=cache["dropout"], dropout_key=cache["key"], rule=rule,
                                           device=self.device)
        if block.pool:
            cache["argmax_error"] = e_below  # zero off the argmax (unpool_epilogue)
        return e_below

    def weight_update(self, cache, e, block, gamma: float | None):
        """(ΔW, Δb, ΔE) into this layer's persistent buffers: valid until the layer's next update."""
        g = 0.0 if gamma is None else gamma
        out, dev = self._update_buffers.get(block.name), self.device
        if block.kind == "conv":
            z = cache["z"]
            # e unpooled here at the argmax (this very array): one term per pool window, else dense
            sparse = self.pooled_filter_update and cache.get("argmax_error") is e
            key, ws = self._workspaces.get(block.name, (None, None))
            if key != (z.shape, sparse):
                make = conv_ops.conv_filter_update_pooled_workspace if sparse else conv_ops.conv_filter_update_workspace
                ws = make(z, e.shape[1], block.kernel, bias=block.bias, device=dev)
                self._workspaces[block.name] = ((z.shape, sparse), ws)
            if sparse:
                dw, db, de = conv_ops.conv_filter_update_pooled(z, e, cache["argmax"], block.kernel, gamma=g,
                                                                bias=block.bias, out=out, workspace=ws, device=dev)
            else:
                dw, db, de = conv_ops.conv_filter_update(z, e, block.kernel, gamma=g, bias=block.bias, out=out,
                                                         workspace=ws, device=dev)
        else:
            dw, db, de = fc_ops.fc_update(cache["z"], e, gamma=g, bias=block.bias, out=out, device=dev)
        self._update_buffers[block.name] = (dw, db, de)
        return dw, db, (None if gamma is None else de)


class CudaOptimizer:
    """Adapter from the model's optimizer protocol (``step(params, grads) -> params`` updating in
    place, flat ``optimizer.<slot>.<key>`` state like the NumPy optimizer's) to one
    ``MultiTensorOptimizer`` over the tensors the rule updates (e.g. no E under BP), created at the
    first step or when a state is loaded."""

    def __init__(self, params: dict, kind: str, lr: float, rho: float, hyper: dict, device):
        self.config = dict(kind=kind, lr=lr, rho=rho, device=device, **hyper)
        self.params = params
        self.keys: list[str] | None = None
        self.inner: MultiTensorOptimizer | None = None

    @property
    def t(self) -> int:
        return 0 if self.inner is None else self.inner.t

    def _build(self, keys) -> None:
        self.keys = [k for k in self.params if k in keys]
        self.inner = MultiTensorOptimizer([self.params[k] for k in self.keys], **self.config)

    def step(self, params: dict, grads: dict, lr_scale: float = 1.0) -> dict:
        if self.inner is None:
            self._build(set(grads))
        if set(grads) != set(self.keys):
            raise ValueError(f"optimizer: this step updates {sorted(grads)}, earlier steps {sorted(self.keys)}")
        scales = None if lr_scale == 1.0 else [lr_scale] * len(self.keys)
        inner = self.inner
        # On a GPU a launch that raises has written nothing (the launchers check before launching; a
        # fault inside a kernel ends the CUDA context anyway). The simulator can report a kernel bug
        # after some threads wrote: keep a copy so the model is unchanged when a step raises.
        saved = None
        if inner.device.simulated:
            saved = [a.copy() for a in (*inner.params, *(s for st in inner.state for s in st.values()))], inner.t
        try:
            inner.step([grads[k] for k in self.keys], scales)
        except Exception:
            if saved is not None:
                arrays, inner.t = saved
                for dst, src in zip((*inner.params, *(s for st in inner.state for s in st.values())), arrays):
                    dst[...] = src
            raise
        return params

    def state_dict(self) -> dict:
        if self.inner is None:
            return {"optimizer.t": np.array(0, dtype=np.int64)}
        inner = self.inner.state_dict()
        flat = {"optimizer.t": inner.pop("t")}
        for name, arr in inner.items():
            slot, i = name.split(".")
            flat[f"optimizer.{slot}.{self.keys[int(i)]}"] = arr
        return flat

    def load_state_dict(self, flat: dict, params: dict) -> None:
        keys = {name.split(".", 2)[2] for name in flat if name != "optimizer.t"}
        unknown = keys - set(self.params)
        if unknown:
            raise ValueError(f"optimizer state for {sorted(unknown)} does not match any parameter of this model")
        if not keys:
            self.keys = self.inner = None
            return
        self._build(keys)
        index = {k: i for i, k in enumerate(self.keys)}
        state = {"t": flat.get("optimizer.t", np.array(0))}
        for name, arr in flat.items():
            if name != "optimizer.t":
                _, slot, key = name.split(".", 2)
                state[f"{slot}.{index[key]}"] = arr
        self.inner.load_state_dict(state)

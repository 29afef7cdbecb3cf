"""CUDA backend: the model's ops as the fused kernels of ``ekdaa_cuda.ops``, on a GPU (backend
"cuda": CuPy arrays, ``ekdaa_cuda._C``) or on the CPU simulator (backend "cuda-sim": NumPy arrays,
``ekdaa_cuda._sim`` running the same kernels, launchers and bindings; docs/cuda-sim.md).

Same interface as ``backend_numpy.NumpyBackend``; activations stay NCHW (the public layout),
so flatten/unflatten at the conv/FC border are free reshapes. What the fusion buys:
- forward: conv + bias + φ + dropout + 2x2 max-pool with argmax in one launch per conv;
- conv → conv error: transposed conv with E, argmax unpool and the target/error epilogue
  in one launch (d never goes to memory); FC → conv: projection, then unpool + epilogue;
- updates: ΔW, Δb and ΔE = γΔW from one pass over e (conv); below a pool, an e this backend
  unpooled at the argmax (zero elsewhere) takes one term per window (``conv_filter_update_pooled``,
  a quarter of the work); for an FC layer ΔW, Δb, ΔE = γΔWᵀ and the projection of e to the layer
  below (with its epilogue unless it pools) in one launch;
- output: h = zWᵀ + b, softmax, e_y = z_y − onehot and the batch's summed loss and correct
  count (fixed-order device reduction) in one launch;
- optimizer: every parameter tensor in at most two launches per step, flagging non-finite
  updates on the device (read only at checks, ``Model.nonfinite_updates``).
Dropout masks are regenerated from (seed, step, layer, element) inside the kernels.
float32 only.

The host path of a training step (``train_step``, docs/kernels.md "The host path"): the first
step at a batch size runs eagerly through the checked ops; the second is recorded (every launch
with its raw arguments, every array it touched kept alive: the preallocated buffers of that
batch size); later steps copy the batch into the recorded input buffers and replay the launches
without validating or allocating anything. On a GPU the replay is one CUDA graph, captured once,
with each conv layer's filter update on a second stream branch (fork/join with events) beside
the error projection; ``EKDAA_CUDA_GRAPH=0`` (or ``EKDAA_SYNC_LAUNCHES=1``) turns capture off.
Steps whose launches change from step to step run eagerly every time (``replay_blocker``).
"""

from __future__ import annotations

import os
import warnings

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
        self._softmax_workspace = None  # fc_softmax_error's partials and ticket, for the largest batch yet
        self._fwd_workspaces: dict = {}  # FC layer name -> (z shape, fc_fwd's split-K partials and tickets)
        self._plans: dict = {}  # batch size -> StepPlan
        self.replay = True  # False: every training step runs eagerly through the checked ops (tests)

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

    def make_optimizer(self, params: dict, kind: str, lr: float, rho: float, hyper: dict, lr_factors: dict):
        return CudaOptimizer(params, kind, lr, rho, hyper, self.device, lr_factors)

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
        shape, ws = self._fwd_workspaces.get(block.name, (None, None))
        if shape != z.shape:  # a recorded step keeps the workspace it was recorded with
            ws = fc_ops.fc_fwd_workspace(z, w.shape[0], device=self.device)
            self._fwd_workspaces[block.name] = (z.shape, ws)
        h, out = fc_ops.fc_fwd(z, w, b, activation=block.activation, apply_activation=apply_activation,
                               dropout=p, dropout_key=k, workspace=ws, device=self.device)
        return out, {"z": z, "h": h, "dropout": p, "key": k}

    def output_fwd(self, z, w, b, labels=None):
        """One launch: h, softmax and, with labels, e_y and the batch's loss and correct count."""
        ws = None
        if labels is not None:
            ws = self._softmax_workspace
            if ws is None or len(ws[0]) < self.device.ext.fc_softmax_error_blocks(len(z)):
                ws = self._softmax_workspace = fc_ops.fc_softmax_error_workspace(len(z), device=self.device)
        h, probs, e, loss, correct = fc_ops.fc_softmax_error(z, w, b, labels, workspace=ws, device=self.device)
        return probs, {"z": z, "h": h, "e": e, "loss": loss, "correct": correct}

    def flatten(self, a):
        return a.reshape(len(a), -1)  # NCHW is already PyTorch's flatten order: a free view

    def to_map(self, d, chw: tuple):
        return d.reshape(len(d), *chw)

    # ------------------------------------------------------------ backward pieces

    def output_error(self, probs, labels, cache):
        """e_y = softmax(h_y) − onehot(label): formed by ``output_fwd`` when it had the labels."""
        if cache.get("e") is not None:
            return cache["e"]
        return fc_ops.softmax_error(cache["h"], labels, device=self.device)[1]

    def batch_stats(self, probs, labels, cache=None):
        """(summed cross-entropy, correct count) as device scalars: no synchronisation. Copies of
        the output launch's sums when ``cache`` (the output layer's) has them."""
        if cache is not None and cache.get("loss") is not None:
            return cache["loss"][0].copy(), cache["correct"][0].copy()
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
            dev.record_tag = "update"  # a graph runs it on the side branch, beside the error projection
            try:
                if sparse:
                    dw, db, de = conv_ops.conv_filter_update_pooled(z, e, cache["argmax"], block.kernel, gamma=g,
                                                                    bias=block.bias, out=out, workspace=ws,
                                                                    device=dev)
                else:
                    dw, db, de = conv_ops.conv_filter_update(z, e, block.kernel, gamma=g, bias=block.bias, out=out,
                                                             workspace=ws, device=dev)
            finally:
                dev.record_tag = ""
        else:
            # the first layer: fc_update_proj without a projection (Δb folded into the same launch)
            dw, db, de, _ = fc_ops.fc_update_proj(cache["z"], e, gamma=g, bias=block.bias,
                                                  out=None if out is None else (*out, None), device=dev)
        self._update_buffers[block.name] = (dw, db, de)
        return dw, db, (None if gamma is None else de)

    def fc_update_project(self, cache, e, block, gamma: float | None, kernel, layout: str, below_cache, below,
                          kind: str, beta: float, forward_linear: bool, unpool_mode: str):
        """((ΔW, Δb, ΔE), error of ``below``) of an FC/output block: the updates and the projection of
        e through ``kernel`` in one launch, with the target/derivative epilogue of ``below`` fused
        unless ``below`` pools (then d is unpooled by a second launch, ``unpool_epilogue``)."""
        out = self._update_buffers.get(block.name, (None, None, None))
        n = len(e)
        fuse_epilogue = not below.pool
        rule, act = self._rule(below, kind, forward_linear)
        h = below_cache["h"].reshape(n, -1) if fuse_epilogue else None
        dw, db, de, projected = fc_ops.fc_update_proj(
            cache["z"], e, gamma=0.0 if gamma is None else gamma, bias=block.bias, error_weights=gamma is not None,
            weight=kernel, weight_layout=layout, h=h, activation=act, beta=beta, dropout=below_cache["dropout"],
            dropout_key=below_cache["key"], rule=rule, device=self.device,
            out=(out[0], out[1], out[2] if gamma is not None else None, None))
        self._update_buffers[block.name] = (dw, db, de if de is not None else out[2])
        if below.kind != "conv":
            return (dw, db, de), projected
        if fuse_epilogue:
            return (dw, db, de), projected.reshape(n, *below.h_shape)
        d = self.to_map(projected, below.out_shape)
        return (dw, db, de), self.unpool_epilogue(d, below_cache, below, kind, beta, forward_linear, unpool_mode)

    # ------------------------------------------------------------ the host path of a training step

    @staticmethod
    def replay_blocker(model) -> str | None:
        """Why ``model``'s training steps cannot be recorded once and replayed (their launches or
        arguments change from step to step, or host work sits between them), or None."""
        if model.sweep_rule not in ("ekdaa", "bp", "fa"):
            return f"rule {model.rule!r} (host work between its launches)"
        if any(b.dropout > 0 for b in model.blocks):
            return "dropout (its mask key changes every step)"
        if model.sweep_rule == "ekdaa" and model.opts["normalize"] != "none":
            return f"normalize={model.opts['normalize']!r} (reads d on the host)"
        if model.opts["unpool"] != "argmax":
            return "bilinear unpooling"
        return None

    def train_step(self, model, x, labels, lr_scale: float = 1.0):
        """Forward, the rule's updates and the optimizer step of ``model`` on device arrays x,
        labels; returns the batch's (summed loss, correct count) as device scalars. Replays the
        recorded step of this batch size when it can (module doc)."""
        if not self.replay or self.replay_blocker(model) is not None:
            probs, caches, grads = model.update_arrays(x, labels)
            model.optimizer.step(model.params, grads, lr_scale)
            return self.batch_stats(probs, labels, caches[-1])
        plan = self._plans.get(len(x))
        if plan is None:
            plan = self._plans[len(x)] = StepPlan(self, x, labels)
        return plan.run(model, x, labels, lr_scale)


def graphs_enabled() -> bool:
    """CUDA graph capture is on unless EKDAA_CUDA_GRAPH=0 or EKDAA_SYNC_LAUNCHES is set (a launch
    that synchronises cannot be captured)."""
    sync = os.environ.get("EKDAA_SYNC_LAUNCHES", "")
    return os.environ.get("EKDAA_CUDA_GRAPH", "1") != "0" and (sync == "" or sync == "0")


class StepPlan:
    """The training step of one model at one batch size, recorded and replayed (module doc).

    ``x`` and ``labels`` are the input buffers every step copies its batch into. After the first
    (eager) step, ``run`` records the second: ``launches`` = [(op, launcher, args, tag)], tag
    "update" for a conv filter update (a graph's side branch), "optimizer" for the optimizer's;
    ``keep`` holds every array those arguments point to. Later steps replay ``launches`` (and call
    the optimizer, whose per-step scalars and table stay host-driven), or launch ``graph``, while the
    model's options are the recorded ones (``opts``); a step after an option changed (β does every step
    under ``train(beta_end=...)``) runs eagerly and is recorded anew.
    """

    def __init__(self, backend: CudaBackend, x, labels):
        xp = backend.xp
        self.backend, self.device = backend, backend.device
        self.x, self.labels = xp.empty_like(x), xp.empty_like(labels)
        self.eager_steps = 0
        self.launches = self.keep = self.grads = self.optimizer = self.graph = self.opts = None
        self.loss = self.correct = None
        self.graph_error: str | None = None  # why capture failed, once it has

    def run(self, model, x, labels, lr_scale: float):
        xp = self.backend.xp
        xp.copyto(self.x, x)
        xp.copyto(self.labels, labels)
        # the options (β, γ, ...) are raw arguments of the recorded launches: a step after one changed
        # (train(beta_end=...) changes β every step) runs eagerly and is recorded anew
        if self.launches is not None and self.optimizer is model.optimizer.inner and self.opts == model.opts:
            self._replay(model, lr_scale)
        else:
            self._eager(model, lr_scale, record=self.eager_steps > 0)
        return self.loss[0].copy(), self.correct[0].copy()

    def _eager(self, model, lr_scale: float, record: bool) -> None:
        dev = self.device
        if record:
            dev.recording, dev.recorded_arrays = [], []
        try:
            probs, caches, grads = model.update_arrays(self.x, self.labels)
            dev.record_tag = "optimizer"
            model.optimizer.step(model.params, grads, lr_scale)
            launches, arrays = dev.recording, dev.recorded_arrays
        finally:
            dev.recording, dev.recorded_arrays, dev.record_tag = None, [], ""
        self.eager_steps += 1
        self.loss, self.correct = caches[-1]["loss"], caches[-1]["correct"]
        if record:
            self.launches, self.grads, self.optimizer = launches, grads, model.optimizer.inner
            self.opts = dict(model.opts)
            self.keep = (arrays, probs, caches)
            self.graph = None

    def _replay(self, model, lr_scale: float) -> None:
        inner = self.optimizer
        in_graph = inner.kind != "adam"  # adam's bias corrections change every step (launch arguments)
        if not self.device.simulated and graphs_enabled() and self.graph_error is None:
            if self.graph is None:
                self.graph = self._capture(in_graph)
            if self.graph is not None:
                if in_graph:
                    inner.prepare_lrs(model.optimizer.lr_scales(lr_scale))
                self.graph.launch(self.backend.xp.cuda.get_current_stream())
                if in_graph:
                    inner.t += 1
                else:
                    model.optimizer.step(model.params, self.grads, lr_scale)
                return
        for op, launcher, args, tag in self.launches:
            if tag != "optimizer":
                self.device.launch(op, launcher, *args)
        model.optimizer.step(model.params, self.grads, lr_scale)

    def _capture(self, with_optimizer: bool):
        """The recorded launches as one CUDA graph (the optimizer's too when ``with_optimizer``),
        each run of conv filter-update launches on a side stream forked after the launches before
        it and joined before the optimizer; None (and ``graph_error``) when capture fails."""
        cp, dev = self.backend.xp, self.device
        main, side = cp.cuda.Stream(non_blocking=True), cp.cuda.Stream(non_blocking=True)
        forked = on_side = False

        def event_on(stream):
            event = cp.cuda.Event(block=False, disable_timing=True)
            event.record(stream)
            return event

        try:
            main.begin_capture()
            try:
                for op, launcher, args, tag in self.launches:
                    if tag == "optimizer" and not with_optimizer:
                        continue
                    if tag == "update" and not on_side:  # fork: the side branch waits for e of this layer
                        side.wait_event(event_on(main))
                        forked = on_side = True
                    elif tag != "update":
                        on_side = False
                        if tag == "optimizer" and forked:  # join: the optimizer reads every update
                            main.wait_event(event_on(side))
                            forked = False
                    dev.launch(op, launcher, *args[:-1], (side if on_side else main).ptr)
                if forked:
                    main.wait_event(event_on(side))
            finally:
                graph = main.end_capture()
            return graph
        except Exception as exc:  # e.g. a driver without graph support: replay without a graph from now on
            self.graph_error = f"{type(exc).__name__}: {exc}"
            warnings.warn(f"ekdaa_cuda: CUDA graph capture failed, replaying launches one by one: {self.graph_error}",
                          RuntimeWarning, stacklevel=3)
            return None


class CudaOptimizer:
    """Adapter from the model's optimizer protocol (``step(params, grads) -> params`` updating in
    place, flat ``optimizer.<slot>.<key>`` state like the NumPy optimizer's) to one
    ``MultiTensorOptimizer`` over the tensors the rule updates (e.g. no E under BP), created at the
    first step or when a state is loaded. ``lr_factors`` ({key: factor}, the model option ``layer_lr``)
    scale the step of the tensors named, through the optimizer's per-tensor learning-rate table."""

    def __init__(self, params: dict, kind: str, lr: float, rho: float, hyper: dict, device,
                 lr_factors: dict | None = None):
        self.config = dict(kind=kind, lr=lr, rho=rho, device=device, **hyper)
        self.params = params
        self.lr_factors = dict(lr_factors or {})
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
        scales = self.lr_scales(lr_scale)
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

    def lr_scales(self, lr_scale: float) -> list[float] | None:
        """The per-tensor learning-rate factors of a step (None: all 1): the schedule's ``lr_scale`` times
        each tensor's own factor."""
        factors = [self.lr_factors.get(k, 1.0) for k in self.keys]
        return None if lr_scale == 1.0 and all(f == 1.0 for f in factors) else [lr_scale * f for f in factors]

    def nonfinite_keys(self) -> list[str]:
        """Parameters the optimizer kernel flagged non-finite since the last clear (synchronises)."""
        return [] if self.inner is None else [self.keys[i] for i in self.inner.nonfinite()]

    def snapshot(self):
        """Copies of every parameter and of the optimizer's state (for ``restore``); clears the flags."""
        if self.inner is not None:
            self.inner.clear_nonfinite()
        state = None
        if self.inner is not None:
            state = self.inner.t, [a.copy() for st in self.inner.state for a in st.values()]
        return self.inner, self.keys, {k: v.copy() for k, v in self.params.items()}, state

    def restore(self, snap) -> None:
        """Put back a ``snapshot()`` in place (the recorded steps hold these addresses); flags cleared."""
        inner, keys, params, state = snap
        for k, v in params.items():
            self.params[k][...] = v
        self.inner, self.keys = inner, keys
        if inner is not None:
            inner.t = state[0]
            for dst, src in zip((a for st in inner.state for a in st.values()), state[1]):
                dst[...] = src
            inner.clear_nonfinite()

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

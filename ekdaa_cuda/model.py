"""The model: parameters, forward pass, learning rules and optimizer steps.

``build_model`` is the entry point. A model is a preset or a list of layer specs
(``ekdaa_cuda.layers``) plus a learning rule chosen at build time. Every public array keeps
the public layouts (NCHW inputs, PyTorch weight layouts) whatever the backend keeps inside.

EKDAA (SPEC.md "EKDAA update"): from the output error e_y = z_y − onehot the error is
projected down with the error weights E (FC: d = e Eᵀ; conv: d = conv-backward-data(e, E)),
unpooled at the recorded argmax, and every layer forms its target y = φ(h − βd) and its
error e = (φ(h) − y)·m/(1−p). The updates are ΔW = eᵀz (FC), ΔW = z ⋆ Flip(e) (conv),
Δb = Σe and ΔE = γΔWᵀ (FC) / γΔW (conv), summed over the batch.
Option normalize="rms" (not in the paper or the release) rescales each layer's d to the RMS of
that layer's h before the target is formed, so β is measured in units of |h|: with signum the
forward pass ignores the scale of the hidden weights, and so do the errors then (without it,
weight growth makes |h| ≫ β|d| and the errors vanish; results/2026-12-04-fmnist-full/signum).
BP runs the same sweep with W in place of E and d·φ'(h) in place of the target error.
The arithmetic runs on a backend object (``backend_numpy.NumpyBackend`` or
``backend_cuda.CudaBackend``), so every rule here serves both.
The comparison rules (FA, Kolen–Pollack, DFA, SDFA, RDFA, DRTP, LRA-E) are defined in
``ekdaa_cuda.rules``; the layer-wise ones (FA, KP) run the sweep below with the error weights
as feedback, the direct ones (DFA family) dispatch to ``rules.direct_backward``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import NamedTuple

import numpy as np

from . import reference as ref
from . import rules
from .backend_numpy import NumpyBackend
from .layers import Block, build_blocks, preset_layers
from .optim import DEFAULT_HYPER

RULES = rules.RULES

DEFAULT_OPTIONS = {
    "activation": "tanh",
    "beta": 0.9,
    "gamma": 0.1,
    "bias": False,
    "init": "glorot_uniform",
    "error_init": "glorot_uniform",
    "unpool": "argmax",
    "normalize": "none",
    "variant": "paper",
    "dropout_conv": 0.0,
    "dropout_fc": 0.0,
    "optimizer": "sgd",
    "lr": 5e-4,
    "rho": 0.0,
    "dtype": "float32",
    "kp_decay": 0.0,  # Kolen–Pollack weight decay κ (rule "kp" only; see rules.py)
    "layer_lr": None,  # {layer name: factor >= 0} of the learning rate per layer (None: every layer at lr)
    **DEFAULT_HYPER,
}
# variant="release" bundles the authors' TensorFlow release (SPEC.md); explicit options still win.
RELEASE_VARIANT = {"unpool": "bilinear", "error_init": "forward", "normalize": "release"}
_CHOICES = {
    "init": ("glorot_uniform", "glorot_normal"),
    "error_init": ("glorot_uniform", "glorot_normal", "forward"),
    "unpool": ("argmax", "bilinear"),
    "normalize": ("none", "release", "rms"),
    "variant": ("paper", "release"),
    "dtype": ("float32", "float64"),
    "optimizer": ref.OPTIMIZERS,
}
EVAL_BATCH = 500
# the state each optimizer keeps per parameter (optimizer.<slot>.<parameter> in checkpoints)
OPTIMIZER_SLOTS = {"sgd": ("v",), "adam": ("m", "v"), "rmsprop": ("s",)}


class LoadResult(NamedTuple):
    """What ``Model.load_state_dict`` did not load: the model's keys absent from the state, and
    the state's keys the model does not have (like PyTorch's ``_IncompatibleKeys``)."""

    missing_keys: list
    unexpected_keys: list


def resolve_options(options: dict) -> dict:
    """Merge user options with the defaults, apply the variant bundle and validate every value."""
    unknown = set(options) - set(DEFAULT_OPTIONS) - {"dropout", "widths", "input_shape"}
    if unknown:
        raise ValueError(f"unknown option(s) {sorted(unknown)}; known options: {sorted(DEFAULT_OPTIONS)} "
                         "plus dropout, widths, input_shape")
    opts = dict(DEFAULT_OPTIONS)
    if options.get("variant", "paper") == "release":
        opts.update(RELEASE_VARIANT)
    if "dropout" in options:  # one value for every hidden layer
        check_range("dropout", options["dropout"])
        opts["dropout_conv"] = opts["dropout_fc"] = options["dropout"]
    opts.update({k: v for k, v in options.items() if k in DEFAULT_OPTIONS})
    for key, choices in _CHOICES.items():
        if opts[key] not in choices:
            raise ValueError(f"option {key}={opts[key]!r} is not one of {', '.join(choices)}")
    ref.check_activation(opts["activation"])
    for key, (ok, what) in OPTION_RANGES.items():
        if key in opts:
            check_range(key, opts[key], ok, what)
    if not isinstance(opts["bias"], (bool, np.bool_)):
        raise ValueError(f"option bias must be True or False, got {opts['bias']!r}")
    opts["layer_lr"] = check_layer_lr(opts["layer_lr"])
    return opts


# The allowed range of every numeric option: (test, description for the message). Shared with the
# CLI, which checks a flag's value with the same test as soon as it is parsed.
OPTION_RANGES = {
    "beta": (lambda v: v >= 0, ">= 0 (the step of the target y = φ(h − βd))"),
    "gamma": (lambda v: v >= 0, ">= 0 (the scale of the error-kernel update ΔE = γΔW)"),
    "lr": (lambda v: v > 0, "> 0"),
    "momentum": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "beta1": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "beta2": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "eps": (lambda v: v > 0, "> 0"),
    "decay": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "rho": (lambda v: v >= 0, ">= 0 (0 turns Pascanu rescaling off)"),
    "weight_decay": (lambda v: v >= 0, ">= 0 (0 turns decoupled weight decay off)"),
    "dropout": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "dropout_conv": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "dropout_fc": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "kp_decay": (lambda v: v >= 0, ">= 0"),
}


def check_range(key: str, value, ok=None, what: str | None = None) -> None:
    """Raise ValueError naming option ``key`` unless ``value`` is a finite number in its range."""
    if ok is None:
        ok, what = OPTION_RANGES[key]
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(value):
        raise ValueError(f"option {key} must be a finite number, got {value!r}")
    if not ok(value):
        raise ValueError(f"option {key} must be {what}, got {value!r}")


def check_layer_lr(layer_lr, names=None) -> dict:
    """``layer_lr`` as a new {layer name: float factor >= 0} ({} for None), or a ValueError naming the
    option; with ``names`` (the network's layer names) every key must be one of them."""
    if layer_lr is None:
        return {}
    if not isinstance(layer_lr, Mapping):
        raise ValueError("option layer_lr must map layer names to learning-rate factors >= 0, e.g. {'conv1': 0.1}, "
                         f"got {layer_lr!r}")
    out = {}
    for name, factor in layer_lr.items():
        if not isinstance(name, str):
            raise ValueError(f"option layer_lr: layer names must be strings such as 'conv1', got {name!r}")
        check_range(f"layer_lr[{name!r}]", factor, lambda v: v >= 0,
                    ">= 0 (a factor of the learning rate; 0 freezes the layer)")
        out[name] = float(factor)
    if names is not None:
        unknown = sorted(set(out) - set(names))
        if unknown:
            raise ValueError(f"option layer_lr names {', '.join(map(repr, unknown))}, not a layer of this network; "
                             f"its layers are {', '.join(names)}")
    return out


def check_widths(widths) -> list[int]:
    """``widths`` as a list of positive ints, or a ValueError naming the option."""
    try:
        values = list(widths)
    except TypeError:
        raise ValueError(f"option widths must be a sequence of positive ints, got {widths!r}") from None
    bad = [w for w in values if isinstance(w, (bool, np.bool_)) or not isinstance(w, (int, np.integer)) or w < 1]
    if not values or bad:
        raise ValueError(f"option widths must be a non-empty sequence of positive ints, got {widths!r}")
    return [int(w) for w in values]


class Model:
    """A CNN trained by a local learning rule; see ``build_model``."""

    def __init__(self, layers, input_shape, rule: str = "ekdaa", seed: int = 0, options: dict | None = None,
                 preset: str | None = None, backend: str = "numpy"):
        if rule not in RULES:
            raise ValueError(f"unknown rule {rule!r}; choose one of {', '.join(RULES)}")
        options = dict(options or {})
        self.opts = resolve_options(options)
        self.rule, self.seed, self.preset = rule, int(seed), preset
        self.layer_specs, self.input_shape = list(layers), tuple(int(s) for s in input_shape)
        self.user_options = options
        self.dtype = np.dtype(self.opts["dtype"])
        self.backend = make_backend(backend, self.opts["dtype"])
        self.blocks: list[Block] = build_blocks(layers, self.input_shape, self.opts["activation"],
                                                self.opts["dropout_conv"], self.opts["dropout_fc"],
                                                self.opts["bias"])
        self.classes = self.blocks[-1].size
        self.conv_forward_linear = self.opts["variant"] == "release"
        self.sweep_rule = rules.check_rule(rule, self.blocks, self.conv_forward_linear)  # "lra-e" runs "ekdaa"
        self.params = {k: self.backend.asarray(v) for k, v in self._init_params().items()}
        layer_lr = check_layer_lr(self.opts["layer_lr"], [b.name for b in self.blocks])
        # parameter keys are "<layer>.<tensor>": every tensor of a layer (W, bias, E) gets its layer's factor
        lr_factors = {k: layer_lr[k.split(".")[0]] for k in self.params if k.split(".")[0] in layer_lr}
        self.optimizer = self.backend.make_optimizer(self.params, self.opts["optimizer"], self.opts["lr"],
                                                     self.opts["rho"], {k: self.opts[k] for k in DEFAULT_HYPER},
                                                     lr_factors)
        self.step_count = 0

    # ------------------------------------------------------------ parameters

    def _init_params(self) -> dict:
        rng = np.random.default_rng(self.seed)
        kind = self.opts["init"].removeprefix("glorot_")
        params = {}
        for b in self.blocks:
            params[f"{b.name}.weight"] = ref.glorot(rng, b.weight_shape, kind, self.dtype)
            if b.bias:
                params[f"{b.name}.bias"] = np.zeros(b.size, dtype=self.dtype)
        for b in self.blocks:  # drawn after all W so the forward weights do not depend on error_init
            w = params[f"{b.name}.weight"]
            if self.opts["error_init"] == "forward":
                e = w.copy() if b.kind == "conv" else np.ascontiguousarray(w.T)
            else:
                e = ref.glorot(rng, b.error_shape, self.opts["error_init"].removeprefix("glorot_"), self.dtype)
            params[f"{b.name}.error_weight"] = e
        # DFA-family feedback matrices, from their own generator (W and E above do not depend on the rule)
        params.update(rules.init_feedback(self.rule, self.blocks, self.classes, self.seed, self.opts["error_init"],
                                          self.dtype))
        return params

    def state_dict(self) -> dict:
        """Copies of every parameter as NumPy arrays, keyed ``<layer>.weight|bias|error_weight|feedback``."""
        return {k: self.backend.to_numpy(v) for k, v in self.params.items()}

    def load_state_dict(self, state: dict, strict: bool = True) -> LoadResult:
        """Copy parameters from ``state`` (as made by ``state_dict``) into the model, in place.

        ``strict=True`` (default): ``state`` must hold exactly this model's keys. ``strict=False``:
        keys the model lacks are ignored and the model's own keys absent from ``state`` keep their
        values (e.g. a torch ``state_dict`` without the ``error_weight`` keys). Either way every
        array loaded must have the parameter's shape and be finite, and nothing changes unless all
        of them do (ValueError naming the key). Returns ``LoadResult(missing_keys, unexpected_keys)``
        like PyTorch's ``load_state_dict``.
        """
        new, result = self._checked_state(state, strict)
        self._assign_params(new)
        return result

    def _checked_state(self, state: dict, strict: bool) -> tuple[dict, LoadResult]:
        """The arrays of ``state`` to load, validated (shape, finiteness, keys), and the key report."""
        if not hasattr(state, "keys"):
            raise ValueError(f"load_state_dict: expected a dict of arrays, got {type(state).__name__}")
        result = LoadResult(sorted(set(self.params) - set(state)), sorted(set(state) - set(self.params)))
        if strict and (result.missing_keys or result.unexpected_keys):
            raise ValueError(f"load_state_dict: missing keys {result.missing_keys}, "
                             f"unexpected keys {result.unexpected_keys} (strict=False loads the keys that match)")
        new = {}
        for k in self.params:
            if k not in state:
                continue
            v = state[k]
            if hasattr(v, "detach"):  # a torch tensor
                v = v.detach().cpu().numpy()
            arr = np.asarray(v)
            if arr.shape != self.params[k].shape:
                raise ValueError(f"load_state_dict: {k} has shape {arr.shape}, expected {self.params[k].shape}")
            if arr.dtype.kind not in "fiu":
                raise ValueError(f"load_state_dict: {k} has dtype {arr.dtype}, expected floating point")
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"load_state_dict: {k} contains NaN or inf")
            new[k] = arr
        return new, result

    def _assign_params(self, new: dict) -> None:
        for k, v in new.items():  # in place: an optimizer may hold references to the parameter arrays
            self.params[k][...] = self.backend.asarray(v)

    @property
    def config(self) -> dict:
        """JSON-able record of how the model was built (layers, input shape, rule, seed, preset, options),
        stored in checkpoints."""
        return {"layers": self.layer_specs, "input_shape": list(self.input_shape), "rule": self.rule,
                "seed": self.seed, "preset": self.preset, "options": self.user_options}

    def __repr__(self) -> str:
        parts = [f"{b.name}({'x'.join(map(str, b.weight_shape))}{', pool' if b.pool else ''})" for b in self.blocks]
        return f"Model(rule={self.rule!r}, backend={self.backend.name!r}, {' -> '.join(parts)})"

    # ------------------------------------------------------------ input checks

    def check_input(self, x, op: str = "forward") -> np.ndarray:
        if not isinstance(x, np.ndarray):
            raise ValueError(f"{op}: x must be a NumPy array [N, C, H, W], got {type(x).__name__}")
        if x.dtype.kind != "f":
            raise ValueError(f"{op}: x must be floating point (pixels scaled x/255 - 0.5), got {x.dtype}; "
                             "ekdaa_cuda.data.load_dataset returns data in this form")
        want = (None, *self.input_shape)
        if x.ndim != 4 or tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(f"{op}: x must have shape [N, {', '.join(map(str, want[1:]))}] (NCHW), got {x.shape}")
        if x.shape[0] == 0:
            raise ValueError(f"{op}: x is an empty batch")
        if not np.all(np.isfinite(x)):
            raise ValueError(f"{op}: x contains NaN or inf")
        return np.asarray(x, dtype=self.dtype)

    def check_labels(self, labels, n: int, op: str) -> np.ndarray:
        labels = np.asarray(labels)
        if labels.dtype.kind not in "iu":
            raise ValueError(f"{op}: labels must be integers, got {labels.dtype}")
        if labels.shape != (n,):
            raise ValueError(f"{op}: labels must have shape ({n},) to match x, got {labels.shape}")
        if labels.size and (labels.min() < 0 or labels.max() >= self.classes):
            raise ValueError(f"{op}: labels must lie in [0, {self.classes}), got range "
                             f"[{labels.min()}, {labels.max()}]")
        return labels.astype(np.int64)

    # ------------------------------------------------------------ forward

    def _forward(self, x, step: int | None, stop: int | None = None, labels=None):
        """Run the network on backend input x. With a step, apply that step's dropout and keep
        what the updates need (per-block caches). With ``stop``, end after block ``stop``. With
        backend ``labels`` the output layer may also form e_y and the batch's loss and correct
        count (the CUDA backend does, in its one output launch)."""
        be = self.backend
        a, caches = x, []
        for b in self.blocks[:None if stop is None else stop + 1]:
            w = self.params[f"{b.name}.weight"]
            bias = self.params.get(f"{b.name}.bias")
            key = None if step is None or b.dropout == 0.0 else ref.dropout_key(self.seed, step, b.index)
            if b.flatten_before:
                a = be.flatten(a)
            if b.kind == "conv":
                a, cache = be.conv_fwd(a, w, bias, b, not self.conv_forward_linear, key, step is not None)
            elif b.kind == "fc":
                a, cache = be.fc_fwd(a, w, bias, b, True, key, step is not None)
            else:
                a, cache = be.output_fwd(a, w, bias, labels)
            caches.append(cache)
        return a, caches

    def forward(self, x) -> np.ndarray:
        """Class probabilities [N, classes] (NumPy) for NCHW input x (inference: no dropout)."""
        x = self.check_input(x)
        chunks = [self._forward(self.backend.input(x[i:i + EVAL_BATCH]), None)[0] for i in range(0, len(x), EVAL_BATCH)]
        return np.concatenate([self.backend.to_numpy(c) for c in chunks])

    def hidden_features(self, x, layer: str | None = None) -> np.ndarray:
        """Inference output (post-activation, post-pool, no dropout) of a hidden layer for NCHW x, in the
        public layout ([N, F] for FC, [N, C, H, W] for conv), as NumPy; default the last hidden layer
        (the representation the paper's t-SNE plots, Fig. 4)."""
        names = [b.name for b in self.blocks[:-1]]
        if not names:
            raise ValueError("hidden_features: this network has no hidden layer")
        layer = names[-1] if layer is None else layer
        if layer not in names:
            raise ValueError(f"hidden_features: unknown hidden layer {layer!r}; choose one of {', '.join(names)}")
        x = self.check_input(x, "hidden_features")
        stop, be = names.index(layer), self.backend
        return np.concatenate([be.to_numpy(be.public(self._forward(be.input(x[i:i + EVAL_BATCH]), None, stop)[0]))
                               for i in range(0, len(x), EVAL_BATCH)])

    def predict(self, x) -> np.ndarray:
        return self.forward(x).argmax(axis=1)

    def evaluate(self, x, labels) -> dict:
        """Mean cross-entropy and accuracy (fraction) over a dataset."""
        x = self.check_input(x, "evaluate")
        labels = self.check_labels(labels, len(x), "evaluate")
        return self.evaluate_arrays(self.backend.input(x), self.backend.labels(labels))

    def evaluate_arrays(self, x, labels) -> dict:
        """``evaluate`` on backend arrays (e.g. a test set resident on the GPU): one sync at the end."""
        be = self.backend
        loss, correct = 0.0, 0
        for i in range(0, len(x), EVAL_BATCH):
            batch_labels = labels[i:i + EVAL_BATCH]
            probs, caches = self._forward(x[i:i + EVAL_BATCH], None, labels=batch_labels)
            batch_loss, batch_correct = be.batch_stats(probs, batch_labels, caches[-1])
            loss, correct = loss + batch_loss, correct + batch_correct
        return {"loss": float(loss) / len(x), "accuracy": float(correct) / len(x)}

    # ------------------------------------------------------------ learning rules

    def _normalize_d(self, d, cache: dict, rule: str):
        """EKDAA only: normalize="release" divides d by max(d) when that exceeds 1; normalize="rms"
        scales d so that its RMS over the batch equals the RMS of the layer's pre-activation h."""
        if rule != "ekdaa" or self.opts["normalize"] == "none":
            return d
        if self.opts["normalize"] == "release":
            return _cap_peak(d)
        return _match_rms(d, cache["h"])

    def _projection(self, block: Block, rule: str):
        """(the kernel e is projected through, its FC layout): EKDAA's E, FA/KP's B; BP uses W."""
        feedback = rule in rules.USES_ERROR_WEIGHT
        kernel = self.params[f"{block.name}.{'error_weight' if feedback else 'weight'}"]
        return kernel, "in_out" if feedback else "out_in"

    def _error_below(self, e, block: Block, below: Block, cache: dict, rule: str):
        """Error units of ``below`` from the error e of ``block`` (SPEC.md step 3)."""
        be, opts = self.backend, self.opts
        kernel, layout = self._projection(block, rule)
        kind = "target" if rule == "ekdaa" else "derivative"
        linear = below.kind == "conv" and self.conv_forward_linear
        if block.kind == "conv" and not (rule == "ekdaa" and opts["normalize"] != "none"):
            return be.conv_backproject(e, kernel, cache, below, kind, opts["beta"], linear, opts["unpool"])
        if block.kind == "conv":
            d = be.conv_project(e, kernel)
        else:
            d = be.fc_project(e, kernel, layout)
            if below.kind == "conv":  # unflatten to the conv block's output map
                d = be.to_map(d, below.out_shape)
        d = self._normalize_d(d, cache, rule)
        return be.unpool_epilogue(d, cache, below, kind, opts["beta"], linear, opts["unpool"])

    def _backward(self, caches: list, probs, labels, rule: str, errors: dict | None = None) -> dict:
        """The rule's raw updates, keyed like the state dict (summed over the batch), as backend arrays.

        With ``errors`` given, every layer's error unit e is stored there too (public layout, NumPy).
        """
        if rule in rules.DIRECT:
            return rules.direct_backward(self, caches, probs, labels, rule, errors)
        be = self.backend
        gamma = float(self.opts["gamma"])
        grads = {}
        e = be.output_error(probs, labels, caches[-1])  # e_y = z_y − onehot
        for i in range(len(self.blocks) - 1, -1, -1):
            b, cache = self.blocks[i], caches[i]
            if errors is not None:
                errors[b.name] = be.to_numpy(be.public(e))
            release = b.kind == "conv" and rule == "ekdaa" and self.opts["normalize"] == "release"
            g = gamma if rule == "ekdaa" and not release else 1.0 if rule == "kp" else None
            below = self.blocks[i - 1] if i > 0 else None
            if below is not None and b.kind != "conv" and hasattr(be, "fc_update_project") \
                    and not (rule == "ekdaa" and self.opts["normalize"] != "none"):
                # the FC update and the projection of e to the layer below, one launch (both read only e)
                kernel, layout = self._projection(b, rule)
                (dw, db, de), e_below = be.fc_update_project(
                    cache, e, b, g, kernel, layout, caches[i - 1], below, "target" if rule == "ekdaa" else "derivative",
                    self.opts["beta"], below.kind == "conv" and self.conv_forward_linear, self.opts["unpool"])
            else:
                dw, db, de = be.weight_update(cache, e, b, g)
                e_below = None
            if release:  # the release's ΔW normalisation: by max(ΔW) when above 1, then by C_in·C_out
                dw = _cap_peak(dw) / dw.dtype.type(b.weight_shape[0] * b.weight_shape[1])
                de = dw * dw.dtype.type(gamma)
            if rule == "kp":  # ΔB = ΔWᵀ (FC) / ΔW (conv), optional weight decay on both (rules.py)
                dw, de = rules.kolen_pollack(be, dw, de, self.params[f"{b.name}.weight"],
                                             self.params[f"{b.name}.error_weight"], self.opts["kp_decay"])
            grads[f"{b.name}.weight"] = dw
            if b.bias:
                grads[f"{b.name}.bias"] = db
            if rule in ("ekdaa", "kp"):  # EKDAA: ΔE = γ ΔWᵀ (FC) / γ ΔW (conv)
                grads[f"{b.name}.error_weight"] = de
            if below is not None:
                e = e_below if e_below is not None else self._error_below(e, b, below, caches[i - 1], rule)
        return grads

    def _updates(self, x, labels, rule: str, op: str, errors: dict | None = None):
        x = self.check_input(x, op)
        labels = self.check_labels(labels, len(x), op)
        be_labels = self.backend.labels(labels)
        probs, caches = self._forward(self.backend.input(x), self.step_count, labels=be_labels)
        return self._backward(caches, probs, be_labels, rule, errors), probs, labels

    def _host(self, grads: dict) -> dict:
        return {k: np.ascontiguousarray(self.backend.to_numpy(v)) for k, v in grads.items()}

    def updates(self, x, labels) -> dict:
        """The rule's raw updates for one batch (before the optimizer), at the current step's dropout."""
        return self._host(self._updates(x, labels, self.sweep_rule, "updates")[0])

    def errors(self, x, labels, rule: str | None = None) -> dict:
        """Every layer's error unit e for a batch (conv: [N, C, H, W] at pre-pool resolution; FC: [N, F]).

        For EKDAA e = (φ(h) − y)·m/(1−p); for BP it is δ = ∂CE/∂h; for the other rules their δ
        (rules.py). The output layer's is z_y − onehot.
        """
        errors: dict = {}
        rule = self.sweep_rule if rule is None else rules.check_rule(rule, self.blocks, self.conv_forward_linear)
        if rule in rules.STORED_FEEDBACK and rule != self.sweep_rule:
            raise ValueError(f"errors: rule {rule!r} needs feedback matrices this {self.rule!r} model does not have")
        self._updates(x, labels, rule, "errors", errors)
        return errors

    def gradients(self, x, labels) -> dict:
        """Exact backprop gradients of the summed cross-entropy (same forward, same dropout masks)."""
        return self._host(self._updates(x, labels, "bp", "gradients")[0])

    def alignment(self, x, labels) -> dict:
        """Per-layer angle in degrees between the rule's ΔW and the true gradient, and between E and Wᵀ
        (E vs W for conv; reported for the rules that have error weights: EKDAA/LRA-E, FA, KP, and BP)."""
        upd, grad = self.updates(x, labels), self.gradients(x, labels)
        params = self.state_dict()
        out = {}
        for b in self.blocks:
            key = f"{b.name}.weight"
            out[f"{b.name}.update_angle"] = _angle(upd[key], grad[key])
            if self.sweep_rule in rules.DIRECT:
                continue
            w, e = params[key], params[f"{b.name}.error_weight"]
            out[f"{b.name}.error_weight_angle"] = _angle(e, w if b.kind == "conv" else w.T)
        return out

    def step(self, x, labels, lr_scale: float = 1.0) -> dict:
        """One optimizer step on a batch. Returns the batch's loss (mean) and accuracy.

        Nothing is changed unless the whole step succeeds: a non-finite update raises
        FloatingPointError and leaves parameters, optimizer state and step count as they were.
        """
        x = self.check_input(x, "step")
        labels = self.check_labels(labels, len(x), "step")
        loss, correct = self.step_arrays(self.backend.input(x), self.backend.labels(labels), lr_scale)
        return {"loss": float(loss) / len(x), "accuracy": float(correct) / len(x)}

    def step_arrays(self, x, labels, lr_scale: float = 1.0, check_finite: bool = True):
        """``step`` on validated backend arrays; returns the batch's (summed loss, correct count) as
        backend scalars, so a GPU training loop need not wait for them.

        ``check_finite=False`` skips the per-step test (a device synchronisation on the GPU): the
        caller must then watch ``nonfinite_updates()`` (the CUDA backend's optimizer kernel flags
        every non-finite update or parameter on the device) or the returned loss, which turns
        non-finite once any parameter does, and must not keep the model after that.
        """
        be = self.backend
        with np.errstate(over="ignore", invalid="ignore"):  # non-finite results are caught just below
            if hasattr(be, "train_step"):  # the CUDA backend: one recorded (or graph) update per step
                stats = self._checked_device_step(x, labels, lr_scale) if check_finite else \
                    be.train_step(self, x, labels, lr_scale)
            else:
                probs, caches = self._forward(x, self.step_count, labels=labels)
                grads = self._backward(caches, probs, labels, self.sweep_rule)
                if check_finite and not be.all_finite(grads.values()):
                    bad = [k for k, g in grads.items() if not be.all_finite([g])]
                    raise FloatingPointError(f"step {self.step_count}: update of {', '.join(bad)} is not finite; "
                                             "model unchanged")
                self.params = self.optimizer.step(self.params, grads, lr_scale)
                stats = be.batch_stats(probs, labels, caches[-1])
        self.step_count += 1
        return stats

    def update_arrays(self, x, labels):
        """The forward pass and the rule's raw updates of one training step on backend arrays, at
        the current step's dropout: (probs, caches, updates). ``step_arrays`` applies the optimizer."""
        probs, caches = self._forward(x, self.step_count, labels=labels)
        return probs, caches, self._backward(caches, probs, labels, self.sweep_rule)

    def _checked_device_step(self, x, labels, lr_scale: float):
        """A CUDA-backend step that leaves the model unchanged when it raises or when the optimizer
        kernel flags a non-finite update or parameter (a copy of the model is restored)."""
        saved = self.optimizer.snapshot()
        try:
            stats = self.backend.train_step(self, x, labels, lr_scale)
            bad = self.nonfinite_updates()
        except BaseException:
            self.optimizer.restore(saved)
            raise
        if bad:
            self.optimizer.restore(saved)
            raise FloatingPointError(f"step {self.step_count}: update of {', '.join(bad)} (or the parameter it "
                                     "updates) is not finite; model unchanged")
        return stats

    def nonfinite_updates(self) -> list[str]:
        """The parameters whose update or new value was NaN or ±inf in some step since the last
        check (the CUDA backend's optimizer kernel sets device flags; reading them synchronises
        once). Always empty on the NumPy backend, which tests every step before applying it."""
        read = getattr(self.optimizer, "nonfinite_keys", None)
        return read() if read is not None else []

    # ------------------------------------------------------------ checkpoints

    def checkpoint_arrays(self) -> dict:
        """Everything needed to continue training exactly: parameters, optimizer state, step, config."""
        arrays = {f"param.{k}": v for k, v in self.state_dict().items()}
        arrays.update(self.optimizer.state_dict())
        arrays["step_count"] = np.array(self.step_count, dtype=np.int64)
        arrays["config_json"] = np.array(json.dumps(self.config))
        return arrays

    def load_checkpoint_arrays(self, arrays: dict) -> None:
        """Restore parameters, optimizer state and step count from ``checkpoint_arrays()``.

        Everything is validated first (keys, shapes, finiteness, the optimizer's slots); on a
        ValueError the model, its optimizer and its step count are unchanged."""
        params = {k.removeprefix("param."): v for k, v in arrays.items() if k.startswith("param.")}
        new, _ = self._checked_state(params, strict=True)
        if "step_count" not in arrays:
            raise ValueError("checkpoint has no step_count")
        step = np.asarray(arrays["step_count"])
        if step.shape != () or step.dtype.kind not in "iu" or int(step) < 0:
            raise ValueError(f"checkpoint step_count must be an integer >= 0, got {step.dtype} {step.shape}")
        opt_state = {k: v for k, v in arrays.items() if k.startswith("optimizer.")}
        self._check_optimizer_state(opt_state)
        self.optimizer.load_state_dict(opt_state, self.params)
        self._assign_params(new)
        self.step_count = int(step)

    def _check_optimizer_state(self, flat: dict) -> None:
        """Raise ValueError unless ``flat`` is a valid optimizer state for this model's optimizer."""
        slots = OPTIMIZER_SLOTS[self.opts["optimizer"]]
        t = np.asarray(flat.get("optimizer.t", 0))
        if t.shape != () or t.dtype.kind not in "iu" or int(t) < 0:
            raise ValueError(f"optimizer.t must be an integer >= 0, got {t.dtype} {t.shape}")
        seen: dict[str, set] = {}
        for name, arr in flat.items():
            if name == "optimizer.t":
                continue
            parts = name.split(".", 2)
            if len(parts) != 3 or parts[1] not in slots or parts[2] not in self.params:
                raise ValueError(f"optimizer state {name!r} does not belong to this model's {self.opts['optimizer']} "
                                 f"optimizer (expected optimizer.<{'|'.join(slots)}>.<parameter>)")
            arr = np.asarray(arr)
            if arr.shape != self.params[parts[2]].shape or arr.dtype.kind != "f" or not np.all(np.isfinite(arr)):
                raise ValueError(f"optimizer state {name!r} must be a finite float array of shape "
                                 f"{self.params[parts[2]].shape}, got {arr.dtype} {arr.shape}")
            seen.setdefault(parts[2], set()).add(parts[1])
        partial = sorted(k for k, got in seen.items() if got != set(slots))
        if partial:
            raise ValueError(f"optimizer state of {partial} lacks some of the slots {list(slots)}")


def _cap_peak(t):
    """t / max(t) when max(t) > 1, else t (the authors' release normalisation)."""
    peak = float(t.max())
    return t / t.dtype.type(peak) if peak > 1 else t


def _match_rms(d, h):
    """d scaled to the RMS of h (d unchanged when it is all zero). Before argmax unpooling, d's RMS
    is the RMS over the positions that will receive it."""
    rms_d, rms_h = math.sqrt(float((d * d).mean())), math.sqrt(float((h * h).mean()))
    return d * d.dtype.type(rms_h / rms_d) if rms_d > 0 else d


def _angle(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    denom = np.linalg.norm(a) * np.linalg.norm(b)
    if denom == 0:
        return float("nan")
    return float(np.degrees(np.arccos(np.clip(a @ b / denom, -1.0, 1.0))))


def build_model(preset_or_layers="fmnist", rule: str = "ekdaa", backend: str = "auto", seed: int = 0,
                **options) -> Model:
    """Build a model from a preset name ("fmnist", "cifar", "svhn", or the FC baselines "fmnist-fc",
    "cifar-fc", "svhn-fc") or a list of layer specs.

    Rules: "ekdaa" (default), "bp", and the comparison rules of ``ekdaa_cuda.rules``: "fa", "kp",
    "dfa", "sdfa", "rdfa", "drtp", "lra-e" (EKDAA on an FC-only network).

    Options (SPEC.md defaults): activation="tanh", beta=0.9, gamma=0.1, bias=False,
    init="glorot_uniform", error_init="glorot_uniform"|"forward", unpool="argmax"|"bilinear",
    normalize="none"|"release"|"rms", variant="paper"|"release", dropout / dropout_conv / dropout_fc,
    optimizer="sgd"|"adam"|"rmsprop", lr=5e-4, momentum=0.9, beta1, beta2, eps, decay, rho=0
    (Pascanu), weight_decay=0 (decoupled, every tensor), layer_lr={"conv1": 0.1, ...} (a factor of lr per
    layer, for all its tensors; 0 freezes a layer), dtype="float32"|"float64", kp_decay=0 (rule "kp"),
    widths=(...) to resize a preset's layers, input_shape=(C, H, W) for a list of layers.
    """
    widths = options.pop("widths", None)
    if widths is not None:
        widths = check_widths(widths)
    input_shape = options.pop("input_shape", None)
    if isinstance(preset_or_layers, str):
        layers, shape = preset_layers(preset_or_layers, widths)
        if input_shape is not None and tuple(input_shape) != tuple(shape):
            raise ValueError(f"preset {preset_or_layers!r} takes input_shape {shape}, got {tuple(input_shape)}")
        model = Model(layers, shape, rule, seed, options, preset=preset_or_layers, backend=backend)
        if widths is not None:
            model.user_options["widths"] = list(widths)
        return model
    if widths is not None:
        raise ValueError("widths only applies to presets; set the sizes in the layer specs")
    if input_shape is None:
        raise ValueError("a list of layers needs input_shape=(C, H, W)")
    return Model(list(preset_or_layers), input_shape, rule, seed, options, backend=backend)


BACKENDS = ("auto", "numpy", "cuda", "cuda-sim")


def make_backend(name, dtype: str):
    """The backend object for ``backend=name``: "auto" picks CUDA when it is usable, else NumPy.
    "cuda-sim" runs the CUDA backend's kernels on the CPU simulator (never picked by "auto")."""
    from ._device import cuda_available, device_status

    if not isinstance(name, str):  # a backend object (tests, custom backends)
        return name
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(map(repr, BACKENDS))}")
    if name == "auto":
        name = "cuda" if cuda_available() and dtype == "float32" else "numpy"
    if name == "numpy":
        return NumpyBackend(dtype)
    status = device_status(name)
    if not status.startswith("ok:"):
        raise RuntimeError(f"backend={name!r} is not usable here: {status}; use backend='numpy'")
    if dtype != "float32":
        raise ValueError(f"backend={name!r} computes in float32, got dtype={dtype!r}; use backend='numpy' for float64")
    from .backend_cuda import CudaBackend

    return CudaBackend(name)

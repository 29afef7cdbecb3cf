"""The model: parameters, forward pass, learning rules and optimizer steps.

``build_model`` is the entry point. A model is a preset or a list of layer specs
(``ekdaa_cuda.layers``) plus a learning rule chosen at build time. This module holds
the NumPy backend: activations are kept channels-last (NHWC) inside, so each conv is one
im2col GEMM, while every public array keeps the public layouts (NCHW inputs, PyTorch
weight layouts).

EKDAA (SPEC.md "EKDAA update"): from the output error e_y = z_y − onehot the error is
projected down with the error weights E (FC: d = e Eᵀ; conv: d = conv-backward-data(e, E)),
unpooled at the recorded argmax, and every layer forms its target y = φ(h − βd) and its
error e = (φ(h) − y)·m/(1−p). The updates are ΔW = eᵀz (FC), ΔW = z ⋆ Flip(e) (conv),
Δb = Σe and ΔE = γΔWᵀ (FC) / γΔW (conv), summed over the batch.
BP runs the same sweep with W in place of E and d·φ'(h) in place of the target error.
"""

from __future__ import annotations

import json
import math

import numpy as np

from . import reference as ref
from .layers import Block, build_blocks, preset_layers
from .optim import DEFAULT_HYPER, Optimizer

RULES = ("ekdaa", "bp")

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
    **DEFAULT_HYPER,
}
# variant="release" bundles the authors' TensorFlow release (SPEC.md); explicit options still win.
RELEASE_VARIANT = {"unpool": "bilinear", "error_init": "forward", "normalize": "release"}
_CHOICES = {
    "init": ("glorot_uniform", "glorot_normal"),
    "error_init": ("glorot_uniform", "glorot_normal", "forward"),
    "unpool": ("argmax", "bilinear"),
    "normalize": ("none", "release"),
    "variant": ("paper", "release"),
    "dtype": ("float32", "float64"),
    "optimizer": ref.OPTIMIZERS,
}
EVAL_BATCH = 500


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
        opts["dropout_conv"] = opts["dropout_fc"] = options["dropout"]
    opts.update({k: v for k, v in options.items() if k in DEFAULT_OPTIONS})
    for key, choices in _CHOICES.items():
        if opts[key] not in choices:
            raise ValueError(f"option {key}={opts[key]!r} is not one of {', '.join(choices)}")
    ref.check_activation(opts["activation"])
    for key in ("beta", "gamma", "lr", "rho", "dropout_conv", "dropout_fc"):
        if not isinstance(opts[key], (int, float)) or not math.isfinite(opts[key]):
            raise ValueError(f"option {key} must be a finite number, got {opts[key]!r}")
    for key in ("dropout_conv", "dropout_fc"):
        if not 0.0 <= opts[key] < 1.0:
            raise ValueError(f"option {key} must be in [0, 1), got {opts[key]!r}")
    return opts


class Model:
    """A CNN trained by a local learning rule; see ``build_model``."""

    def __init__(self, layers, input_shape, rule: str = "ekdaa", seed: int = 0, options: dict | None = None,
                 preset: str | None = None):
        if rule not in RULES:
            raise ValueError(f"unknown rule {rule!r}; choose one of {', '.join(RULES)}")
        options = dict(options or {})
        self.opts = resolve_options(options)
        self.rule, self.seed, self.preset = rule, int(seed), preset
        self.layer_specs, self.input_shape = list(layers), tuple(int(s) for s in input_shape)
        self.user_options = options
        self.dtype = np.dtype(self.opts["dtype"])
        self.blocks: list[Block] = build_blocks(layers, self.input_shape, self.opts["activation"],
                                                self.opts["dropout_conv"], self.opts["dropout_fc"],
                                                self.opts["bias"])
        self.classes = self.blocks[-1].size
        self.conv_forward_linear = self.opts["variant"] == "release"
        if rule == "bp":
            for b in self.blocks:
                if b.activation == "signum" and not (b.kind == "conv" and self.conv_forward_linear):
                    raise ValueError(f"rule 'bp' needs a differentiable activation; {b.name} uses signum")
        self.params = self._init_params()
        self.optimizer = Optimizer(self.opts["optimizer"], self.opts["lr"], self.opts["rho"],
                                   **{k: self.opts[k] for k in DEFAULT_HYPER})
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
        return params

    def state_dict(self) -> dict:
        """Copies of every parameter as NumPy arrays, keyed ``<layer>.weight|bias|error_weight``."""
        return {k: v.copy() for k, v in self.params.items()}

    def load_state_dict(self, state: dict) -> None:
        missing = set(self.params) - set(state)
        extra = set(state) - set(self.params)
        if missing or extra:
            raise ValueError(f"load_state_dict: missing keys {sorted(missing)}, unexpected keys {sorted(extra)}")
        new = {}
        for k, v in state.items():
            arr = np.asarray(v)
            if arr.shape != self.params[k].shape:
                raise ValueError(f"load_state_dict: {k} has shape {arr.shape}, expected {self.params[k].shape}")
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"load_state_dict: {k} contains NaN or inf")
            new[k] = np.array(arr, dtype=self.dtype)
        self.params = new

    @property
    def config(self) -> dict:
        """JSON-able description that ``build_model(**config)`` turns back into this architecture."""
        return {"layers": self.layer_specs, "input_shape": list(self.input_shape), "rule": self.rule,
                "seed": self.seed, "preset": self.preset, "options": self.user_options}

    def __repr__(self) -> str:
        parts = [f"{b.name}({'x'.join(map(str, b.weight_shape))}{', pool' if b.pool else ''})" for b in self.blocks]
        return f"Model(rule={self.rule!r}, backend='numpy', {' -> '.join(parts)})"

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

    def _mask(self, b: Block, n: int, step: int | None):
        """Inverted-dropout multiplier of block b at a training step (None: no dropout)."""
        if step is None or b.dropout == 0.0:
            return None
        mask = ref.dropout_mask(self.seed, step, b.index, (n, *b.h_shape), b.dropout, self.dtype)
        return ref.to_nhwc(mask) if b.kind == "conv" else mask

    def _forward(self, x: np.ndarray, step: int | None):
        """Run the network on NCHW x. With a step, apply dropout and keep what the updates need."""
        a = ref.to_nhwc(x)
        caches = []
        for b in self.blocks:
            w = self.params[f"{b.name}.weight"]
            bias = self.params.get(f"{b.name}.bias")
            if b.flatten_before:
                a = ref.to_nchw(a).reshape(len(a), -1) if a.ndim == 4 else a
            cache = {"z": a}
            if b.kind == "conv":
                if step is None:
                    h = ref.conv2d_nhwc(a, w, bias)
                else:  # keep im2col(z): the filter update reuses it
                    h, cache["cols"] = ref.conv2d_nhwc(a, w, bias, return_cols=True)
            else:
                h = ref.linear(a, w, bias)
            cache["h"] = h
            if b.kind == "output":
                a = ref.softmax(h)
            else:
                a = h if (b.kind == "conv" and self.conv_forward_linear) else ref.activate(b.activation, h)
                mask = self._mask(b, len(x), step)
                if mask is not None:
                    a = a * mask
                cache["mask"] = mask
                if b.pool:
                    a, cache["argmax"] = ref.maxpool2x2_nhwc(a)
            caches.append(cache)
        return a, caches

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities [N, classes] for NCHW input x (inference: no dropout)."""
        x = self.check_input(x)
        return np.concatenate([self._forward(x[i:i + EVAL_BATCH], None)[0] for i in range(0, len(x), EVAL_BATCH)])

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.forward(x).argmax(axis=1)

    def evaluate(self, x: np.ndarray, labels: np.ndarray) -> dict:
        """Mean cross-entropy and accuracy (fraction) over a dataset."""
        probs = self.forward(x)
        labels = self.check_labels(labels, len(x), "evaluate")
        return {"loss": ref.cross_entropy(probs, labels) / len(x),
                "accuracy": float(np.mean(probs.argmax(1) == labels))}

    # ------------------------------------------------------------ learning rules

    def _epilogue(self, b: Block, cache: dict, d: np.ndarray, rule: str) -> np.ndarray:
        """Error unit of block b from the projected signal d at its pre-activation resolution."""
        h = cache["h"]
        if rule == "ekdaa":
            e = ref.target_error(b.activation, h, d, self.opts["beta"])
        else:
            linear = b.kind == "conv" and self.conv_forward_linear
            e = d if linear else d * ref.activation_derivative(b.activation, h)
        return e if cache["mask"] is None else e * cache["mask"]

    def _release_normalize(self, d: np.ndarray, rule: str) -> np.ndarray:
        if rule == "ekdaa" and self.opts["normalize"] == "release":
            peak = d.max()
            if peak > 1:
                d = d / peak
        return d

    def _backward(self, caches: list, probs: np.ndarray, labels: np.ndarray, rule: str,
                  errors: dict | None = None) -> dict:
        """The rule's raw updates, keyed like the state dict (summed over the batch).

        With ``errors`` given, every layer's error unit e is stored there too (public layout).
        """
        gamma = self.dtype.type(self.opts["gamma"])
        grads = {}
        e = probs - ref.one_hot(labels, self.classes, self.dtype)  # e_y = z_y − onehot
        d = None
        for i in range(len(self.blocks) - 1, -1, -1):
            b, cache = self.blocks[i], caches[i]
            if b.kind != "output":
                if b.kind == "conv" and d.ndim == 2:  # unflatten to the block's output map (NCHW order)
                    d = ref.to_nhwc(d.reshape(len(d), *b.out_shape))
                if b.pool:
                    hw = b.h_shape[1:]
                    d = (ref.unpool_argmax_nhwc(d, cache["argmax"], hw) if self.opts["unpool"] == "argmax"
                         else ref.unpool_bilinear_nhwc(d, hw))
                e = self._epilogue(b, cache, d, rule)
            if errors is not None:  # the output's e is z_y − onehot, set above the loop
                errors[b.name] = ref.to_nchw(e) if e.ndim == 4 else e.copy()
            z = cache["z"]
            if b.kind == "conv":
                dw = ref.conv2d_filter_grad_nhwc(z, e, b.kernel, cache["cols"])
                if rule == "ekdaa" and self.opts["normalize"] == "release":
                    peak = dw.max()
                    if peak > 1:
                        dw = dw / peak
                    dw = dw / (b.weight_shape[0] * b.weight_shape[1])
                db = e.sum(axis=(0, 1, 2))
            else:
                dw = e.T @ z
                db = e.sum(axis=0)
            grads[f"{b.name}.weight"] = np.ascontiguousarray(dw)
            if b.bias:
                grads[f"{b.name}.bias"] = db
            if rule == "ekdaa":
                grads[f"{b.name}.error_weight"] = gamma * (dw if b.kind == "conv" else dw.T)
            if i == 0:
                break
            k = self.params[f"{b.name}.{'error_weight' if rule == 'ekdaa' else 'weight'}"]
            if b.kind == "conv":
                d = ref.conv2d_transpose_nhwc(e, k)
            else:
                d = e @ (k.T if rule == "ekdaa" else k)
            d = self._release_normalize(d, rule)
        return {k: np.ascontiguousarray(v) for k, v in grads.items()}

    def _updates(self, x, labels, rule: str, op: str, errors: dict | None = None):
        x = self.check_input(x, op)
        labels = self.check_labels(labels, len(x), op)
        probs, caches = self._forward(x, self.step_count)
        return self._backward(caches, probs, labels, rule, errors), probs, labels

    def updates(self, x: np.ndarray, labels: np.ndarray) -> dict:
        """The rule's raw updates for one batch (before the optimizer), at the current step's dropout."""
        return self._updates(x, labels, self.rule, "updates")[0]

    def errors(self, x: np.ndarray, labels: np.ndarray, rule: str | None = None) -> dict:
        """Every layer's error unit e for a batch (conv: [N, C, H, W] at pre-pool resolution; FC: [N, F]).

        For EKDAA e = (φ(h) − y)·m/(1−p); for BP it is δ = ∂CE/∂h. The output layer's is z_y − onehot.
        """
        errors: dict = {}
        self._updates(x, labels, rule or self.rule, "errors", errors)
        return errors

    def gradients(self, x: np.ndarray, labels: np.ndarray) -> dict:
        """Exact backprop gradients of the summed cross-entropy (same forward, same dropout masks)."""
        return self._updates(x, labels, "bp", "gradients")[0]

    def alignment(self, x: np.ndarray, labels: np.ndarray) -> dict:
        """Per-layer angle in degrees between the rule's ΔW and the true gradient, and between E and Wᵀ."""
        upd, grad = self.updates(x, labels), self.gradients(x, labels)
        out = {}
        for b in self.blocks:
            key = f"{b.name}.weight"
            out[f"{b.name}.update_angle"] = _angle(upd[key], grad[key])
            w, e = self.params[key], self.params[f"{b.name}.error_weight"]
            out[f"{b.name}.error_weight_angle"] = _angle(e, w if b.kind == "conv" else w.T)
        return out

    def step(self, x: np.ndarray, labels: np.ndarray, lr_scale: float = 1.0) -> dict:
        """One optimizer step on a batch. Returns the batch's loss (mean) and accuracy.

        Nothing is changed unless the whole step succeeds: a non-finite update raises
        FloatingPointError and leaves parameters, optimizer state and step count as they were.
        """
        with np.errstate(over="ignore", invalid="ignore"):  # non-finite results are caught just below
            grads, probs, labels = self._updates(x, labels, self.rule, "step")
            new_params, new_state, t = self.optimizer.apply(self.params, grads, lr_scale)
        for k, g in grads.items():
            if not np.all(np.isfinite(g)):
                raise FloatingPointError(f"step {self.step_count}: update of {k} is not finite; model unchanged")
        for k, p in new_params.items():
            if not np.all(np.isfinite(p)):
                raise FloatingPointError(f"step {self.step_count}: {k} would become non-finite; model unchanged")
        self.params = {**self.params, **new_params}
        self.optimizer.commit(new_state, t)
        self.step_count += 1
        return {"loss": ref.cross_entropy(probs, labels) / len(labels),
                "accuracy": float(np.mean(probs.argmax(1) == labels))}

    # ------------------------------------------------------------ checkpoints

    def checkpoint_arrays(self) -> dict:
        """Everything needed to continue training exactly: parameters, optimizer state, step, config."""
        arrays = {f"param.{k}": v for k, v in self.params.items()}
        arrays.update(self.optimizer.state_dict())
        arrays["step_count"] = np.array(self.step_count, dtype=np.int64)
        arrays["config_json"] = np.array(json.dumps(self.config))
        return arrays

    def load_checkpoint_arrays(self, arrays: dict) -> None:
        params = {k.removeprefix("param."): v for k, v in arrays.items() if k.startswith("param.")}
        self.load_state_dict(params)
        self.optimizer.load_state_dict({k: v for k, v in arrays.items() if k.startswith("optimizer.")}, self.params)
        self.step_count = int(arrays["step_count"])


def _angle(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    denom = np.linalg.norm(a) * np.linalg.norm(b)
    if denom == 0:
        return float("nan")
    return float(np.degrees(np.arccos(np.clip(a @ b / denom, -1.0, 1.0))))


def build_model(preset_or_layers="fmnist", rule: str = "ekdaa", backend: str = "auto", seed: int = 0,
                **options) -> Model:
    """Build a model from a preset name ("fmnist", "cifar", "svhn") or a list of layer specs.

    Options (SPEC.md defaults): activation="tanh", beta=0.9, gamma=0.1, bias=False,
    init="glorot_uniform", error_init="glorot_uniform"|"forward", unpool="argmax"|"bilinear",
    normalize="none"|"release", variant="paper"|"release", dropout / dropout_conv / dropout_fc,
    optimizer="sgd"|"adam"|"rmsprop", lr=5e-4, momentum=0.9, beta1, beta2, eps, decay, rho=0
    (Pascanu), dtype="float32"|"float64", widths=(...) to resize a preset's layers,
    input_shape=(C, H, W) for a list of layers.
    """
    from ._device import cuda_available, cuda_status

    if backend not in ("auto", "numpy", "cuda"):
        raise ValueError(f"unknown backend {backend!r}; choose 'auto', 'numpy' or 'cuda'")
    if backend == "cuda":
        raise RuntimeError("backend='cuda' is not available yet in this build "
                           f"(CUDA status: {cuda_status()}); use backend='numpy'")
    if backend == "auto" and cuda_available():
        pass  # the CUDA model lands with the CUDA backend; until then auto means numpy
    widths = options.pop("widths", None)
    input_shape = options.pop("input_shape", None)
    if isinstance(preset_or_layers, str):
        layers, shape = preset_layers(preset_or_layers, widths)
        if input_shape is not None and tuple(input_shape) != tuple(shape):
            raise ValueError(f"preset {preset_or_layers!r} takes input_shape {shape}, got {tuple(input_shape)}")
        model = Model(layers, shape, rule, seed, options, preset=preset_or_layers)
        if widths is not None:
            model.user_options["widths"] = list(widths)
        return model
    if widths is not None:
        raise ValueError("widths only applies to presets; set the sizes in the layer specs")
    if input_shape is None:
        raise ValueError("a list of layers needs input_shape=(C, H, W)")
    return Model(list(preset_or_layers), input_shape, rule, seed, options)

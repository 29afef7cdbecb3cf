"""Interoperability: a trained model as a PyTorch module, as ONNX, and back.

    from ekdaa_cuda import export
    net = export.to_torch(model)            # torch.nn.Module; net(x) == model.forward(x)
    export.to_onnx(model, "model.onnx")     # through torch; input "x" [N, C, H, W], output "probs"
    model2 = export.from_torch(net)         # back to an ekdaa_cuda Model (error weights: see below)

The PyTorch module is a plain CNN that holds the forward weights only: its ``state_dict``
keys are ours (``conv1.weight``, ``fc1.bias``, ``out.weight``, ...) without the EKDAA error
weights (``<layer>.error_weight``) and the DFA-family ``feedback`` matrices, which inference
does not use. It reproduces ``Model.forward`` layer by layer: same-padded stride-1 conv (+ bias
when the layer has one), the layer's activation (skipped for the conv stack of
``variant="release"``, whose conv layers forward pre-activations), 2x2 max-pool (floor, like
ours), flatten in NCHW order, linear layers and a softmax output, so ``net(x)`` returns class
probabilities. ``to_torch(model, probabilities=False)`` returns the logits instead (e.g. for
``torch.nn.CrossEntropyLoss``). Dropout layers are included but, as in ``Model.forward``, do
nothing in ``net.eval()`` mode, which ``to_torch`` sets; in training mode torch draws its own
masks, not ours.

torch, onnx, onnxruntime and safetensors are optional (``pip install "ekdaa-cuda[export]"``);
they are imported only when a function here needs them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .model import Model, build_model

__all__ = ["from_torch", "load_model", "model_from_config", "save_safetensors", "to_onnx", "to_torch"]

#: Keys of a Model's state that inference does not use and a torch module therefore lacks.
TRAINING_ONLY_SUFFIXES = (".error_weight", ".feedback")


def _require(module: str, extra: str = "export"):
    """Import an optional dependency, or raise ImportError saying how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        package = module.split(".")[0]
        raise ImportError(f"ekdaa_cuda.export needs {package}, which is not installed: "
                          f"pip install \"ekdaa-cuda[{extra}]\" (or pip install {package})") from exc


# ---------------------------------------------------------------- to PyTorch


def _activation_module(nn, torch, name: str):
    if name == "tanh":
        return nn.Tanh()
    if name == "relu":
        return nn.ReLU()
    if name == "sigmoid":
        return nn.Sigmoid()
    if name == "linear":
        return nn.Identity()
    if name == "signum":
        class Sign(nn.Module):
            """signum(x) = 1, 0, -1 for x > 0, = 0, < 0 (ekdaa_cuda's "signum")."""

            def forward(self, x):
                return torch.sign(x)

        return Sign()
    raise ValueError(f"to_torch: activation {name!r} has no torch counterpart")


def to_torch(model: Model, probabilities: bool = True, dtype=None):
    """A ``torch.nn.Module`` (in eval mode, on the CPU) computing ``model.forward``.

    Input: NCHW tensors of the model's input shape. Output: class probabilities [N, classes]
    (softmax), or the logits with ``probabilities=False``. ``dtype`` is the module's torch dtype
    (default: the model's, float32 or float64). The module keeps the model's build record as
    ``module.ekdaa_config`` so ``from_torch(module)`` can rebuild the model.
    """
    torch = _require("torch")
    nn = torch.nn
    if not isinstance(model, Model):
        raise TypeError(f"to_torch: expected an ekdaa_cuda Model, got {type(model).__name__}")
    tdtype = dtype or {"float32": torch.float32, "float64": torch.float64}[model.dtype.name]
    state = model.state_dict()

    class EkdaaNet(nn.Module):
        """Inference network exported from an ekdaa_cuda model (forward weights only)."""

        def __init__(self):
            super().__init__()
            self.plan = []  # (layer name, flatten first, names of the modules applied after it)
            for b in model.blocks:
                after = []
                if b.kind == "conv":
                    layer = nn.Conv2d(b.in_shape[0], b.size, b.kernel, padding=b.kernel // 2, bias=b.bias)
                else:
                    layer = nn.Linear(b.in_shape[0], b.size, bias=b.bias)
                self.add_module(b.name, layer)
                if b.kind == "output":
                    if probabilities:
                        self.add_module(f"{b.name}_softmax", nn.Softmax(dim=1))
                        after.append(f"{b.name}_softmax")
                else:
                    if not (b.kind == "conv" and model.conv_forward_linear):
                        self.add_module(f"{b.name}_act", _activation_module(nn, torch, b.activation))
                        after.append(f"{b.name}_act")
                    if b.dropout > 0:
                        self.add_module(f"{b.name}_dropout", nn.Dropout(b.dropout))
                        after.append(f"{b.name}_dropout")
                    if b.pool:
                        self.add_module(f"{b.name}_pool", nn.MaxPool2d(2))
                        after.append(f"{b.name}_pool")
                self.plan.append((b.name, b.flatten_before, after))

        def forward(self, x):
            for name, flatten, after in self.plan:
                if flatten:
                    x = torch.flatten(x, 1)
                x = getattr(self, name)(x)
                for extra in after:
                    x = getattr(self, extra)(x)
            return x

    net = EkdaaNet().to(tdtype)  # the dtype first, so float64 weights are copied without rounding
    with torch.no_grad():
        for key, tensor in net.state_dict().items():
            tensor.copy_(torch.from_numpy(np.ascontiguousarray(state[key])))
    net.eval()
    net.ekdaa_config = json.loads(json.dumps(model.config))
    net.input_shape = tuple(model.input_shape)
    return net


# ---------------------------------------------------------------- from PyTorch


def model_from_config(config: dict, backend: str = "numpy", **overrides) -> Model:
    """Build a fresh model from a ``Model.config`` record (as stored in checkpoints and in
    ``to_torch(...).ekdaa_config``); ``overrides`` replace rule, seed or options."""
    cfg = dict(config)
    options = dict(cfg.get("options") or {})
    rule, seed = overrides.pop("rule", cfg.get("rule", "ekdaa")), overrides.pop("seed", cfg.get("seed", 0))
    options.update(overrides)
    if cfg.get("preset"):
        return build_model(cfg["preset"], rule=rule, backend=backend, seed=seed, **options)
    return build_model(cfg["layers"], rule=rule, backend=backend, seed=seed, input_shape=cfg["input_shape"],
                       **options)


def load_model(path, backend: str = "numpy") -> Model:
    """The model saved in a training checkpoint (``checkpoint.npz``): architecture from its
    config, then parameters, optimizer state and step count. ValueError naming the file if it is
    damaged or does not fit."""
    from .training import load_checkpoint

    arrays, _ = load_checkpoint(path)
    try:
        config = json.loads(str(arrays["config_json"]))
        model = model_from_config(config, backend)
        model.load_checkpoint_arrays(arrays)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"checkpoint {path}: cannot rebuild the model ({type(exc).__name__}: {exc})") from exc
    return model


def _to_numpy(value) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def from_torch(module, preset_or_layers=None, *, error_weights="init", backend: str = "numpy",
               **build_options) -> Model:
    """An ekdaa_cuda ``Model`` holding the weights of a torch module (or of a state dict).

    ``module``: a module made by ``to_torch``, any ``torch.nn.Module`` with the same parameter
    names (``conv1.weight``, ..., ``out.weight``; our layouts are PyTorch's), or a mapping of
    those names to tensors / arrays.

    The architecture comes from ``module.ekdaa_config`` (set by ``to_torch``); otherwise pass
    ``preset_or_layers`` and the ``build_model`` options (``input_shape=`` for a list of layers,
    ``widths=``, ``bias=True``, ``rule=``, ``seed=``, ...). Options given here override the
    recorded ones.

    Error weights (EKDAA's E, FA/KP's B; torch modules do not have them):

    * taken from the input when it holds ``<layer>.error_weight`` keys (a full ``state_dict()``
      of our model), whatever ``error_weights`` says;
    * ``error_weights="init"`` (default): initialised as ``build_model`` would for the model's
      ``seed`` and ``error_init`` option (glorot draws; with ``error_init="forward"``, copies of
      the imported forward weights);
    * ``error_weights="forward"``: copies of the imported forward weights (E = W for conv,
      E = Wᵀ for FC), i.e. starting aligned;
    * a dict ``{"conv1.error_weight": array, ...}`` covering every layer.

    The DFA-family ``feedback`` matrices are initialised from the seed unless supplied. The
    optimizer state starts fresh (step 0). Missing or extra forward weights and wrong shapes raise
    ValueError naming the key.
    """
    if hasattr(module, "state_dict") and callable(module.state_dict):
        state = {k: _to_numpy(v) for k, v in module.state_dict().items()}
        config = getattr(module, "ekdaa_config", None)
    elif isinstance(module, dict):
        state = {k: _to_numpy(v) for k, v in module.items()}
        config = None
    else:
        raise TypeError(f"from_torch: expected a torch.nn.Module or a state dict, got {type(module).__name__}")

    if preset_or_layers is not None:
        rule, seed = build_options.pop("rule", "ekdaa"), build_options.pop("seed", 0)
        model = build_model(preset_or_layers, rule=rule, backend=backend, seed=seed, **build_options)
    elif config is not None:
        model = model_from_config(config, backend, **build_options)
    else:
        raise ValueError("from_torch: this module carries no ekdaa_config (it was not made by to_torch); "
                         "pass the architecture: from_torch(module, 'fmnist', ...) or "
                         "from_torch(module, [layer specs], input_shape=(C, H, W), ...)")

    full = model.state_dict()
    forward_keys = {k for k in full if not k.endswith(TRAINING_ONLY_SUFFIXES)}
    missing = sorted(forward_keys - set(state))
    unexpected = sorted(set(state) - set(full))
    if missing or unexpected:
        raise ValueError(f"from_torch: the weights do not fit this architecture: missing {missing}, "
                         f"unexpected {unexpected}")
    supplied = dict(state)
    if isinstance(error_weights, dict):
        bad = sorted(set(error_weights) - {k for k in full if k.endswith(".error_weight")})
        if bad:
            raise ValueError(f"from_torch: error_weights has unknown keys {bad}")
        supplied = {**{k: _to_numpy(v) for k, v in error_weights.items()}, **supplied}
    elif error_weights not in ("init", "forward"):
        raise ValueError(f"from_torch: error_weights must be 'init', 'forward' or a dict, got {error_weights!r}")
    copy_forward = error_weights == "forward" or (error_weights == "init" and model.opts["error_init"] == "forward")
    for b in model.blocks:
        key = f"{b.name}.error_weight"
        if key in supplied or key not in full:
            continue
        if isinstance(error_weights, dict):
            raise ValueError(f"from_torch: error_weights lacks {key}")
        if copy_forward:
            w = supplied[f"{b.name}.weight"]
            supplied[key] = w.copy() if b.kind == "conv" else np.ascontiguousarray(w.T)
    for key, value in supplied.items():
        if np.shape(value) != full[key].shape:
            raise ValueError(f"from_torch: {key} has shape {np.shape(value)}, expected {full[key].shape}")
        full[key] = np.asarray(value, dtype=model.dtype)
    model.load_state_dict(full)
    return model


# ---------------------------------------------------------------- ONNX


def to_onnx(model: Model, path, opset: int = 17, probabilities: bool = True) -> Path:
    """Write the model's inference network as ONNX (through ``to_torch`` and torch's exporter).

    The graph takes ``x`` [N, C, H, W] (N dynamic) in the model's dtype and returns ``probs``
    [N, classes] (or ``logits`` with ``probabilities=False``). Returns the path written.
    """
    torch = _require("torch")
    _require("onnx")
    net = to_torch(model, probabilities=probabilities)
    dtype = next(net.parameters()).dtype
    example = torch.zeros((2, *model.input_shape), dtype=dtype)
    path = Path(path)
    output = "probs" if probabilities else "logits"
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter needs only onnx
        torch.onnx.export(net, (example,), str(path), input_names=["x"], output_names=[output],
                          dynamic_axes={"x": {0: "batch"}, output: {0: "batch"}}, opset_version=opset,
                          dynamo=False)
    return path


# ---------------------------------------------------------------- safetensors


def save_safetensors(model_or_state, path, metadata: dict | None = None) -> Path:
    """Save a model's parameters (or a state dict of arrays) as a safetensors file, written
    atomically. ``metadata`` values are stored as strings; a model's config is stored under
    ``"ekdaa_config"``. Needs the optional ``safetensors`` package."""
    st = _require("safetensors.numpy")
    if isinstance(model_or_state, Model):
        state = model_or_state.state_dict()
        metadata = {"ekdaa_config": json.dumps(model_or_state.config), **(metadata or {})}
    else:
        state = {k: np.asarray(v) for k, v in model_or_state.items()}
    from .training import atomic_write_bytes

    blob = st.save({k: np.ascontiguousarray(v) for k, v in state.items()},
                   metadata={k: str(v) for k, v in (metadata or {}).items()} or None)
    path = Path(path)
    atomic_write_bytes(path, lambda f: f.write(blob))
    return path


def safetensors_available() -> bool:
    try:
        import safetensors.numpy  # noqa: F401
    except ImportError:
        return False
    return True

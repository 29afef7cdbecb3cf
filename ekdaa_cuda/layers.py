"""Layer specifications and the paper's presets (SPEC.md "Network", paper Table 4).

A network is a list of layer specs, each a dict or a short string:

    {"type": "conv", "channels": 32, "kernel": 3}   or  "conv32"
    {"type": "maxpool"}                               or  "maxpool" / "pool"
    {"type": "flatten"}                               or  "flatten"
    {"type": "fc", "units": 128}                      or  "fc128"
    {"type": "output", "units": 10}                   or  "out10"

conv and fc specs may also set "activation", "dropout" and "bias", overriding the
model-wide options. A maxpool must follow a conv directly; flatten sits between the
conv stack and the FC layers; the output (softmax) layer comes last.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .reference import check_activation

PRESETS = {
    "fmnist": {
        "input_shape": (1, 28, 28),
        "layers": ["conv32", "maxpool", "conv64", "maxpool", "conv128", "flatten", "fc128", "out10"],
        "dataset": "fashion-mnist",
    },
    "cifar": {
        "input_shape": (3, 32, 32),
        "layers": ["conv64", "conv64", "maxpool", "conv64", "conv128", "maxpool", "conv128", "conv128", "maxpool",
                   "flatten", "fc128", "out10"],
        "dataset": "cifar10",
    },
}
PRESETS["svhn"] = {**PRESETS["cifar"], "dataset": "svhn"}
# The paper's fully-connected baselines (Table 2 "BP (FC)" = rule "bp", "LRA-E (FC)" = rule "ekdaa"
# or its alias "lra-e"). The paper gives no architecture for them; we use two hidden tanh layers of
# 128 units, the fc_per_layer = 128 that appendix Tables 5-9 fix for every model.
_FC_BASELINE = ["flatten", "fc128", "fc128", "out10"]
PRESETS["fmnist-fc"] = {"input_shape": (1, 28, 28), "layers": list(_FC_BASELINE), "dataset": "fashion-mnist"}
PRESETS["cifar-fc"] = {"input_shape": (3, 32, 32), "layers": list(_FC_BASELINE), "dataset": "cifar10"}
PRESETS["svhn-fc"] = {**PRESETS["cifar-fc"], "dataset": "svhn"}

_SHORT = re.compile(r"^(conv|fc|out|output)(\d+)$")


@dataclass
class Block:
    """One parametric layer: a conv (with its optional pool), an FC layer or the output."""

    kind: str  # "conv" | "fc" | "output"
    name: str  # conv1, fc1, out, ...
    index: int  # ordinal among parametric layers (the dropout mask's layer id)
    size: int  # output channels / units
    in_shape: tuple  # (C, H, W) for conv, (F,) for fc/output
    kernel: int = 0
    pool: bool = False
    activation: str = "linear"
    dropout: float = 0.0
    bias: bool = False
    flatten_before: bool = False  # first FC after the conv stack

    @property
    def weight_shape(self) -> tuple:
        if self.kind == "conv":
            return (self.size, self.in_shape[0], self.kernel, self.kernel)
        return (self.size, self.in_shape[0])

    @property
    def error_shape(self) -> tuple:
        """Error weights: conv as W, FC/output as Wᵀ ([in, out])."""
        return self.weight_shape if self.kind == "conv" else (self.in_shape[0], self.size)

    @property
    def h_shape(self) -> tuple:
        """Pre-activation shape (pre-pool for conv) without the batch axis."""
        if self.kind == "conv":
            return (self.size, self.in_shape[1], self.in_shape[2])
        return (self.size,)

    @property
    def out_shape(self) -> tuple:
        if self.kind == "conv" and self.pool:
            return (self.size, self.in_shape[1] // 2, self.in_shape[2] // 2)
        return self.h_shape


def _normalize_spec(spec, position: int) -> dict:
    if isinstance(spec, str):
        s = spec.strip().lower()
        if s in ("maxpool", "pool"):
            return {"type": "maxpool"}
        if s == "flatten":
            return {"type": "flatten"}
        m = _SHORT.match(s)
        if not m:
            raise ValueError(f"layer {position}: cannot parse {spec!r}; use e.g. 'conv32', 'maxpool', 'flatten', "
                             "'fc128', 'out10' or a dict")
        kind = "output" if m.group(1) in ("out", "output") else m.group(1)
        key = "channels" if kind == "conv" else "units"
        return {"type": kind, key: int(m.group(2))}
    if isinstance(spec, dict):
        if "type" not in spec:
            raise ValueError(f"layer {position}: spec {spec!r} has no 'type'")
        spec = dict(spec)
        spec["type"] = str(spec["type"]).lower()
        if spec["type"] == "pool":
            spec["type"] = "maxpool"
        return spec
    raise ValueError(f"layer {position}: spec must be a str or dict, got {type(spec).__name__}")


_ALLOWED_KEYS = {
    "conv": {"type", "channels", "kernel", "activation", "dropout", "bias"},
    "fc": {"type", "units", "activation", "dropout", "bias"},
    "output": {"type", "units", "bias"},
    "maxpool": {"type"},
    "flatten": {"type"},
}


def build_blocks(layers, input_shape, activation: str, dropout_conv: float, dropout_fc: float,
                 bias: bool) -> list[Block]:
    """Turn layer specs into parametric blocks, checking the order and every shape."""
    if len(input_shape) != 3 or any(int(s) < 1 for s in input_shape):
        raise ValueError(f"input_shape must be (C, H, W) with positive sizes, got {input_shape!r}")
    specs = [_normalize_spec(s, i) for i, s in enumerate(layers)]
    blocks: list[Block] = []
    shape = tuple(int(s) for s in input_shape)
    flattened = False
    pending_flatten = False
    counts = {"conv": 0, "fc": 0}
    for i, spec in enumerate(specs):
        kind = spec["type"]
        if kind not in _ALLOWED_KEYS:
            raise ValueError(f"layer {i}: unknown layer type {kind!r}; use conv, maxpool, flatten, fc or output")
        unknown = set(spec) - _ALLOWED_KEYS[kind]
        if unknown:
            raise ValueError(f"layer {i} ({kind}): unknown option(s) {sorted(unknown)}; allowed: "
                             f"{sorted(_ALLOWED_KEYS[kind] - {'type'})}")
        if blocks and blocks[-1].kind == "output":
            raise ValueError(f"layer {i} ({kind}): the output layer must be last")
        if kind == "maxpool":
            if not blocks or blocks[-1].kind != "conv" or blocks[-1].pool or flattened:
                raise ValueError(f"layer {i}: a maxpool must directly follow a conv layer")
            if shape[1] < 2 or shape[2] < 2:
                raise ValueError(f"layer {i}: cannot 2x2-pool a {shape[1]}x{shape[2]} map")
            blocks[-1].pool = True
            shape = blocks[-1].out_shape
            continue
        if kind == "flatten":
            if flattened:
                raise ValueError(f"layer {i}: flatten appears twice")
            flattened = pending_flatten = True
            shape = (shape[0] * shape[1] * shape[2],)
            continue
        size = spec.get("channels" if kind == "conv" else "units")
        if not isinstance(size, int) or size < 1:
            raise ValueError(f"layer {i} ({kind}): size must be a positive int, got {size!r}")
        if kind == "conv":
            if flattened:
                raise ValueError(f"layer {i}: conv after flatten is not supported")
            k = spec.get("kernel", 3)
            if not isinstance(k, int) or k < 1 or k % 2 == 0:
                raise ValueError(f"layer {i} (conv): kernel must be a positive odd int, got {k!r}")
        elif not flattened:
            raise ValueError(f"layer {i} ({kind}): add a 'flatten' layer between the conv stack and the FC layers")
        act = check_activation(spec.get("activation", activation)) if kind != "output" else "linear"
        p = float(spec.get("dropout", dropout_conv if kind == "conv" else dropout_fc if kind == "fc" else 0.0))
        if not 0.0 <= p < 1.0:
            raise ValueError(f"layer {i} ({kind}): dropout must be in [0, 1), got {p!r}")
        if kind == "output":
            name = "out"
        else:
            counts[kind] += 1
            name = f"{kind}{counts[kind]}"
        block = Block(kind=kind, name=name, index=len(blocks), size=size, in_shape=shape,
                      kernel=spec.get("kernel", 3) if kind == "conv" else 0, activation=act, dropout=p,
                      bias=bool(spec.get("bias", bias)), flatten_before=pending_flatten and kind != "conv")
        pending_flatten = False
        blocks.append(block)
        shape = block.out_shape
    if not blocks or blocks[-1].kind != "output":
        raise ValueError("the last layer must be an output layer, e.g. 'out10'")
    return blocks


def preset_layers(name: str, widths=None) -> tuple[list, tuple]:
    """(layer specs, input shape) of a preset; ``widths`` replaces the conv/fc sizes in order."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)} or pass a list of layers")
    layers = list(PRESETS[name]["layers"])
    if widths is not None:
        slots = [i for i, s in enumerate(layers) if s.startswith(("conv", "fc"))]
        if len(widths) != len(slots):
            raise ValueError(f"preset {name!r} has {len(slots)} conv/fc layers, got {len(widths)} widths")
        for i, w in zip(slots, widths):
            layers[i] = re.sub(r"\d+$", str(int(w)), layers[i])
    return layers, PRESETS[name]["input_shape"]

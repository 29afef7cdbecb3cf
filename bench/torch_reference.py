"""The same CNN in PyTorch, trained by backprop (cuDNN through PyTorch): the baseline to beat.

    from torch_reference import build_torch_model, make_optimizer, make_step
    ek_model = ekdaa_cuda.build_model("fmnist", rule="bp", backend="numpy", seed=0)
    net = build_torch_model(ek_model, device="cuda")        # weights copied from ek_model.state_dict()
    opt = make_optimizer(net)                               # SGD, momentum 0.9, lr 5e-4 (the paper's)
    step = make_step("graph", net, opt, x, y)               # "eager" | "graph" | "compile"
    loss = step(x, y)                                       # one update

The network is built from the ekdaa_cuda model's blocks (``ekdaa_cuda.layers``): k x k "same"
convolutions, φ (tanh in the presets), 2x2 max-pool, flatten in NCHW order, fully-connected
layers, a softmax output; biases only where the ekdaa_cuda model has them (the presets have
none). Weights are copied from the ekdaa_cuda model's state dict (PyTorch layouts already:
conv [C_out, C_in, k, k], FC [out, in]), so both start identical. The loss is the cross-entropy
summed over the batch (``reduction="sum"``), as ekdaa_cuda sums its updates, and SGD with
momentum in PyTorch's form (v ← μv + g, p ← p − λv) is ekdaa_cuda's optimizer, so one step here
equals one ``rule="bp"`` step of ekdaa_cuda on the same weights and batch (tests/test_bench.py).

Step paths: ``eager`` (plain autograd), ``graph`` (the whole update — forward, backward,
optimizer — captured once in a CUDA graph with static input buffers and replayed; the batch is
copied into the static buffers, which is part of the timed step) and ``compile``
(``torch.compile`` of the network, inductor; optional: ``try_make_step`` returns the reason
instead when it is unavailable or fails).

torch is only needed by the benchmarks (the package's ``bench`` extra), never by ekdaa_cuda.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch import nn

STEP_KINDS = ("eager", "graph", "compile")
_ACTIVATIONS = {"tanh": torch.tanh, "relu": torch.relu, "sigmoid": torch.sigmoid, "linear": lambda h: h}


class TorchCNN(nn.Module):
    """conv (+φ, + 2x2 max-pool) ... flatten, FC (+φ) ..., output logits; softmax lives in the loss."""

    def __init__(self, blocks):
        super().__init__()
        self.names, self.kinds, self.acts, self.pools, self.flatten_before = [], [], [], [], []
        for b in blocks:
            if b.kind != "output" and b.activation not in _ACTIVATIONS:
                raise ValueError(f"torch_reference: activation {b.activation!r} of {b.name} has no gradient path")
            if b.dropout:
                raise ValueError(f"torch_reference: dropout on {b.name} is not supported (the presets have none)")
            if b.kind == "conv":
                layer = nn.Conv2d(b.in_shape[0], b.size, b.kernel, padding=b.kernel // 2, bias=b.bias)
            else:
                layer = nn.Linear(b.in_shape[0], b.size, bias=b.bias)
            self.add_module(b.name, layer)
            self.names.append(b.name)
            self.kinds.append(b.kind)
            self.acts.append(_ACTIVATIONS["linear" if b.kind == "output" else b.activation])
            self.pools.append(b.kind == "conv" and b.pool)
            self.flatten_before.append(b.flatten_before)

    def forward(self, x):
        for name, act, pool, flat in zip(self.names, self.acts, self.pools, self.flatten_before):
            if flat:
                x = torch.flatten(x, 1)
            x = act(getattr(self, name)(x))
            if pool:
                x = F.max_pool2d(x, 2)
        return x


def build_torch_model(ek_model, device="cpu", dtype=torch.float32) -> TorchCNN:
    """A ``TorchCNN`` with ek_model's architecture and its forward weights (and biases) copied."""
    net = TorchCNN(ek_model.blocks).to(device=device, dtype=dtype)  # before the copy: no float32 rounding
    load_from_state_dict(net, ek_model.state_dict())
    return net


def load_from_state_dict(net: TorchCNN, state: dict) -> None:
    """Copy ``<layer>.weight`` / ``<layer>.bias`` from an ekdaa_cuda state dict (error weights ignored)."""
    with torch.no_grad():
        for name in net.names:
            layer = getattr(net, name)
            layer.weight.copy_(torch.as_tensor(state[f"{name}.weight"], dtype=layer.weight.dtype))
            if layer.bias is not None:
                layer.bias.copy_(torch.as_tensor(state[f"{name}.bias"], dtype=layer.bias.dtype))


def loss_fn(logits, labels):
    """Cross-entropy of softmax(logits) summed over the batch (ekdaa_cuda's loss)."""
    return F.cross_entropy(logits, labels, reduction="sum")


def make_optimizer(net, lr: float = 5e-4, momentum: float = 0.9, impl: str = "auto"):
    """SGD with momentum. ``impl``: "fused" (one kernel), "foreach" (multi-tensor), "single" (a loop)
    or "auto" (fused where this torch and device have it, else foreach)."""
    params = list(net.parameters())
    cuda = params[0].is_cuda
    if impl in ("auto", "fused") and cuda:
        try:
            return torch.optim.SGD(params, lr=lr, momentum=momentum, fused=True)
        except (TypeError, RuntimeError, ValueError):
            if impl == "fused":
                raise
    if impl == "single":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, foreach=False)
    return torch.optim.SGD(params, lr=lr, momentum=momentum, foreach=cuda or impl == "foreach")


def train_step(net, opt, x, y):
    """One backprop update on (x, y); returns the summed loss (a tensor, no synchronisation)."""
    opt.zero_grad(set_to_none=True)
    loss = loss_fn(net(x), y)
    loss.backward()
    opt.step()
    return loss.detach()


class EagerStep:
    kind = "eager"

    def __init__(self, net, opt):
        self.net, self.opt = net, opt

    def __call__(self, x, y):
        return train_step(self.net, self.opt, x, y)


class GraphStep:
    """The whole update captured in one CUDA graph over static buffers (PyTorch's whole-network
    capture recipe): warm-up steps on a side stream (cuDNN autotuning, optimizer state), then one
    capture. Each call copies the batch into the static buffers and replays the graph."""

    kind = "graph"

    def __init__(self, net, opt, x, y, warmup: int = 3):
        if not x.is_cuda:
            raise RuntimeError("CUDA graphs need a CUDA device")
        self.net, self.opt = net, opt
        self.x, self.y = x.clone(), y.clone()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(warmup):
                train_step(net, opt, self.x, self.y)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        opt.zero_grad(set_to_none=True)
        with torch.cuda.graph(self.graph):
            self.loss = loss_fn(net(self.x), self.y)
            self.loss.backward()
            opt.step()
        torch.cuda.synchronize()

    def __call__(self, x, y):
        if x.data_ptr() != self.x.data_ptr():
            self.x.copy_(x, non_blocking=True)
            self.y.copy_(y, non_blocking=True)
        self.graph.replay()
        return self.loss


class CompiledStep:
    """``torch.compile(net)`` (inductor, default mode, static shapes); backward through the
    compiled graph, the optimizer as in eager. Compilation happens at the first call(s)."""

    kind = "compile"

    def __init__(self, net, opt, x, y, warmup: int = 2, mode: str | None = None):
        if not hasattr(torch, "compile"):
            raise RuntimeError(f"torch {torch.__version__} has no torch.compile")
        self.net, self.opt = net, opt
        self.compiled = torch.compile(net, mode=mode, dynamic=False)
        t0 = time.perf_counter()
        for _ in range(warmup):
            self(x, y)
        if x.is_cuda:
            torch.cuda.synchronize()
        self.compile_s = time.perf_counter() - t0

    def __call__(self, x, y):
        self.opt.zero_grad(set_to_none=True)
        loss = loss_fn(self.compiled(x), y)
        loss.backward()
        self.opt.step()
        return loss.detach()


def make_step(kind: str, net, opt, x=None, y=None):
    """A callable ``step(x, y)`` doing one update by path ``kind`` ("eager", "graph", "compile");
    graph and compile take an example batch (graph: its shapes and dtypes become the static buffers)."""
    if kind == "eager":
        return EagerStep(net, opt)
    if kind == "graph":
        return GraphStep(net, opt, x, y)
    if kind == "compile":
        return CompiledStep(net, opt, x, y)
    raise ValueError(f"step kind must be one of {STEP_KINDS}, got {kind!r}")


def try_make_step(kind: str, net, opt, x=None, y=None):
    """``(step, None)``, or ``(None, reason)`` when the path is unavailable or fails to build or
    compile (e.g. no CUDA for graphs, no compiler toolchain for inductor)."""
    try:
        return make_step(kind, net, opt, x, y), None
    except Exception as exc:
        msg = f"{type(exc).__name__}: {exc}".strip().splitlines()
        return None, (msg[0] if msg else type(exc).__name__)[:300]

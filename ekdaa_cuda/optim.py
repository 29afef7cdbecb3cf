"""Optimizers for the NumPy backend: SGD with momentum, Adam and RMSprop, each with
per-tensor Pascanu rescaling (SPEC.md "Optimisers") and optional decoupled weight decay
(``weight_decay`` wd: p ← p − λ·wd·p_old after the step, on every tensor). The rule's updates Δ
are treated as gradients: W ← W − λ·step(Δ). The step λ of a tensor is lr × the schedule's factor ×
its own factor (``lr_factors``, the model option ``layer_lr``; 1 for tensors not named).

``Optimizer.apply`` is pure: it returns the new parameters and the new state without
touching the old ones, so a step that fails part-way leaves the model unchanged.
"""

from __future__ import annotations

import numpy as np

from . import reference as ref

DEFAULT_HYPER = {"momentum": 0.9, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "decay": 0.9, "weight_decay": 0.0}


class Optimizer:
    def __init__(self, kind: str = "sgd", lr: float = 5e-4, rho: float = 0.0, lr_factors: dict | None = None,
                 **hyper):
        if kind not in ref.OPTIMIZERS:
            raise ValueError(f"unknown optimizer {kind!r}; choose one of {', '.join(ref.OPTIMIZERS)}")
        unknown = set(hyper) - set(DEFAULT_HYPER)
        if unknown:
            raise ValueError(f"unknown optimizer option(s) {sorted(unknown)}; allowed: {sorted(DEFAULT_HYPER)}")
        if not (np.isfinite(lr) and lr > 0):
            raise ValueError(f"learning rate must be a positive number, got {lr!r}")
        if not (np.isfinite(rho) and rho >= 0):
            raise ValueError(f"Pascanu rho must be >= 0 (0 turns rescaling off), got {rho!r}")
        self.kind, self.lr, self.rho = kind, float(lr), float(rho)
        self.lr_factors = {k: float(f) for k, f in (lr_factors or {}).items()}
        bad = {k: f for k, f in self.lr_factors.items() if not (np.isfinite(f) and f >= 0)}
        if bad:
            raise ValueError(f"learning-rate factors must be finite numbers >= 0, got {bad}")
        self.hyper = {**DEFAULT_HYPER, **{k: float(v) for k, v in hyper.items()}}
        self.t = 0
        self.state: dict[str, dict[str, np.ndarray]] = {}

    def apply(self, params: dict, grads: dict, lr_scale: float = 1.0):
        """Return (new params for the keys in ``grads``, new state, new t)."""
        t = self.t + 1
        new_params, new_state = {}, {}
        h = self.hyper
        for key, g in grads.items():
            p = params[key]
            lr = self.lr * lr_scale * self.lr_factors.get(key, 1.0)
            g = ref.pascanu_rescale(g, self.rho)
            st = self.state.get(key)
            if self.kind == "sgd":
                v = st["v"] if st else np.zeros_like(p)
                new_params[key], v = ref.sgd_momentum_update(p, g, v, lr, h["momentum"])
                new_state[key] = {"v": v}
            elif self.kind == "adam":
                m, v = (st["m"], st["v"]) if st else (np.zeros_like(p), np.zeros_like(p))
                new_params[key], m, v = ref.adam_update(p, g, m, v, t, lr, h["beta1"], h["beta2"], h["eps"])
                new_state[key] = {"m": m, "v": v}
            else:
                s = st["s"] if st else np.zeros_like(p)
                new_params[key], s = ref.rmsprop_update(p, g, s, lr, h["decay"], h["eps"])
                new_state[key] = {"s": s}
            if h["weight_decay"] > 0:
                new_params[key] = ref.decoupled_weight_decay(new_params[key], p, lr, h["weight_decay"])
        return new_params, new_state, t

    def commit(self, new_state: dict, t: int) -> None:
        self.state.update(new_state)
        self.t = t

    def step(self, params: dict, grads: dict, lr_scale: float = 1.0) -> dict:
        """Apply one step and return the new parameter dict; raise FloatingPointError, changing
        nothing, if a parameter would become non-finite."""
        new_params, new_state, t = self.apply(params, grads, lr_scale)
        for key, p in new_params.items():
            if not np.all(np.isfinite(p)):
                raise FloatingPointError(f"step {self.t}: {key} would become non-finite; model unchanged")
        self.commit(new_state, t)
        return {**params, **new_params}

    def state_dict(self) -> dict:
        flat = {"optimizer.t": np.array(self.t, dtype=np.int64)}
        for key, st in self.state.items():
            for slot, arr in st.items():
                flat[f"optimizer.{slot}.{key}"] = arr
        return flat

    def load_state_dict(self, flat: dict, params: dict) -> None:
        state: dict[str, dict[str, np.ndarray]] = {}
        t = int(flat.get("optimizer.t", 0))
        for name, arr in flat.items():
            if name == "optimizer.t":
                continue
            _, slot, key = name.split(".", 2)
            if key not in params or np.shape(arr) != params[key].shape:
                raise ValueError(f"optimizer state {name!r} does not match any parameter of this model")
            state.setdefault(key, {})[slot] = np.array(arr, dtype=params[key].dtype)
        self.state, self.t = state, t

"""The learning rules EKDAA is compared with (paper Table 2, SPEC.md "The comparison rules").

Every rule shares the forward pass and the output layer: e_y = z_y − onehot(label),
ΔW_y = e_yᵀ z_L, Δb_y = Σ e_y (the exact gradient of the summed cross-entropy). They differ
in how the hidden layers get their error units δ_l (all sums over the batch; m_l/(1−p) is the
layer's dropout multiplier, applied by the backend's epilogue):

Layer-wise rules (error passed down one layer at a time, as in ``Model._error_below``):
- ``ekdaa``: target errors with learned error weights E (SPEC.md "EKDAA update").
- ``bp``: δ_{l-1} = (δ_l W_l) ⊙ φ'(h_{l-1}) (conv: conv-backward-data with W_l), exact gradients.
- ``fa`` (feedback alignment, Lillicrap et al. 2016): δ_{l-1} = (δ_l B_lᵀ) ⊙ φ'(h_{l-1}) with a
  fixed random B_l of Wᵀ's shape (conv: of W's shape, conv-backward-data with B_l). B_l is the
  layer's ``error_weight`` tensor (Glorot, drawn independently of W; ``error_init="forward"``
  starts B_l = W_lᵀ, which makes FA equal BP) and it is never updated.
- ``kp`` (Kolen–Pollack, Akrout et al. 2019): FA whose B_l learns with the transposed update of
  W_l: ΔB_l = ΔW_lᵀ (conv: ΔB_l = ΔW_l). With option ``kp_decay`` = κ > 0 both get weight decay,
  ΔW_l ← ΔW_l + κ W_l and ΔB_l ← ΔW_lᵀ + κ B_l, so W_l − B_lᵀ changes by −λκ(W_l − B_lᵀ)
  per plain SGD step and decays to zero (that decay is what aligns B with Wᵀ in Kolen–Pollack;
  with κ = 0, the default, W − Bᵀ stays at its initial value under any optimizer that treats
  both tensors alike). Biases get no decay.
- ``lra-e``: EKDAA on a fully-connected network (paper Algorithm 2 = LRA-E); an alias of
  ``ekdaa`` that refuses networks with conv layers.

Direct rules (every hidden layer l gets its signal straight from the output, Nøkland 2016):
- ``dfa``: δ_l = (e_y B_l) ⊙ φ'(h_l), B_l a fixed random [classes, size(h_l)] matrix, h_l the
  layer's pre-activation (pre-pool for conv; columns in NCHW flat order), stored in the state
  dict as ``<layer>.feedback``. B_l ~ Glorot on [classes, size(h_l)], i.e. uniform
  ±sqrt(6/(classes + size)) (normal with std sqrt(2/(classes + size)) when
  ``error_init="glorot_normal"``), drawn from its own generator (seed, layer), so W and E are
  the same as under every other rule for the same seed.
- ``sdfa`` (sparse DFA, Crafton et al. 2019): as DFA with a B_l that has exactly one nonzero per
  column, i.e. every hidden unit receives the error of exactly one output. The outputs are
  spread evenly over the units (unit j gets output perm(j mod classes)), and the nonzero is the
  dense DFA draw scaled by sqrt(classes), so each unit's feedback has the same variance as in DFA.
- ``rdfa`` ("random DFA", paper Table 9; the paper does not define it): as DFA, but B_l is
  redrawn at every step, uniform ±sqrt(6/(classes + size)), from a counter-based hash of
  (seed, step, layer) (``NumpyBackend.uniform_hash``), so it is never stored and a resumed run
  sees the same matrices. Because a fresh zero-mean B_l is independent of everything else, the
  hidden layers' expected update is zero: RDFA is the control that shows what the *fixed*
  feedback of DFA is worth (only the output layer learns systematically).
- ``drtp`` (direct random target projection, Frenkel et al. 2021): as DFA but the one-hot
  target replaces the error: δ_l = −(onehot(label) B_l) ⊙ φ'(h_l), W ← W − λ·step(Δ). The
  minus sign makes −onehot the stand-in for e_y (e_y = z_y − onehot has the sign of −onehot
  at the true class), so DRTP pushes each layer the way DFA with the same B would on an
  untrained network (and it trains: see tests/test_rules.py).

Every rule here runs through the backend interface only (``fc_project``, ``to_map``,
``epilogue``, ``weight_update``, ``output_error``, ``uniform_hash`` and ``backend.xp`` for
elementwise math), so the same code runs on the NumPy and the CUDA backend.
"""

from __future__ import annotations

import math

import numpy as np

from . import reference as ref

RULES = ("ekdaa", "bp", "fa", "kp", "dfa", "sdfa", "rdfa", "drtp", "lra-e")
#: rules whose hidden errors use φ'(h) (so they cannot train signum layers)
NEEDS_DERIVATIVE = ("bp", "fa", "kp", "dfa", "sdfa", "rdfa", "drtp")
#: layer-wise rules that project with the ``error_weight`` tensors (EKDAA's E, FA/KP's B)
USES_ERROR_WEIGHT = ("ekdaa", "fa", "kp")
#: direct rules: hidden errors come straight from the output layer
DIRECT = ("dfa", "sdfa", "rdfa", "drtp")
#: direct rules with a fixed feedback matrix stored as ``<layer>.feedback``
STORED_FEEDBACK = ("dfa", "sdfa", "drtp")
ALIASES = {"lra-e": "ekdaa"}
#: tag mixed into the RDFA hash key so its matrices are independent of the dropout masks
RDFA_TAG = 0x52444641


def canonical(rule: str) -> str:
    """The sweep a rule runs (``lra-e`` runs ``ekdaa``)."""
    return ALIASES.get(rule, rule)


def check_rule(rule: str, blocks, conv_forward_linear: bool) -> str:
    """Validate a rule against the network; returns the canonical rule. Raises ValueError for an
    unknown rule, LRA-E on a network with conv layers, or a φ'-rule on a signum layer."""
    if rule not in RULES:
        raise ValueError(f"unknown rule {rule!r}; choose one of {', '.join(RULES)}")
    if rule == "lra-e":
        convs = [b.name for b in blocks if b.kind == "conv"]
        if convs:
            raise ValueError(f"rule 'lra-e' (LRA-E) is EKDAA on fully-connected networks, but this network has "
                             f"conv layers ({', '.join(convs)}); use rule='ekdaa' or an FC preset "
                             "(fmnist-fc, cifar-fc, svhn-fc)")
    if rule in NEEDS_DERIVATIVE:
        for b in blocks:
            if b.activation == "signum" and not (b.kind == "conv" and conv_forward_linear):
                raise ValueError(f"rule {rule!r} needs a differentiable activation; {b.name} uses signum "
                                 "(only EKDAA / LRA-E train signum layers)")
    return canonical(rule)


# ---------------------------------------------------------------- feedback matrices


def feedback_shape(block, classes: int) -> tuple:
    """[classes, size(h_l)]: DFA's B_l maps the output to the layer's (pre-pool) pre-activation."""
    return (classes, math.prod(block.h_shape))


def feedback_limit(block, classes: int) -> float:
    """Glorot-uniform bound sqrt(6/(classes + size(h_l))) of a DFA feedback matrix."""
    return math.sqrt(6.0 / (classes + math.prod(block.h_shape)))


def init_feedback(rule: str, blocks, classes: int, seed: int, error_init: str, dtype) -> dict:
    """Host arrays ``<layer>.feedback`` for the hidden layers of a DFA/SDFA/DRTP model ({} otherwise).

    Each layer draws from ``np.random.default_rng([seed, 0xFEEDBAC, layer index])``, independent of
    the generator of W and E.
    """
    if rule not in STORED_FEEDBACK:
        return {}
    kind = "normal" if error_init == "glorot_normal" else "uniform"
    out = {}
    for b in blocks[:-1]:
        rng = np.random.default_rng([int(seed), 0xFEEDBAC, b.index])
        shape = feedback_shape(b, classes)
        dense = ref.glorot(rng, shape, kind, np.float64)
        if rule == "sdfa":
            owner = rng.permutation(np.arange(shape[1]) % classes)  # the one output feeding unit j
            sparse = np.zeros(shape)
            cols = np.arange(shape[1])
            sparse[owner, cols] = dense[owner, cols] * math.sqrt(classes)
            dense = sparse
        out[f"{b.name}.feedback"] = dense.astype(dtype)
    return out


def rdfa_key(seed: int, step: int, layer: int) -> int:
    """32-bit hash key of RDFA's matrix for one layer at one step."""
    return ref.dropout_key(int(seed) ^ RDFA_TAG, int(step), int(layer))


def feedback(model, block, rule: str):
    """B_l of a direct rule for the model's current step (a backend array [classes, size(h_l)])."""
    if rule == "rdfa":
        return model.backend.uniform_hash(rdfa_key(model.seed, model.step_count, block.index),
                                          feedback_shape(block, model.classes),
                                          feedback_limit(block, model.classes))
    return model.params[f"{block.name}.feedback"]


# ---------------------------------------------------------------- sweeps


def direct_backward(model, caches: list, probs, labels, rule: str, errors: dict | None = None) -> dict:
    """Raw updates of DFA / SDFA / RDFA / DRTP, keyed like the state dict (backend arrays).

    Output: ΔW_y = e_yᵀ z_L. Hidden layer l: d_l = s B_l with s = e_y (DFA family) or −onehot
    (DRTP), reshaped to the layer's pre-activation map, δ_l = d_l ⊙ φ'(h_l) ⊙ m_l/(1−p), and
    ΔW_l = δ_lᵀ z_{l-1} (FC) / z_{l-1} ⋆ Flip(δ_l) (conv), Δb_l = Σ δ_l.
    """
    be = model.backend
    grads = {}
    e_y = be.output_error(probs, labels, caches[-1])
    if rule == "drtp":
        signal = -be.xp.eye(model.classes, dtype=be.dtype)[labels]
    else:
        signal = e_y
    for i in range(len(model.blocks) - 1, -1, -1):
        b, cache = model.blocks[i], caches[i]
        if b.kind == "output":
            e = e_y
        else:
            d = be.fc_project(signal, feedback(model, b, rule), "out_in")  # [N, size(h_l)], NCHW order
            if b.kind == "conv":
                d = be.to_map(d, b.h_shape)
            linear = b.kind == "conv" and model.conv_forward_linear
            e = be.epilogue(d, cache, b, "derivative", model.opts["beta"], linear)
        if errors is not None:
            errors[b.name] = be.to_numpy(be.public(e))
        dw, db, _ = be.weight_update(cache, e, b, None)
        grads[f"{b.name}.weight"] = dw
        if b.bias:
            grads[f"{b.name}.bias"] = db
    return grads


def kolen_pollack(be, dw, de, weight, error_weight, decay: float):
    """(ΔW, ΔB) of Kolen–Pollack from the raw ΔW and ΔB = ΔWᵀ (``weight_update`` with γ = 1):
    with decay κ > 0, ΔW + κW and ΔB + κB."""
    if decay:
        k = be.dtype.type(decay)
        dw = dw + k * weight
        de = de + k * error_weight
    return dw, de

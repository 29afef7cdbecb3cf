"""Fully-connected ops (kernels in ``csrc/fc.cu``), checked wrappers over ``ekdaa_cuda._C`` / ``_sim``.

SPEC.md equations, with z, h, e, d of shape [N, F] and W [F_out, F_in] (PyTorch layout):

- ``fc_fwd``: h = z Wᵀ + b, out = φ(h) ⊙ m/(1−p) (eq. 3–4 with inverted dropout), a split-K GEMM
  with its scratch from ``fc_fwd_workspace``;
- ``fc_proj``: d = e W (``weight_layout="out_in"``: BP, FA's B) or d = e Eᵀ with the error
  weights E stored [F_in, F_out] (``"in_out"``: EKDAA's d_{l-1} = e_l E_l);
- ``fc_error_proj``: the projection fused with the error of the layer below,
  rule "ekdaa": e = (φ(h) − φ(h − βd)) ⊙ m/(1−p) (eq. 8); rule "bp": e = d ⊙ φ'(h) ⊙ m/(1−p);
- ``error_epilogue``: that epilogue alone, elementwise over a d already in memory (any shape);
- ``fc_update``: ΔW = eᵀ z, Δb = Σ_n e, ΔE = γ ΔWᵀ (eq. 9–10, summed over the batch);
- ``softmax_error``: z_y = softmax(h_y), e_y = z_y − onehot(label), loss_n = −log z_y[n, label_n];
- ``fc_update_proj``: ``fc_update`` (with Δb) and the projection of e to the layer below
  (``fc_error_proj``, or plain d for a pooling conv below) in one launch;
- ``fc_softmax_error``: the output layer in one launch: h = z Wᵀ + b, softmax, e_y, and the
  batch's summed cross-entropy and correct count, reduced in a fixed order on the device.

Every array is a float32 (labels: int32) C-contiguous array of one device: CuPy arrays on the
current GPU ("cuda"), or NumPy arrays on the CPU simulator ("cuda-sim", the same kernels run by
``ekdaa_cuda._sim``); ``device=`` names it, else the first array's type does. A wrong argument
raises ``ValueError`` naming the op and the argument; a kernel or launch failure ``RuntimeError``
naming the op. Outputs are allocated unless passed as ``out=``. Dropout element i (flat C-order index) is kept iff
``reference.dropout_keep`` keeps it for the given ``dropout_key`` (e.g.
``reference.dropout_key(seed, step, layer)``), so NumPy and GPU masks agree bit for bit.

Tests: ``pytest tests/gpu/test_ops_fc.py`` (on the simulator, and on the GPU when there is one).
"""

from __future__ import annotations

from . import _check
from ._check import (
    activation_code,
    address,
    any_shape_spec,
    dropout_args,
    epilogue_args,
    finite_float,
    output_array,
    output_arrays,
    resolve_device,
)

LAYOUT_CODES = {"out_in": 0, "in_out": 1}  # csrc/fc.h WeightLayout


def fc_fwd_workspace(z, f_out, *, splits=None, device=None):
    """The scratch of ``fc_fwd`` (version 2) for inputs shaped like z [N, F_in] and f_out features:
    (partials float32 [floats], tickets uint32 [tiles] = 0), both empty when the plan does not
    split K. ``splits`` as for ``fc_fwd``. Reusable by every later call with the same sizes and
    splits (each call leaves the tickets at 0): keep one per layer."""
    op = "fc_fwd_workspace"
    dev = resolve_device(op, device, "z", z)
    _check.check_array(dev, op, "z", z, "float32", ("N", "F_in"))
    _, floats, tickets = _fwd_sizes(dev, op, *z.shape, f_out, splits)
    xp = dev.xp
    return xp.empty(floats, dtype="float32"), xp.zeros(tickets, dtype="uint32")


def _splits_arg(op: str, splits) -> int:
    """The launchers' splits argument: 0 (chosen from the sizes) for None, else a positive int."""
    if splits is None:
        return 0
    if isinstance(splits, bool) or not isinstance(splits, int) or splits < 1:
        raise ValueError(f"{op}: splits must be None or a positive int, got {splits!r}")
    return splits


def _fwd_sizes(dev, op: str, n, f_in, f_out, splits) -> tuple[int, int, int]:
    """(splits, partial floats, tickets) of fc_fwd v2 (``splits`` None: chosen by the launcher)."""
    return tuple(int(v) for v in dev.ext.fc_fwd_sizes(int(n), int(f_in), int(f_out), _splits_arg(op, splits)))


def fc_fwd(
    z,
    w,
    b=None,
    *,
    activation="tanh",
    apply_activation=True,
    dropout=0.0,
    dropout_key=0,
    out=None,
    workspace=None,
    splits=None,
    version=2,
    device=None,
):
    """h = z Wᵀ + b and out = (φ(h) if apply_activation else h) ⊙ m/(1−p). Returns (h, out).

    z [N, F_in], w [F_out, F_in], b [F_out] or None; ``out`` = optional (h, out) to write into.
    One launch of a split-K GEMM: 32 x 32 output tiles, K = F_in cut across blocks when the tiles
    alone would leave the GPU idle, each tile finished by the last of its blocks in a fixed order
    (bitwise reproducible). ``workspace`` = ``fc_fwd_workspace(z, F_out, splits=splits)``
    (allocated when None; its tickets must be 0, as every call leaves them); ``splits`` forces the
    number of K ranges (1 .. ceil(F_in / 32); tests, benchmarks). ``version=1`` is benchmark-only:
    the first kernel (one output per thread, 16 x 16 tiles), kept for bench/micro.py.
    """
    op = "fc_fwd"
    dev = resolve_device(op, device, "z", z)
    if version not in (1, 2):
        raise ValueError(f"{op}: version must be 2 (or 1, benchmark-only), got {version!r}")
    if version == 1 and (workspace is not None or splits is not None):
        raise ValueError(f"{op}: workspace and splits apply to version 2 only")
    act = activation_code(op, activation)
    _check.check_array(dev, op, "w", w, "float32", ("F_out", "F_in"))
    f_out, f_in = w.shape
    _check.check_array(dev, op, "z", z, "float32", ("N", "F_in"), (None, f_in))
    n = z.shape[0]
    if b is not None:
        _check.check_array(dev, op, "b", b, "float32", ("F_out",), (f_out,))
    key, threshold, scale = dropout_args(op, dropout, dropout_key, n * f_out)
    h_out, z_out = output_arrays(op, out, 2)
    h = output_array(dev, op, "out[0] (h)", h_out, ("N", "F_out"), (n, f_out))
    a = output_array(dev, op, "out[1] (out)", z_out, ("N", "F_out"), (n, f_out))
    head = (dev.ptr(z), dev.ptr(w), address(dev, b), dev.ptr(h), dev.ptr(a))
    tail = (n, f_in, f_out, act, bool(apply_activation), key, threshold, scale)
    if version == 1:
        dev.launch(op, "fc_fwd_v1", *head, *tail, dev.stream())
        return h, a
    splits_arg = _splits_arg(op, splits)
    if workspace is None:
        workspace = fc_fwd_workspace(z, f_out, splits=splits, device=dev)
    if not isinstance(workspace, (tuple, list)) or len(workspace) != 2:
        raise ValueError(f"{op}: workspace must be fc_fwd_workspace(...)'s (partials, tickets), got {workspace!r}")
    partials, tickets = workspace
    _check.check_array(dev, op, "workspace (partials)", partials, "float32", ("floats",))
    _check.check_array(dev, op, "workspace (tickets)", tickets, "uint32", ("tiles",))
    dev.launch(op, "fc_fwd", *head, dev.ptr(partials), dev.ptr(tickets), int(partials.size), int(tickets.size),
               *tail, splits_arg, dev.stream())
    return h, a


def _projection_shapes(dev, op: str, e, weight, weight_layout) -> tuple[int, int, int, int]:
    """(layout code, N, F_in, F_out) of e [N, F_out] projected through ``weight``."""
    if weight_layout not in LAYOUT_CODES:
        raise ValueError(f"{op}: weight_layout must be one of {', '.join(LAYOUT_CODES)}, got {weight_layout!r}")
    spec = ("F_out", "F_in") if weight_layout == "out_in" else ("F_in", "F_out")
    _check.check_array(dev, op, "weight", weight, "float32", spec)
    f_out, f_in = weight.shape if weight_layout == "out_in" else weight.shape[::-1]
    _check.check_array(dev, op, "e", e, "float32", ("N", "F_out"), (None, f_out))
    return LAYOUT_CODES[weight_layout], e.shape[0], f_in, f_out


def fc_proj(e, weight, *, weight_layout="out_in", out=None, device=None):
    """d = e W (weight [F_out, F_in], ``"out_in"``) or d = e Eᵀ (weight [F_in, F_out], ``"in_out"``). e [N, F_out]."""
    op = "fc_proj"
    dev = resolve_device(op, device, "e", e)
    layout, n, f_in, f_out = _projection_shapes(dev, op, e, weight, weight_layout)
    d = output_array(dev, op, "out", out, ("N", "F_in"), (n, f_in))
    dev.launch(op, "fc_proj", dev.ptr(e), dev.ptr(weight), dev.ptr(d), n, f_in, f_out, layout, dev.stream())
    return d


def fc_error_proj(
    e, weight, h, *, weight_layout, activation, beta, dropout=0.0, dropout_key=0, rule="ekdaa", out=None, device=None
):
    """Error of the FC layer below: its d = fc_proj(e, weight) fed to the rule's epilogue (see module doc).

    h [N, F_in] is the pre-activation of the layer below; dropout/dropout_key are that layer's.
    """
    op = "fc_error_proj"
    dev = resolve_device(op, device, "e", e)
    epilogue = epilogue_args(op, activation, rule, beta)
    layout, n, f_in, f_out = _projection_shapes(dev, op, e, weight, weight_layout)
    _check.check_array(dev, op, "h", h, "float32", ("N", "F_in"), (n, f_in))
    drop = dropout_args(op, dropout, dropout_key, n * f_in)
    e_below = output_array(dev, op, "out", out, ("N", "F_in"), (n, f_in))
    dev.launch(
        op,
        "fc_error_proj",
        dev.ptr(e),
        dev.ptr(weight),
        dev.ptr(h),
        dev.ptr(e_below),
        n,
        f_in,
        f_out,
        layout,
        *epilogue,
        *drop,
        dev.stream(),
    )
    return e_below


def error_epilogue(d, h, *, activation, beta, dropout=0.0, dropout_key=0, rule="ekdaa", out=None, device=None):
    """e = epilogue(h, d) ⊙ m/(1−p) elementwise (rule "ekdaa" or "bp"); d and h of any one shape.

    The dropout counter of an element is its flat C-order index.
    """
    op = "error_epilogue"
    dev = resolve_device(op, device, "d", d)
    epilogue = epilogue_args(op, activation, rule, beta)
    spec = any_shape_spec(getattr(d, "ndim", 0))
    _check.check_array(dev, op, "d", d, "float32", spec)
    _check.check_array(dev, op, "h", h, "float32", spec, d.shape)
    drop = dropout_args(op, dropout, dropout_key, d.size)
    e = output_array(dev, op, "out", out, spec, d.shape)
    dev.launch(op, "error_epilogue", dev.ptr(d), dev.ptr(h), dev.ptr(e), d.size, *epilogue, *drop, dev.stream())
    return e


def fc_update(z, e, *, gamma=0.1, bias=True, out=None, device=None):
    """(ΔW = eᵀ z [F_out, F_in], Δb = Σ_n e [F_out] or None, ΔE = γ ΔWᵀ [F_in, F_out]). z [N, F_in], e [N, F_out].

    ``out`` = optional (dW, db, dE) to write into (db None when ``bias`` is False).
    """
    op = "fc_update"
    dev = resolve_device(op, device, "z", z)
    gamma = finite_float(op, "gamma", gamma)
    _check.check_array(dev, op, "z", z, "float32", ("N", "F_in"))
    n, f_in = z.shape
    _check.check_array(dev, op, "e", e, "float32", ("N", "F_out"), (n, None))
    f_out = e.shape[1]
    dw_out, db_out, de_out = output_arrays(op, out, 3)
    dw = output_array(dev, op, "out[0] (dW)", dw_out, ("F_out", "F_in"), (f_out, f_in))
    de = output_array(dev, op, "out[2] (dE)", de_out, ("F_in", "F_out"), (f_in, f_out))
    stream = dev.stream()
    dev.launch(op, "fc_update", dev.ptr(z), dev.ptr(e), dev.ptr(dw), dev.ptr(de), n, f_in, f_out, gamma, stream)
    db = None
    if bias:
        db = output_array(dev, op, "out[1] (db)", db_out, ("F_out",), (f_out,))
        dev.launch(op, "fc_bias_update", dev.ptr(e), dev.ptr(db), n, f_out, stream)
    return dw, db, de


def softmax_error(h, labels, *, out=None, device=None):
    """(probs = softmax(h), e = probs − onehot(labels), loss [N] = −log probs[n, label_n]).

    h [N, C] float32, labels [N] int32. A label outside [0, C) makes its row of e and its loss NaN.
    ``out`` = optional (probs, e, loss) to write into.
    """
    op = "softmax_error"
    dev = resolve_device(op, device, "h", h)
    _check.check_array(dev, op, "h", h, "float32", ("N", "C"))
    n, c = h.shape
    _check.check_array(dev, op, "labels", labels, "int32", ("N",), (n,))
    p_out, e_out, l_out = output_arrays(op, out, 3)
    probs = output_array(dev, op, "out[0] (probs)", p_out, ("N", "C"), (n, c))
    e = output_array(dev, op, "out[1] (e)", e_out, ("N", "C"), (n, c))
    loss = output_array(dev, op, "out[2] (loss)", l_out, ("N",), (n,))
    dev.launch(
        op, "softmax_error", dev.ptr(h), dev.ptr(labels), dev.ptr(probs), dev.ptr(e), dev.ptr(loss), n, c, dev.stream()
    )
    return probs, e, loss


def fc_update_proj(
    z,
    e,
    *,
    gamma=0.1,
    bias=True,
    error_weights=True,
    weight=None,
    weight_layout="in_out",
    h=None,
    activation="tanh",
    beta=0.0,
    dropout=0.0,
    dropout_key=0,
    rule="ekdaa",
    out=None,
    device=None,
):
    """``fc_update`` and the projection of e to the layer below in one launch. Returns (dW, db, dE, below).

    z [N, F_in], e [N, F_out]: dW = eᵀ z [F_out, F_in]; db = Σ_n e [F_out] (None unless ``bias``);
    dE = γ dWᵀ [F_in, F_out] (None unless ``error_weights``). With ``weight`` ([F_out, F_in] for
    ``weight_layout="out_in"``, [F_in, F_out] for ``"in_out"``), below [N, F_in] is
    ``fc_error_proj(e, weight, h, ...)`` when h (the layer below's pre-activation [N, F_in]) is
    given, else ``fc_proj(e, weight)``; without ``weight`` below is None (the first layer).
    ``out`` = optional (dW, db, dE, below) to write into (None where the result is None).
    """
    op = "fc_update_proj"
    dev = resolve_device(op, device, "z", z)
    gamma = finite_float(op, "gamma", gamma)
    _check.check_array(dev, op, "z", z, "float32", ("N", "F_in"))
    n, f_in = z.shape
    _check.check_array(dev, op, "e", e, "float32", ("N", "F_out"), (n, None))
    f_out = e.shape[1]
    rule_c, act, beta = epilogue_args(op, activation, rule, beta)
    layout, drop = 0, (0, 0, 1.0)
    if weight is not None:
        layout, _, w_in, _ = _projection_shapes(dev, op, e, weight, weight_layout)
        if w_in != f_in:
            raise ValueError(f"{op}: weight projects to {w_in} features, but z has F_in={f_in}")
        if h is not None:
            _check.check_array(dev, op, "h", h, "float32", ("N", "F_in"), (n, f_in))
            drop = dropout_args(op, dropout, dropout_key, n * f_in)
    elif h is not None:
        raise ValueError(f"{op}: h (the layer below's pre-activation) needs weight to project through")
    dw_out, db_out, de_out, below_out = output_arrays(op, out, 4)
    dw = output_array(dev, op, "out[0] (dW)", dw_out, ("F_out", "F_in"), (f_out, f_in))
    db = output_array(dev, op, "out[1] (db)", db_out, ("F_out",), (f_out,)) if bias else None
    de = output_array(dev, op, "out[2] (dE)", de_out, ("F_in", "F_out"), (f_in, f_out)) if error_weights else None
    below = None
    if weight is not None:
        below = output_array(dev, op, "out[3] (below)", below_out, ("N", "F_in"), (n, f_in))
    dev.launch(
        op,
        "fc_update_proj",
        dev.ptr(z),
        dev.ptr(e),
        address(dev, weight),
        address(dev, h),
        dev.ptr(dw),
        address(dev, db),
        address(dev, de),
        address(dev, below),
        n,
        f_in,
        f_out,
        gamma,
        layout,
        rule_c,
        act,
        beta,
        *drop,
        dev.stream(),
    )
    return dw, db, de, below


def fc_softmax_error_workspace(n, *, device):
    """The scratch of ``fc_softmax_error`` with labels for batches of up to ``n`` rows: (partial
    losses float64, partial counts int32, ticket uint32 [1] = 0); reusable by every later launch."""
    dev = resolve_device("fc_softmax_error_workspace", device, "n", None)
    n = _check.check_positive("fc_softmax_error_workspace", "n", n)
    blocks = int(dev.ext.fc_softmax_error_blocks(n))
    xp = dev.xp
    return xp.empty(blocks, dtype="float64"), xp.empty(blocks, dtype="int32"), xp.zeros(1, dtype="uint32")


def fc_softmax_error(z, w, b=None, labels=None, *, out=None, workspace=None, device=None):
    """The output layer in one launch. Returns (h, probs, e, loss, correct).

    z [N, F_in], w [C, F_in], b [C] or None: h = z Wᵀ + b [N, C], probs = softmax(h). With labels
    [N] int32 also e = probs − onehot(labels) [N, C], loss [1] float64 = Σ_n −log probs[n, label_n]
    (as log Σ exp(h − max) − (h_label − max)) and correct [1] int32 = #{n : argmax probs[n] =
    label_n}, both reduced in a fixed order (no float atomics); without labels e, loss and
    correct are None. A label outside [0, C) makes its row of e and the loss NaN. ``out`` =
    optional (h, probs, e, loss, correct); ``workspace`` = ``fc_softmax_error_workspace(>= N)``
    (allocated when None; its ticket must be 0, as every launch leaves it).
    """
    op = "fc_softmax_error"
    dev = resolve_device(op, device, "z", z)
    _check.check_array(dev, op, "w", w, "float32", ("C", "F_in"))
    c, f_in = w.shape
    _check.check_array(dev, op, "z", z, "float32", ("N", "F_in"), (None, f_in))
    n = z.shape[0]
    if b is not None:
        _check.check_array(dev, op, "b", b, "float32", ("C",), (c,))
    h_out, p_out, e_out, loss_out, correct_out = output_arrays(op, out, 5)
    h = output_array(dev, op, "out[0] (h)", h_out, ("N", "C"), (n, c))
    probs = output_array(dev, op, "out[1] (probs)", p_out, ("N", "C"), (n, c))
    e = loss = correct = None
    scratch = (None, None, None)
    if labels is not None:
        _check.check_array(dev, op, "labels", labels, "int32", ("N",), (n,))
        e = output_array(dev, op, "out[2] (e)", e_out, ("N", "C"), (n, c))
        loss = output_array(dev, op, "out[3] (loss)", loss_out, ("1",), (1,), "float64")
        correct = output_array(dev, op, "out[4] (correct)", correct_out, ("1",), (1,), "int32")
        if n == 0:  # an empty batch: nothing to launch, the sums are 0
            loss[...] = 0
            correct[...] = 0
            return h, probs, e, loss, correct
        scratch = workspace if workspace is not None else fc_softmax_error_workspace(n, device=dev)
        blocks = int(dev.ext.fc_softmax_error_blocks(n))
        if not isinstance(scratch, (tuple, list)) or len(scratch) != 3:
            raise ValueError(f"{op}: workspace must be fc_softmax_error_workspace(N)'s tuple, got {scratch!r}")
        for name, arr, dtype, size in zip(("partial losses", "partial counts", "ticket"), scratch,
                                          ("float64", "int32", "uint32"), (None, None, 1)):
            _check.check_array(dev, op, f"workspace ({name})", arr, dtype, ("size",), (size,))
            if size is None and arr.shape[0] < blocks:
                raise ValueError(f"{op}: workspace ({name}) holds {arr.shape[0]} blocks, N={n} needs {blocks}")
    dev.launch(
        op,
        "fc_softmax_error",
        dev.ptr(z),
        dev.ptr(w),
        address(dev, b),
        address(dev, labels),
        dev.ptr(h),
        dev.ptr(probs),
        address(dev, e),
        *(address(dev, a) for a in scratch),
        address(dev, loss),
        address(dev, correct),
        n,
        f_in,
        c,
        dev.stream(),
    )
    return h, probs, e, loss, correct

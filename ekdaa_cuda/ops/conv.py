"""Convolution-family ops (kernels in ``csrc/conv.cu``), checked wrappers over ``ekdaa_cuda._C`` / ``_sim``.

SPEC.md equations; activations NCHW ``[N, C, H, W]``, conv weights ``[C_out, C_in, k, k]``
(PyTorch), k odd, stride 1, "same" zero padding, cross-correlation (PyTorch ``conv2d``):

- ``conv_block_fwd``: h = conv(x, W) + b, z = φ(h) ⊙ m/(1−p), out = maxpool2x2(z) with the argmax
  code ``2*dy + dx`` (uint8) of every window (ties: first in row-major order; an odd trailing
  row/column is dropped), or out = z without pooling (eq. 3–4);
- ``conv_error_proj``: d = convT(e, K), the transposed convolution (conv-backward-data) with the
  error kernel K (E for EKDAA, W for BP), unpooled to h's resolution at the recorded argmax (eq. 7,
  zero elsewhere), then rule "ekdaa": e_below = (φ(h) − φ(h − βd)) ⊙ m/(1−p) (eq. 8), rule "bp":
  e_below = d ⊙ φ'(h) ⊙ m/(1−p); without argmax, d keeps e's resolution;
- ``conv_proj``: d = convT(e, K) alone (the release's normalize-by-max(d) path);
- ``unpool_error``: the unpool + epilogue of ``conv_error_proj`` for a d already in memory (e.g. an
  FC layer's projection reshaped to the pooled conv shape);
- ``unpool_bilinear``: TF2 ``tf.image.resize`` bilinear up-sampling (half-pixel centres), the
  release's unpool;
- ``igemm_tiles``: the block tiles of the implicit-GEMM kernels of the first two;
- ``conv_filter_update``: ΔW = z ⋆ Flip(e) (conv-backward-filter), Δb = Σ_{n,y,x} e, ΔE = γ ΔW
  (eq. 9–10, summed over the batch; deterministic);
- ``conv_filter_update_pooled``: the same for an e that is zero except at the argmax of each 2x2
  pool window (the error of a pooled conv layer after argmax unpooling): one term per window,
  a quarter of the multiply-adds (filter update version 3).

For an epilogue over a d already at h's resolution use ``ekdaa_cuda.ops.fc.error_epilogue``.
Every array is a float32 (argmax: uint8) C-contiguous array of one device: CuPy arrays on the
current GPU ("cuda"), or NumPy arrays on the CPU simulator ("cuda-sim"); ``device=`` names it, else
the first array's type does. A wrong argument raises ``ValueError`` naming the op and the argument.
Outputs are allocated unless passed as ``out=``. Dropout element i of h (flat NCHW index) is kept iff
``reference.dropout_keep`` keeps it for the given ``dropout_key`` (e.g.
``reference.dropout_key(seed, step, layer)``), the same mask forward and backward.

Tests: ``pytest tests/gpu/test_ops_conv.py`` (on the simulator, and on the GPU when there is one).
"""

from __future__ import annotations

from . import _check
from ._check import (
    activation_code,
    address,
    dropout_args,
    epilogue_args,
    finite_float,
    output_array,
    output_arrays,
    resolve_device,
)

NCHW = ("N", "C", "H", "W")


def _kernel_size(dev, op: str, name: str, w) -> int:
    """Check a conv weight [C_out, C_in, k, k] with odd k; return k."""
    _check.check_array(dev, op, name, w, "float32", ("C_out", "C_in", "k", "k"))
    k = w.shape[2]
    if w.shape[3] != k or k % 2 == 0:
        raise ValueError(f"{op}: {name} must be [C_out, C_in, k, k] with odd k, got {tuple(w.shape)}")
    return k


IGEMM_MAX_K = 15  # csrc/igemm.cuh kIgemmMaxK: the implicit-GEMM kernels' tap masks hold 15 taps per axis


def _igemm_kernel_size(op: str, version, k: int) -> None:
    if version == 2 and k > IGEMM_MAX_K:
        raise ValueError(f"{op}: kernel size k = {k} exceeds {IGEMM_MAX_K}, the largest the implicit-GEMM kernel "
                         f"(version 2) supports")


def _codes(dev, op: str, argmax, shape: tuple):
    return _check.check_array(dev, op, "argmax", argmax, "uint8", ("N", "C", "Hp", "Wp"), shape)


def _pooled_h(dev, op: str, h, n: int, c: int, hp: int, wp: int) -> None:
    """h [N, C, Hh, Wh] must pool (2x2, floor) to [N, C, Hp, Wp]."""
    _check.check_array(dev, op, "h", h, "float32", ("N", "C", "Hh", "Wh"), (n, c, None, None))
    if (h.shape[2] // 2, h.shape[3] // 2) != (hp, wp):
        raise ValueError(
            f"{op}: h [N, C, Hh, Wh] must pool to the error's (Hp, Wp) = {(hp, wp)} (Hh // 2, Wh // 2), "
            f"got h {tuple(h.shape)}"
        )


def _version(op: str, version, tile) -> tuple[str, tuple]:
    """(launcher name, extra launcher arguments) of an implicit-GEMM op's ``version`` and ``tile``."""
    if version not in (1, 2):
        raise ValueError(f"{op}: version must be 2 (or 1, benchmark-only), got {version!r}")
    if version == 1:
        if tile is not None:
            raise ValueError(f"{op}: tile applies to version 2 only, got tile={tile!r} with version=1")
        return f"{op}_v1", ()
    if tile is None:
        return op, ()
    if isinstance(tile, bool) or not isinstance(tile, int) or tile < 0:
        raise ValueError(f"{op}: tile must be None or an index into igemm_tiles(), got {tile!r}")
    return op, (tile,)


def igemm_tiles(device) -> list:
    """The (BM, BN, KS) block tiles of the implicit-GEMM kernels of ``conv_block_fwd`` and
    ``conv_error_proj`` (BM rows = output positions x BN columns = output channels, KS depth groups
    of 256/KS threads), indexed by their ``tile`` argument; ``device`` = "cuda" or "cuda-sim" (the
    same table on both)."""
    return [tuple(t) for t in resolve_device("igemm_tiles", device, "device", None).ext.igemm_tiles()]


def conv_block_fwd(
    x,
    w,
    b=None,
    *,
    activation="tanh",
    apply_activation=True,
    pool=True,
    dropout=0.0,
    dropout_key=0,
    out=None,
    version=2,
    tile=None,
    device=None,
):
    """One conv block: h = conv(x, w) + b, z = φ(h) ⊙ m/(1−p), then 2x2 max-pool. Returns (h, out, argmax).

    x [N, C_in, H, W], w [C_out, C_in, k, k] (k odd), b [C_out] or None. h [N, C_out, H, W] is the
    pre-activation (kept for the update). With ``pool``: out [N, C_out, H//2, W//2] and argmax
    uint8 of the same shape (code 2*dy + dx of each window's maximum of z); without: out = z
    [N, C_out, H, W] and argmax None. ``apply_activation=False`` skips φ (z = h ⊙ m/(1−p): the
    release variant's pre-activation forward). Dropout counter = flat index into h.
    ``out`` = optional (h, out, argmax) arrays to write into (argmax None without pool).
    An implicit GEMM (``csrc/igemm.cuh``) whose block tile is chosen by shape; ``tile`` = an index
    into ``igemm_tiles()`` forces one (tests, benchmarks). ``version=1`` is benchmark-only: the
    previous kernel (one thread per output), kept for bench/micro.py.
    """
    op = "conv_block_fwd"
    dev = resolve_device(op, device, "x", x)
    launcher, extra = _version(op, version, tile)
    act = activation_code(op, activation)
    k = _kernel_size(dev, op, "w", w)
    _igemm_kernel_size(op, version, k)
    c_out, c_in = w.shape[:2]
    _check.check_array(dev, op, "x", x, "float32", ("N", "C_in", "H", "W"), (None, c_in, None, None))
    n, _, height, width = x.shape
    if b is not None:
        _check.check_array(dev, op, "b", b, "float32", ("C_out",), (c_out,))
    key, threshold, scale = dropout_args(op, dropout, dropout_key, n * c_out * height * width)
    pool = bool(pool)
    h_out, z_out, idx_out = output_arrays(op, out, 3)
    h = output_array(dev, op, "out[0] (h)", h_out, ("N", "C_out", "H", "W"), (n, c_out, height, width))
    out_shape = (n, c_out, height // 2, width // 2) if pool else (n, c_out, height, width)
    z = output_array(dev, op, "out[1] (out)", z_out, ("N", "C_out", "Ho", "Wo"), out_shape)
    argmax = None
    if pool:
        spec = ("N", "C_out", "Hp", "Wp")
        argmax = output_array(dev, op, "out[2] (argmax)", idx_out, spec, out_shape, dtype="uint8")
    dev.launch(
        op,
        launcher,
        dev.ptr(x),
        dev.ptr(w),
        address(dev, b),
        dev.ptr(h),
        dev.ptr(z),
        address(dev, argmax),
        n,
        c_in,
        c_out,
        height,
        width,
        k,
        act,
        bool(apply_activation),
        pool,
        key,
        threshold,
        scale,
        dev.stream(),
        *extra,
    )
    return h, z, argmax


def conv_error_proj(
    e,
    kernel,
    h,
    argmax=None,
    *,
    activation="tanh",
    beta=0.9,
    dropout=0.0,
    dropout_key=0,
    rule="ekdaa",
    out=None,
    version=2,
    tile=None,
    device=None,
):
    """Error of the conv layer below from the error above, fused: projection, unpool, epilogue.

    e [N, C_out, Hp, Wp] (error of the layer above), kernel [C_out, C_in, k, k] (the error kernel
    E for EKDAA, the forward W for BP), h [N, C_in, Hh, Wh] (pre-activation of the layer below).
    d = convT(e, kernel) at Hp x Wp; with argmax [N, C_in, Hp, Wp] (the layer below's pool codes,
    Hp = Hh // 2, Wp = Wh // 2) each d goes to its window's argmax and the other positions (and
    the dropped odd row/column) get zero error; without argmax, Hh = Hp and Wh = Wp.
    Returns e_below [N, C_in, Hh, Wh] = epilogue(h, d) ⊙ m/(1−p), rule "ekdaa":
    φ(h) − φ(h − βd); rule "bp": d ⊙ φ'(h). Dropout counter = flat index into h.
    An implicit GEMM like ``conv_block_fwd`` (``tile``, ``version`` likewise).
    """
    op = "conv_error_proj"
    dev = resolve_device(op, device, "e", e)
    launcher, extra = _version(op, version, tile)
    epilogue = epilogue_args(op, activation, rule, beta)
    k = _kernel_size(dev, op, "kernel", kernel)
    _igemm_kernel_size(op, version, k)
    c_out, c_in = kernel.shape[:2]
    _check.check_array(dev, op, "e", e, "float32", ("N", "C_out", "Hp", "Wp"), (None, c_out, None, None))
    n, _, hp, wp = e.shape
    if argmax is None:
        _check.check_array(dev, op, "h", h, "float32", ("N", "C_in", "H", "W"), (n, c_in, hp, wp))
    else:
        _pooled_h(dev, op, h, n, c_in, hp, wp)
        _codes(dev, op, argmax, (n, c_in, hp, wp))
    drop = dropout_args(op, dropout, dropout_key, h.size)
    e_below = output_array(dev, op, "out", out, ("N", "C_in", "Hh", "Wh"), h.shape)
    dev.launch(
        op,
        launcher,
        dev.ptr(e),
        dev.ptr(kernel),
        dev.ptr(h),
        address(dev, argmax),
        dev.ptr(e_below),
        n,
        c_in,
        c_out,
        hp,
        wp,
        h.shape[2],
        h.shape[3],
        k,
        argmax is not None,
        *epilogue,
        *drop,
        dev.stream(),
        *extra,
    )
    return e_below


def conv_proj(e, kernel, *, out=None, device=None):
    """d = convT(e, kernel), the transposed convolution (conv-backward-data) with no epilogue.

    e [N, C_out, H, W], kernel [C_out, C_in, k, k] -> d [N, C_in, H, W].
    """
    op = "conv_proj"
    dev = resolve_device(op, device, "e", e)
    k = _kernel_size(dev, op, "kernel", kernel)
    c_out, c_in = kernel.shape[:2]
    _check.check_array(dev, op, "e", e, "float32", ("N", "C_out", "H", "W"), (None, c_out, None, None))
    n, _, height, width = e.shape
    d = output_array(dev, op, "out", out, ("N", "C_in", "H", "W"), (n, c_in, height, width))
    stream = dev.stream()
    dev.launch(op, "conv_proj", dev.ptr(e), dev.ptr(kernel), dev.ptr(d), n, c_in, c_out, height, width, k, stream)
    return d


def unpool_error(
    d, h, argmax, *, activation="tanh", beta=0.9, dropout=0.0, dropout_key=0, rule="ekdaa", out=None, device=None
):
    """Argmax-unpool a projected error d and apply the epilogue: ``conv_error_proj`` for a d in memory.

    d [N, C, Hp, Wp] (e.g. an FC layer's d reshaped to the pooled conv shape), argmax uint8
    [N, C, Hp, Wp], h [N, C, Hh, Wh] with Hp = Hh // 2, Wp = Wh // 2. Returns e [N, C, Hh, Wh]:
    epilogue(h, d) ⊙ m/(1−p) at each window's argmax, zero elsewhere.
    """
    op = "unpool_error"
    dev = resolve_device(op, device, "d", d)
    epilogue = epilogue_args(op, activation, rule, beta)
    _check.check_array(dev, op, "d", d, "float32", ("N", "C", "Hp", "Wp"))
    n, c, hp, wp = d.shape
    _pooled_h(dev, op, h, n, c, hp, wp)
    _codes(dev, op, argmax, d.shape)
    drop = dropout_args(op, dropout, dropout_key, h.size)
    e = output_array(dev, op, "out", out, ("N", "C", "Hh", "Wh"), h.shape)
    dev.launch(
        op,
        "unpool_error",
        dev.ptr(d),
        dev.ptr(h),
        dev.ptr(argmax),
        dev.ptr(e),
        n,
        c,
        hp,
        wp,
        h.shape[2],
        h.shape[3],
        *epilogue,
        *drop,
        dev.stream(),
    )
    return e


def unpool_bilinear(d, out_hw, *, out=None, device=None):
    """Bilinear up-sampling of d [N, C, h, w] to [N, C, H, W], ``out_hw = (H, W)``.

    TF2 ``tf.image.resize(method="bilinear")`` with half-pixel centres: output y reads
    src = (y + 0.5)·h/H − 0.5 clamped to [0, h − 1], linearly between floor(src) and the next row
    (likewise along x).
    """
    op = "unpool_bilinear"
    dev = resolve_device(op, device, "d", d)
    _check.check_array(dev, op, "d", d, "float32", NCHW)
    if not isinstance(out_hw, (tuple, list)) or len(out_hw) != 2:
        raise ValueError(f"{op}: out_hw must be a pair of positive integers (H, W), got {out_hw!r}")
    out_h, out_w = (_check.check_positive(op, "out_hw", v) for v in out_hw)
    n, c, height, width = d.shape
    if height == 0 or width == 0:
        raise ValueError(f"{op}: d must have non-empty planes to resize, got {tuple(d.shape)}")
    full = output_array(dev, op, "out", out, NCHW, (n, c, out_h, out_w))
    dev.launch(op, "unpool_bilinear", dev.ptr(d), dev.ptr(full), n, c, height, width, out_h, out_w, dev.stream())
    return full


def conv_filter_update_workspace(z, c_out, k, *, bias=True, device=None):
    """A float32 workspace [floats] that ``conv_filter_update`` can use for inputs shaped like z
    [N, C_in, H, W] and C_out output channels: keep it to avoid an allocation per call."""
    op = "conv_filter_update"
    dev = resolve_device(op, device, "z", z)
    n, c_in, height, width = (int(v) for v in z.shape)
    floats = dev.ext.conv_filter_update_workspace_floats(n, c_in, int(c_out), height, width, int(k), bool(bias))
    return dev.xp.empty((floats,), dtype="float32")


def conv_filter_update_pooled_workspace(z, c_out, k, *, bias=True, device=None):
    """A float32 workspace [floats] for ``conv_filter_update_pooled`` (as ``conv_filter_update_workspace``)."""
    op = "conv_filter_update_pooled"
    dev = resolve_device(op, device, "z", z)
    n, c_in, height, width = (int(v) for v in z.shape)
    floats = dev.ext.conv_filter_update_pooled_workspace_floats(n, c_in, int(c_out), height, width, int(k), bool(bias))
    return dev.xp.empty((floats,), dtype="float32")


def _filter_update_args(dev, op: str, z, e, k, gamma, bias, out):
    """Checked (k, γ, shapes, ΔW, Δb or None, ΔE) of a filter update."""
    gamma = finite_float(op, "gamma", gamma)
    k = _check.check_positive(op, "k", k)
    if k % 2 == 0:
        raise ValueError(f"{op}: k must be odd, got {k}")
    _check.check_array(dev, op, "z", z, "float32", ("N", "C_in", "H", "W"))
    n, c_in, height, width = z.shape
    _check.check_array(dev, op, "e", e, "float32", ("N", "C_out", "H", "W"), (n, None, height, width))
    c_out = e.shape[1]
    dw_out, db_out, de_out = output_arrays(op, out, 3)
    w_spec, w_shape = ("C_out", "C_in", "k", "k"), (c_out, c_in, k, k)
    dw = output_array(dev, op, "out[0] (dW)", dw_out, w_spec, w_shape)
    de = output_array(dev, op, "out[2] (dE)", de_out, w_spec, w_shape)
    db = output_array(dev, op, "out[1] (db)", db_out, ("C_out",), (c_out,)) if bias else None
    return k, gamma, (n, c_in, c_out, height, width), dw, db, de


def conv_filter_update_pooled(z, e, argmax, k, *, gamma=0.1, bias=True, out=None, workspace=None, device=None):
    """``conv_filter_update`` for an e that is zero except at each 2x2 pool window's argmax (version 3).

    z [N, C_in, H, W], e [N, C_out, H, W] (the error of a conv layer whose output is max-pooled,
    unpooled at the argmax: ``conv_error_proj`` / ``unpool_error`` with argmax), argmax uint8
    [N, C_out, H//2, W//2] (the layer's ``conv_block_fwd`` codes 2*dy + dx). Reads one e per window:
    ΔW[co, ci, ky, kx] = Σ_{n,i,j} e[n, co, 2i+dy, 2j+dx] · z[n, ci, 2i+dy+ky−k//2, 2j+dx+kx−k//2],
    Δb[co] = Σ_{n,i,j} e[n, co, 2i+dy, 2j+dx], (dy, dx) the argmax of window (n, co, i, j): equal to
    ``conv_filter_update`` when e is zero elsewhere (other values of e, e.g. on a dropped odd
    row/column, are ignored). Split-K over the pooled cells, deterministic; ``workspace`` from
    ``conv_filter_update_pooled_workspace`` (allocated here when None). Returns (ΔW, Δb or None, ΔE).
    """
    op = "conv_filter_update_pooled"
    dev = resolve_device(op, device, "z", z)
    k, gamma, sizes, dw, db, de = _filter_update_args(dev, op, z, e, k, gamma, bias, out)
    n, c_in, c_out, height, width = sizes
    hp, wp = height // 2, width // 2
    _check.check_array(dev, op, "argmax", argmax, "uint8", ("N", "C_out", "Hp", "Wp"), (n, c_out, hp, wp))
    if workspace is None:
        workspace = conv_filter_update_pooled_workspace(z, c_out, k, bias=bias, device=dev)
    _check.check_array(dev, op, "workspace", workspace, "float32", ("floats",))
    dev.launch(op, "conv_filter_update_pooled", dev.ptr(z), dev.ptr(e), address(dev, argmax), dev.ptr(dw),
               address(dev, db), dev.ptr(de), dev.ptr(workspace), int(workspace.size), n, c_in, c_out, height, width,
               hp, wp, k, gamma, dev.stream())
    return dw, db, de


def conv_filter_update(z, e, k, *, gamma=0.1, bias=True, out=None, workspace=None, version=2, device=None):
    """Local conv update (eq. 9–10): (ΔW [C_out, C_in, k, k], Δb [C_out] or None, ΔE = γ ΔW).

    z [N, C_in, H, W] (the conv's input), e [N, C_out, H, W] (its output error), k odd:
    ΔW[co, ci, ky, kx] = Σ_{n,y,x} e[n, co, y, x] · z[n, ci, y + ky − k//2, x + kx − k//2] (zero
    padding), Δb[co] = Σ_{n,y,x} e[n, co, y, x]. A split-K implicit GEMM: partial sums over fixed
    ranges of positions go to ``workspace`` (a float32 1-D scratch array from
    ``conv_filter_update_workspace``; allocated here when None), then one fixed-order sum (bitwise
    reproducible, no atomics). ``out`` = optional (dW, db, dE) arrays (db None when ``bias`` is False).
    ``version=1`` is benchmark-only: the previous kernel (one block per output), kept for bench/micro.py.
    Version 3, for an e that is zero off the pool argmax, is ``conv_filter_update_pooled``.
    """
    op = "conv_filter_update"
    dev = resolve_device(op, device, "z", z)
    if version not in (1, 2):
        raise ValueError(f"{op}: version must be 2 (or 1, benchmark-only; version 3 is conv_filter_update_pooled), "
                         f"got {version!r}")
    k, gamma, dims, dw, db, de = _filter_update_args(dev, op, z, e, k, gamma, bias, out)
    n, c_in, c_out, height, width = dims
    sizes = (n, c_in, c_out, height, width, k, gamma, dev.stream())
    if version == 1:
        dev.launch(op, "conv_filter_update_v1", dev.ptr(z), dev.ptr(e), dev.ptr(dw), address(dev, db), dev.ptr(de),
                   *sizes)
        return dw, db, de
    if workspace is None:
        workspace = conv_filter_update_workspace(z, c_out, k, bias=bias, device=dev)
    _check.check_array(dev, op, "workspace", workspace, "float32", ("floats",))
    dev.launch(op, "conv_filter_update", dev.ptr(z), dev.ptr(e), dev.ptr(dw), address(dev, db), dev.ptr(de),
               dev.ptr(workspace), int(workspace.size), *sizes)
    return dw, db, de

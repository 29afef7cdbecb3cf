"""Tests of the conv-family ops (ekdaa_cuda.ops.conv, kernels in csrc/conv.cu).

Every result is checked against a float64 NumPy reference built from ``ekdaa_cuda.reference``
on fresh random shapes (batch 1, primes, odd H/W, channels 1..33, k in {1, 3, 5}; the seed is
printed, replay with EKDAA_TEST_SEED=<seed>). Outputs are passed as ``out=`` arrays poisoned
with NaN (argmax with 255), so an element the kernel never writes fails. Convolutions use small
integer-valued inputs, which float32 sums exactly: those checks are ``==``.

Run: ``pytest tests/gpu/test_ops_conv.py`` (on the CPU simulator, and on the GPU when there is one;
``--device cuda-sim`` or ``--device cuda`` picks one). On the simulator every op call also runs
under several thread schedules and worker counts, bitwise equal (tests/gpu/conftest.py).
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import foreign, host

from ekdaa_cuda import reference
from ekdaa_cuda.ops import conv as ops

pytestmark = pytest.mark.gpu

ACTIVATIONS = list(reference.ACTIVATION_CODES)
EXACT_ACTIVATIONS = ("relu", "signum", "linear")  # exact on integer inputs: argmax ties compare exactly too
RULE_ACTIVATIONS = [(a, r) for r in ("ekdaa", "bp") for a in ACTIVATIONS if (a, r) != ("signum", "bp")]
EPS32 = float(np.finfo(np.float32).eps)




# ---------------------------------------------------------------- helpers


def draw(rng, *names):
    """Awkward sizes: batch 1, primes, odd and even spatial sizes, channel counts 1..33."""
    choices = {"N": [1, 1, 2, 3], "C": [1, 3, 5, 17, 33], "HW": [1, 2, 3, 5, 7, 8, 13, 28], "k": [1, 3, 5]}
    return [int(rng.choice(choices[n])) for n in names]


def ints(rng, shape, bound=3):
    """Integers in [-bound, bound] as float32: conv sums of these are exact in float32."""
    return rng.integers(-bound, bound + 1, size=shape).astype(np.float32)


def poisoned(xp, shape, dtype=np.float32):
    """An output buffer full of NaN (uint8: 255, not an argmax code) so unwritten elements show."""
    return xp.full(shape, 255 if dtype == np.uint8 else np.nan, dtype=dtype)


def assert_close(got, want, atol, rtol=0.0, what="result"):
    """NaN/Inf first (an unwritten or poisoned element), then |got − want| <= atol + rtol·|want|."""
    got = host(got).astype(np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    bad = ~np.isfinite(got)
    assert not bad.any(), f"{what}: {bad.sum()} non-finite elements (unwritten?), first at {np.argwhere(bad)[:3]}"
    bad = np.abs(got - want) > atol + rtol * np.abs(want)
    assert not bad.any(), (
        f"{what}: {bad.sum()} of {bad.size} differ, first at {np.argwhere(bad)[:3].tolist()}: "
        f"got {got[bad][:4]} want {want[bad][:4]}"
    )


def assert_equal(got, want, what="result"):
    assert_close(got, np.asarray(want, dtype=np.float64), atol=0.0, what=what)


def dropout(rng, p, shape):
    """(key, float32 mask m/(1−p)) of a layer's mask over ``shape``: the kernels' factor, element for element."""
    key = reference.dropout_key(int(rng.integers(2**32)), int(rng.integers(10_000)), int(rng.integers(8)))
    return key, reference.dropout_keep(key, shape, p).astype(np.float32) * reference.dropout_scale(p, np.float32)


def windows(z):
    """[N, C, H, W] -> [N, C, H//2, W//2, 4]: each 2x2 pool window in argmax-code order q = 2·dy + dx."""
    n, c, height, width = z.shape
    hp, wp = height // 2, width // 2
    win = z[:, :, : 2 * hp, : 2 * wp].reshape(n, c, hp, 2, wp, 2)
    return win.transpose(0, 1, 2, 4, 3, 5).reshape(n, c, hp, wp, 4)


def conv_transpose64(e, kernel, out_shape):
    """reference.conv2d_transpose in float64; its im2col needs a non-empty plane."""
    if e.shape[2] == 0 or e.shape[3] == 0:
        return np.zeros(out_shape)
    return reference.conv2d_transpose(e.astype(np.float64), kernel.astype(np.float64))


def epilogue64(rule, act, h, d, beta, mask):
    if rule == "bp":
        return d * reference.activation_derivative(act, h) * mask
    return reference.target_error(act, h, d, beta) * mask


# ---------------------------------------------------------------- conv_block_fwd


@pytest.mark.parametrize("pool", [True, False])
@pytest.mark.parametrize("p", [0.0, 0.3])
@pytest.mark.parametrize("act", [*ACTIVATIONS, None])  # None: apply_activation=False
def test_conv_block_fwd(xp, rng, act, p, pool):
    n, c_in, c_out, height, width, k = draw(rng, "N", "C", "C", "HW", "HW", "k")
    x, w = ints(rng, (n, c_in, height, width)), ints(rng, (c_out, c_in, k, k))
    b = ints(rng, (c_out,)) if rng.random() < 0.5 else None
    key, mask = dropout(rng, p, (n, c_out, height, width))
    out_shape = (n, c_out, height // 2, width // 2) if pool else (n, c_out, height, width)
    out = (
        poisoned(xp, (n, c_out, height, width)),
        poisoned(xp, out_shape),
        poisoned(xp, out_shape, np.uint8) if pool else None,
    )
    h, z, argmax = ops.conv_block_fwd(
        xp.array(x),
        xp.array(w),
        None if b is None else xp.array(b),
        activation=act or "linear",
        apply_activation=act is not None,
        pool=pool,
        dropout=p,
        dropout_key=key,
        out=out,
    )
    assert h is out[0] and z is out[1] and argmax is out[2]

    want_h = reference.conv2d(x.astype(np.float64), w.astype(np.float64), None if b is None else b.astype(np.float64))
    assert_equal(h, want_h, "h")  # small integers: exact
    # relu/signum/linear/none are exact on integers, and z = φ(h)·mask is one float32 product as in
    # the kernel; tanh/sigmoid: float32 φ of a float32 h (~2 ulps of |φ| <= 1) and the product's
    # rounding, times the mask's scale.
    exact = act in (None, *EXACT_ACTIVATIONS)
    phi = reference.activate(act, want_h) if act else want_h
    want_z = (phi.astype(np.float32) * mask).astype(np.float64) if exact else phi * mask
    tol = 0.0 if exact else 4 * EPS32 * mask.max(initial=1.0)
    if not pool:
        assert argmax is None
        assert_close(z, want_z, atol=tol, what="out")
        return
    want_out, want_idx = reference.maxpool2x2(want_z)
    assert_close(z, want_out, atol=tol, what="pooled out")
    got_idx = host(argmax)
    assert got_idx.max(initial=0) <= 3, "argmax codes must be 0..3"
    if tol == 0.0:
        assert_equal(got_idx, want_idx, "argmax")  # ties included: first in row-major order
    else:
        # near-ties may round to exact ties in float32: the chosen position must hold the maximum
        chosen = np.take_along_axis(windows(want_z), got_idx[..., None].astype(np.intp), axis=-1)[..., 0]
        assert_close(chosen, want_out, atol=tol, what="value at the kernel's argmax")


def test_conv_block_fwd_pool_ties_first(xp):
    # Every window ties (all ones), plus hand-made windows whose maximum sits at q = 0, 1, 2, 3.
    x = np.ones((1, 1, 5, 9), np.float32)  # odd H and W: the trailing row/column belongs to no window
    x[0, 0, 0:2, 0:2] = [[0, 0], [0, 1]]
    x[0, 0, 0:2, 2:4] = [[0, 0], [2, 0]]
    x[0, 0, 0:2, 4:6] = [[0, 3], [3, 3]]
    w = np.ones((1, 1, 1, 1), np.float32)
    h, out, argmax = ops.conv_block_fwd(xp.array(x), xp.array(w), activation="linear", apply_activation=False)
    assert_equal(h, x, "h (including the trailing row/column)")
    assert_equal(argmax, [[[[3, 2, 1, 0], [0, 0, 0, 0]]]], "argmax")
    assert_equal(out, [[[[1, 2, 3, 1], [1, 1, 1, 1]]]], "out")


def test_conv_block_fwd_layer_sized(xp, rng):
    # An fmnist-preset-sized layer with float data: many blocks, tolerance instead of exactness.
    x = rng.standard_normal((50, 32, 14, 14)).astype(np.float32)
    w = (rng.standard_normal((64, 32, 3, 3)) * 0.1).astype(np.float32)
    b = rng.standard_normal(64).astype(np.float32)
    h, out, _ = ops.conv_block_fwd(xp.array(x), xp.array(w), xp.array(b), activation="tanh")
    want_h = reference.conv2d(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64))
    # float32 sum of 288 products: error <~ 288·eps·Σ|x·w| (generous; index bugs give O(1) errors)
    bound = reference.conv2d(np.abs(x).astype(np.float64), np.abs(w).astype(np.float64), np.abs(b).astype(np.float64))
    assert_close(h, want_h, atol=288 * EPS32 * bound, what="h")
    want_out, _ = reference.maxpool2x2(np.tanh(want_h))
    assert_close(out, want_out, atol=1e-4, what="out")  # tanh is 1-Lipschitz: h's error bound, rounded up


# ---------------------------------------------------------------- implicit GEMM (v2) against v1, every tile

# (N, C_in, C_out, H, W, k) at the implicit GEMM's edges. Tiles (igemm_tiles): 128x64, 64x128, 64x64,
# 64x32, 32x64, 32x32 (rows = positions x columns = output channels), 8 depth indices (ci, ky, kx) a
# step per depth group (1, 1, 1, 2, 2, 4 groups: steps of 8, 16 or 32 depth indices).
IGEMM_SHAPES = [
    (1, 1, 1, 1, 1, 1),  # one position, one tap, one depth index (a partial step)
    (2, 7, 31, 9, 9, 5),  # depth 175: 5 steps of 32 + 15 (several steps for every group of the 32x32 tile)
    (1, 3, 65, 11, 12, 3),  # C_out = 64 + 1; 132 positions (pooled: 144 rows) = 128 + 4; depth 27
    (2, 5, 33, 7, 5, 5),  # C_out = 32 + 1; odd H, W (the trailing row/column); k = W; depth 125
    (3, 17, 7, 13, 3, 1),  # k = 1: depth 17 = 2 steps + 1; 117 positions
    (1, 2, 129, 3, 43, 3),  # C_out = 128 + 1; 129 positions = 128 + 1; a 1-row pool grid
    (1, 2, 5, 7, 16, 15),  # k = 15, the largest (15 tap bits per axis), wider than the plane: taps cut on all sides
]


def exact_epilogue(rng):
    """(activation, apply_activation, bias?, p) drawn among the exactly computed epilogues."""
    act = str(rng.choice([*EXACT_ACTIVATIONS, "none"]))
    return act if act != "none" else "linear", act != "none", bool(rng.random() < 0.5), float(rng.choice([0.0, 0.3]))


@pytest.mark.parametrize("tile", range(6))
@pytest.mark.parametrize("shape", IGEMM_SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("pool", [True, False])
def test_conv_block_fwd_tiles_exact_and_equal_to_v1(device, xp, rng, shape, tile, pool):
    """Every tile, forced, on integer inputs: h exact against the float64 reference, and h, out,
    argmax bit for bit equal to v1's (sums of integers are exact in any order; relu/signum/linear/none
    and the mask's one product are exact)."""
    n, c_in, c_out, height, width, k = shape
    x, w = ints(rng, (n, c_in, height, width)), ints(rng, (c_out, c_in, k, k))
    act, apply, has_bias, p = exact_epilogue(rng)
    b = ints(rng, (c_out,)) if has_bias else None
    key = dropout(rng, p, (n, c_out, height, width))[0]
    out_shape = (n, c_out, height // 2, width // 2) if pool else (n, c_out, height, width)
    args = (xp.array(x), xp.array(w), None if b is None else xp.array(b))
    kw = dict(activation=act, apply_activation=apply, pool=pool, dropout=p, dropout_key=key)

    def outs():
        return (poisoned(xp, (n, c_out, height, width)), poisoned(xp, out_shape),
                poisoned(xp, out_shape, np.uint8) if pool else None)

    got = ops.conv_block_fwd(*args, **kw, out=outs(), tile=tile)
    want = ops.conv_block_fwd(*args, **kw, out=outs(), version=1)
    want_h = reference.conv2d(x.astype(np.float64), w.astype(np.float64), None if b is None else b.astype(np.float64))
    assert_equal(got[0], want_h, "h")
    for name, g, v in zip(("h", "out", "argmax"), got, want):
        if v is None:
            assert g is None
            continue
        v = host(v)
        assert_close(v, v.astype(np.float64), atol=0.0, what=f"v1 {name}")  # v1 wrote every element
        assert host(g).tobytes() == v.tobytes(), f"{name}: v2 (tile {tile}) differs from v1"


@pytest.mark.parametrize("tile", range(6))
@pytest.mark.parametrize("shape", IGEMM_SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("pooled", [True, False])
def test_conv_error_proj_tiles_exact_and_equal_to_v1(device, xp, rng, shape, tile, pooled):
    """Every tile, forced: d exact (integer e and kernel), an epilogue exact on integer h with β = 0.5
    (h − βd is exact; relu/signum/linear, φ' of relu/linear), so e_below must equal the float64
    reference and v1's bit for bit, including the exact zeros off the argmax."""
    n, c_in, c_out, hh, wh, k = shape  # here C_in is the layer below's width (the GEMM's columns)
    c_in, c_out = c_out, c_in  # the larger count on the GEMM's columns, as in IGEMM_SHAPES
    hp, wp = (hh // 2, wh // 2) if pooled else (hh, wh)
    e, kernel = ints(rng, (n, c_out, hp, wp)), ints(rng, (c_out, c_in, k, k))
    h = ints(rng, (n, c_in, hh, wh), bound=4)
    idx = reference.maxpool2x2(rng.integers(0, 2, (n, c_in, hh, wh)).astype(np.float32))[1] if pooled else None
    rule = str(rng.choice(["ekdaa", "bp"]))
    act = str(rng.choice(["relu", "linear"] if rule == "bp" else EXACT_ACTIVATIONS))
    p = float(rng.choice([0.0, 0.3]))
    key, mask = dropout(rng, p, h.shape)
    args = (xp.array(e), xp.array(kernel), xp.array(h), None if idx is None else xp.array(idx))
    kw = dict(activation=act, beta=0.5, dropout=p, dropout_key=key, rule=rule)
    got = ops.conv_error_proj(*args, **kw, out=poisoned(xp, h.shape), tile=tile)
    want = ops.conv_error_proj(*args, **kw, out=poisoned(xp, h.shape), version=1)
    d = conv_transpose64(e, kernel, (n, c_in, hp, wp))
    if pooled:
        d = reference.unpool_argmax(d, idx, (hh, wh))
    want64 = epilogue64(rule, act, h.astype(np.float64), d, 0.5, mask.astype(np.float64))
    assert_equal(got, (want64.astype(np.float32) if p else want64), "e_below")  # the mask's product: float32
    assert host(got).tobytes() == host(want).tobytes(), f"e_below: v2 (tile {tile}) differs from v1"


def test_igemm_tile_choice(device):
    """The tile table and the choice by shape: >= 264 blocks (2 per SM of a 132-SM card) with the
    largest tile that gets there, else the most blocks; no tile wider than the columns (rows) rounded
    up to 32."""
    tiles = ops.igemm_tiles(device)
    assert tiles == [(128, 64, 1), (64, 128, 1), (64, 64, 1), (64, 32, 2), (32, 64, 2), (32, 32, 4)]
    pick = device.ext.igemm_tile_for

    def blocks(rows, cols, t):
        bm, bn, _ = tiles[t]
        return -(-rows // bm) * -(-cols // bn)

    # fmnist at batch 50: conv1/conv2 forward (pooled rows), conv3 forward, conv3->conv2 and conv2->conv1 projections
    assert tiles[pick(50 * 4 * 14 * 14, 32)][:2] == (64, 32)  # 613 blocks
    assert tiles[pick(50 * 4 * 7 * 7, 64)][:2] == (64, 32)  # 307 blocks (64x64 gives 154)
    assert tiles[pick(50 * 7 * 7, 128)][:2] == (32, 32)  # 308 blocks (64x32 gives 156)
    assert tiles[pick(50 * 7 * 7, 64)][:2] == (32, 32)  # 154 blocks: the most any tile gives
    assert tiles[pick(50 * 14 * 14, 32)][:2] == (32, 32)  # 307 blocks (64x32 gives 154)
    assert tiles[pick(256 * 4 * 14 * 14, 64)][:2] == (128, 64)  # batch 256: 392 blocks of the largest tile
    assert tiles[pick(10_000, 128)][:2] == (64, 64)  # 314 blocks (128x64: 158, 64x128: 157)
    assert tiles[pick(11_136, 130)][:2] == (64, 128)  # 348 blocks (128x64: 87 x 3 = 261)
    assert tiles[pick(1, 1)][:2] == (32, 32)
    for rows, cols in [(39200, 32), (2450, 128), (9800, 64), (300, 7), (5, 1000)]:
        allowed = [i for i, (bm, bn, _) in enumerate(tiles) if bn <= -(-cols // 32) * 32 and bm <= -(-rows // 32) * 32]
        first = next((i for i in allowed if blocks(rows, cols, i) >= 264), None)
        most = max(allowed, key=lambda i: (blocks(rows, cols, i), -i))  # ties: the earlier tile
        assert pick(rows, cols) == (first if first is not None else most)


def test_igemm_tile_and_version_checks(device, xp):
    x, w = xp.zeros((1, 2, 4, 4), np.float32), xp.zeros((3, 2, 3, 3), np.float32)
    e, h = xp.zeros((1, 3, 2, 2), np.float32), xp.zeros((1, 2, 4, 4), np.float32)
    idx = xp.zeros((1, 2, 2, 2), np.uint8)
    with pytest.raises(ValueError, match=r"^conv_block_fwd: tile must be -1 \(by shape\) or < 6, got 6"):
        ops.conv_block_fwd(x, w, tile=6)
    with pytest.raises(ValueError, match="^conv_block_fwd: tile must be None or an index"):
        ops.conv_block_fwd(x, w, tile=-1)
    with pytest.raises(ValueError, match="^conv_block_fwd: version must be 2"):
        ops.conv_block_fwd(x, w, version=0)
    with pytest.raises(ValueError, match="^conv_error_proj: tile applies to version 2 only"):
        ops.conv_error_proj(e, xp.zeros((3, 2, 3, 3), np.float32), h, idx, version=1, tile=0)
    with pytest.raises(ValueError, match=r"^conv_error_proj: tile must be -1 \(by shape\) or < 6, got 7"):
        ops.conv_error_proj(e, xp.zeros((3, 2, 3, 3), np.float32), h, idx, tile=7)
    # k <= 15 (the loaders' tap masks): checked in Python and again by the launchers; version 1 has no limit
    w17 = xp.zeros((3, 2, 17, 17), np.float32)
    with pytest.raises(ValueError, match="^conv_block_fwd: kernel size k = 17 exceeds 15"):
        ops.conv_block_fwd(x, w17)
    with pytest.raises(ValueError, match="^conv_error_proj: kernel size k = 17 exceeds 15"):
        ops.conv_error_proj(e, w17, h, idx)
    assert float(ops.conv_block_fwd(x, w17, version=1)[0].sum()) == 0.0
    C, ptr = device.ext, device.ptr
    with pytest.raises(ValueError, match=r"^conv_block_fwd: kernel size k must be <= 15 \(the implicit GEMM's tap "
                                         r"masks\), got 17"):
        C.conv_block_fwd(ptr(x), ptr(w17), 0, ptr(h), ptr(h), ptr(idx), 1, 2, 3, 4, 4, 17, 0, True, True, 0, 0, 1.0,
                         0, -1)


@pytest.mark.parametrize(
    "sizes, message",
    [
        ((2**20, 64, 1, 8, 8, 3), r"x's element count N\*C_in\*H\*W = 4294967296 exceeds 2\^31 - 1"),
        ((2**20, 1, 64, 8, 8, 3), r"h's element count N\*C_out\*H\*W = 4294967296 exceeds 2\^31 - 1"),
        ((1, 2**16, 2**13, 1, 1, 3), r"w's element count C_out\*C_in\*k\*k = 4831838208 exceeds"),
        ((1, 1, 1, 1, 2**31 - 100, 1), r"GEMM rows N\*H\*W \(pool: N\*4\*ceil\(H/2\)\*ceil\(W/2\)\) \+ one tile = "
                                       r"2147483676 exceeds"),
    ],
)
def test_conv_block_fwd_sizes_beyond_32_bit(device, sizes, message):
    """Refused by the v2 launcher before any memory is touched (null pointers), naming the size and its value."""
    n, c_in, c_out, height, width, k = sizes
    with pytest.raises(ValueError, match="^conv_block_fwd: " + message):
        device.ext.conv_block_fwd(1, 1, 0, 1, 1, 0, n, c_in, c_out, height, width, k, 0, True, False, 0, 0, 1.0, 0)


@pytest.mark.parametrize(
    "sizes, message",
    [
        ((2**20, 1, 64, 8, 8), r"e's element count N\*C_out\*Hp\*Wp = 4294967296 exceeds 2\^31 - 1"),
        ((2**20, 64, 1, 8, 8), r"h's element count N\*C_in\*Hh\*Wh = 4294967296 exceeds 2\^31 - 1"),
        ((1, 2**16, 2**13, 1, 1), r"kernel's element count C_out\*C_in\*k\*k = 4831838208 exceeds"),
        ((1, 1, 1, 1, 2**31 - 100), r"GEMM rows N\*Hh\*Wh \(pool: N\*ceil\(Hh/2\)\*ceil\(Wh/2\)\) \+ one tile"),
    ],
)
def test_conv_error_proj_sizes_beyond_32_bit(device, sizes, message):
    n, c_in, c_out, height, width = sizes
    with pytest.raises(ValueError, match="^conv_error_proj: " + message):
        device.ext.conv_error_proj(1, 1, 1, 0, 1, n, c_in, c_out, height, width, height, width, 3, False, 0, 0, 0.9,
                                   0, 0, 1.0, 0)


def test_conv_error_proj_layer_sized(xp, rng):  # ~5 s on the simulator (v1 and v2, four schedules each)
    # fmnist conv3 -> conv2 at batch 50 (pooled; 2450 rows x 64 columns, depth 1152) with float data
    e = rng.standard_normal((50, 128, 7, 7)).astype(np.float32)
    kernel = (rng.standard_normal((128, 64, 3, 3)) * 0.1).astype(np.float32)
    h = rng.standard_normal((50, 64, 14, 14)).astype(np.float32)
    idx = reference.maxpool2x2(np.tanh(h))[1]
    args = (xp.array(e), xp.array(kernel), xp.array(h), xp.array(idx))
    got = ops.conv_error_proj(*args, activation="linear", rule="bp")
    d = conv_transpose64(e, kernel, (50, 64, 7, 7))
    bound = conv_transpose64(np.abs(e), np.abs(kernel), (50, 64, 7, 7))
    # float32 sum of 1152 products: error <~ 1152·eps·Σ|e·K| (generous; index bugs give O(1) errors)
    want = reference.unpool_argmax(d, idx, (14, 14))
    assert_close(got, want, atol=reference.unpool_argmax(1152 * EPS32 * bound, idx, (14, 14)), what="e_below")
    v1 = ops.conv_error_proj(*args, activation="linear", rule="bp", version=1)
    assert_close(got, host(v1).astype(np.float64), atol=reference.unpool_argmax(2 * 1152 * EPS32 * bound, idx,
                                                                                 (14, 14)), what="v2 vs v1")


# ---------------------------------------------------------------- conv_error_proj / unpool_error / conv_proj


@pytest.mark.parametrize("pooled", [True, False])
@pytest.mark.parametrize("p", [0.0, 0.3])
@pytest.mark.parametrize("act, rule", RULE_ACTIVATIONS)
def test_conv_error_proj(xp, rng, act, rule, p, pooled):
    n, c_in, c_out, hh, wh, k = draw(rng, "N", "C", "C", "HW", "HW", "k")
    hp, wp = (hh // 2, wh // 2) if pooled else (hh, wh)
    e, kernel = ints(rng, (n, c_out, hp, wp)), ints(rng, (c_out, c_in, k, k))
    h = (rng.standard_normal((n, c_in, hh, wh)) * 2).astype(np.float32)
    # argmax from a real pool of a tie-heavy tensor (0/1), so tied windows are exercised too
    idx = reference.maxpool2x2(rng.integers(0, 2, (n, c_in, hh, wh)).astype(np.float32))[1] if pooled else None
    key, mask = dropout(rng, p, h.shape)
    beta = 0.9
    got = ops.conv_error_proj(
        xp.array(e),
        xp.array(kernel),
        xp.array(h),
        None if idx is None else xp.array(idx),
        activation=act,
        beta=beta,
        dropout=p,
        dropout_key=key,
        rule=rule,
        out=poisoned(xp, h.shape),
    )
    d = conv_transpose64(e, kernel, (n, c_in, hp, wp))  # exact: integer inputs
    if pooled:
        d = reference.unpool_argmax(d, idx, (hh, wh))
        at_argmax = reference.unpool_argmax(np.ones((n, c_in, hp, wp)), idx, (hh, wh)) > 0
        assert_equal(host(got)[~at_argmax], np.zeros(np.count_nonzero(~at_argmax)), "error off the argmax")
    want = epilogue64(rule, act, h.astype(np.float64), d, beta, mask)
    # float32 epilogue of an exact d: h − βd and φ (1-Lipschitz here, φ' bounded by 1; CUDA's tanhf/expf
    # are within 2 ulps) rounded a few times: a few ulps of |h| + |βd| + 1 (ekdaa) or of |d| (bp),
    # times the mask's scale. 16 ulps leaves room; an index bug gives O(1) errors.
    scale = mask.max(initial=1.0)
    tol = 16 * EPS32 * scale * (np.abs(d) if rule == "bp" else 1 + np.abs(h) + beta * np.abs(d))
    assert_close(got, want, atol=tol, what="e_below")


def test_conv_error_proj_is_bp_backward_data(xp, rng):
    # rule bp, φ = linear, no pool, no dropout: e_below is exactly conv-backward-data of e with W.
    n, c_in, c_out, height, width, k = draw(rng, "N", "C", "C", "HW", "HW", "k")
    e, w = ints(rng, (n, c_out, height, width)), ints(rng, (c_out, c_in, k, k))
    h = rng.standard_normal((n, c_in, height, width)).astype(np.float32)
    got = ops.conv_error_proj(xp.array(e), xp.array(w), xp.array(h), activation="linear", rule="bp")
    assert_equal(got, conv_transpose64(e, w, (n, c_in, height, width)), "e_below")


@pytest.mark.parametrize("act, rule", [("tanh", "ekdaa"), ("signum", "ekdaa"), ("linear", "bp"), ("sigmoid", "bp"),
                                       ("relu", "ekdaa"), ("relu", "bp")])
def test_unpool_error(xp, rng, act, rule):
    n, c, hh, wh = draw(rng, "N", "C", "HW", "HW")
    hp, wp = hh // 2, wh // 2
    d = rng.standard_normal((n, c, hp, wp)).astype(np.float32)
    idx = rng.integers(0, 4, (n, c, hp, wp)).astype(np.uint8)
    h = rng.standard_normal((n, c, hh, wh)).astype(np.float32)
    key, mask = dropout(rng, 0.25, h.shape)
    got = ops.unpool_error(
        xp.array(d),
        xp.array(h),
        xp.array(idx),
        activation=act,
        beta=0.9,
        dropout=0.25,
        dropout_key=key,
        rule=rule,
        out=poisoned(xp, h.shape),
    )
    d_full = reference.unpool_argmax(d.astype(np.float64), idx, (hh, wh))
    want = epilogue64(rule, act, h.astype(np.float64), d_full, 0.9, mask)
    if act == "linear":  # bp with φ' = 1: d·1·(m/(1−p)), one float32 product
        assert_equal(got, reference.unpool_argmax(d, idx, (hh, wh)) * mask, "e")
    else:  # float32 φ of O(1) values: a few ulps of 1 + |h| + |d|, times the scale
        assert_close(got, want, atol=8 * EPS32 * mask.max() * (1 + np.abs(h) + np.abs(d_full)), what="e")


@pytest.mark.parametrize("trial", range(3))  # three fresh random shapes
def test_conv_proj(xp, rng, trial):
    n, c_in, c_out, height, width, k = draw(rng, "N", "C", "C", "HW", "HW", "k")
    e, kernel = ints(rng, (n, c_out, height, width)), ints(rng, (c_out, c_in, k, k))
    got = ops.conv_proj(xp.array(e), xp.array(kernel), out=poisoned(xp, (n, c_in, height, width)))
    assert_equal(got, conv_transpose64(e, kernel, (n, c_in, height, width)), "d")


@pytest.mark.parametrize(
    "hw, out_hw",
    [
        ((7, 7), (14, 14)),
        ((7, 3), (15, 7)),
        ((3, 5), (3, 5)),
        ((4, 6), (3, 2)),
        ((1, 1), (2, 3)),
        ((1, 2), (5, 4)),  # up from a single row, x2
        ((13, 14), (6, 28)),  # down along H, x2 along W
        ((5, 7), (3, 14)),
    ],
)
def test_unpool_bilinear(xp, rng, hw, out_hw):
    d = rng.standard_normal((2, 3, *hw)).astype(np.float32)
    got = ops.unpool_bilinear(xp.array(d), out_hw, out=poisoned(xp, (2, 3, *out_hw)))
    # two float32 lerps of O(1) values with float32 weights: a few ulps of max|d|
    assert_close(got, reference.unpool_bilinear(d.astype(np.float64), out_hw), atol=8 * EPS32 * np.abs(d).max())


# ---------------------------------------------------------------- conv_filter_update


# fresh shapes, several trials for v2 (the split-K GEMM with shared memory and barriers); v1 is the
# benchmark-only previous kernel, kept validated
@pytest.mark.parametrize(("version", "trial"), [(2, 0), (2, 1), (2, 2), (1, 0)])
@pytest.mark.parametrize("bias", [True, False])
def test_conv_filter_update_exact(xp, rng, bias, version, trial):
    n, c_in, c_out, height, width, k = draw(rng, "N", "C", "C", "HW", "HW", "k")
    z, e = ints(rng, (n, c_in, height, width)), ints(rng, (n, c_out, height, width))
    w_shape = (c_out, c_in, k, k)
    out = (poisoned(xp, w_shape), poisoned(xp, (c_out,)) if bias else None, poisoned(xp, w_shape))
    dw, db, de = ops.conv_filter_update(xp.array(z), xp.array(e), k, gamma=0.1, bias=bias, out=out, version=version)
    want = reference.conv2d_filter_grad(z.astype(np.float64), e.astype(np.float64), k)
    assert_equal(dw, want, "dW")
    assert_equal(de, np.float32(0.1) * want.astype(np.float32), "dE")  # γ·ΔW: one float32 product
    if bias:
        assert_equal(db, e.astype(np.float64).sum(axis=(0, 2, 3)), "db")
    else:
        assert db is None


# (N, C_in, C_out, H, W, k): the split-K GEMM's edges. Block tile 64 (C_out) x 64 (columns C_in·k·k + bias),
# 16 positions (n, y, x) per step; splits of whole steps, as many as ~264 blocks need.
GEMM_SHAPES = [
    (1, 1, 1, 1, 1, 1),  # one position, one tap, one split
    (1, 1, 64, 4, 4, 3),  # C_out = one row tile, 16 positions = one step
    (2, 7, 65, 3, 3, 3),  # 63 taps + bias = one column tile; C_out = tile + 1; H·W = 9 < a step
    (3, 7, 5, 5, 7, 3),  # 64 taps + bias = tile + 1; N·H·W = 105: a partial last step
    (1, 2, 3, 17, 1, 5),  # W = 1: a step spans rows; k > W
    (2, 1, 3, 50, 50, 1),  # 5000 positions: 313 steps over 157 splits of 2 steps
    (5, 3, 2, 13, 11, 5),  # odd H, W; 715 positions; 75 taps + bias
]


@pytest.mark.parametrize("shape", GEMM_SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("bias", [True, False])
def test_conv_filter_update_gemm_edges_exact(xp, rng, shape, bias):
    """Integers in [-3, 3]: every product and every partial sum is an integer of magnitude
    <= 9·N·H·W <= 45,000 < 2^24, so float32 sums them exactly in any order: compared with ==.
    The workspace is poisoned too (the GEMM must write every partial it reads back)."""
    n, c_in, c_out, height, width, k = shape
    z, e = ints(rng, (n, c_in, height, width)), ints(rng, (n, c_out, height, width))
    zg, eg = xp.array(z), xp.array(e)
    ws = ops.conv_filter_update_workspace(zg, c_out, k, bias=bias)
    ws[...] = np.nan
    w_shape = (c_out, c_in, k, k)
    out = (poisoned(xp, w_shape), poisoned(xp, (c_out,)) if bias else None, poisoned(xp, w_shape))
    dw, db, de = ops.conv_filter_update(zg, eg, k, gamma=0.1, bias=bias, out=out, workspace=ws)
    want = reference.conv2d_filter_grad(z.astype(np.float64), e.astype(np.float64), k)
    assert_equal(dw, want, "dW")
    assert_equal(de, np.float32(0.1) * want.astype(np.float32), "dE")
    if bias:
        assert_equal(db, e.astype(np.float64).sum(axis=(0, 2, 3)), "db")


def test_conv_filter_update_workspace_checks(device, xp):
    z, e = xp.zeros((2, 3, 5, 5), np.float32), xp.zeros((2, 4, 5, 5), np.float32)
    need = ops.conv_filter_update_workspace(z, 4, 3).size
    assert need == device.ext.conv_filter_update_workspace_floats(2, 3, 4, 5, 5, 3, True) > 0
    with pytest.raises(ValueError, match=f"^conv_filter_update: workspace holds 5 floats, needs {need}"):
        ops.conv_filter_update(z, e, 3, workspace=xp.zeros(5, np.float32))
    with pytest.raises(ValueError, match="^conv_filter_update: workspace must be"):
        ops.conv_filter_update(z, e, 3, workspace=xp.zeros((need, 1), np.float32))
    with pytest.raises(ValueError, match="^conv_filter_update: version must be 2"):
        ops.conv_filter_update(z, e, 3, version=3)


@pytest.mark.parametrize(
    "sizes, message",
    [
        ((2**20, 64, 8, 8, 8, 3), r"z's element count N\*C_in\*H\*W = 4294967296 exceeds 2\^31 - 1"),
        ((2**20, 8, 64, 8, 8, 3), r"e's element count N\*C_out\*H\*W = 4294967296 exceeds"),
        ((1, 2**16, 2**12, 1, 1, 3), r"ΔW's element count C_out\*C_in\*k\*k \(\+C_out\) = 2415923200 exceeds"),
        ((1, 1, 1, 1, 1, -3), "kernel size k must be odd and >= 1, got -3"),
    ],
)
def test_conv_filter_update_sizes_beyond_32_bit(device, sizes, message):
    """Refused by the launcher before any memory is touched (null pointers), naming the size and its value."""
    n, c_in, c_out, height, width, k = sizes
    with pytest.raises(ValueError, match="^conv_filter_update: " + message):
        device.ext.conv_filter_update_workspace_floats(n, c_in, c_out, height, width, k, True)
    with pytest.raises(ValueError, match="^conv_filter_update: " + message):
        device.ext.conv_filter_update(1, 1, 1, 1, 1, 1, 1 << 40, n, c_in, c_out, height, width, k, 0.1, 0)  # db: bias


def test_conv_filter_update_layer_sized_and_deterministic(xp, rng):  # ~1 s on the simulator (v2)
    z = rng.standard_normal((50, 32, 14, 14)).astype(np.float32)
    e = rng.standard_normal((50, 64, 14, 14)).astype(np.float32)
    zg, eg = xp.array(z), xp.array(e)
    dw, db, de = ops.conv_filter_update(zg, eg, 3, gamma=0.1)
    want = reference.conv2d_filter_grad(z.astype(np.float64), e.astype(np.float64), 3)
    bound = reference.conv2d_filter_grad(np.abs(z).astype(np.float64), np.abs(e).astype(np.float64), 3)
    # 52 splits of 192 positions summed in order, then the 52 partials in order: a worst-case bound of
    # ~244·eps·Σ|terms|; rounding errors of random signs grow like its square root: <~ 50·eps·Σ|terms|
    assert_close(dw, want, atol=50 * EPS32 * bound, what="dW")
    assert_close(db, e.astype(np.float64).sum(axis=(0, 2, 3)), atol=50 * EPS32 * np.abs(e).sum(axis=(0, 2, 3)))
    assert_close(de, 0.1 * want, atol=0.1 * 50 * EPS32 * bound + 1e-7 * np.abs(want), what="dE")
    again = ops.conv_filter_update(zg, eg, 3, gamma=0.1)
    for first, second in zip((dw, db, de), again):
        assert bool((first == second).all()), "the fixed-order reduction must be bitwise reproducible"


# ---------------------------------------------------------------- conv_filter_update_pooled (v3)
# Below a 2x2 max-pool with argmax unpooling, a conv layer's error e is zero except at each window's
# argmax (conv_error_proj / unpool_error write exactly 0 elsewhere, for every rule), so the filter
# update needs one term per window. Checked against the float64 sparse reference
# (reference.conv2d_filter_grad_pooled), the dense reference and the dense v2 kernel on the same e.
# Integers in [-3, 3]: every partial sum is an integer of magnitude <= 9·N·H·W/4 < 2^24, exact in
# float32 in any order, so those checks are ==. Outputs and the workspace are poisoned with NaN.


def sparse_error(rng, n, c_out, height, width, bound=3):
    """(e [N, C_out, H, W] float32, argmax uint8 [N, C_out, H//2, W//2]): integer errors at random
    argmax positions, zero elsewhere and on a dropped odd row/column (what argmax unpooling gives)."""
    codes = rng.integers(0, 4, size=(n, c_out, height // 2, width // 2)).astype(np.uint8)
    d = ints(rng, codes.shape, bound)
    return reference.unpool_argmax(d, codes, (height, width)).astype(np.float32), codes


def run_pooled(xp, z, e, codes, k, bias, gamma=0.1):
    """conv_filter_update_pooled with poisoned outputs and workspace; returns host (dW, db, dE)."""
    c_out, c_in = e.shape[1], z.shape[1]
    zg = xp.array(z)
    ws = ops.conv_filter_update_pooled_workspace(zg, c_out, k, bias=bias)
    ws[...] = np.nan
    w_shape = (c_out, c_in, k, k)
    out = (poisoned(xp, w_shape), poisoned(xp, (c_out,)) if bias else None, poisoned(xp, w_shape))
    return ops.conv_filter_update_pooled(zg, xp.array(e), xp.array(codes), k, gamma=gamma, bias=bias, out=out,
                                         workspace=ws)


def test_reference_sparse_formula_equals_dense_on_argmax_sparse_errors(rng):
    """The float64 sparse reference reads e only at the argmax: equal to the dense filter gradient
    when e is zero elsewhere (float64 sums of float64 products in different orders: 1e-12)."""
    for n, c_in, c_out, height, width, k in [(2, 3, 4, 7, 6, 3), (1, 1, 2, 5, 5, 5), (3, 2, 3, 4, 9, 1),
                                             (1, 1, 1, 1, 3, 3)]:
        z = rng.standard_normal((n, c_in, height, width))
        codes = rng.integers(0, 4, size=(n, c_out, height // 2, width // 2)).astype(np.uint8)
        e = reference.unpool_argmax(rng.standard_normal(codes.shape), codes, (height, width))
        dw, db = reference.conv2d_filter_grad_pooled(z, e, codes, k)
        np.testing.assert_allclose(dw, reference.conv2d_filter_grad(z, e, k), rtol=0, atol=1e-12)
        np.testing.assert_allclose(db, e.sum(axis=(0, 2, 3)), rtol=0, atol=1e-12)


# (N, C_in, C_out, H, W, k): block tile 64 (C_out) x 128 (columns C_in·k·k + bias), 16 pooled cells a
# step, splits of whole steps (as many as ~264 blocks need)
POOLED_SHAPES = [
    (1, 1, 1, 2, 2, 1),  # one cell, one tap, one split
    (1, 2, 3, 1, 5, 3),  # H = 1: no pooled cell at all, ΔW = 0 (still written)
    (1, 3, 5, 3, 3, 3),  # odd H, W: one cell and a dropped trailing row and column
    (2, 7, 65, 5, 7, 3),  # 63 taps (+ bias); C_out = row tile + 1
    (3, 7, 5, 9, 8, 3),  # 63 taps (+ bias); 48 cells = 3 steps, odd H
    (1, 128, 3, 4, 4, 1),  # 128 taps = one column tile, + bias = tile + 1
    (2, 15, 70, 6, 6, 3),  # 135 taps: 2 column tiles x 2 row tiles; 18 cells = 2 steps
    (1, 2, 3, 17, 3, 5),  # Wp = 1: a step spans rows; k > W
    (2, 1, 3, 50, 50, 1),  # 1250 cells: 79 steps, 79 splits
    (5, 3, 2, 13, 11, 5),  # primes, odd H and W; 75 taps + bias
    (1, 13, 64, 8, 8, 5),  # 325 taps + bias: 6 column tiles
]


@pytest.mark.parametrize("shape", POOLED_SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("bias", [True, False])
def test_pooled_filter_update_exact(xp, rng, shape, bias):
    n, c_in, c_out, height, width, k = shape
    z = ints(rng, (n, c_in, height, width))
    e, codes = sparse_error(rng, n, c_out, height, width)
    dw, db, de = run_pooled(xp, z, e, codes, k, bias)
    want_dw, want_db = reference.conv2d_filter_grad_pooled(z.astype(np.float64), e.astype(np.float64), codes, k)
    assert_equal(dw, want_dw, "dW")
    assert_equal(de, np.float32(0.1) * want_dw.astype(np.float32), "dE")  # γ·ΔW: one float32 product
    if bias:
        assert_equal(db, want_db, "db")
    else:
        assert db is None
    # the dense v2 kernel on the same (sparse) e: the same exact sums
    dense = ops.conv_filter_update(xp.array(z), xp.array(e), k, gamma=0.1, bias=bias)
    for got, want, name in zip((dw, db, de), dense, ("dW", "db", "dE")):
        if want is not None:
            assert_equal(got, host(want), f"{name} vs v2")


@pytest.mark.parametrize("trial", range(3))  # fresh awkward shapes each run
def test_pooled_filter_update_random_shapes(xp, rng, trial):
    n, c_in, c_out, height, width, k = draw(rng, "N", "C", "C", "HW", "HW", "k")
    z = ints(rng, (n, c_in, height, width))
    e, codes = sparse_error(rng, n, c_out, height, width)
    dw, db, de = run_pooled(xp, z, e, codes, k, bias=True)
    want = reference.conv2d_filter_grad(z.astype(np.float64), e.astype(np.float64), k)
    assert_equal(dw, want, "dW")
    assert_equal(db, e.astype(np.float64).sum(axis=(0, 2, 3)), "db")
    assert_equal(de, np.float32(0.1) * want.astype(np.float32), "dE")


def test_pooled_filter_update_reads_e_only_at_the_argmax(xp, rng):
    """Values of e off the argmax (and on the dropped row/column) do not enter the sums."""
    n, c_in, c_out, height, width, k = 2, 3, 4, 7, 9, 3
    z, e = ints(rng, (n, c_in, height, width)), ints(rng, (n, c_out, height, width))  # dense e
    codes = rng.integers(0, 4, size=(n, c_out, height // 2, width // 2)).astype(np.uint8)
    dw, db, _ = run_pooled(xp, z, e, codes, k, bias=True)
    want_dw, want_db = reference.conv2d_filter_grad_pooled(z.astype(np.float64), e.astype(np.float64), codes, k)
    assert_equal(dw, want_dw, "dW")
    assert_equal(db, want_db, "db")


def test_pooled_filter_update_float_layer_sized(xp, rng):
    """conv2 of the fmnist preset at batch 8 with float errors (argmax of a real pool): a quarter of
    v2's terms; the sums in a fixed order, bitwise reproducible."""
    z = rng.standard_normal((8, 32, 14, 14)).astype(np.float32)
    h = rng.standard_normal((8, 64, 14, 14)).astype(np.float32)
    _, codes = reference.maxpool2x2(h)
    e = reference.unpool_argmax(rng.standard_normal(codes.shape), codes, (14, 14)).astype(np.float32)
    zg = xp.array(z)
    dw, db, de = ops.conv_filter_update_pooled(zg, xp.array(e), xp.array(codes), 3, gamma=0.1)
    z64, e64 = z.astype(np.float64), e.astype(np.float64)
    want = reference.conv2d_filter_grad(z64, e64, 3)
    bound = reference.conv2d_filter_grad(np.abs(z64), np.abs(e64), 3)
    # 392 cells per output in splits summed in order: worst case ~400·eps·Σ|terms|; random-sign
    # rounding grows like its square root: <~ 50·eps·Σ|terms| (as the v2 test)
    assert_close(dw, want, atol=50 * EPS32 * bound, what="dW")
    assert_close(db, e64.sum(axis=(0, 2, 3)), atol=50 * EPS32 * np.abs(e64).sum(axis=(0, 2, 3)), what="db")
    assert_close(de, 0.1 * want, atol=0.1 * 50 * EPS32 * bound + 1e-7 * np.abs(want), what="dE")
    again = ops.conv_filter_update_pooled(zg, xp.array(e), xp.array(codes), 3, gamma=0.1)
    for first, second in zip((dw, db, de), again):
        assert bool((first == second).all()), "the fixed-order reduction must be bitwise reproducible"


def test_pooled_filter_update_bad_arguments(device, xp):
    op = "conv_filter_update_pooled"
    z, e = xp.zeros((2, 3, 7, 6), np.float32), xp.zeros((2, 4, 7, 6), np.float32)
    codes = xp.zeros((2, 4, 3, 3), np.uint8)
    need = ops.conv_filter_update_pooled_workspace(z, 4, 3).size
    assert need == device.ext.conv_filter_update_pooled_workspace_floats(2, 3, 4, 7, 6, 3, True) > 0
    cases = [
        (lambda: ops.conv_filter_update_pooled(z, e, codes.astype(np.int32), 3), f"{op}: argmax must be uint8"),
        (lambda: ops.conv_filter_update_pooled(z, e, codes[:, :, :2], 3), f"{op}: argmax must be .* Hp=3"),
        (lambda: ops.conv_filter_update_pooled(z, e, codes[:, :3], 3), f"{op}: argmax must be .* C_out=4"),
        (lambda: ops.conv_filter_update_pooled(z, e, codes[:, :, :, ::-1], 3), f"{op}: argmax must be C-contiguous"),
        (lambda: ops.conv_filter_update_pooled(z, e, None, 3), f"{op}: argmax must be a"),
        (lambda: ops.conv_filter_update_pooled(z, e[:, :, :6], codes, 3), f"{op}: e must be"),
        (lambda: ops.conv_filter_update_pooled(z, e, codes, 2), f"{op}: k must be odd"),
        (lambda: ops.conv_filter_update_pooled(z.astype(np.float64), e, codes, 3), f"{op}: z must be float32"),
        (lambda: ops.conv_filter_update_pooled(z, e, codes, 3, gamma=float("nan")), f"{op}: gamma must be a finite"),
        (lambda: ops.conv_filter_update_pooled(z, e, codes, 3, workspace=xp.zeros(5, np.float32)),
         f"^{op}: workspace holds 5 floats, needs {need} \\(conv_filter_update_pooled_workspace_floats\\)"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()


def test_pooled_filter_update_launcher_checks(device, xp):
    """The raw launcher refuses a pooled size that is not (H/2, W/2) and sizes beyond 32-bit indexing."""
    C, ptr = device.ext, device.ptr
    z, codes = xp.zeros((1, 2, 5, 5), np.float32), xp.zeros((1, 2, 2, 2), np.uint8)
    w = xp.zeros((2, 2, 3, 3), np.float32)
    ws = xp.zeros(1 << 12, np.float32)
    with pytest.raises(ValueError, match=r"^conv_filter_update_pooled: argmax's pooled size \(3, 2\) must be "
                                         r"\(H/2, W/2\) = \(2, 2\)"):
        C.conv_filter_update_pooled(ptr(z), ptr(z), ptr(codes), ptr(w), 0, ptr(w), ptr(ws), ws.size, 1, 2, 2, 5, 5,
                                    3, 2, 3, 0.1, 0)
    with pytest.raises(ValueError, match="^conv_filter_update_pooled: kernel size k must be odd"):
        C.conv_filter_update_pooled(ptr(z), ptr(z), ptr(codes), ptr(w), 0, ptr(w), ptr(ws), ws.size, 1, 2, 2, 5, 5,
                                    2, 2, 2, 0.1, 0)
    with pytest.raises(ValueError, match=r"^conv_filter_update_pooled: e's element count N\*C_out\*H\*W = "
                                         r"4294967296 exceeds 2\^31 - 1"):
        C.conv_filter_update_pooled_workspace_floats(2**20, 8, 64, 8, 8, 3, True)
    with pytest.raises(ValueError, match=r"^conv_filter_update_pooled: z's element count"):
        C.conv_filter_update_pooled(1, 1, 1, 1, 1, 1, 1, 1 << 40, 2**20, 64, 8, 8, 8, 4, 4, 3, 0.1, 0)


def test_empty_batch(xp):
    z, e = xp.zeros((0, 2, 5, 5), np.float32), xp.zeros((0, 3, 5, 5), np.float32)
    dw, db, _ = ops.conv_filter_update(
        z, e, 3, out=(poisoned(xp, (3, 2, 3, 3)), poisoned(xp, (3,)), poisoned(xp, (3, 2, 3, 3)))
    )
    assert_equal(dw, np.zeros((3, 2, 3, 3)), "dW of an empty batch")  # an empty sum is 0, not garbage
    assert_equal(db, np.zeros(3), "db of an empty batch")
    h, out, argmax = ops.conv_block_fwd(z, xp.ones((3, 2, 3, 3), np.float32))
    assert h.shape == (0, 3, 5, 5) and out.shape == argmax.shape == (0, 3, 2, 2)


def test_runs_on_the_current_stream(device, xp, rng):
    if device.simulated:
        pytest.skip("the simulator runs every launch synchronously on stream 0")
    x, w = ints(rng, (2, 3, 7, 7)), ints(rng, (5, 3, 3, 3))
    with xp.cuda.Stream(non_blocking=True) as stream:
        h, _, _ = ops.conv_block_fwd(xp.array(x), xp.array(w))
        stream.synchronize()
    assert_equal(h, reference.conv2d(x.astype(np.float64), w.astype(np.float64)), "h")


# ---------------------------------------------------------------- argument checks


def test_bad_arguments_name_op_and_argument(xp):
    x = xp.zeros((2, 3, 6, 6), np.float32)
    w = xp.zeros((4, 3, 3, 3), np.float32)
    e = xp.zeros((2, 4, 3, 3), np.float32)
    idx = xp.zeros((2, 3, 3, 3), np.uint8)
    cases = [
        (lambda: ops.conv_block_fwd(x.astype(np.float64), w), "conv_block_fwd: x must be float32"),
        (lambda: ops.conv_block_fwd(x[:, :, :, ::2], w), "conv_block_fwd: x must be C-contiguous"),
        (lambda: ops.conv_block_fwd(x, xp.zeros((4, 3, 2, 2), np.float32)), "conv_block_fwd: w must be .* odd k"),
        (lambda: ops.conv_block_fwd(x, xp.zeros((4, 2, 3, 3), np.float32)), "conv_block_fwd: x must be .* C_in=2"),
        (lambda: ops.conv_block_fwd(x, w, xp.zeros(5, np.float32)), "conv_block_fwd: b must be"),
        (lambda: ops.conv_block_fwd(x, w, activation="gelu"), "conv_block_fwd: activation must be one of"),
        (lambda: ops.conv_block_fwd(x, w, dropout=1.0), r"conv_block_fwd: dropout must be in \[0, 1\)"),
        (lambda: ops.conv_block_fwd(x, w, dropout=0.1, dropout_key=-1), "conv_block_fwd: dropout_key"),
        (lambda: ops.conv_block_fwd(x, foreign(xp, (4, 3, 3, 3))), "conv_block_fwd: w must be a .*ndarray on device"),
        (lambda: ops.conv_error_proj(e, w, foreign(xp, (2, 3, 6, 6))), "conv_error_proj: h must be a .*ndarray on"),
        (lambda: ops.conv_error_proj(e, w, x, idx, rule="fa"), "conv_error_proj: rule must be one of"),
        (lambda: ops.conv_error_proj(e, w, x, idx, activation="signum", rule="bp"), "conv_error_proj: rule 'bp' needs"),
        (lambda: ops.conv_error_proj(e, w, x, idx, beta=float("nan")), "conv_error_proj: beta must be a finite"),
        (
            lambda: ops.conv_error_proj(e, w, xp.zeros((2, 3, 5, 5), np.float32), idx),
            "conv_error_proj: h .* must pool to",
        ),
        (lambda: ops.conv_error_proj(e, w, x, idx.astype(np.int32)), "conv_error_proj: argmax must be uint8"),
        (lambda: ops.conv_error_proj(e, w, x), "conv_error_proj: h must be .* H=3"),
        (
            lambda: ops.unpool_error(xp.zeros((2, 3, 3, 3), np.float32), x, idx[:, :, :2]),
            "unpool_error: argmax must be",
        ),
        (lambda: ops.conv_proj(e, w[:3]), "conv_proj: e must be .* C_out=3"),
        (lambda: ops.unpool_bilinear(e, (0, 4)), "unpool_bilinear: out_hw must be a positive integer"),
        (lambda: ops.unpool_bilinear(e, 6), "unpool_bilinear: out_hw must be a pair"),
        (lambda: ops.conv_filter_update(x, xp.zeros((2, 4, 5, 6), np.float32), 3), "conv_filter_update: e must be"),
        (lambda: ops.conv_filter_update(x, x, 2), "conv_filter_update: k must be odd"),
        (lambda: ops.conv_filter_update(x, x, 3, gamma=float("inf")), "conv_filter_update: gamma must be a finite"),
        (lambda: ops.conv_filter_update(x, x, 3, out=(x,)), "conv_filter_update: out must be None or a tuple of 3"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()


def test_launchers_recheck_their_arguments(device, xp):
    """The raw launchers (below the Python checks) refuse bad sizes and codes themselves, naming the op."""
    C, ptr = device.ext, device.ptr
    z = xp.zeros((1, 2, 5, 5), np.float32)
    w = xp.zeros((2, 2, 3, 3), np.float32)
    codes = xp.zeros((1, 2, 5, 5), np.uint8)
    with pytest.raises(ValueError, match="^conv_filter_update: kernel size k must be odd"):
        C.conv_filter_update(ptr(z), ptr(z), ptr(w), 0, ptr(w), ptr(w), w.size, 1, 2, 2, 5, 5, 2, 0.1, 0)
    with pytest.raises(ValueError, match="^conv_filter_update_v1: kernel size k must be odd"):
        C.conv_filter_update_v1(ptr(z), ptr(z), ptr(w), 0, ptr(w), 1, 2, 2, 5, 5, 2, 0.1, 0)
    with pytest.raises(ValueError, match=r"^conv_error_proj: pooled size \(5, 5\) must be h's size"):
        C.conv_error_proj(ptr(z), ptr(w), ptr(z), ptr(codes), ptr(z), 1, 2, 2, 5, 5, 5, 5, 3, True, 0, 0, 0.9, 0, 0,
                          1.0, 0)
    with pytest.raises(ValueError, match="^conv_error_proj: rule bp needs"):
        C.conv_error_proj(ptr(z), ptr(w), ptr(z), 0, ptr(z), 1, 2, 2, 5, 5, 5, 5, 3, False, 1,
                          reference.ACTIVATION_CODES["signum"], 0.9, 0, 0, 1.0, 0)
    with pytest.raises(ValueError, match="^conv_block_fwd: dropout threshold must be < 2"):
        C.conv_block_fwd(ptr(z), ptr(w), 0, ptr(z), ptr(z), ptr(codes), 1, 2, 2, 5, 5, 3, 0, True, False, 0, 1 << 24,
                         1.0, 0)

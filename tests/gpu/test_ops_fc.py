"""Tests of ``ekdaa_cuda.ops.fc`` (kernels in ``csrc/fc.cu``) against the float64 NumPy
reference ``ekdaa_cuda.reference``.

- Shapes are awkward (1, primes, GEMM tile ± 1) and drawn fresh from the seeded ``rng``.
- Outputs are poisoned with NaN before each launch, so an element the kernel skips fails.
- The GEMMs get small integers (or multiples of 1/8): every partial sum is exact in float32,
  so the products are compared with ``==`` and no index bug hides inside a tolerance. The
  epilogues get h in Z + 1/4 and β = 1/2, so h − βd is exact and never 0 (no signum tie);
  what remains is φ's float32 rounding, bounded per test.

Run: ``pytest tests/gpu/test_ops_fc.py`` (on the CPU simulator, and on the GPU when there is
one; ``--device`` picks one). On the simulator every op call also runs under several thread
schedules and worker counts, bitwise equal (tests/gpu/conftest.py).
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import foreign, host

from ekdaa_cuda import reference

pytestmark = pytest.mark.gpu

TILE = 16  # csrc/fc.cu kTile
AWKWARD = (1, 2, 3, 7, 13, TILE - 1, TILE, TILE + 1, 2 * TILE + 1, 47, 97)
FIXED_SHAPES = [(1, 1, 1), (1, 17, 10), (TILE + 1, TILE + 1, TILE + 1), (50, 128, 10), (50, 6272, 128)]
ULP = 2.0**-24  # float32 unit roundoff
BETA = 0.5




@pytest.fixture
def fc():
    from ekdaa_cuda.ops import fc

    return fc


def shape_cases(n_random: int = 3):
    """Fixed awkward (N, F_in, F_out) triples plus placeholders for random ones."""
    return FIXED_SHAPES + [None] * n_random


def shape_id(shape):
    return "random" if shape is None else "x".join(map(str, shape))


def resolve(rng, shape):
    return tuple(int(rng.choice(AWKWARD)) for _ in range(3)) if shape is None else shape


def ints(rng, shape, bound=3):
    return rng.integers(-bound, bound + 1, size=shape).astype(np.float32)


def quarter_offsets(rng, shape):
    """Pre-activations in Z + 1/4: with β = 1/2 and integer d, h − βd is exact and never 0."""
    return (rng.integers(-3, 4, size=shape) + 0.25).astype(np.float32)


def poison(xp, shape):
    return xp.full(shape, np.nan, dtype=np.float32)


def assert_within(got, want, tol, what):
    got = np.asarray(got, dtype=np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    bad = ~np.isfinite(got)
    assert not bad.any(), f"{what}: {bad.sum()} non-finite values, first at {np.argwhere(bad)[0]}"
    excess = np.abs(got - want) - tol
    worst = np.unravel_index(np.argmax(excess), excess.shape) if excess.size else None
    assert excess.size == 0 or excess[worst] <= 0, (
        f"{what}: at {worst} got {got[worst]!r}, want {want[worst]!r} "
        f"(tolerance {np.broadcast_to(tol, want.shape)[worst]})"
    )


def epilogue_reference(rule, activation, h, d, beta):
    if rule == "ekdaa":
        return reference.target_error(activation, h, d, beta)
    return d * reference.activation_derivative(activation, h)


def epilogue_tolerance(h, d, want, scale):
    # float32 φ/φ' are within a few ulp of values bounded by 1 + |h| + |βd| (tanh, sigmoid ≤ 1;
    # relu, linear exact), multiplied by |d| for bp and by the dropout scale.
    return 1e-6 * (1 + np.abs(h) + np.abs(d)) * scale + 1e-6 * np.abs(want)


def dropout_setup(rng, shape, p):
    """(key, float64 multiplier m/(1−p) as the kernels apply it, float32 scale)."""
    seed, step, layer = int(rng.integers(1 << 32)), int(rng.integers(1000)), int(rng.integers(8))
    key = reference.dropout_key(seed, step, layer)
    mask = reference.dropout_mask(seed, step, layer, shape, p, np.float32).astype(np.float64)
    return key, mask, float(reference.dropout_scale(p, np.float32))


# ---------------------------------------------------------------- fc_fwd


@pytest.mark.parametrize("shape", shape_cases(), ids=shape_id)
@pytest.mark.parametrize("bias", [True, False])
def test_fc_fwd_gemm_exact(xp, fc, rng, shape, bias):
    n, f_in, f_out = resolve(rng, shape)
    z, w, b = ints(rng, (n, f_in)), ints(rng, (f_out, f_in)), ints(rng, (f_out,)) if bias else None
    h, out = fc.fc_fwd(
        xp.array(z),
        xp.array(w),
        None if b is None else xp.array(b),
        activation="tanh",
        apply_activation=False,
        out=(poison(xp, (n, f_out)), poison(xp, (n, f_out))),
    )
    want = reference.linear(z.astype(np.float64), w.astype(np.float64), None if b is None else b.astype(np.float64))
    np.testing.assert_array_equal(host(h), want)  # |sums| <= 9·F_in + 3 < 2^24: exact
    np.testing.assert_array_equal(host(out), want)  # no activation, no dropout: out = h


def test_fc_fwd_gemm_rounding_bound(xp, fc, rng):
    n, f_in, f_out = resolve(rng, None)
    z = rng.standard_normal((n, f_in)).astype(np.float32)
    w = rng.standard_normal((f_out, f_in)).astype(np.float32)
    b = rng.standard_normal(f_out).astype(np.float32)
    h, _ = fc.fc_fwd(xp.array(z), xp.array(w), xp.array(b), activation="linear")
    z64, w64, b64 = z.astype(np.float64), w.astype(np.float64), b.astype(np.float64)
    # Worst-case float32 dot-product error: (F_in + 1)·u·(Σ|z||w| + |b|).
    tol = (f_in + 1) * ULP * (np.abs(z64) @ np.abs(w64).T + np.abs(b64))
    assert_within(host(h), reference.linear(z64, w64, b64), tol, "fc_fwd h")


@pytest.mark.parametrize("activation", reference.ACTIVATIONS)
@pytest.mark.parametrize("p", [0.0, 0.3])
def test_fc_fwd_activation_dropout(xp, fc, rng, activation, p):
    n, f_in, f_out = resolve(rng, None)
    # w and b in Z/8: h = z·Wᵀ + b is exact, so φ is evaluated at the same point on both sides.
    z, w, b = ints(rng, (n, f_in)), ints(rng, (f_out, f_in)) / 8, ints(rng, (f_out,)) / 8
    key, mask, scale = dropout_setup(rng, (n, f_out), p)
    h, out = fc.fc_fwd(
        xp.array(z),
        xp.array(w),
        xp.array(b),
        activation=activation,
        dropout=p,
        dropout_key=key,
        out=(poison(xp, (n, f_out)), poison(xp, (n, f_out))),
    )
    h_ref = reference.linear(z.astype(np.float64), w.astype(np.float64), b.astype(np.float64))
    np.testing.assert_array_equal(host(h), h_ref)
    want = reference.activate(activation, h_ref) * mask
    got = host(out)
    assert np.all(got[mask == 0] == 0), "dropped units must be exactly 0"
    # float32 tanhf/expf: a few ulp of values <= 1 (relu, linear, signum exact), times the scale.
    assert_within(got, want, 1e-6 * scale + 1e-6 * np.abs(want), f"fc_fwd out ({activation}, p={p})")


def test_fc_fwd_dropout_without_activation(xp, fc, rng):
    n, f_in, f_out = resolve(rng, None)
    z, w = ints(rng, (n, f_in)), ints(rng, (f_out, f_in))
    key, mask, _ = dropout_setup(rng, (n, f_out), 0.5)
    h, out = fc.fc_fwd(xp.array(z), xp.array(w), apply_activation=False, dropout=0.5, dropout_key=key)
    # scale = 2 and integer h: out = h·m/(1−p) exactly
    np.testing.assert_array_equal(host(out), host(h).astype(np.float64) * mask)


# ---------------------------------------------------------------- fc_fwd v2 (split-K)

FWD_TILE = 32  # csrc/fc.cu kFwdBM = kFwdBN: fc_fwd v2's output tile; K steps of 32
FWD_N = (1, 2, 7, 31, FWD_TILE + 1, 50, 97)
FWD_F_IN = (1, 97, 6272)  # 6272: the fmnist preset's fc1
FWD_F_OUT = (1, 10, 17, 128)
FWD_SHAPES = [(50, 6272, 128), (1, 6272, 1), (FWD_TILE + 1, 6272, 17), (2, 97, 10), (97, 1, 128), (1, 1, 1)]


def fwd_shape(rng, shape):
    if shape is not None:
        return shape
    return tuple(int(rng.choice(choices)) for choices in (FWD_N, FWD_F_IN, FWD_F_OUT))


def fwd_splits(f_in, which):
    """None (chosen), 1, or the most the launcher accepts (one 32-wide K step per split)."""
    return {"chosen": None, "one": 1, "most": max(1, -(-f_in // FWD_TILE))}[which]


@pytest.mark.parametrize("shape", FWD_SHAPES + [None] * 4, ids=shape_id)
@pytest.mark.parametrize("which", ["chosen", "one", "most"])
@pytest.mark.parametrize("bias", [True, False])
def test_fc_fwd_v2_exact_and_equal_to_v1(device, xp, fc, rng, shape, which, bias):
    """Integer z, W, b: every partial sum is exact (|h| <= 9·6272 + 3 < 2^24), so h equals the float64
    reference and v1 bitwise whatever the splits; the workspace's partials start poisoned (NaN)."""
    n, f_in, f_out = fwd_shape(rng, shape)
    splits = fwd_splits(f_in, which)
    z, w, b = ints(rng, (n, f_in)), ints(rng, (f_out, f_in)), ints(rng, (f_out,)) if bias else None
    zd, wd, bd = xp.array(z), xp.array(w), None if b is None else xp.array(b)
    partials, tickets = fc.fc_fwd_workspace(zd, f_out, splits=splits)
    partials[...] = np.nan
    h, out = fc.fc_fwd(zd, wd, bd, activation="tanh", apply_activation=False, workspace=(partials, tickets),
                       splits=splits, out=(poison(xp, (n, f_out)), poison(xp, (n, f_out))))
    want = reference.linear(z.astype(np.float64), w.astype(np.float64), None if b is None else b.astype(np.float64))
    np.testing.assert_array_equal(host(h), want)
    np.testing.assert_array_equal(host(out), want)
    assert not host(tickets).any(), "the tickets must be back to 0 after the launch"
    h1, _ = fc.fc_fwd(zd, wd, bd, apply_activation=False, version=1)
    assert host(h1).tobytes() == host(h).tobytes()


def test_fc_fwd_v2_plan(device):
    """The chosen splits: ~264 blocks where K allows (fmnist fc1 at batch 50: 8 tiles x 33 splits),
    at least 4 steps of 32 a split, at most 64; one split (no workspace) for a wide output or short K."""
    sizes = device.ext.fc_fwd_sizes
    assert tuple(sizes(50, 6272, 128, 0)) == (33, 8 * 33 * 1024, 8)
    assert tuple(sizes(1, 6272, 1, 0)) == (49, 49 * 1024, 1)  # 196 steps / 4
    assert tuple(sizes(1, 1 << 20, 1, 0)) == (64, 64 * 1024, 1)
    assert tuple(sizes(512, 6272, 512, 0)) == (2, 256 * 2 * 1024, 256)
    assert tuple(sizes(50, 100, 128, 0)) == (1, 0, 0)  # 4 steps: one split
    assert tuple(sizes(50, 0, 128, 0)) == (1, 0, 0)
    assert tuple(sizes(50, 6272, 128, 196)) == (196, 8 * 196 * 1024, 8)


@pytest.mark.parametrize("activation", reference.ACTIVATIONS)
@pytest.mark.parametrize("p", [0.0, 0.3])
@pytest.mark.parametrize("which", ["one", "most"])
def test_fc_fwd_v2_activation_dropout(device, xp, fc, rng, activation, p, which):
    """As test_fc_fwd_activation_dropout, with the epilogue run by a tile's last block (many splits)."""
    n, f_in, f_out = int(rng.choice(FWD_N)), int(rng.choice((97, 6272))), int(rng.choice(FWD_F_OUT))
    z, w, b = ints(rng, (n, f_in)), ints(rng, (f_out, f_in)) / 8, ints(rng, (f_out,)) / 8
    key, mask, scale = dropout_setup(rng, (n, f_out), p)
    h, out = fc.fc_fwd(xp.array(z), xp.array(w), xp.array(b), activation=activation, dropout=p, dropout_key=key,
                       splits=fwd_splits(f_in, which), out=(poison(xp, (n, f_out)), poison(xp, (n, f_out))))
    h_ref = reference.linear(z.astype(np.float64), w.astype(np.float64), b.astype(np.float64))
    np.testing.assert_array_equal(host(h), h_ref)
    want = reference.activate(activation, h_ref) * mask
    got = host(out)
    assert np.all(got[mask == 0] == 0), "dropped units must be exactly 0"
    assert_within(got, want, 1e-6 * scale + 1e-6 * np.abs(want), f"fc_fwd out ({activation}, p={p})")


def test_fc_fwd_v2_rounding_bound_and_reused_workspace(device, xp, fc, rng):
    """Gaussian inputs: h within the worst-case float32 dot-product bound of the float64 reference for
    any splits; repeated calls on one workspace (tickets reset by each launch) are bitwise equal, and
    equal to a fresh workspace's."""
    n, f_in, f_out = 50, 6272, 17
    z = rng.standard_normal((n, f_in)).astype(np.float32)
    w = rng.standard_normal((f_out, f_in)).astype(np.float32)
    b = rng.standard_normal(f_out).astype(np.float32)
    zd, wd, bd = xp.array(z), xp.array(w), xp.array(b)
    z64, w64, b64 = z.astype(np.float64), w.astype(np.float64), b.astype(np.float64)
    tol = (f_in + 1) * ULP * (np.abs(z64) @ np.abs(w64).T + np.abs(b64))
    for splits in (None, 1, 7, 196):
        ws = fc.fc_fwd_workspace(zd, f_out, splits=splits)
        runs = [host(fc.fc_fwd(zd, wd, bd, activation="linear", workspace=ws, splits=splits)[0]) for _ in range(3)]
        runs.append(host(fc.fc_fwd(zd, wd, bd, activation="linear", splits=splits)[0]))
        assert all(r.tobytes() == runs[0].tobytes() for r in runs), f"splits={splits}: calls differ"
        assert not host(ws[1]).any()
        assert_within(runs[0], reference.linear(z64, w64, b64), tol, f"fc_fwd h (splits={splits})")


def _fwd_call(fc, xp, **kwargs):
    return fc.fc_fwd(f32(xp, 3, 1000), f32(xp, 40, 1000), **kwargs)


def _fwd_workspace(fc, xp, floats=None, tickets=None, splits=7):
    """A workspace for _fwd_call's sizes (3 x 1000 -> 40: 2 tiles, 32 steps, 8 splits chosen) with
    ``splits``, resized on request."""
    partials, ticket = fc.fc_fwd_workspace(f32(xp, 3, 1000), 40, splits=splits)
    if floats is not None:
        partials = xp.empty(floats, np.float32)
    if tickets is not None:
        ticket = xp.zeros(tickets, np.uint32)
    return partials, ticket


FWD_BAD_CASES = {
    "partials short": (
        lambda fc, xp: _fwd_call(fc, xp, splits=7, workspace=_fwd_workspace(fc, xp, floats=2 * 7 * 1024 - 1)),
        r"^fc_fwd: workspace partials hold 14335 floats, 7 splits need 14336 \(fc_fwd_sizes\)",
    ),
    "tickets short": (
        lambda fc, xp: _fwd_call(fc, xp, splits=7, workspace=_fwd_workspace(fc, xp, tickets=1)),
        r"^fc_fwd: workspace tickets hold 1, 7 splits need 2",
    ),
    "workspace of fewer splits": (
        lambda fc, xp: _fwd_call(fc, xp, workspace=_fwd_workspace(fc, xp, splits=1)),
        r"^fc_fwd: workspace partials hold 0 floats, 8 splits need 16384",
    ),
    "partials misaligned": (
        lambda fc, xp: _fwd_call(fc, xp, splits=2, workspace=(xp.empty(2 * 2 * 1024 + 1, np.float32)[1:],
                                                              xp.zeros(2, np.uint32))),
        r"^fc_fwd: workspace partials must be 16-byte aligned",
    ),
    "partials dtype": (
        lambda fc, xp: _fwd_call(fc, xp, workspace=(xp.empty(4096, np.float64), xp.zeros(2, np.uint32))),
        r"^fc_fwd: workspace \(partials\) must be float32",
    ),
    "tickets dtype": (
        lambda fc, xp: _fwd_call(fc, xp, workspace=(xp.empty(4096, np.float32), xp.zeros(2, np.int32))),
        r"^fc_fwd: workspace \(tickets\) must be uint32",
    ),
    "workspace not a pair": (
        lambda fc, xp: _fwd_call(fc, xp, workspace=xp.empty(4096, np.float32)),
        r"^fc_fwd: workspace must be fc_fwd_workspace\(...\)'s \(partials, tickets\)",
    ),
    "splits too many": (
        lambda fc, xp: _fwd_call(fc, xp, splits=33),
        r"^fc_fwd: splits must be 0 \(chosen\) or in \[1, ceil\(F_in / 32\) = 32\], got 33",
    ),
    "splits zero": (
        lambda fc, xp: _fwd_call(fc, xp, splits=0),
        r"^fc_fwd: splits must be None or a positive int, got 0",
    ),
    "splits bool": (lambda fc, xp: _fwd_call(fc, xp, splits=True), r"^fc_fwd: splits must be None or a positive int"),
    "splits with v1": (lambda fc, xp: _fwd_call(fc, xp, splits=2, version=1), r"^fc_fwd: workspace and splits apply"),
    "version 3": (lambda fc, xp: _fwd_call(fc, xp, version=3), r"^fc_fwd: version must be 2 \(or 1, benchmark-only\)"),
}


@pytest.mark.parametrize("case", list(FWD_BAD_CASES))
def test_fc_fwd_v2_bad_workspace_and_splits(xp, fc, case):
    call, match = FWD_BAD_CASES[case]
    with pytest.raises(ValueError, match=match):
        call(fc, xp)


def test_fc_fwd_v2_int32_limits(device):
    """Sizes past v2's int32 index math are refused before any allocation, naming the quantity."""
    with pytest.raises(ValueError, match=r"^fc_fwd: N·F_in must fit in int32, got 4294967296"):
        device.ext.fc_fwd_sizes(1 << 16, 1 << 16, 1, 0)
    with pytest.raises(ValueError, match=r"^fc_fwd: N·F_out must fit in int32, got 2147483648"):
        device.ext.fc_fwd_sizes(1 << 16, 1, 1 << 15, 0)
    with pytest.raises(ValueError, match=r"^fc_fwd: F_in \+ 64 must fit in int32"):
        device.ext.fc_fwd_sizes(0, (1 << 31) - 1, 0, 0)


# ---------------------------------------------------------------- fc_proj / fc_error_proj / error_epilogue


def projection_weight(rng, layout, f_in, f_out, bound=3):
    return ints(rng, (f_out, f_in) if layout == "out_in" else (f_in, f_out), bound)


def project(e, weight, layout):
    e64, m64 = e.astype(np.float64), weight.astype(np.float64)
    return e64 @ m64 if layout == "out_in" else e64 @ m64.T


@pytest.mark.parametrize("shape", shape_cases(), ids=shape_id)
@pytest.mark.parametrize("layout", ["out_in", "in_out"])
def test_fc_proj_exact(xp, fc, rng, shape, layout):
    n, f_in, f_out = resolve(rng, shape)
    e, weight = ints(rng, (n, f_out)), projection_weight(rng, layout, f_in, f_out)
    d = fc.fc_proj(xp.array(e), xp.array(weight), weight_layout=layout, out=poison(xp, (n, f_in)))
    np.testing.assert_array_equal(host(d), project(e, weight, layout))


@pytest.mark.parametrize("activation", reference.ACTIVATIONS)
@pytest.mark.parametrize("rule", ["ekdaa", "bp"])
@pytest.mark.parametrize("p", [0.0, 0.3])
@pytest.mark.parametrize("layout", ["out_in", "in_out"])
def test_fc_error_proj(xp, fc, rng, activation, rule, p, layout):
    if rule == "bp" and activation == "signum":
        pytest.skip("bp needs φ'; signum is refused (tested in test_bad_arguments)")
    n, f_in, f_out = resolve(rng, None)
    e, weight = ints(rng, (n, f_out), 1), projection_weight(rng, layout, f_in, f_out, 1)
    h = quarter_offsets(rng, (n, f_in))
    key, mask, scale = dropout_setup(rng, (n, f_in), p)
    got = host(fc.fc_error_proj(
        xp.array(e),
        xp.array(weight),
        xp.array(h),
        weight_layout=layout,
        activation=activation,
        beta=BETA,
        dropout=p,
        dropout_key=key,
        rule=rule,
        out=poison(xp, (n, f_in)),
    ))
    d, h64 = project(e, weight, layout), h.astype(np.float64)
    want = epilogue_reference(rule, activation, h64, d, BETA) * mask
    assert np.all(got[mask == 0] == 0), "dropped units carry no error"
    assert_within(got, want, epilogue_tolerance(h64, d, want, scale), f"fc_error_proj ({rule}, {activation}, p={p})")


@pytest.mark.parametrize("activation", reference.ACTIVATIONS)
@pytest.mark.parametrize("rule", ["ekdaa", "bp"])
@pytest.mark.parametrize("p", [0.0, 0.3])
@pytest.mark.parametrize("ndim", [1, 2, 4])
def test_error_epilogue_any_shape(xp, fc, rng, activation, rule, p, ndim):
    if rule == "bp" and activation == "signum":
        pytest.skip("bp needs φ'; signum is refused (tested in test_bad_arguments)")
    # up to TILE + 1 per axis in 4-D (83k elements), the full awkward range otherwise
    shape = tuple(int(rng.choice(AWKWARD if ndim < 4 else AWKWARD[:8])) for _ in range(ndim))
    d, h = ints(rng, shape, 4), quarter_offsets(rng, shape)
    key, mask, scale = dropout_setup(rng, shape, p)
    got = host(fc.error_epilogue(
        xp.array(d),
        xp.array(h),
        activation=activation,
        beta=BETA,
        dropout=p,
        dropout_key=key,
        rule=rule,
        out=poison(xp, shape),
    ))
    d64, h64 = d.astype(np.float64), h.astype(np.float64)
    want = epilogue_reference(rule, activation, h64, d64, BETA) * mask  # mask over the flat C-order index
    assert np.all(got[mask == 0] == 0)
    assert_within(got, want, epilogue_tolerance(h64, d64, want, scale), f"error_epilogue ({rule}, {activation})")


def test_error_proj_equals_proj_then_epilogue(xp, fc, rng):
    n, f_in, f_out = resolve(rng, None)
    e = xp.array(rng.standard_normal((n, f_out)).astype(np.float32))
    weight = xp.array(rng.standard_normal((f_in, f_out)).astype(np.float32))
    h = xp.array(rng.standard_normal((n, f_in)).astype(np.float32))
    kwargs = {"activation": "tanh", "beta": 0.9, "dropout": 0.2, "dropout_key": 77, "rule": "ekdaa"}
    fused = host(fc.fc_error_proj(e, weight, h, weight_layout="in_out", **kwargs))
    d = fc.fc_proj(e, weight, weight_layout="in_out")
    split = host(fc.error_epilogue(d, h, **kwargs))
    # Same tile_gemm sum order; only FMA contraction may differ between the two kernels.
    np.testing.assert_allclose(fused, split, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- fc_update


@pytest.mark.parametrize("shape", shape_cases(), ids=shape_id)
def test_fc_update_exact(xp, fc, rng, shape):
    n, f_in, f_out = resolve(rng, shape)
    z, e, gamma = ints(rng, (n, f_in)), ints(rng, (n, f_out)), 0.1
    out = (poison(xp, (f_out, f_in)), poison(xp, (f_out,)), poison(xp, (f_in, f_out)))
    dw, db, de = fc.fc_update(xp.array(z), xp.array(e), gamma=gamma, out=out)
    dw_ref = e.astype(np.float64).T @ z.astype(np.float64)
    np.testing.assert_array_equal(host(dw), dw_ref)
    np.testing.assert_array_equal(host(db), e.astype(np.float64).sum(axis=0))
    # ΔE = γ·ΔWᵀ with the exact float32 ΔW and one correctly rounded float32 product
    np.testing.assert_array_equal(host(de), (np.float32(gamma) * dw_ref.astype(np.float32)).T)


def test_fc_update_without_bias_and_empty_batch(xp, fc, rng):
    f_in, f_out = int(rng.choice(AWKWARD)), int(rng.choice(AWKWARD))
    z, e = xp.zeros((0, f_in), dtype=np.float32), xp.zeros((0, f_out), dtype=np.float32)
    out = (poison(xp, (f_out, f_in)), None, poison(xp, (f_in, f_out)))
    dw, db, de = fc.fc_update(z, e, bias=False, out=out)
    assert db is None
    np.testing.assert_array_equal(host(dw), np.zeros((f_out, f_in)))  # empty sum
    np.testing.assert_array_equal(host(de), np.zeros((f_in, f_out)))


def test_fc_update_deterministic(xp, fc, rng):
    n, f_in, f_out = 97, 33, 17
    z = xp.array(rng.standard_normal((n, f_in)).astype(np.float32))
    e = xp.array(rng.standard_normal((n, f_out)).astype(np.float32))
    first = [host(a) for a in fc.fc_update(z, e)]
    second = [host(a) for a in fc.fc_update(z, e)]
    for a, b in zip(first, second):
        assert a.tobytes() == b.tobytes()


# ---------------------------------------------------------------- fc_update_proj


@pytest.mark.parametrize("shape", shape_cases(), ids=shape_id)
@pytest.mark.parametrize("layout", ["out_in", "in_out"])
@pytest.mark.parametrize("bias, error_weights", [(True, True), (False, False)])
def test_fc_update_proj_exact(xp, fc, rng, shape, layout, bias, error_weights):
    """The fused launch writes exactly what fc_update and fc_proj write (integer inputs: exact)."""
    n, f_in, f_out = resolve(rng, shape)
    z, e, gamma = ints(rng, (n, f_in)), ints(rng, (n, f_out)), 0.1
    weight = projection_weight(rng, layout, f_in, f_out)
    out = (poison(xp, (f_out, f_in)), poison(xp, (f_out,)) if bias else None,
           poison(xp, (f_in, f_out)) if error_weights else None, poison(xp, (n, f_in)))
    dw, db, de, d = fc.fc_update_proj(xp.array(z), xp.array(e), gamma=gamma, bias=bias, error_weights=error_weights,
                                      weight=xp.array(weight), weight_layout=layout, out=out)
    dw_ref = e.astype(np.float64).T @ z.astype(np.float64)
    np.testing.assert_array_equal(host(dw), dw_ref)
    np.testing.assert_array_equal(host(d), project(e, weight, layout))
    if bias:
        np.testing.assert_array_equal(host(db), e.astype(np.float64).sum(axis=0))
    else:
        assert db is None
    if error_weights:
        np.testing.assert_array_equal(host(de), (np.float32(gamma) * dw_ref.astype(np.float32)).T)
    else:
        assert de is None


@pytest.mark.parametrize("activation", ["tanh", "relu", "sigmoid"])
@pytest.mark.parametrize("rule", ["ekdaa", "bp"])
@pytest.mark.parametrize("p", [0.0, 0.3])
@pytest.mark.parametrize("layout", ["out_in", "in_out"])
def test_fc_update_proj_epilogue_equals_fc_error_proj(xp, fc, rng, activation, rule, p, layout):
    """With h, the projection part carries the layer below's epilogue: bitwise fc_error_proj's result
    (same tiles, same summation order, same epilogue code)."""
    n, f_in, f_out = resolve(rng, None)
    z, e = ints(rng, (n, f_in)), ints(rng, (n, f_out), 1)
    weight, h = projection_weight(rng, layout, f_in, f_out, 1), quarter_offsets(rng, (n, f_in))
    key, _, _ = dropout_setup(rng, (n, f_in), p)
    kw = dict(weight_layout=layout, activation=activation, beta=BETA, dropout=p, dropout_key=key, rule=rule)
    args = [xp.array(a) for a in (z, e, weight, h)]
    *_, below = fc.fc_update_proj(args[0], args[1], weight=args[2], h=args[3],
                                  out=(None, None, None, poison(xp, (n, f_in))), **kw)
    want = fc.fc_error_proj(args[1], args[2], args[3], **kw)
    assert host(below).tobytes() == host(want).tobytes()


def test_fc_update_proj_first_layer_and_empty_batch(xp, fc, rng):
    f_in, f_out = int(rng.choice(AWKWARD)), int(rng.choice(AWKWARD))
    z, e = ints(rng, (5, f_in)), ints(rng, (5, f_out))
    dw, _, _, below = fc.fc_update_proj(xp.array(z), xp.array(e))  # no weight: no projection
    assert below is None
    np.testing.assert_array_equal(host(dw), e.astype(np.float64).T @ z)
    empty = fc.fc_update_proj(xp.zeros((0, f_in), np.float32), xp.zeros((0, f_out), np.float32),
                              weight=xp.zeros((f_in, f_out), np.float32))
    np.testing.assert_array_equal(host(empty[0]), np.zeros((f_out, f_in)))  # empty sums
    np.testing.assert_array_equal(host(empty[1]), np.zeros(f_out))
    assert host(empty[3]).shape == (0, f_in)


# ---------------------------------------------------------------- fc_softmax_error


SOFTMAX_ROWS = 16  # csrc/fc.cu kSoftmaxRows: rows per block


@pytest.mark.parametrize("n", [1, 2, SOFTMAX_ROWS, SOFTMAX_ROWS + 1, 97, 257])
@pytest.mark.parametrize("c", [1, 10, 17])
@pytest.mark.parametrize("bias", [True, False])
def test_fc_softmax_error(xp, fc, rng, n, c, bias):
    """Integer z, W, b: h is exact (==) and the correct count is exact (argmax ties resolve to the
    first maximum on both sides). probs and e as test_softmax_error; the loss sum to the sum of
    the per-row bounds there, plus the float64 accumulation (negligible)."""
    f_in = int(rng.choice(AWKWARD))
    z, w = ints(rng, (n, f_in), 2), ints(rng, (c, f_in), 2)
    b = ints(rng, (c,), 2) if bias else None
    labels = rng.integers(0, c, size=n).astype(np.int32)
    out = (poison(xp, (n, c)), poison(xp, (n, c)), poison(xp, (n, c)), xp.full(1, np.nan),
           xp.full(1, -1, dtype=np.int32))
    h, probs, e, loss, correct = (host(a) for a in fc.fc_softmax_error(
        xp.array(z), xp.array(w), None if b is None else xp.array(b), xp.array(labels), out=out))
    h_ref, p_ref, e_ref, loss_ref, correct_ref = reference.output_layer(z, w, b, labels)
    np.testing.assert_array_equal(h, h_ref)
    rel = (4 * (c + 4) + 2 * np.abs(h_ref - h_ref.max(axis=1, keepdims=True))) * ULP
    # integer h spans hundreds: probabilities below float32's normal range (FLT_MIN) are subnormal,
    # with absolute, not relative, precision
    tiny = np.finfo(np.float32).tiny
    assert_within(probs, p_ref, rel * p_ref + tiny, "probs")
    assert_within(e, e_ref, rel * p_ref + ULP + tiny, "e")
    row_loss = -np.log(p_ref[np.arange(n), labels])
    tol = np.sum(4 * (c + 4) * ULP + 4 * ULP * (1 + row_loss))
    assert abs(float(loss[0]) - loss_ref) <= tol, (float(loss[0]), loss_ref, tol)
    assert int(correct[0]) == correct_ref


def test_fc_softmax_error_bad_labels_and_inference(xp, fc, rng):
    n, c, f_in = 40, 10, 7
    z, w = ints(rng, (n, f_in)), ints(rng, (c, f_in))
    labels = rng.integers(0, c, size=n).astype(np.int32)
    bad_rows = np.array([0, 3, 17, 39])
    labels[bad_rows] = [-1, c, c + 7, np.iinfo(np.int32).min]
    zd, wd = xp.array(z), xp.array(w)
    h, probs, e, loss, correct = (host(a) for a in fc.fc_softmax_error(zd, wd, None, xp.array(labels)))
    good = np.setdiff1d(np.arange(n), bad_rows)
    assert np.all(np.isnan(e[bad_rows])) and np.all(np.isfinite(e[good]))
    assert np.isnan(loss[0])  # a bad row poisons the sum
    _, p_ref, _, _, _ = reference.output_layer(z[good], w, None, labels[good])
    assert int(correct[0]) == int(np.sum(p_ref.argmax(axis=1) == labels[good]))  # bad rows never count
    empty = fc.fc_softmax_error(xp.zeros((0, f_in), np.float32), wd, None, xp.zeros(0, np.int32))
    assert host(empty[3])[0] == 0 and host(empty[4])[0] == 0 and host(empty[1]).shape == (0, c)
    # without labels: h and probs only, bitwise those of the labelled launch
    h2, probs2, e2, loss2, correct2 = fc.fc_softmax_error(zd, wd)
    assert e2 is None and loss2 is None and correct2 is None
    assert host(h2).tobytes() == h.tobytes() and host(probs2).tobytes() == probs.tobytes()


def test_fc_softmax_error_equals_fc_fwd_then_softmax_error_and_reuses_its_workspace(xp, fc, rng):
    n, f_in, c = 97, 33, 10
    z = xp.array(rng.standard_normal((n, f_in)).astype(np.float32))
    w = xp.array(rng.standard_normal((c, f_in)).astype(np.float32))
    labels = xp.array(rng.integers(0, c, n).astype(np.int32))
    ws = fc.fc_softmax_error_workspace(n, device=fc.resolve_device("test", None, "z", z))
    first = [host(a) for a in fc.fc_softmax_error(z, w, None, labels, workspace=ws)]
    assert int(host(ws[2])[0]) == 0  # the ticket is back to 0 for the next launch
    second = [host(a) for a in fc.fc_softmax_error(z, w, None, labels, workspace=ws)]
    for a, b in zip(first, second):
        assert a.tobytes() == b.tobytes()
    h, _ = fc.fc_fwd(z, w, activation="linear", apply_activation=False)
    probs, e, row_loss = (host(a) for a in fc.softmax_error(h, labels))
    # Both sum k in ascending order, but the compiler may contract the two loops into FMAs
    # differently: each h is within F_in·u·Σ_k |z_k w_k| of the exact value, so the two within
    # twice that; a shift δ of h moves p by at most 2δ relative (and e, loss accordingly).
    bound = 2 * f_in * ULP * (np.abs(host(z)) @ np.abs(host(w)).T)
    assert np.all(np.abs(first[0] - host(h)) <= bound)
    rel = float(4 * bound.max() + 8 * (c + 4) * ULP)  # a Python float: pytest.approx refuses np.float32
    np.testing.assert_allclose(first[1], probs, rtol=rel, atol=np.finfo(np.float32).tiny)
    np.testing.assert_allclose(first[2], e, rtol=rel, atol=rel)
    assert first[3][0] == pytest.approx(float(row_loss.astype(np.float64).sum()), rel=rel, abs=n * rel)


# ---------------------------------------------------------------- softmax_error


@pytest.mark.parametrize("n", [1, 13, 257])
@pytest.mark.parametrize("c", [1, 2, 10, 17, 100])
def test_softmax_error(xp, fc, rng, n, c):
    h = (3 * rng.standard_normal((n, c))).astype(np.float32)
    labels = rng.integers(0, c, size=n).astype(np.int32)
    out = (poison(xp, (n, c)), poison(xp, (n, c)), poison(xp, (n,)))
    probs, e, loss = (host(a) for a in fc.softmax_error(xp.array(h), xp.array(labels), out=out))
    h64 = h.astype(np.float64)
    p_ref = reference.softmax(h64)
    # Relative error of p: rounding of h − max (|h − max|·u), expf (2 ulp), the row sum of C
    # terms (C ulp), the division (1 ulp); budgeted with a factor 2.
    rel = (4 * (c + 4) + 2 * np.abs(h64 - h64.max(axis=1, keepdims=True))) * ULP
    assert_within(probs, p_ref, rel * p_ref, "softmax probs")
    e_ref = p_ref - reference.one_hot(labels, c, np.float64)
    assert_within(e, e_ref, rel * p_ref + ULP, "softmax error e")  # + the rounding of p − 1
    loss_ref = -np.log(p_ref[np.arange(n), labels])
    # log(sum) − (h_y − max): the sum's relative error becomes absolute, plus ulps of the result
    assert_within(loss, loss_ref, 4 * (c + 4) * ULP + 4 * ULP * (1 + np.abs(loss_ref)), "softmax loss")


def test_softmax_error_bad_labels_give_nan_rows(xp, fc, rng):
    n, c = 40, 10
    h = rng.standard_normal((n, c)).astype(np.float32)
    labels = rng.integers(0, c, size=n).astype(np.int32)
    bad_rows = np.array([0, 3, 17, 39])
    labels[bad_rows] = [-1, c, c + 7, np.iinfo(np.int32).min]
    probs, e, loss = (host(a) for a in fc.softmax_error(xp.array(h), xp.array(labels)))
    good = np.setdiff1d(np.arange(n), bad_rows)
    assert np.all(np.isnan(e[bad_rows])) and np.all(np.isnan(loss[bad_rows]))
    assert np.all(np.isfinite(e[good])) and np.all(np.isfinite(loss[good]))
    # probs are written for every row, valid label or not
    np.testing.assert_allclose(probs, reference.softmax(h.astype(np.float64)), rtol=1e-5, atol=1e-7)


# ---------------------------------------------------------------- argument checks


def f32(xp, *shape):
    return xp.zeros(shape, dtype=np.float32)


def _error_proj(fc, xp, h_shape=(4, 5), **kwargs):
    kwargs = {"weight_layout": "out_in", "activation": "tanh", "beta": 0.9, **kwargs}
    return fc.fc_error_proj(f32(xp, 4, 3), f32(xp, 3, 5), f32(xp, *h_shape), **kwargs)


# name: (call(fc, xp), regex the ValueError must match). Valid shapes: z [4, 5], w [3, 5], e [4, 3].
BAD_CASES = {
    "z float64": (lambda fc, xp: fc.fc_fwd(xp.zeros((4, 5)), f32(xp, 3, 5)), r"fc_fwd: z must be float32 \[N, F_in\]"),
    "w other device": (
        lambda fc, xp: fc.fc_fwd(f32(xp, 4, 5), foreign(xp, (3, 5))),
        r"fc_fwd: w must be a (numpy|cupy)\.ndarray on device 'cuda(-sim)?' .* got (cupy|numpy)\.ndarray",
    ),
    "z not an array": (
        lambda fc, xp: fc.fc_fwd([[0.0] * 5] * 4, f32(xp, 3, 5)),
        r"fc_fwd: z must be a cupy\.ndarray \(device 'cuda'\) or a numpy\.ndarray \(device 'cuda-sim'\), got list",
    ),
    "device name": (
        lambda fc, xp: fc.fc_fwd(f32(xp, 4, 5), f32(xp, 3, 5), device="gpu"),
        r"fc_fwd: device must be one of cuda, cuda-sim, got 'gpu'",
    ),
    "z F_in": (lambda fc, xp: fc.fc_fwd(f32(xp, 4, 6), f32(xp, 3, 5)), r"fc_fwd: z must be .* F_in=5"),
    "z strided": (lambda fc, xp: fc.fc_fwd(f32(xp, 5, 4).T, f32(xp, 3, 5)), r"fc_fwd: z must be C-contiguous"),
    "w 1-D": (lambda fc, xp: fc.fc_fwd(f32(xp, 4, 5), f32(xp, 3)), r"fc_fwd: w must be float32 \[F_out, F_in\]"),
    "b shape": (lambda fc, xp: fc.fc_fwd(f32(xp, 4, 5), f32(xp, 3, 5), f32(xp, 4)), r"fc_fwd: b must be .* F_out=3"),
    "activation": (
        lambda fc, xp: fc.fc_fwd(f32(xp, 4, 5), f32(xp, 3, 5), activation="gelu"),
        r"fc_fwd: activation must be one of",
    ),
    "dropout 1": (
        lambda fc, xp: fc.fc_fwd(f32(xp, 4, 5), f32(xp, 3, 5), dropout=1.0),
        r"fc_fwd: dropout must be in \[0, 1\)",
    ),
    "dropout key": (
        lambda fc, xp: fc.fc_fwd(f32(xp, 4, 5), f32(xp, 3, 5), dropout=0.1, dropout_key=-3),
        r"fc_fwd: dropout_key must be",
    ),
    "fwd out shape": (
        lambda fc, xp: fc.fc_fwd(f32(xp, 4, 5), f32(xp, 3, 5), out=(f32(xp, 4, 4), f32(xp, 4, 3))),
        r"fc_fwd: out\[0\] \(h\) must be",
    ),
    "fwd out arity": (
        lambda fc, xp: fc.fc_fwd(f32(xp, 4, 5), f32(xp, 3, 5), out=f32(xp, 4, 3)),
        r"fc_fwd: out must be None or a tuple",
    ),
    "layout": (
        lambda fc, xp: fc.fc_proj(f32(xp, 4, 3), f32(xp, 3, 5), weight_layout="oi"),
        r"fc_proj: weight_layout must be one of",
    ),
    "proj e F_out": (lambda fc, xp: fc.fc_proj(f32(xp, 4, 5), f32(xp, 3, 5)), r"fc_proj: e must be .* F_out=3"),
    "proj e in_out": (
        lambda fc, xp: fc.fc_proj(f32(xp, 4, 5), f32(xp, 5, 3), weight_layout="in_out"),
        r"fc_proj: e must be .* F_out=3",
    ),
    "proj out": (
        lambda fc, xp: fc.fc_proj(f32(xp, 4, 3), f32(xp, 3, 5), out=f32(xp, 4, 3)),
        r"fc_proj: out must be .* F_in=5",
    ),
    "beta nan": (lambda fc, xp: _error_proj(fc, xp, beta=float("nan")), r"fc_error_proj: beta must be a finite number"),
    "rule": (lambda fc, xp: _error_proj(fc, xp, rule="fa"), r"fc_error_proj: rule must be one of"),
    "bp signum": (
        lambda fc, xp: _error_proj(fc, xp, rule="bp", activation="signum"),
        r"fc_error_proj: rule 'bp' needs",
    ),
    "error h": (lambda fc, xp: _error_proj(fc, xp, h_shape=(4, 6)), r"fc_error_proj: h must be .* F_in=5"),
    "epilogue h": (
        lambda fc, xp: fc.error_epilogue(f32(xp, 4, 5), f32(xp, 5, 4), activation="relu", beta=0.9),
        r"error_epilogue: h must be",
    ),
    "update e": (lambda fc, xp: fc.fc_update(f32(xp, 4, 5), f32(xp, 5, 3)), r"fc_update: e must be .* N=4"),
    "gamma": (
        lambda fc, xp: fc.fc_update(f32(xp, 4, 5), f32(xp, 4, 3), gamma=float("inf")),
        r"fc_update: gamma must be a finite number",
    ),
    "update_proj h without weight": (
        lambda fc, xp: fc.fc_update_proj(f32(xp, 4, 5), f32(xp, 4, 3), h=f32(xp, 4, 5)),
        r"fc_update_proj: h \(the layer below's pre-activation\) needs weight",
    ),
    "update_proj weight": (
        lambda fc, xp: fc.fc_update_proj(f32(xp, 4, 5), f32(xp, 4, 3), weight=f32(xp, 6, 3)),
        r"fc_update_proj: weight projects to 6 features, but z has F_in=5",
    ),
    "softmax labels dtype": (
        lambda fc, xp: fc.fc_softmax_error(f32(xp, 4, 5), f32(xp, 3, 5), None, xp.zeros(4, np.int64)),
        r"fc_softmax_error: labels must be int32 \[N\]",
    ),
    "softmax workspace": (
        lambda fc, xp: fc.fc_softmax_error(f32(xp, 40, 5), f32(xp, 3, 5), None, xp.zeros(40, np.int32),
                                           workspace=(xp.zeros(1), xp.zeros(1, np.int32), xp.zeros(1, np.uint32))),
        r"fc_softmax_error: workspace \(partial losses\) holds 1 blocks, N=40 needs 3",
    ),
    "labels dtype": (
        lambda fc, xp: fc.softmax_error(f32(xp, 4, 10), xp.zeros(4, np.int64)),
        r"softmax_error: labels must be int32 \[N\]",
    ),
    "labels N": (
        lambda fc, xp: fc.softmax_error(f32(xp, 4, 10), xp.zeros(5, np.int32)),
        r"softmax_error: labels must be .* N=4",
    ),
}


@pytest.mark.parametrize("case", list(BAD_CASES))
def test_bad_arguments(xp, fc, case):
    call, match = BAD_CASES[case]
    with pytest.raises(ValueError, match=match):
        call(fc, xp)


def test_arrays_of_another_device_than_named(device, xp, fc):
    other = "cuda-sim" if device.name == "cuda" else "cuda"
    # the other device unusable here: RuntimeError with its status; usable: z belongs to the wrong one
    with pytest.raises((RuntimeError, ValueError), match=rf"fc_fwd: (device '{other}' is not usable|z must be a)"):
        fc.fc_fwd(f32(xp, 4, 5), f32(xp, 3, 5), device=other)


def test_launcher_checks_surface_naming_the_op(xp, fc):
    rows = 65535 * TILE + 1  # more output rows than v1's GEMM grid's y dimension covers
    with pytest.raises(ValueError, match=r"^fc_fwd: too many output rows for the grid"):
        fc.fc_fwd(xp.zeros((rows, 1), np.float32), xp.zeros((1, 1), np.float32), version=1)


SPECIAL = [0.0, -0.0, 1e-30, -1e-30, 1.0, -1.0, 20.0, -20.0, 90.0, -90.0]  # ±0, ±tiny, saturating tanh/sigmoid


@pytest.mark.parametrize("activation", reference.ACTIVATIONS)
def test_activations_on_special_values(xp, fc, rng, activation):
    """φ, φ' and φ(h) − φ(h − βd) inside the kernels on awkward h: zeros, tiny values, and magnitudes
    that overflow exp in float32 (h = z·1 exactly: a 1 x 1 weight). float32 against the float64
    reference: a few float32 ulps (rtol 3e-6, atol 3e-7)."""
    h = np.concatenate([SPECIAL, rng.standard_normal(500) * 4]).astype(np.float32)[:, None]
    h64 = h.astype(np.float64)
    _, out = fc.fc_fwd(xp.array(h), xp.ones((1, 1), np.float32), activation=activation)
    np.testing.assert_allclose(host(out), reference.activate(activation, h64), rtol=3e-6, atol=3e-7)
    if activation != "signum":  # bp needs φ'; signum is refused before any launch
        ones = xp.ones(h.shape, np.float32)
        deriv = fc.error_epilogue(ones, xp.array(h), activation=activation, beta=0.9, rule="bp")
        np.testing.assert_allclose(host(deriv), reference.activation_derivative(activation, h64), rtol=3e-6, atol=3e-7)
    d = (rng.standard_normal(h.shape) * 3).astype(np.float32)
    got = host(fc.error_epilogue(xp.array(d), xp.array(h), activation=activation, beta=0.9, rule="ekdaa"))
    want = reference.target_error(activation, h64, d.astype(np.float64), 0.9)
    # φ(h) − φ(h − βd) cancels: the error is absolute, relative to max(1, |h|, |h − βd|); a float32
    # h − βd within rounding of 0 may flip signum / relu between the two computations
    scale = np.maximum(1.0, np.maximum(np.abs(h64), np.abs(h64 - 0.9 * d)))
    bad = np.abs(got - want) > 4e-7 * scale
    if activation in ("signum", "relu"):
        bad &= ~(np.abs(h64 - 0.9 * d) < 1e-5 * scale)
    assert not bad.any(), f"{bad.sum()} mismatches, e.g. h={h[bad][:3]} d={d[bad][:3]}"

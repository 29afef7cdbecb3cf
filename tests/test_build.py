"""Build and host-compiled-kernel-code checks that run without a GPU.

- The package imports and explains its CUDA status without raising.
- When the installed distribution carries the extension ``ekdaa_cuda._C``, the imported
  package must be that copy (not the source folder shadowing it, which would silently skip
  every GPU-side check).
- The per-element device functions of ``csrc/elementwise.cuh`` (activations, EKDAA target
  error, dropout hash), compiled for the host and exposed as ``_C.host_*``, match the NumPy
  reference ``ekdaa_cuda.reference``.

Run: ``pip install ".[test]" && pytest tests/test_build.py``.
"""

from __future__ import annotations

import importlib
import importlib.metadata

import numpy as np
import pytest

import ekdaa_cuda
from ekdaa_cuda import reference

ACTIVATIONS = list(reference.ACTIVATION_CODES)


def _installed_extension_files() -> list[str]:
    try:
        files = importlib.metadata.distribution("ekdaa-cuda").files or []
    except importlib.metadata.PackageNotFoundError:
        return []
    return [str(f) for f in files if f.parts[:1] == ("ekdaa_cuda",) and f.name.startswith("_C.")]


@pytest.fixture(scope="module")
def C():
    return pytest.importorskip(
        "ekdaa_cuda._C", reason="extension ekdaa_cuda._C not built (no CUDA compiler at build time)"
    )


def test_import_and_status():
    from ekdaa_cuda._device import cuda_available, cuda_status

    status = cuda_status()
    assert isinstance(status, str) and status
    assert cuda_available() == status.startswith("ok:")
    print("cuda_status:", status)


def test_installed_extension_is_the_one_imported():
    built = _installed_extension_files()
    if not built:
        pytest.skip("the installed ekdaa-cuda has no extension (or the package is not installed)")
    try:
        importlib.import_module("ekdaa_cuda._C")
    except ImportError as exc:
        pytest.fail(
            f"ekdaa-cuda was installed with {built}, but `import ekdaa_cuda._C` failed ({exc}); "
            f"ekdaa_cuda was imported from {list(ekdaa_cuda.__path__)}: the source folder probably shadows the "
            "installed package (run `pytest`, not `python -m pytest`, from the repository root)"
        )


def test_device_query_never_raises(C):
    count = C.device_count()
    assert isinstance(count, int) and count >= 0
    assert isinstance(C.device_error(), str)
    assert (C.device_error() == "") == (count > 0), "device_error() explains exactly the failed queries"
    assert C.runtime_version() >= 12000
    assert C.driver_version() >= 0
    props = C.device_properties(0)
    if count == 0:
        assert set(props) == {"error"}
    else:
        assert {"name", "compute_capability", "total_memory", "multiprocessor_count"} <= set(props)
    assert "error" in C.device_properties(count)  # out of range: reported, not raised


def _sample(rng, dtype):
    """Random values plus the awkward ones: 0, ±tiny, large magnitudes that saturate tanh/sigmoid."""
    special = np.array([0.0, -0.0, 1e-30, -1e-30, 1.0, -1.0, 20.0, -20.0, 90.0, -90.0], dtype)
    return np.concatenate([special, (rng.standard_normal(500) * 4).astype(dtype)])


# float64: the host code and NumPy may round libm's tanh/exp differently by an ulp or two.
# float32: a float32 evaluation against the float64 reference, ~ a few float32 ulps.
TOL = {np.float64: {"rtol": 1e-13, "atol": 1e-15}, np.float32: {"rtol": 3e-6, "atol": 3e-7}}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("act", ACTIVATIONS)
def test_host_activate(C, rng, act, dtype):
    x = _sample(rng, dtype)
    got = C.host_activate(reference.ACTIVATION_CODES[act], x)
    assert got.dtype == dtype and got.shape == x.shape
    np.testing.assert_allclose(got, reference.activate(act, x.astype(np.float64)), **TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("act", ACTIVATIONS)
def test_host_activation_derivative(C, rng, act, dtype):
    x = _sample(rng, dtype)
    got = C.host_activation_derivative(reference.ACTIVATION_CODES[act], x)
    assert got.dtype == dtype
    if act == "signum":  # the reference refuses; the kernels' BP path never reaches it (checked in Python)
        assert np.all(got == 0)
        return
    np.testing.assert_allclose(got, reference.activation_derivative(act, x.astype(np.float64)), **TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("act", ACTIVATIONS)
@pytest.mark.parametrize("beta", [0.9, 1e-2])
def test_host_target_error(C, rng, act, dtype, beta):
    h = _sample(rng, dtype)
    d = (rng.standard_normal(h.size) * 3).astype(dtype)
    got = C.host_target_error(reference.ACTIVATION_CODES[act], h, d, beta)
    assert got.dtype == dtype
    want = reference.target_error(act, h.astype(np.float64), d.astype(np.float64), beta)
    if dtype == np.float64:
        np.testing.assert_allclose(got, want, **TOL[dtype])
        return
    # float32: φ(h) − φ(h − βd) cancels, so the error is absolute, relative to |φ| (≤ max(1, |h|, |h − βd|)),
    # and a float32 h − βd can cross 0, which flips signum / relu between the two computations.
    scale = np.maximum(1.0, np.maximum(np.abs(h), np.abs(h - beta * d)))
    bad = np.abs(got - want) > 4e-7 * scale
    if act in ("signum", "relu"):
        near_zero = np.abs(h.astype(np.float64) - beta * d) < 1e-5 * scale
        bad &= ~near_zero
    assert not bad.any(), f"{bad.sum()} mismatches, e.g. h={h[bad][:3]} d={d[bad][:3]}"


def test_host_bad_activation_code(C):
    with pytest.raises(ValueError, match="host_activate: act"):
        C.host_activate(7, np.zeros(3))


@pytest.mark.parametrize("seed, step, layer", [(0, 0, 0), (1, 2, 3), (2**32 - 1, 123456, 7), (42, 2**31, 2**32 - 1)])
def test_host_dropout_key(C, seed, step, layer):
    assert C.host_dropout_key(seed, step, layer) == reference.dropout_key(seed, step, layer)


@pytest.mark.parametrize("p", [0.0, 0.1, 0.5, 0.9])
def test_host_dropout_keep(C, rng, p):
    key = reference.dropout_key(int(rng.integers(2**32)), int(rng.integers(2**20)), int(rng.integers(16)))
    n = 4099
    got = C.host_dropout_keep(key, n, reference.dropout_threshold(p))
    want = reference.dropout_keep(key, (n,), p)
    assert got.dtype == np.bool_ and got.shape == (n,)
    np.testing.assert_array_equal(got, want)
    assert abs(got.mean() - (1 - p)) < 0.05

"""Fuzzing the dataset readers (hypothesis): malformed IDX files, CIFAR-10 pickle batches and SVHN
``.mat`` files must give a ``ValueError`` (``DataError``) naming the file, or load as valid data;
never another exception, a crash or a hang, and the file is never modified.

Each example is a file built from a valid one by a random edit (truncation, byte flips, an
inserted run of bytes, a rewritten header field), a well-formed container holding random
content (e.g. a pickle of random Python values, a .mat of random arrays), or random bytes.
Every read runs under a 10-second alarm (a hang fails the test instead of stalling CI). 300
examples per reader (``EKDAA_FUZZ_EXAMPLES`` overrides; 1500 per reader were run while writing
this) keep the whole file at about 15 s on 2 cores.
"""

import gzip
import io
import os
import pickle
import signal
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis", reason="pip install hypothesis (the test extra has it)")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from ekdaa_cuda.data import DataError, load_dataset  # noqa: E402

FUZZ = settings(max_examples=int(os.environ.get("EKDAA_FUZZ_EXAMPLES", 300)), deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
OUTCOMES: dict[str, dict[str, int]] = {}


@contextmanager
def alarm(seconds: int):
    def hang(signum, frame):
        raise TimeoutError(f"the reader hung for more than {seconds} s")

    old = signal.signal(signal.SIGALRM, hang)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def check_load(kind: str, paths: list[Path], **kwargs) -> None:
    """load_dataset must return valid data or raise DataError naming one of ``paths`` (the files
    read); the files are unchanged."""
    before = [(p.read_bytes(), p.stat().st_mtime_ns) for p in paths]
    tally = OUTCOMES.setdefault(kind, {"DataError": 0, "loaded": 0})
    try:
        with alarm(10):
            x, labels = load_dataset(kwargs.pop("name"), download=False, **kwargs)
    except DataError as exc:
        assert any(str(p) in str(exc) for p in paths), str(exc)
        tally["DataError"] += 1
    else:
        assert x.dtype == np.float32 and x.ndim == 4 and labels.dtype == np.int64 and len(x) == len(labels)
        assert labels.size == 0 or (labels.min() >= 0 and labels.max() <= 9)
        tally["loaded"] += 1
    assert [(p.read_bytes(), p.stat().st_mtime_ns) for p in paths] == before


def mutate(raw: bytes, draw) -> bytes:
    """One to three random edits of ``raw``: truncate, flip bytes, insert or overwrite a run."""
    out = bytearray(raw)
    for _ in range(draw(st.integers(1, 3))):
        edit = draw(st.sampled_from(["truncate", "flip", "insert", "overwrite"]))
        pos = draw(st.integers(0, max(len(out) - 1, 0)))
        if edit == "truncate":
            del out[pos:]
        elif edit == "flip" and out:
            out[pos] ^= draw(st.integers(1, 255))
        elif edit == "insert":
            out[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        else:
            chunk = draw(st.binary(min_size=1, max_size=8))
            out[pos:pos + len(chunk)] = chunk
    return bytes(out)


# ---------------------------------------------------------------- IDX (Fashion-MNIST)


def idx(array: np.ndarray) -> bytes:
    return (0x0800 | array.ndim).to_bytes(4, "big") + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape) + array.astype(np.uint8).tobytes()


@st.composite
def idx_files(draw):
    """(images bytes, labels bytes, gzip?) for the Fashion-MNIST test split."""
    n = draw(st.integers(0, 3))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    images, labels = idx(rng.integers(0, 256, (n, 28, 28))), idx(rng.integers(0, 12, n))
    how = draw(st.sampled_from(["mutate-images", "mutate-labels", "header", "random"]))
    if how == "mutate-images":
        images = mutate(images, draw)
    elif how == "mutate-labels":
        labels = mutate(labels, draw)
    elif how == "header":  # a well-formed header with random fields
        dims = draw(st.lists(st.integers(0, 2**32 - 1) | st.integers(0, 40), min_size=0, max_size=4))
        magic = draw(st.sampled_from([0x0803, 0x0801, 0x0D03, 0x0800 | len(dims)]) | st.integers(0, 2**32 - 1))
        body = draw(st.binary(max_size=3000))
        header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims)
        if draw(st.booleans()):
            images = header + body
        else:
            labels = header + body
    else:
        images = draw(st.binary(max_size=2000))
    return images, labels, draw(st.booleans())


@FUZZ
@given(files=idx_files())
def test_fuzz_idx(isolated, files):
    images, labels, gz = files
    for old in isolated.iterdir():
        old.unlink()
    paths = []
    for base, raw in (("t10k-images-idx3-ubyte", images), ("t10k-labels-idx1-ubyte", labels)):
        path = isolated / (base + ".gz" if gz else base)
        path.write_bytes(gzip.compress(raw, mtime=0) if gz and raw[:2] != b"\x1f\x8b" else raw)
        paths.append(path)
    check_load("idx", paths, name="fmnist", split="test", root=isolated, verify=False)


# ---------------------------------------------------------------- CIFAR-10 pickle batches

# random Python values of the kinds a pickle can hold, numpy arrays included
_scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.binary(max_size=8) | \
    st.text(max_size=8)
_arrays = st.builds(
    lambda shape, dtype, seed: np.random.default_rng(seed).integers(0, 256, shape).astype(dtype),
    st.lists(st.integers(0, 4), max_size=3).map(tuple) | st.sampled_from([(2, 3072), (1, 3072), (0, 3072)]),
    st.sampled_from([np.uint8, np.int64, np.float32, np.bool_, object]),
    st.integers(0, 2**32 - 1),
)
_values = st.recursive(_scalars | _arrays, lambda inner: st.lists(inner, max_size=4) |
                       st.dictionaries(st.binary(max_size=6) | st.sampled_from([b"data", b"labels"]), inner,
                                       max_size=4), max_leaves=12)


@st.composite
def cifar_batches(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n = draw(st.integers(0, 3))
    good = {b"batch_label": b"fuzz", b"labels": [int(v) for v in rng.integers(0, 10, n)],
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"filenames": [b"x.png"] * n}
    how = draw(st.sampled_from(["mutate", "values", "fields", "random"]))
    protocol = draw(st.integers(2, pickle.HIGHEST_PROTOCOL))
    if how == "mutate":
        return mutate(pickle.dumps(good, protocol=protocol), draw)
    if how == "values":
        return pickle.dumps(draw(_values), protocol=protocol)
    if how == "fields":  # the right keys holding random values
        batch = dict(good)
        for key in draw(st.lists(st.sampled_from([b"data", b"labels"]), min_size=1, max_size=2, unique=True)):
            batch[key] = draw(_values)
        return pickle.dumps(batch, protocol=protocol)
    return draw(st.binary(max_size=2000))


@FUZZ
@given(raw=cifar_batches())
def test_fuzz_cifar_batch(isolated, raw):
    folder = isolated / "cifar-10-batches-py"
    folder.mkdir(exist_ok=True)
    path = folder / "test_batch"
    path.write_bytes(raw)
    check_load("cifar", [path], name="cifar10", split="test", root=isolated)


def test_cifar_unpickler_refuses_code(isolated):
    """A pickle that would call os.system when unpickled is refused (no code runs)."""
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    folder = isolated / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": Evil(), b"labels": []}))
    with pytest.raises(DataError, match="refusing to load builtins.print"):
        load_dataset("cifar10", "test", root=isolated, download=False)


# ---------------------------------------------------------------- SVHN .mat


@st.composite
def mat_files(draw):
    import scipy.io

    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n = draw(st.integers(0, 2))
    good = {"X": rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8), "y": rng.integers(1, 11, (n, 1))}
    how = draw(st.sampled_from(["mutate", "mutate-compressed", "variables", "random"]))
    buf = io.BytesIO()
    if how == "variables":
        variables = dict(good)
        for key in draw(st.lists(st.sampled_from(["X", "y"]), min_size=1, max_size=2, unique=True)):
            shape = tuple(draw(st.lists(st.integers(0, 4), max_size=4))) or (1,)
            dtype = draw(st.sampled_from([np.uint8, np.int32, np.float64, np.bool_, np.complex64]))
            variables[key] = rng.integers(0, 12, shape).astype(dtype)
        if draw(st.booleans()):
            variables.pop(draw(st.sampled_from(["X", "y"])))
            variables["other"] = np.zeros(2)
        scipy.io.savemat(buf, variables)
        return buf.getvalue()
    if how == "random":
        return draw(st.binary(max_size=2000))
    scipy.io.savemat(buf, good, do_compression=how == "mutate-compressed")
    return mutate(buf.getvalue(), draw)


@FUZZ
@given(raw=mat_files())
def test_fuzz_svhn_mat(isolated, raw):
    path = isolated / "test_32x32.mat"
    path.write_bytes(raw)
    check_load("svhn", [path], name="svhn", split="test", root=isolated)


def test_zz_report_fuzz_outcomes():
    """Prints how many fuzzed files each reader refused or loaded (run with -s)."""
    print({kind: dict(t) for kind, t in OUTCOMES.items()})


# ---------------------------------------------------------------- regressions found by the fuzzing


def test_mat_with_unknown_data_type_is_refused_before_scipy(isolated):
    """A .mat whose label data has an unknown type code (3072) crashed the interpreter inside
    scipy.io.loadmat (segfault, scipy 1.17); the tag check refuses it first."""
    import scipy.io

    buf = io.BytesIO()
    scipy.io.savemat(buf, {"X": np.zeros((32, 32, 3, 0), np.uint8), "y": np.zeros((0, 1), np.int64)})
    raw = bytearray(buf.getvalue())
    pos = raw.rindex((12).to_bytes(4, "little"))  # the miINT64 tag of y's (empty) data
    raw[pos:pos + 4] = (3072).to_bytes(4, "little")
    path = isolated / "test_32x32.mat"
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="not a readable MATLAB file for SVHN.*unknown data type code 3072"):
        load_dataset("svhn", "test", root=isolated, download=False)
    for variables, message in [({"X": {"a": np.zeros(2)}, "y": np.ones((1, 1))}, "MATLAB class 2 is not a numeric"),
                               ({"X": np.ones(2, np.complex64), "y": np.ones(1)}, "complex arrays")]:
        scipy.io.savemat(path, variables)
        with pytest.raises(DataError, match=message):
            load_dataset("svhn", "test", root=isolated, download=False)


def test_cifar_pickle_edge_cases(isolated):
    folder = isolated / "cifar-10-batches-py"
    folder.mkdir()
    path = folder / "test_batch"

    def load(batch, protocol=2):
        path.write_bytes(pickle.dumps(batch, protocol=protocol) if not isinstance(batch, bytes) else batch)
        return load_dataset("cifar10", "test", root=isolated, download=False)

    pixels = np.arange(2 * 3072).astype(np.uint8).reshape(2, 3072)
    for protocol in range(2, pickle.HIGHEST_PROTOCOL + 1):  # protocol 5 stores arrays with _frombuffer
        x, labels = load({b"data": pixels, b"labels": [3, 4]}, protocol)
        assert x.shape == (2, 3, 32, 32) and list(labels) == [3, 4]
    x, labels = load({b"data": np.zeros((0, 3072), np.uint8), b"labels": []})  # an empty batch
    assert x.shape == (0, 3, 32, 32) and labels.shape == (0,)
    with pytest.raises(DataError, match="b'labels' is not an array of integers"):
        load({b"data": pixels, b"labels": [[1], 2]})

    # a few bytes of file must not allocate gigabytes, nor pick codecs
    def crafted(call: bytes) -> bytes:
        return b"\x80\x02}q\x00(C\x04dataq\x01" + call + b"C\x06labelsq\x02]q\x03u."

    big_bytes = crafted(b"c__builtin__\nbytes\nJ\x00\x00\x00\x40\x85R")  # bytes(2**30)
    big_array = crafted(b"cnumpy\nndarray\nJ\x00\x00\x00\x40\x85R")  # ndarray((2**30,))
    codec = crafted(b"c_codecs\nencode\nX\x01\x00\x00\x00xX\x04\x00\x00\x00zlibq\x04\x86R")
    for raw, message in [(big_bytes, "refusing bytes"), (big_array, "refusing to call numpy.ndarray"),
                         (codec, "refusing _codecs.encode with codec 'zlib'")]:
        with pytest.raises(DataError, match=message):
            load(raw)

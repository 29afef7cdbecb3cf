"""Tests for ekdaa_cuda.data: real Fashion-MNIST and CIFAR-10 subset files, synthetic files in
the official formats, the folder search, and the errors for missing or malformed files."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import re
import sys
import tarfile
import types
import urllib.error
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from ekdaa_cuda import data
from ekdaa_cuda.data import DataError, DatasetNotFoundError, load_dataset

CIFAR_SUBSET = Path(__file__).resolve().parents[1].parent / "shared/data/cifar-10-subset-python.tar.gz"
needs_cifar_subset = pytest.mark.skipif(
    not CIFAR_SUBSET.is_file(), reason=f"CIFAR-10 subset archive not found at {CIFAR_SUBSET}"
)
DEBIAN_DIR = data.DEBIAN_FASHION_MNIST_DIR
needs_debian_fmnist = pytest.mark.skipif(
    not (DEBIAN_DIR / "train-images-idx3-ubyte.gz").is_file(),
    reason=f"Fashion-MNIST not installed in {DEBIAN_DIR} (apt-get install dataset-fashion-mnist)",
)


def to_uint8(x: np.ndarray) -> np.ndarray:
    """Undo the x / 255 - 0.5 scaling."""
    return np.rint((x.astype(np.float64) + 0.5) * 255).astype(np.uint8)


def scaled(pixels: np.ndarray) -> np.ndarray:
    """The expected float32 scaling of uint8 pixels."""
    return pixels.astype(np.float32) / np.float32(255) - np.float32(0.5)


# --------------------------------------------------------------------------------------------
# Names and arguments


@pytest.mark.parametrize(
    ("alias", "name"),
    [
        ("fmnist", "fashion-mnist"),
        ("fashion_mnist", "fashion-mnist"),
        ("fashion-mnist", "fashion-mnist"),
        ("Fashion-MNIST", "fashion-mnist"),
        ("cifar", "cifar10"),
        ("cifar10", "cifar10"),
        ("cifar-10", "cifar10"),
        ("svhn", "svhn"),
    ],
)
def test_canonical_name(alias, name):
    assert data.canonical_name(alias) == name


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="fashion-mnist, cifar10, svhn"):
        data.canonical_name("mnist")
    with pytest.raises(ValueError, match="valid names"):
        load_dataset("imagenet")


@pytest.mark.parametrize("split", ["val", "Train", "", None])
def test_bad_split(split):
    with pytest.raises(ValueError, match="split"):
        load_dataset("fmnist", split=split)


@pytest.mark.parametrize("limit", [0, -3, 2.5, True, "5"])
def test_bad_limit(limit):
    with pytest.raises(ValueError, match="limit"):
        load_dataset("fmnist", limit=limit)


# --------------------------------------------------------------------------------------------
# Fashion-MNIST: real files


@pytest.fixture(scope="module")
def real_fmnist():
    return {split: load_dataset("fmnist", split, root=DEBIAN_DIR) for split in data.SPLITS}


@needs_debian_fmnist
@pytest.mark.parametrize(("split", "count"), [("train", 60000), ("test", 10000)])
def test_real_fashion_mnist(real_fmnist, split, count):
    x, labels = real_fmnist[split]
    assert x.shape == (count, 1, 28, 28) and x.dtype == np.float32 and x.flags.c_contiguous
    assert labels.shape == (count,) and labels.dtype == np.int64
    assert x.min() == -0.5 and x.max() == 0.5
    assert np.array_equal(np.bincount(labels, minlength=10), np.full(10, count // 10))
    assert np.array_equal(x[:1000], scaled(to_uint8(x[:1000])))  # exactly v / 255 - 0.5


@needs_debian_fmnist
def test_real_fashion_mnist_checksums(monkeypatch):
    # The table matches the installed files (hashed here independently of the loader) ...
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        content = gzip.decompress((DEBIAN_DIR / f"{name}.gz").read_bytes())
        assert hashlib.sha256(content).hexdigest() == data.FASHION_MNIST_SHA256[name]
    # ... and the loader checks it: a wrong expected sum makes it refuse the real file.
    monkeypatch.setitem(data.FASHION_MNIST_SHA256, "t10k-labels-idx1-ubyte", "0" * 64)
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz: SHA-256"):
        load_dataset("fmnist", "test", root=DEBIAN_DIR)
    x, _ = load_dataset("fmnist", "test", root=DEBIAN_DIR, limit=3, verify=False)
    assert x.shape == (3, 1, 28, 28)


@needs_debian_fmnist
def test_real_fashion_mnist_limit_and_default_search(real_fmnist, monkeypatch):
    monkeypatch.delenv(data.ENV_VAR, raising=False)
    assert data.find_dataset_dir("fmnist") in (DEBIAN_DIR, data._cache_dir("fashion-mnist"))
    x, labels = load_dataset("fmnist", "test", root=DEBIAN_DIR.parent, limit=7)
    assert np.array_equal(x, real_fmnist["test"][0][:7])
    assert np.array_equal(labels, real_fmnist["test"][1][:7])


# --------------------------------------------------------------------------------------------
# Fashion-MNIST: synthetic IDX files, folder search and malformed files


def idx_bytes(array: np.ndarray, magic: int | None = None) -> bytes:
    magic = 0x0800 | array.ndim if magic is None else magic
    dims = b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return magic.to_bytes(4, "big") + dims + array.astype(np.uint8).tobytes()


def write_fmnist(folder: Path, gz: bool = True, n_train: int = 5, n_test: int = 3, seed: int = 0):
    """Write small IDX files for both splits; return {split: (pixels, labels)}."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for split, n in (("train", n_train), ("test", n_test)):
        pixels = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        for base, array in zip(data._FMNIST_FILES[split], (pixels, labels)):
            content = idx_bytes(array)
            if gz:
                (folder / f"{base}.gz").write_bytes(gzip.compress(content))
            else:
                (folder / base).write_bytes(content)
        written[split] = pixels, labels
    return written


@pytest.mark.parametrize("gz", [True, False])
def test_synthetic_fashion_mnist(isolated, gz):
    written = write_fmnist(isolated, gz=gz)
    for split in data.SPLITS:
        x, labels = load_dataset("fmnist", split, root=isolated, verify=False)
        pixels, expected_labels = written[split]
        assert x.shape == (len(pixels), 1, 28, 28) and x.dtype == np.float32
        assert np.array_equal(x[:, 0], scaled(pixels))
        assert labels.dtype == np.int64 and np.array_equal(labels, expected_labels)
    x, labels = load_dataset("fmnist", "train", root=isolated, limit=2, verify=False)
    assert np.array_equal(x[:, 0], scaled(written["train"][0][:2])) and len(labels) == 2
    x, _ = load_dataset("fmnist", "train", root=isolated, limit=100, verify=False)
    assert len(x) == 5


def test_search_forms_and_order(isolated, monkeypatch):
    root = isolated / "root"
    env = isolated / "env"
    cache = data._cache_dir("fashion-mnist")
    debian = isolated / "debian"
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST_DIR", debian)
    monkeypatch.setenv(data.ENV_VAR, str(env))
    assert data.default_search_paths("fmnist", root) == [
        root,
        root / "fashion-mnist",
        root / "FashionMNIST/raw",
        env,
        env / "fashion-mnist",
        env / "FashionMNIST/raw",
        cache,
        cache / "FashionMNIST/raw",
        debian,
    ]
    assert data.default_search_paths("cifar", root) == [
        root,
        root / "cifar10",
        env,
        env / "cifar10",
        data._cache_dir("cifar10"),
    ]

    # Each place is found, and the earlier ones win.
    write_fmnist(debian)
    assert data.find_dataset_dir("fmnist", root) == debian
    write_fmnist(cache / "FashionMNIST/raw")  # what torchvision's download leaves
    assert data.find_dataset_dir("fmnist", root) == cache / "FashionMNIST/raw"
    write_fmnist(env / "fashion-mnist")
    assert data.find_dataset_dir("fmnist", root) == env / "fashion-mnist"
    write_fmnist(env)
    assert data.find_dataset_dir("fmnist", root) == env
    write_fmnist(root / "fashion-mnist")
    assert data.find_dataset_dir("fmnist", root) == root / "fashion-mnist"
    write_fmnist(root, gz=False)
    assert data.find_dataset_dir("fmnist", str(root)) == root


def test_split_must_be_complete(isolated):
    write_fmnist(isolated)
    (isolated / "t10k-labels-idx1-ubyte.gz").unlink()
    assert data.find_dataset_dir("fmnist", isolated) == isolated
    assert data.find_dataset_dir("fmnist", isolated, split="train") == isolated
    with pytest.raises(DatasetNotFoundError, match="t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte"):
        load_dataset("fmnist", "test", root=isolated, download=False)


def test_checksum_mismatch(isolated):
    write_fmnist(isolated)
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.gz: SHA-256.*verify=False") as err:
        load_dataset("fmnist", "train", root=isolated)
    assert str(isolated) in str(err.value)


@pytest.mark.parametrize("gz", [True, False])
def test_truncated_idx(isolated, gz):
    write_fmnist(isolated, gz=False)
    path = isolated / "train-images-idx3-ubyte"
    content = path.read_bytes()[:-100]  # header: 5 x 28 x 28, so 16 + 3920 bytes expected
    path.unlink()
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(content))
    else:
        path.write_bytes(content)
    with pytest.raises(DataError, match="truncated") as err:
        load_dataset("fmnist", root=isolated, verify=False)
    message = str(err.value)
    assert str(path) in message and "3936" in message and "3836" in message


def test_trailing_data_in_idx(isolated):
    write_fmnist(isolated, gz=False)
    path = isolated / "train-labels-idx1-ubyte"
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(DataError, match="train-labels-idx1-ubyte: has trailing data"):
        load_dataset("fmnist", root=isolated, verify=False)


def test_truncated_header(isolated):
    write_fmnist(isolated, gz=False)
    (isolated / "train-images-idx3-ubyte").write_bytes(idx_bytes(np.zeros((5, 28, 28)))[:10])
    with pytest.raises(DataError, match="train-images-idx3-ubyte: truncated, expected a 16-byte header"):
        load_dataset("fmnist", root=isolated, verify=False)


@pytest.mark.parametrize(
    "garbage",
    [
        b"not gzip at all",
        gzip.compress(b"\0" * 5000)[:-5],
        gzip.compress(b"\0" * 5000)[:-8] + b"\0\0\0\0" + gzip.compress(b"\0" * 5000)[-4:],
    ],
    ids=["not-gzip", "truncated-gzip", "bad-crc"],
)
def test_corrupt_gzip(isolated, garbage):
    write_fmnist(isolated)
    path = isolated / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(garbage)
    with pytest.raises(DataError, match="not a valid gzip file") as err:
        load_dataset("fmnist", "test", root=isolated, verify=False)
    assert str(path) in str(err.value)


def test_wrong_magic(isolated):
    write_fmnist(isolated, gz=False)
    path = isolated / "train-labels-idx1-ubyte"
    path.write_bytes(idx_bytes(np.zeros(5), magic=0x0803))  # an images magic on a labels file
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte: wrong magic number 0x00000803, expected 0x00000801"):
        load_dataset("fmnist", root=isolated, verify=False)


def test_bad_fmnist_contents(isolated):
    written = write_fmnist(isolated, gz=False)
    labels_path = isolated / "train-labels-idx1-ubyte"
    labels_path.write_bytes(idx_bytes(np.full(5, 10)))
    with pytest.raises(DataError, match="label 10 is out of range"):
        load_dataset("fmnist", root=isolated, verify=False)
    labels_path.write_bytes(idx_bytes(written["train"][1][:4]))
    with pytest.raises(DataError, match="5 images but .* 4 labels"):
        load_dataset("fmnist", root=isolated, verify=False)
    (isolated / "train-images-idx3-ubyte").write_bytes(idx_bytes(np.zeros((4, 32, 32))))
    with pytest.raises(DataError, match=r"images are \(32, 32\), expected \(28, 28\)"):
        load_dataset("fmnist", root=isolated, verify=False)


# --------------------------------------------------------------------------------------------
# Missing datasets and torchvision's download


@pytest.mark.parametrize(
    ("name", "hint"),
    [
        ("fmnist", "apt-get install dataset-fashion-mnist"),
        ("cifar10", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"),
        ("svhn", "http://ufldl.stanford.edu/housenumbers/train_32x32.mat"),
    ],
)
def test_not_found_message(isolated, monkeypatch, name, hint):
    monkeypatch.setenv(data.ENV_VAR, str(isolated / "env"))
    root = isolated / "nowhere"
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset(name, root=root, download=False)
    assert isinstance(err.value, FileNotFoundError)
    message = str(err.value)
    searched = data.default_search_paths(name, root)
    assert len(searched) >= 5
    for folder in searched:
        assert f"  - {folder}  (" in message
    for part in (hint, "$EKDAA_DATA", "root=", str(data._cache_dir(data.canonical_name(name))), "download=False"):
        assert part in message
    assert ("/no-debian" in message) == (name == "fmnist")

    with pytest.raises(DatasetNotFoundError, match="torchvision is not installed"):
        load_dataset(name, root=root)
    with pytest.raises(DatasetNotFoundError, match=re.escape(hint)):
        data.find_dataset_dir(name, root)


def install_fake_torchvision(monkeypatch, fashion_mnist):
    datasets = types.ModuleType("torchvision.datasets")
    datasets.FashionMNIST = fashion_mnist
    torchvision = types.ModuleType("torchvision")
    torchvision.datasets = datasets
    monkeypatch.setitem(sys.modules, "torchvision", torchvision)
    monkeypatch.setitem(sys.modules, "torchvision.datasets", datasets)


def test_download_with_torchvision(isolated, monkeypatch):
    calls = []

    def fake_fashion_mnist(root, train, download):
        calls.append((root, train, download))
        return write_fmnist(Path(root) / "FashionMNIST/raw")

    install_fake_torchvision(monkeypatch, fake_fashion_mnist)
    x, labels = load_dataset("fmnist", "test", verify=False)
    assert calls == [(str(data._cache_dir("fashion-mnist")), False, True)]
    assert x.shape == (3, 1, 28, 28) and labels.shape == (3,)
    load_dataset("fmnist", "train", verify=False)
    assert len(calls) == 1  # found in the cache the second time


def test_download_failure_falls_through(isolated, monkeypatch):
    def offline(root, train, download):
        raise urllib.error.URLError("no network here")

    install_fake_torchvision(monkeypatch, offline)
    with pytest.raises(DatasetNotFoundError, match="failed: URLError: <urlopen error no network here>"):
        load_dataset("fmnist")


# --------------------------------------------------------------------------------------------
# CIFAR-10: the real subset archive


@pytest.fixture(scope="module")
def cifar_subset():
    with pytest.warns(UserWarning, match="found 1 of 5 CIFAR-10 training batches.*4000 images"):
        train = load_dataset("cifar10", "train", root=CIFAR_SUBSET.parent)
    test = load_dataset("cifar10", "test", root=CIFAR_SUBSET.parent)
    return {"train": train, "test": test}


@needs_cifar_subset
def test_cifar_subset_archive(cifar_subset):
    expected = {
        "train": (4000, [396, 366, 420, 384, 422, 393, 414, 385, 407, 413], [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]),
        "test": (1000, [103, 89, 100, 103, 90, 86, 112, 102, 106, 109], [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]),
    }
    for split, (count, per_class, first_labels) in expected.items():
        x, labels = cifar_subset[split]
        assert x.shape == (count, 3, 32, 32) and x.dtype == np.float32 and x.flags.c_contiguous
        assert labels.dtype == np.int64
        assert list(np.bincount(labels, minlength=10)) == per_class
        assert list(labels[:10]) == first_labels
        assert -0.5 <= x.min() and x.max() <= 0.5

    # Authenticity checks of the data README, in CHW order: image 0 starts with its R row 0.
    train = to_uint8(cifar_subset["train"][0]).reshape(4000, 3072)
    test = to_uint8(cifar_subset["test"][0]).reshape(1000, 3072)
    assert list(train[0, :10]) == [59, 43, 50, 68, 98, 119, 139, 145, 149, 149]
    assert list(train[0, -3:]) == [140, 84, 72]
    assert list(train[1, :3]) == [154, 126, 105] and list(train[1, -3:]) == [139, 142, 144]
    assert list(test[0, :8]) == [158, 159, 165, 166, 160, 156, 162, 159]
    assert list(test[0, -3:]) == [124, 129, 110]
    assert np.array_equal(cifar_subset["train"][0][0, 0, 0, :4], scaled(np.array([59, 43, 50, 68])))


@needs_cifar_subset
def test_cifar_subset_extracted_folder(cifar_subset, tmp_path):
    with tarfile.open(CIFAR_SUBSET) as tar:
        for member in tar.getmembers():
            if member.isfile():
                target = tmp_path / member.name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(tar.extractfile(member).read())
    batches = tmp_path / "cifar-10-batches-py"
    for root in (tmp_path, batches):  # the folder holding cifar-10-batches-py/, or that folder
        with pytest.warns(UserWarning, match="1 of 5"):
            x, labels = load_dataset("cifar", "train", root=root, limit=500)
        assert np.array_equal(x, cifar_subset["train"][0][:500])
        assert np.array_equal(labels, cifar_subset["train"][1][:500])
    x, labels = load_dataset("cifar", "test", root=tmp_path)
    assert np.array_equal(x, cifar_subset["test"][0]) and np.array_equal(labels, cifar_subset["test"][1])

    # A corrupt batch is reported by name.
    raw = (batches / "test_batch").read_bytes()
    (batches / "test_batch").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match="test_batch: not a readable CIFAR-10 pickle batch") as err:
        load_dataset("cifar", "test", root=tmp_path)
    assert str(batches / "test_batch") in str(err.value)


# --------------------------------------------------------------------------------------------
# CIFAR-10: synthetic batches and malformed files


def cifar_batch(n: int, seed: int, labels=None) -> tuple[bytes, np.ndarray, np.ndarray]:
    """A pickled batch in the official layout; returns (bytes, data (N, 3072), labels)."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    labels = list(rng.integers(0, 10, n)) if labels is None else labels
    batch = {
        b"batch_label": b"synthetic",
        b"labels": [int(v) for v in labels],
        b"data": pixels,
        b"filenames": [b"x.png"] * n,
    }
    return pickle.dumps(batch, protocol=2), pixels, np.asarray(labels)


def write_cifar_archive(path: Path, batches: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, raw in batches.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))


def test_cifar_full_synthetic(isolated):
    batches = {f"data_batch_{i}": cifar_batch(2, seed=i) for i in range(1, 6)}
    batches["test_batch"] = cifar_batch(3, seed=9)
    write_cifar_archive(isolated / "cifar-10-python.tar.gz", {k: v[0] for k, v in batches.items()})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # all five batches: no warning
        x, labels = load_dataset("cifar10", "train", root=isolated)
    pixels = np.concatenate([batches[f"data_batch_{i}"][1] for i in range(1, 6)])
    assert x.shape == (10, 3, 32, 32)
    assert np.array_equal(labels, np.concatenate([batches[f"data_batch_{i}"][2] for i in range(1, 6)]))
    # Row layout: 1024 R, 1024 G, 1024 B values, each channel row-major.
    assert x[7, 1, 2, 5] == scaled(pixels[7, 1024 + 2 * 32 + 5])
    assert np.array_equal(x, scaled(pixels.reshape(10, 3, 32, 32)))
    x, labels = load_dataset("cifar10", "test", root=isolated)
    assert np.array_equal(x, scaled(batches["test_batch"][1].reshape(3, 3, 32, 32)))


def test_cifar_prefers_official_archive(isolated):
    write_cifar_archive(isolated / "cifar-10-subset-python.tar.gz", {"test_batch": cifar_batch(2, 0, [2, 2])[0]})
    write_cifar_archive(isolated / "cifar-10-python.tar.gz", {"test_batch": cifar_batch(2, 0, [1, 1])[0]})
    assert list(load_dataset("cifar", "test", root=isolated)[1]) == [1, 1]


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        (pickle.dumps([1, 2, 3]), "expected a dict with keys b'data' and b'labels'"),
        (pickle.dumps({b"data": b"\0" * 3072, b"labels": [1]}), "b'data' is a bytes, expected a numpy array"),
        (pickle.dumps({b"data": np.zeros((1, 1024), np.uint8), b"labels": [1]}), r"b'data' is uint8 \(1, 1024\)"),
        (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [1]}), "b'labels' should be 2 integers"),
        (cifar_batch(2, 0, [3, 10])[0], r"labels range 3\.\.10, expected 0\.\.9"),
        (pickle.dumps(types.SimpleNamespace()), "refusing to load types.SimpleNamespace"),
        (pickle.dumps(os.getcwd), "refusing to load .*getcwd"),
    ],
    ids=["not-a-dict", "data-not-array", "data-shape", "labels-count", "label-range", "foreign-class", "function"],
)
def test_malformed_cifar_batch(isolated, batch, message):
    folder = isolated / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "test_batch").write_bytes(batch)
    with pytest.raises(DataError, match=message) as err:
        load_dataset("cifar", "test", root=isolated)
    assert str(folder / "test_batch") in str(err.value)


def test_corrupt_cifar_archive(isolated):
    archive = isolated / "cifar-10-python.tar.gz"
    archive.write_bytes(b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(DataError, match="not a readable .tar.gz archive") as err:
        load_dataset("cifar", "test", root=isolated)
    assert str(archive) in str(err.value)

    write_cifar_archive(archive, {"data_batch_1": cifar_batch(2, 0)[0]})
    with pytest.raises(DataError, match="the archive holds no .* test_batch"):
        load_dataset("cifar", "test", root=isolated)
    archive.write_bytes(gzip.compress(b"x" * 600))  # valid gzip, not a tar
    with pytest.raises(DataError, match="cifar-10-python.tar.gz: not a readable"):
        load_dataset("cifar", "test", root=isolated)


# --------------------------------------------------------------------------------------------
# SVHN: synthetic .mat files in the official layout


def write_svhn(folder: Path, split: str, labels, seed: int = 0, **overrides) -> np.ndarray:
    """Write ``<split>_32x32.mat`` with X (32, 32, 3, N) uint8 and y (N, 1); return X."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (32, 32, 3, len(labels)), dtype=np.uint8)
    variables = {"X": images, "y": np.asarray(labels, np.uint8).reshape(-1, 1)} | overrides
    scipy.io.savemat(folder / f"{split}_32x32.mat", variables)
    return images


def test_svhn(isolated):
    images = write_svhn(isolated, "train", [10, 1, 5, 9])
    test_images = write_svhn(isolated, "test", [3, 10], seed=1)
    x, labels = load_dataset("svhn", "train", root=isolated)
    assert x.shape == (4, 3, 32, 32) and x.dtype == np.float32 and x.flags.c_contiguous
    assert labels.dtype == np.int64 and list(labels) == [0, 1, 5, 9]
    # X[row, column, channel, image] -> x[image, channel, row, column]
    assert x[2, 1, 4, 7] == scaled(images[4, 7, 1, 2])
    assert np.array_equal(x, scaled(images.transpose(3, 2, 0, 1)))
    x, labels = load_dataset("svhn", "test", root=isolated, limit=1)
    assert np.array_equal(x, scaled(test_images.transpose(3, 2, 0, 1)[:1])) and list(labels) == [3]


def test_svhn_subfolder(isolated):
    (isolated / "svhn").mkdir()
    write_svhn(isolated / "svhn", "test", [2])
    assert data.find_dataset_dir("svhn", isolated) == isolated / "svhn"
    assert list(load_dataset("svhn", "test", root=isolated)[1]) == [2]


@pytest.mark.parametrize(
    ("labels", "overrides", "message"),
    [
        ([0, 3], {}, r"labels range 0\.\.3, expected 1\.\.10"),
        ([11, 3], {}, r"labels range 3\.\.11"),
        (
            [1, 2],
            {"X": np.zeros((3, 32, 32, 2), np.uint8)},
            r"X is uint8 \(3, 32, 32, 2\), expected uint8 \(32, 32, 3, N\)",
        ),
        ([1, 2], {"X": np.zeros((32, 32, 3, 2))}, "X is float64"),
        ([1, 2], {"y": np.ones((3, 1), np.uint8)}, "expected 2 integer labels"),
        ([1, 2], {"y": np.ones((2, 1))}, "y is float64"),
    ],
    ids=["label-0", "label-11", "x-layout", "x-dtype", "y-count", "y-dtype"],
)
def test_malformed_svhn(isolated, labels, overrides, message):
    write_svhn(isolated, "train", labels, **overrides)
    with pytest.raises(DataError, match=message) as err:
        load_dataset("svhn", root=isolated)
    assert str(isolated / "train_32x32.mat") in str(err.value)


def test_corrupt_svhn(isolated):
    path = isolated / "test_32x32.mat"
    path.write_bytes(b"MATLAB 5.0 MAT-file" + b"\xff" * 200)
    with pytest.raises(DataError, match="not a readable MATLAB file") as err:
        load_dataset("svhn", "test", root=isolated)
    assert str(path) in str(err.value)
    scipy.io.savemat(path, {"images": np.zeros((32, 32, 3, 1), np.uint8)})
    with pytest.raises(DataError, match="expected variables 'X' and 'y'"):
        load_dataset("svhn", "test", root=isolated)

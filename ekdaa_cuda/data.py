"""Loading the benchmark datasets: Fashion-MNIST, CIFAR-10 and SVHN.

:func:`load_dataset` returns images as float32 ``[N, C, H, W]`` scaled to ``x / 255 - 0.5``
(the input scaling of the authors' release) and labels as int64 ``[N]`` in ``0..9``.

The files are read in their official formats, from the first of these places that holds them
(see :func:`default_search_paths`):

1. an explicit ``root``: the folder holding the files, or a parent of a subfolder named after
   the dataset (``fashion-mnist``, ``cifar10``, ``svhn``);
2. ``$EKDAA_DATA``, in the same two forms;
3. the user cache ``$XDG_CACHE_HOME/ekdaa_cuda/<name>`` (default ``~/.cache/ekdaa_cuda/<name>``);
4. for Fashion-MNIST, Debian's ``/usr/share/datasets/fashion-mnist``
   (``apt-get install dataset-fashion-mnist``).

Torchvision's folder layouts are also recognised, and if nothing is found and torchvision is
installed, its downloader fetches the files into the user cache.

Formats:

* Fashion-MNIST: the four IDX files, plain or gzipped. The header (magic number and
  dimensions) is checked against the file size, and the SHA-256 of the decompressed content
  against the official files' sums.
* CIFAR-10: the python-pickle batches, either in a ``cifar-10-batches-py/`` folder or inside a
  ``cifar-10*-python.tar.gz`` archive, which is read without extracting it. The pickles are
  read with an unpickler that can only rebuild numpy arrays, so a crafted file cannot run code.
* SVHN: the MATLAB files ``train_32x32.mat`` / ``test_32x32.mat`` (cropped digits).

Malformed files raise :class:`DataError`; missing ones :class:`DatasetNotFoundError`.
"""

from __future__ import annotations

import codecs
import gzip
import hashlib
import importlib
import io
import math
import os
import pickle
import struct
import tarfile
import warnings
import zlib
from pathlib import Path, PurePosixPath

import numpy as np

try:  # numpy >= 2
    from numpy._core.multiarray import _reconstruct as _numpy_reconstruct
    from numpy._core.numeric import _frombuffer as _numpy_frombuffer
except ImportError:  # numpy 1.x
    from numpy.core.multiarray import _reconstruct as _numpy_reconstruct
    from numpy.core.numeric import _frombuffer as _numpy_frombuffer

__all__ = [
    "DATASETS",
    "DEBIAN_FASHION_MNIST_DIR",
    "ENV_VAR",
    "FASHION_MNIST_SHA256",
    "SPLITS",
    "DataError",
    "DatasetNotFoundError",
    "canonical_name",
    "default_search_paths",
    "find_dataset_dir",
    "load_dataset",
]


class DataError(ValueError):
    """A dataset file is corrupt, truncated or not in the expected format."""


class DatasetNotFoundError(FileNotFoundError):
    """No folder searched holds the dataset; the message says where to get it."""


DATASETS = ("fashion-mnist", "cifar10", "svhn")
SPLITS = ("train", "test")

#: Environment variable naming a data folder (searched after an explicit ``root``).
ENV_VAR = "EKDAA_DATA"
#: Where Debian's ``dataset-fashion-mnist`` package installs the files.
DEBIAN_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")

_ALIASES = {
    "fashion-mnist": "fashion-mnist",
    "fashion_mnist": "fashion-mnist",
    "fashionmnist": "fashion-mnist",
    "fmnist": "fashion-mnist",
    "cifar10": "cifar10",
    "cifar-10": "cifar10",
    "cifar_10": "cifar10",
    "cifar": "cifar10",
    "svhn": "svhn",
}
_DISPLAY_NAMES = {"fashion-mnist": "Fashion-MNIST", "cifar10": "CIFAR-10", "svhn": "SVHN"}

# Sub-folders, relative to a torchvision ``root``, where torchvision keeps the raw files.
_TORCHVISION_SUBDIRS = {"fashion-mnist": ("FashionMNIST/raw",), "cifar10": (), "svhn": ()}

# Fashion-MNIST: (images, labels) file names per split, without the optional ".gz".
_FMNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
#: SHA-256 of the decompressed official Fashion-MNIST files.
FASHION_MNIST_SHA256 = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
_IDX_UBYTE = 0x08  # IDX type code of unsigned bytes, the only type Fashion-MNIST uses

_CIFAR_FOLDER = "cifar-10-batches-py"
_CIFAR_ARCHIVE = "cifar-10-python.tar.gz"
_CIFAR_ARCHIVE_PATTERN = "cifar-10*-python.tar.gz"
_CIFAR_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR_TEST_BATCH = "test_batch"

_SVHN_FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat"}

_HOW_TO_GET = {
    "fashion-mnist": (
        "On Debian/Ubuntu: apt-get install dataset-fashion-mnist (installs into "
        f"{DEBIAN_FASHION_MNIST_DIR}, which is searched automatically). Or download "
        "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and "
        "t10k-labels-idx1-ubyte.gz from "
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/ "
        "(see https://github.com/zalandoresearch/fashion-mnist)."
    ),
    "cifar10": (
        "Download https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz and put the archive "
        f"itself, or the {_CIFAR_FOLDER}/ folder extracted from it, into the data folder."
    ),
    "svhn": (
        "Download http://ufldl.stanford.edu/housenumbers/train_32x32.mat and "
        "http://ufldl.stanford.edu/housenumbers/test_32x32.mat (the cropped-digits format)."
    ),
}

# x / 255 - 0.5 for every uint8 value, computed in float32 exactly as written.
_PIXEL_TO_FLOAT = np.arange(256, dtype=np.float32) / np.float32(255) - np.float32(0.5)

# Digest of decompressed file contents, keyed by (resolved path, mtime_ns, size).
_SHA256_CACHE: dict[tuple[str, int, int], str] = {}


def canonical_name(name: str) -> str:
    """Return the canonical dataset name for ``name`` or one of its aliases.

    ``"fmnist"``, ``"fashion_mnist"`` and ``"fashion-mnist"`` give ``"fashion-mnist"``;
    ``"cifar"``, ``"cifar10"`` and ``"cifar-10"`` give ``"cifar10"``; ``"svhn"`` gives
    ``"svhn"``. Case is ignored. Raises ``ValueError`` for anything else.
    """
    key = name.strip().lower() if isinstance(name, str) else None
    if key not in _ALIASES:
        raise ValueError(
            f"unknown dataset {name!r}; valid names are {', '.join(DATASETS)} "
            f"(aliases: {', '.join(sorted(set(_ALIASES) - set(DATASETS)))})"
        )
    return _ALIASES[key]


def default_search_paths(name: str, root: str | os.PathLike | None = None) -> list[Path]:
    """Return the folders searched for dataset ``name``, in lookup order.

    A folder is used if it holds the dataset's files itself; see the module docstring for the
    places and :func:`find_dataset_dir` for the search.
    """
    return [folder for folder, _ in _search_plan(canonical_name(name), root)]


def find_dataset_dir(name: str, root: str | os.PathLike | None = None, split: str | None = None) -> Path:
    """Return the first searched folder that holds dataset ``name``.

    With ``split`` ("train" or "test") the folder must hold that split's files, otherwise
    either split's. Nothing is downloaded. Raises :class:`DatasetNotFoundError`, whose message
    lists every folder searched and how to get the files.
    """
    name = canonical_name(name)
    if split is not None:
        _check_split(split)
    folder = _search(name, root, split)
    if folder is None:
        raise DatasetNotFoundError(_not_found_message(name, root, split))
    return folder


def load_dataset(
    name: str,
    split: str = "train",
    root: str | os.PathLike | None = None,
    limit: int | None = None,
    download: bool = True,
    verify: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Load one split of a dataset as ``(x, labels)``.

    Args:
        name: "fashion-mnist", "cifar10" or "svhn", or an alias (see :func:`canonical_name`).
        split: "train" or "test".
        root: a folder to search first (the folder holding the files, or a parent of a
            subfolder named after the dataset).
        limit: keep only the first ``limit`` examples (an int >= 1), or None for all.
        download: if the files are not found and torchvision is installed, let torchvision
            download them into the user cache folder.
        verify: check the SHA-256 of Fashion-MNIST files against the official sums; turn it
            off to read custom files in the same format. (No sums are checked for CIFAR-10 and
            SVHN; their structure is always validated.)

    Returns:
        ``x``: float32 ``[N, C, H, W]`` with values ``x / 255 - 0.5`` in ``[-0.5, 0.5]``
        (C=1, H=W=28 for Fashion-MNIST; C=3, H=W=32 for CIFAR-10 and SVHN), and
        ``labels``: int64 ``[N]`` in ``0..9``.

    Raises:
        ValueError: unknown dataset name, split or a bad ``limit``.
        DatasetNotFoundError: no searched folder holds the files.
        DataError: a file is corrupt, truncated or not in the expected format.
    """
    name = canonical_name(name)
    _check_split(split)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1):
        raise ValueError(f"limit must be an int >= 1 or None, got {limit!r}")

    folder = _search(name, root, split)
    if folder is None:
        if download:
            note = _download(name, split)
            folder = _search(name, root, split)
        else:
            note = "Automatic download is off (download=False)."
        if folder is None:
            raise DatasetNotFoundError(_not_found_message(name, root, split, note))

    if name == "fashion-mnist":
        pixels, labels = _load_fashion_mnist(folder, split, verify)
    elif name == "cifar10":
        pixels, labels = _load_cifar10(folder, split)
    else:
        pixels, labels = _load_svhn(folder, split)

    if limit is not None:
        pixels, labels = pixels[:limit], labels[:limit]
    return _PIXEL_TO_FLOAT[np.ascontiguousarray(pixels)], labels.astype(np.int64)


# --------------------------------------------------------------------------------------------
# Searching


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


def _cache_dir(name: str) -> Path:
    """The user cache folder for ``name``: ``$XDG_CACHE_HOME/ekdaa_cuda/<name>``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "ekdaa_cuda" / name


def _search_plan(name: str, root: str | os.PathLike | None) -> list[tuple[Path, str]]:
    """The folders to search for ``name``, in order, each with a note on where it came from."""
    plan = []
    bases = []
    if root is not None:
        bases.append((Path(root).expanduser(), "root argument"))
    if os.environ.get(ENV_VAR):
        bases.append((Path(os.environ[ENV_VAR]).expanduser(), f"${ENV_VAR}"))
    for base, origin in bases:
        plan.append((base, origin))
        plan.append((base / name, f"{origin}, subfolder"))
        plan.extend((base / sub, f"{origin}, torchvision layout") for sub in _TORCHVISION_SUBDIRS[name])
    cache = _cache_dir(name)
    plan.append((cache, "user cache"))
    plan.extend((cache / sub, "user cache, torchvision layout") for sub in _TORCHVISION_SUBDIRS[name])
    if name == "fashion-mnist":
        plan.append((DEBIAN_FASHION_MNIST_DIR, "Debian package dataset-fashion-mnist"))

    unique = {}
    for folder, origin in plan:
        unique.setdefault(folder, origin)
    return list(unique.items())


def _search(name: str, root: str | os.PathLike | None, split: str | None) -> Path | None:
    """The first folder of the search plan that holds ``split`` (or any split), else None."""
    splits = SPLITS if split is None else (split,)
    for folder, _ in _search_plan(name, root):
        if folder.is_dir() and any(_holds(name, folder, s) for s in splits):
            return folder
    return None


def _holds(name: str, folder: Path, split: str) -> bool:
    """Whether ``folder`` holds the files of ``split`` of dataset ``name``."""
    if name == "fashion-mnist":
        return all(_idx_path(folder, base) is not None for base in _FMNIST_FILES[split])
    if name == "cifar10":
        return _cifar_source(folder, split) is not None
    return (folder / _SVHN_FILES[split]).is_file()


def _requirement(name: str, split: str | None) -> str:
    """Describe the files a folder must hold for ``split`` (or any split) of ``name``."""
    splits = SPLITS if split is None else (split,)
    if name == "fashion-mnist":
        needs = " or ".join(" and ".join(_FMNIST_FILES[s]) for s in splits)
        return f"{needs} (each plain or .gz)"
    if name == "cifar10":
        batches = " or ".join("data_batch_1..data_batch_5" if s == "train" else _CIFAR_TEST_BATCH for s in splits)
        return (
            f"a {_CIFAR_FOLDER}/ folder with {batches} (or those files themselves), "
            f"or a {_CIFAR_ARCHIVE_PATTERN} archive"
        )
    return " or ".join(_SVHN_FILES[s] for s in splits)


def _not_found_message(name: str, root: str | os.PathLike | None, split: str | None, note: str | None = None) -> str:
    what = _DISPLAY_NAMES[name] + (f" ({split} split)" if split else "")
    searched = "\n".join(f"  - {folder}  ({origin})" for folder, origin in _search_plan(name, root))
    lines = [
        f"{what} was not found. Searched, in order:",
        searched,
        f"A folder is used if it holds {_requirement(name, split)}.",
    ]
    if note:
        lines.append(note)
    lines += [
        f"How to get the files: {_HOW_TO_GET[name]}",
        (
            f"Where to put them: {_cache_dir(name)}, or any folder passed as root=... or set as "
            f"${ENV_VAR} (the folder itself, or a parent holding a '{name}' subfolder)."
        ),
    ]
    return "\n".join(lines)


def _download(name: str, split: str) -> str:
    """Let torchvision download ``split`` of ``name`` into the user cache.

    Returns a sentence saying what happened, for the not-found message should the files still
    be missing afterwards. Never raises: a failed download falls through to that message.
    """
    try:
        tv_datasets = importlib.import_module("torchvision.datasets")
    except ImportError:
        return "torchvision is not installed, so no automatic download was tried."
    target = _cache_dir(name)
    # Best effort: any failure (network, HTTP, checksum, disk) ends up in the not-found message
    # instead of surfacing as an unrelated error.
    try:
        target.mkdir(parents=True, exist_ok=True)
        if name == "fashion-mnist":
            tv_datasets.FashionMNIST(str(target), train=split == "train", download=True)
        elif name == "cifar10":
            tv_datasets.CIFAR10(str(target), train=split == "train", download=True)
        else:
            tv_datasets.SVHN(str(target), split=split, download=True)
    except Exception as exc:
        return f"Downloading with torchvision into {target} failed: {type(exc).__name__}: {exc}"
    return f"torchvision's download into {target} finished, but the files were not found there."


# --------------------------------------------------------------------------------------------
# Fashion-MNIST (IDX files)


def _idx_path(folder: Path, base: str) -> Path | None:
    """The IDX file ``base`` in ``folder``, preferring the plain file to ``base.gz``."""
    for candidate in (folder / base, folder / f"{base}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _load_fashion_mnist(folder: Path, split: str, verify: bool) -> tuple[np.ndarray, np.ndarray]:
    images_name, labels_name = _FMNIST_FILES[split]
    images_path, labels_path = _idx_path(folder, images_name), _idx_path(folder, labels_name)
    images = _read_idx(images_path, images_name, ndim=3, verify=verify)
    labels = _read_idx(labels_path, labels_name, ndim=1, verify=verify)
    if images.shape[1:] != (28, 28):
        raise DataError(f"{images_path}: images are {images.shape[1:]}, expected (28, 28)")
    if len(images) != len(labels):
        raise DataError(f"{images_path} has {len(images)} images but {labels_path} has {len(labels)} labels")
    if labels.size and labels.max() > 9:
        raise DataError(f"{labels_path}: label {labels.max()} is out of range 0..9")
    return images[:, None], labels


def _read_idx(path: Path, base: str, ndim: int, verify: bool) -> np.ndarray:
    """Read an unsigned-byte IDX file with ``ndim`` dimensions (``base`` is its official name)."""
    stat = path.stat()
    content = path.read_bytes()
    if path.suffix == ".gz":
        try:
            content = gzip.decompress(content)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(f"{path}: not a valid gzip file ({exc})") from exc

    expected_magic = (_IDX_UBYTE << 8) | ndim
    if len(content) < 4:
        raise DataError(f"{path}: truncated, {len(content)} bytes is shorter than an IDX header")
    magic = int.from_bytes(content[:4], "big")
    if magic != expected_magic:
        raise DataError(
            f"{path}: wrong magic number 0x{magic:08x}, expected 0x{expected_magic:08x} "
            f"(an IDX file of unsigned bytes with {ndim} dimension{'s' * (ndim > 1)})"
        )
    header_size = 4 + 4 * ndim
    if len(content) < header_size:
        raise DataError(f"{path}: truncated, expected a {header_size}-byte header, got {len(content)} bytes")
    shape = tuple(int(d) for d in np.frombuffer(content, ">u4", count=ndim, offset=4))
    expected_size = header_size + int(np.prod(shape))
    if len(content) != expected_size:
        problem = "truncated" if len(content) < expected_size else "has trailing data"
        raise DataError(
            f"{path}: {problem}: header says shape {shape}, so expected {expected_size} bytes"
            f"{' after decompression' if path.suffix == '.gz' else ''}, got {len(content)}"
        )

    if verify:
        key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
        if key not in _SHA256_CACHE:
            _SHA256_CACHE[key] = hashlib.sha256(content).hexdigest()
        if _SHA256_CACHE[key] != FASHION_MNIST_SHA256[base]:
            raise DataError(
                f"{path}: SHA-256 of the content is {_SHA256_CACHE[key]}, expected "
                f"{FASHION_MNIST_SHA256[base]} for the official {base}; the file is corrupt or "
                "not the official one (pass verify=False to load custom files)"
            )
    return np.frombuffer(content, np.uint8, offset=header_size).reshape(shape)


# --------------------------------------------------------------------------------------------
# CIFAR-10 (python pickle batches, in a folder or a .tar.gz archive)


def _cifar_batch_names(names: set[str], split: str) -> list[str]:
    """The batch files of ``split`` among ``names``, in order."""
    wanted = _CIFAR_TRAIN_BATCHES if split == "train" else (_CIFAR_TEST_BATCH,)
    return [batch for batch in wanted if batch in names]


def _cifar_source(folder: Path, split: str) -> Path | None:
    """Where ``folder`` keeps ``split`` of CIFAR-10: a batches folder, an archive, or None.

    An extracted ``cifar-10-batches-py/`` (or ``folder`` itself holding the batches) wins over
    an archive; among archives the official ``cifar-10-python.tar.gz`` comes first.
    """
    for batches in (folder / _CIFAR_FOLDER, folder):
        if batches.is_dir() and _cifar_batch_names({p.name for p in batches.iterdir() if p.is_file()}, split):
            return batches
    archives = sorted(
        (p for p in folder.glob(_CIFAR_ARCHIVE_PATTERN) if p.is_file()),
        key=lambda p: (p.name != _CIFAR_ARCHIVE, p.name),
    )
    return archives[0] if archives else None


def _load_cifar10(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    source = _cifar_source(folder, split)
    if source.is_dir():
        names = _cifar_batch_names({p.name for p in source.iterdir() if p.is_file()}, split)
        raws = [(source / batch, (source / batch).read_bytes()) for batch in names]
    else:
        names, raws = _read_cifar_archive(source, split)

    batches = [_parse_cifar_batch(raw, where) for where, raw in raws]
    if split == "train" and len(names) < len(_CIFAR_TRAIN_BATCHES):
        count = sum(len(labels) for _, labels in batches)
        warnings.warn(
            f"{source}: found {len(names)} of {len(_CIFAR_TRAIN_BATCHES)} CIFAR-10 training "
            f"batches ({', '.join(names)}); the train split has {count} images, not 50000",
            stacklevel=3,
        )
    pixels = np.concatenate([p for p, _ in batches])
    labels = np.concatenate([lab for _, lab in batches])
    return pixels, labels


def _read_cifar_archive(archive: Path, split: str) -> tuple[list[str], list[tuple[str, bytes]]]:
    """Read the batch files of ``split`` from a CIFAR-10 ``.tar.gz`` without extracting it.

    Returns the batch names found and ``(description, raw bytes)`` for each.
    """
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = {PurePosixPath(m.name).name: m for m in tar.getmembers() if m.isfile()}
            names = _cifar_batch_names(set(members), split)
            raws = [(f"{archive}:{members[b].name}", tar.extractfile(members[b]).read()) for b in names]
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{archive}: not a readable .tar.gz archive ({exc})") from exc
    if not names:
        raise DataError(f"{archive}: the archive holds no {_requirement('cifar10', split)}")
    return names, raws


class _NdarrayToken:
    """Stands for ``numpy.ndarray`` inside a CIFAR-10 pickle. A batch only passes it to
    ``_reconstruct``; calling it (``ndarray(shape)``, which would allocate ``shape`` from a few
    bytes of file) is refused."""

    def __new__(cls, *args, **kwargs):
        raise pickle.UnpicklingError("refusing to call numpy.ndarray")


def _reconstruct(subtype, shape, dtype):
    """numpy's ``_reconstruct`` for plain arrays only. The shape is ignored: numpy writes (0,)
    and the array's real shape comes from ``__setstate__``, which checks it against the data."""
    if subtype is not _NdarrayToken:
        raise pickle.UnpicklingError(f"refusing to reconstruct {subtype!r}, only numpy.ndarray")
    return _numpy_reconstruct(np.ndarray, (0,), dtype)


def _bytes(*args):
    """``bytes()`` as protocol 2 uses it (``b""`` is written as ``bytes()``); ``bytes(n)`` would
    allocate n bytes from a few bytes of file, so only an empty or a bytes argument is allowed."""
    if not args:
        return b""
    if len(args) == 1 and isinstance(args[0], (bytes, bytearray)):
        return bytes(args[0])
    raise pickle.UnpicklingError("refusing bytes() with an argument other than bytes")


def _latin1_encode(text, encoding="latin1"):
    """``_codecs.encode(str, "latin1")``, how Python 3 writes bytes in protocol 2; other codecs refused."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"refusing _codecs.encode with codec {encoding!r}")
    return codecs.encode(text, encoding)


# The only globals a pickled CIFAR-10 batch refers to: what it takes to rebuild numpy arrays and
# bytes, in protocols 2 to 5 (protocol 5 arrays use _frombuffer over the file's own bytes).
_PICKLE_GLOBALS = {
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.numeric", "_frombuffer"): _numpy_frombuffer,
    ("numpy.core.numeric", "_frombuffer"): _numpy_frombuffer,
    ("numpy", "ndarray"): _NdarrayToken,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
    ("builtins", "bytes"): _bytes,
    ("__builtin__", "bytes"): _bytes,
}


class _ArrayUnpickler(pickle.Unpickler):
    """An unpickler that can only rebuild numpy arrays and bytes, so a crafted file cannot run code
    (nor make a few bytes of file allocate gigabytes)."""

    def find_class(self, module: str, name: str):
        try:
            return _PICKLE_GLOBALS[module, name]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}") from None


def _parse_cifar_batch(raw: bytes, where: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Decode one pickled CIFAR-10 batch into uint8 ``[N, 3, 32, 32]`` and labels ``[N]``."""
    try:
        batch = _ArrayUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as exc:  # a corrupt pickle can fail in many ways; all mean a bad file
        raise DataError(f"{where}: not a readable CIFAR-10 pickle batch ({type(exc).__name__}: {exc})") from exc
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise DataError(f"{where}: expected a dict with keys b'data' and b'labels'")

    data = batch[b"data"]
    if not isinstance(data, np.ndarray):
        raise DataError(f"{where}: b'data' is a {type(data).__name__}, expected a numpy array")
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(f"{where}: b'data' is {data.dtype} {data.shape}, expected uint8 (N, 3072)")
    raw_labels = batch[b"labels"]
    try:
        labels = np.asarray(raw_labels, dtype=np.int64 if isinstance(raw_labels, list) and not raw_labels else None)
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:  # ragged or odd values
        raise DataError(f"{where}: b'labels' is not an array of integers ({type(exc).__name__}: {exc})") from exc
    if labels.shape != (len(data),) or labels.dtype.kind not in "iu":
        raise DataError(
            f"{where}: b'labels' should be {len(data)} integers (one per image), got {labels.dtype} {labels.shape}"
        )
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DataError(f"{where}: labels range {labels.min()}..{labels.max()}, expected 0..9")
    return data.reshape(len(data), 3, 32, 32), labels


# --------------------------------------------------------------------------------------------
# SVHN (MATLAB v5 files)


# MAT v5 data types: code -> item size (miINT8 .. miUTF32; 14 miMATRIX and 15 miCOMPRESSED are containers)
_MI_SIZES = {1: 1, 2: 1, 3: 2, 4: 2, 5: 4, 6: 4, 7: 4, 9: 8, 12: 8, 13: 8, 16: 1, 17: 2, 18: 4}
_MI_NUMERIC = {1, 2, 3, 4, 5, 6, 7, 9, 12, 13}
_MX_NUMERIC = range(6, 16)  # mxDOUBLE_CLASS .. mxUINT64_CLASS; cells, structs, sparse, char... are not SVHN's
_MAT_HEADER_PEEK = 4096  # bytes of a compressed variable decompressed to check its header


def _check_mat5(raw: bytes, path: Path) -> None:
    """Check the structure of a MATLAB v5 file before scipy reads it: every variable must be a real
    numeric array whose element tags have known types and sizes that fit.

    scipy's reader trusts these tags: a file with an unknown data-type code (fuzzing found one, a
    249-byte file) makes ``scipy.io.loadmat`` read out of bounds and crash the interpreter with a
    segmentation fault (scipy 1.17). This check reads only the tags (the first few kB of each
    compressed variable), not the arrays.
    """
    def fail(why: str):
        raise DataError(f"{path}: not a readable MATLAB file for SVHN ({why})")

    if len(raw) < 128 or raw[:4] == b"\0\0\0\0":
        fail("no MATLAB 5 header (MATLAB v4 files are not supported)")
    endian = {b"IM": "<", b"MI": ">"}.get(raw[126:128])
    if endian is None or int.from_bytes(raw[124:126], "little" if endian == "<" else "big") != 0x0100:
        fail("the header's version / byte-order mark is not MATLAB 5's (v7.3 HDF5 files are not supported)")

    def tag(buf: bytes, off: int, end: int) -> tuple[int, int, int]:
        """(type, nbytes, data offset) of the element at ``off``; small elements pack into 8 bytes."""
        if off + 8 > end:
            fail(f"an element tag at byte {off} runs past the end of its container")
        word, nbytes = struct.unpack_from(endian + "II", buf, off)
        if word >> 16:  # small data element: nbytes in the high half, data in the next 4 bytes
            return word & 0xFFFF, word >> 16, off + 4
        return word, nbytes, off + 8

    def check_matrix(buf: bytes, off: int, end: int, where: str, complete: bool) -> None:
        """The miMATRIX body in buf[off:end]: flags, dims, name, real part. ``complete`` is False
        for the peeked prefix of a compressed variable (its data may lie beyond ``end``)."""
        kind, n, data = tag(buf, off, end)
        if kind != 6 or n != 8 or data + 8 > end:
            fail(f"{where}: bad array-flags element")
        flags = struct.unpack_from(endian + "I", buf, data)[0]
        mx_class, complex_ = flags & 0xFF, flags & 0x800
        if mx_class not in _MX_NUMERIC:
            fail(f"{where}: MATLAB class {mx_class} is not a numeric array")
        if complex_:
            fail(f"{where}: complex arrays are not supported")
        off = data + 8
        kind, n, data = tag(buf, off, end)
        if kind != 5 or n < 8 or n % 4 or data + n > end:
            fail(f"{where}: bad dimensions element")
        dims = struct.unpack_from(endian + f"{n // 4}i", buf, data)
        if min(dims) < 0:
            fail(f"{where}: negative dimension in {dims}")
        off = data + (n + 7) // 8 * 8 if data == off + 8 else off + 8
        kind, n, data = tag(buf, off, end)
        if kind != 1 or data + n > end:
            fail(f"{where}: bad name element")
        off = data + (n + 7) // 8 * 8 if data == off + 8 else off + 8
        kind, n, data = tag(buf, off, end)
        if kind not in _MI_NUMERIC:
            fail(f"{where}: unknown data type code {kind}")
        if n != math.prod(dims) * _MI_SIZES[kind]:
            fail(f"{where}: {n} bytes of data for dimensions {dims}")
        if complete and data + n > end:
            fail(f"{where}: the data runs past the end of the variable")

    off = 128
    while off < len(raw):
        kind, n, data = tag(raw, off, len(raw))
        where = f"variable at byte {off}"
        if data + n > len(raw):
            fail(f"{where}: {n} bytes declared, the file ends {len(raw) - data} bytes later (truncated?)")
        if kind == 14:
            check_matrix(raw, data, data + n, where, complete=True)
            off = data + (n + 7) // 8 * 8
        elif kind == 15:
            try:
                head = zlib.decompressobj().decompress(raw[data:data + n], _MAT_HEADER_PEEK)
            except zlib.error as exc:
                fail(f"{where}: corrupt compressed data ({exc})")
            inner, inner_n, inner_data = tag(head, 0, len(head))
            if inner != 14:
                fail(f"{where}: a compressed element holds type {inner}, not a matrix")
            check_matrix(head, inner_data, min(inner_data + inner_n, len(head)), where,
                         complete=inner_data + inner_n <= len(head))
            off = data + n
        else:
            fail(f"{where}: element type {kind} at the top level (expected a matrix)")


def _load_svhn(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    import scipy.io  # only SVHN needs it

    path = folder / _SVHN_FILES[split]
    raw = path.read_bytes()
    _check_mat5(raw, path)
    try:
        mat = scipy.io.loadmat(io.BytesIO(raw))
    except Exception as exc:  # scipy reports malformed files with many exception types
        raise DataError(f"{path}: not a readable MATLAB file ({type(exc).__name__}: {exc})") from exc
    if "X" not in mat or "y" not in mat:
        raise DataError(
            f"{path}: expected variables 'X' and 'y', found {sorted(k for k in mat if not k.startswith('__'))}"
        )

    images, labels = mat["X"], mat["y"]
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[:3] != (32, 32, 3):
        raise DataError(f"{path}: X is {images.dtype} {images.shape}, expected uint8 (32, 32, 3, N)")
    count = images.shape[3]
    if labels.dtype.kind not in "iu" or labels.shape not in ((count, 1), (count,)):
        raise DataError(f"{path}: y is {labels.dtype} {labels.shape}, expected {count} integer labels (N, 1)")
    labels = labels.reshape(-1)
    if labels.size and (labels.min() < 1 or labels.max() > 10):
        raise DataError(f"{path}: labels range {labels.min()}..{labels.max()}, expected 1..10 (10 is digit 0)")
    return images.transpose(3, 2, 0, 1), labels % 10

"""The training loop behind ``ekdaa_cuda.train`` and ``ekdaa-cuda train``.

Each epoch visits the training set in a permutation drawn from (seed, epoch), so a run
resumed from a checkpoint continues exactly where it stopped: the checkpoint holds the
parameters, the optimizer state, the step count, the epoch, the position inside the
epoch and the history so far. Checkpoints and metrics are written atomically (temporary
file, fsync, rename), and a step whose update is not finite stops training with
``TrainingDiverged`` while the last good checkpoint stays on disk.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import platform
import signal
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .layers import PRESETS
from .model import OPTION_RANGES, Model, build_model, check_range

CHECKPOINT = "checkpoint.npz"
METRICS = "metrics.json"
METRICS_CSV = "metrics.csv"
CURVES = "curves.png"
SAFETENSORS = "checkpoint.safetensors"  # the parameters alone, beside the .npz (optional package)
RUN_FILES = (CHECKPOINT, SAFETENSORS, METRICS, METRICS_CSV, CURVES)  # what a run writes in its out_dir
CSV_FIELDS = ("epoch", "step", "train_loss", "train_accuracy", "test_loss", "test_accuracy", "seconds")
SCHEDULES = ("constant", "cosine", "warmup-cosine")
# "warmup-cosine" rises linearly over this fraction of all updates (one epoch of 20) before its cosine
# decay: the common remedy for Adam's large first steps, while its second-moment estimate is young.
WARMUP_FRACTION = 0.05
# train()'s keywords that are model options (ekdaa_cuda.model.DEFAULT_OPTIONS, plus dropout and widths)
MODEL_OPTIONS = ("lr", "optimizer", "momentum", "beta1", "beta2", "eps", "decay", "rho", "weight_decay", "beta",
                 "gamma", "activation", "dropout", "dropout_conv", "dropout_fc", "bias", "init", "error_init", "unpool",
                 "normalize", "variant", "dtype", "kp_decay", "widths", "layer_lr")
# BLAS threads of the host arithmetic when train(threads=None): measured on the 2-core development
# machine under load (README "Performance"), one thread was faster than two.
DEFAULT_THREADS = 1
# The loss is read back every CHECK_EVERY updates; a mean cross-entropy over that window above
# LOSS_BOUND_FACTOR·ln(K) (K classes; ln K is what uniform guessing scores, 2.3 for 10 classes) stops
# the run: at 10·ln K the true class gets on average a probability below K^-10, which no healthy run
# reaches even on its first updates.
CHECK_EVERY = 20
LOSS_BOUND_FACTOR = 10.0


def lr_scale(schedule: str, step: int, total_steps: int) -> float:
    """Learning-rate multiplier at update ``step`` (0-based) of ``total_steps``: 1 ("constant");
    0.5·(1 + cos(π·step/total)) ("cosine", from 1 at the first update towards 0 at the last);
    "warmup-cosine": (step + 1)/w over the first w = ⌈WARMUP_FRACTION·total⌉ updates, then the cosine
    over the remaining ones, from 1 towards 0."""
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * step / total_steps))
    if schedule == "warmup-cosine":
        warmup = math.ceil(WARMUP_FRACTION * total_steps)
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / max(total_steps - warmup, 1)))
    return 1.0


def target_step(beta: float, beta_end: float, step: int, total_steps: int) -> float:
    """EKDAA's β (the step of the target y = φ(h − βd)) at update ``step`` (0-based) of ``total_steps``
    under ``train(beta_end=...)``: linear from ``beta`` at the first update to ``beta_end`` at the last."""
    return beta + (beta_end - beta) * (step / max(total_steps - 1, 1))


class TrainingDiverged(RuntimeError):
    """The loss or an update became NaN/inf, or the loss passed the bound; ``checkpoint`` is the path
    of the last good checkpoint on disk, or None."""

    checkpoint: str | None = None


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped training after a complete batch; ``checkpoint`` is where the run was saved
    (None without out_dir)."""

    checkpoint: str | None = None


@dataclass
class TrainResult:
    """Outcome of ``train``. ``seconds``: training time of the whole run, summed over the processes of a
    resumed run (as the history's per-epoch ``seconds``); ``images_per_second``: this process's rate."""

    test_accuracy: float
    test_loss: float
    train_accuracy: float
    history: list = field(default_factory=list)
    seconds: float = 0.0
    images_per_second: float = 0.0
    steps: int = 0
    out_dir: str | None = None
    model: Model | None = field(default=None, repr=False)
    backend: str = ""

    def summary(self) -> str:
        return (f"test accuracy {100 * self.test_accuracy:.2f}%  (loss {self.test_loss:.4f}), "
                f"train accuracy {100 * self.train_accuracy:.2f}%, {self.steps} updates in {self.seconds:.1f} s "
                f"({self.images_per_second:.0f} images/s)")


def atomic_write_bytes(path: Path, write) -> None:
    """Write via ``write(file)`` to a temporary file beside ``path``, fsync, then rename over it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp creates 0600; give the file the usual permissions
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_bytes(path, lambda f: f.write((json.dumps(obj, indent=2) + "\n").encode()))


def save_checkpoint(path: Path, model: Model, state: dict) -> None:
    """Write the checkpoint ``path`` (.npz, atomically); with the optional ``safetensors`` package
    also the parameters alone as ``<path stem>.safetensors`` beside it, for other tools. The .npz
    is the source of truth: the .safetensors file is written after it (so after a crash it can be
    one checkpoint older; its metadata ``step_count`` says which step it holds)."""
    arrays = model.checkpoint_arrays()
    arrays["train_state_json"] = np.array(json.dumps(state))
    atomic_write_bytes(path, lambda f: np.savez(f, **arrays))
    from .export import safetensors_available, save_safetensors

    if safetensors_available():
        save_safetensors(model, Path(path).with_suffix(".safetensors"), {"step_count": model.step_count})


_STATE_FIELDS = {"run_args": dict, "epoch": int, "position": int, "history": list}


def load_checkpoint(path: Path) -> tuple[dict, dict]:
    """(arrays, training state) from a checkpoint file; ValueError naming the file and the problem
    if it is unreadable, truncated or incomplete. The file is only read."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        if "train_state_json" not in arrays:
            raise ValueError("it has no train_state_json entry")
        state = json.loads(str(arrays.pop("train_state_json")))
        if not isinstance(state, dict):
            raise ValueError("train_state_json is not a JSON object")
        for key, kind in _STATE_FIELDS.items():
            if not isinstance(state.get(key), kind) or isinstance(state.get(key), bool):
                raise ValueError(f"train_state_json has no valid {key!r} ({kind.__name__})")
        if state["epoch"] < 0 or state["position"] < 0:
            raise ValueError(f"train_state_json has a negative epoch/position ({state['epoch']}, {state['position']})")
        partial = state.get("partial")
        if partial is not None and not (isinstance(partial, list) and len(partial) == 3
                                        and all(isinstance(v, (int, float)) for v in partial)):
            raise ValueError(f"train_state_json has a malformed 'partial' entry {partial!r}")
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except Exception as exc:  # zipfile / npy format / json / memory errors: a damaged file
        raise ValueError(f"checkpoint {path} is unreadable or incomplete: {type(exc).__name__}: {exc}") from exc
    return arrays, state


def _load_data(dataset: str, split: str, data_root, limit):
    from .data import load_dataset

    return load_dataset(dataset, split=split, root=data_root, limit=limit)


def _check_count(name: str, value, minimum: int, optional: bool = False) -> None:
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}{' or None' if optional else ''}, got {value!r}")


@contextmanager
def blas_threads(threads: int | None):
    """Limit the BLAS library NumPy uses to ``threads`` threads inside the block (None: DEFAULT_THREADS)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=DEFAULT_THREADS if threads is None else int(threads), user_api="blas"):
        yield


def _blas_description() -> str:
    from threadpoolctl import threadpool_info

    libs = [i for i in threadpool_info() if i.get("user_api") == "blas"]
    return ", ".join(f"{i.get('internal_api')} {i.get('version')}" for i in libs) or "unknown"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_environment(backend, threads: int) -> dict:
    """What a run actually used: the backend's name (never "auto"), the device and library versions."""
    from . import __version__
    from ._device import cuda_status

    versions = {"ekdaa_cuda": __version__, "python": platform.python_version(), "numpy": np.__version__,
                "blas": _blas_description()}
    if backend.name == "cuda":
        device = cuda_status().removeprefix("ok: ")
        try:
            import cupy

            from . import _C

            versions["cupy"] = cupy.__version__
            versions["cuda_runtime"] = _C.runtime_version()
            versions["cuda_driver"] = _C.driver_version()
        except Exception as exc:  # pragma: no cover - only on a GPU machine
            versions["cuda"] = f"unknown ({exc})"
    else:
        device = f"CPU: {_cpu_name()}, {os.cpu_count()} logical CPUs, {threads} BLAS thread(s)"
    return {"backend": backend.name, "device": device, "threads": threads, "host": platform.node(),
            "versions": versions}


@contextmanager
def _deferred_sigint(log):
    """Inside the block the first SIGINT (Ctrl-C) only sets ``flag["set"]``, so the loop can stop at
    a consistent point and checkpoint; a second one raises KeyboardInterrupt at once. Outside the
    main thread, or when someone else handles SIGINT, nothing changes."""
    flag = {"set": False}
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield flag
        return

    def handler(signum, frame):
        if flag["set"]:
            raise KeyboardInterrupt
        flag["set"] = True
        log("interrupt received: stopping after this batch and writing a checkpoint (Ctrl-C again to stop at once)")

    signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _write_metrics(out: Path, run: dict, environment: dict, history: list) -> None:
    atomic_write_json(out / METRICS, {"run": run, "environment": environment, "history": history})
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    atomic_write_bytes(out / METRICS_CSV, lambda f: f.write(buf.getvalue().encode()))


def train(preset: str = "fmnist", rule: str = "ekdaa", backend: str = "auto", epochs: int = 10,
          batch_size: int = 50, train_limit: int | None = None, test_limit: int | None = None, seed: int = 0,
          dataset: str | None = None, data_root=None, out_dir=None, resume: bool = False,
          checkpoint_every: int = 0, progress: bool = True, data=None, log=None, schedule: str = "constant", *,
          beta_end: float | None = None, overwrite: bool = False, threads: int | None = None, plot: bool = True,
          lr: float | None = None, optimizer: str | None = None, momentum: float | None = None,
          beta1: float | None = None, beta2: float | None = None, eps: float | None = None,
          decay: float | None = None, rho: float | None = None, weight_decay: float | None = None,
          beta: float | None = None, gamma: float | None = None, activation: str | None = None,
          dropout: float | None = None, dropout_conv: float | None = None, dropout_fc: float | None = None,
          bias: bool | None = None, init: str | None = None, error_init: str | None = None,
          unpool: str | None = None, normalize: str | None = None, variant: str | None = None,
          dtype: str | None = None, kp_decay: float | None = None, widths=None, layer_lr: dict | None = None
          ) -> TrainResult:
    """Train a preset on its dataset and evaluate on the test split after every epoch.

    Run
        preset: "fmnist", "cifar", "svhn" (the paper's CNNs) or "fmnist-fc", "cifar-fc", "svhn-fc".
        rule: learning rule, one of ``ekdaa_cuda.RULES`` ("ekdaa", "bp", "fa", "kp", ...).
        backend: "auto" (CUDA when usable, else NumPy), "numpy" or "cuda".
        epochs: total epochs (a resumed run continues up to this number). batch_size: images per update.
        train_limit, test_limit: use only the first N images of each split (None: all).
        seed: initial weights, batch order and dropout masks all derive from it.
        dataset: the dataset to read (None: the preset's); data_root: the folder holding its files
            (None: ``$EKDAA_DATA``, then the cache and system folders of ``ekdaa_cuda.data``).
        data: ``(x_train, y_train, x_test, y_test)`` arrays instead of reading ``dataset``.
        schedule: "constant", "cosine" (learning rate × 0.5·(1 + cos(π·step/total)) over all updates) or
            "warmup-cosine" (a linear rise over the first 5% of the updates, then the cosine; ``lr_scale``).
        beta_end: None keeps EKDAA's β (option ``beta``) fixed; a number >= 0 moves it linearly from
            ``beta`` at the first update to ``beta_end`` at the last (``target_step``), e.g. 0 for a β that
            falls to 0 over the run (``ekdaa-signum-release-beta-decay``; with ``layer_lr={"conv1": 0.1, "fc1": 2}``
            the best signum setting found, ``ekdaa-signum-release-fc1-fast``).
        threads: BLAS threads for the host arithmetic (None: ``DEFAULT_THREADS`` = 1, the fastest
            setting measured on a busy 2-core machine; see the README).
        progress: show a progress bar; log: a function receiving one line per epoch and notices.

    Output (with ``out_dir``)
        Writes ``checkpoint.npz`` after every epoch (and every ``checkpoint_every`` updates if > 0),
        ``metrics.json`` (settings, backend, device, versions and per-epoch history), ``metrics.csv``
        and, if ``plot`` and matplotlib is installed, ``curves.png``; every file atomically.
        A folder that already holds a run is refused unless ``resume=True`` (continue it exactly
        from its checkpoint) or ``overwrite=True`` (delete that run's files and start again).

    Model options (None: the default of ``ekdaa_cuda.model.DEFAULT_OPTIONS``, shown in brackets)
        lr [5e-4] > 0, optimizer ["sgd"; "adam", "rmsprop"], momentum [0.9], beta1 [0.9], beta2 [0.999],
        decay [0.9] (RMSprop) all in [0, 1), eps [1e-8] > 0, rho [0] >= 0 (Pascanu rescaling, 0 = off),
        weight_decay [0] >= 0 (decoupled: p ← p − lr·wd·p after each step, on every tensor the rule updates,
        as AdamW / SGDW; 0 = off), beta [0.9] >= 0 and gamma [0.1] >= 0 (EKDAA's target step and
        error-kernel scale), activation ["tanh"], dropout (sets dropout_conv and dropout_fc) [0] in [0, 1),
        bias [False], init ["glorot_uniform"], error_init ["glorot_uniform"], unpool ["argmax"], normalize
        ["none"; "release", "rms"], variant ["paper"; "release" switches the last three to "forward",
        "bilinear", "release"], dtype ["float32"], kp_decay [0] (rule "kp"), widths (the preset's conv/FC
        sizes, positive ints, in order), layer_lr [None] ({layer name: factor >= 0}: that layer's tensors step
        by lr × factor, e.g. {"conv1": 0.1}; 0 freezes a layer; the names are the model's, conv1 ... out).

    Stops with ``TrainingDiverged`` when an update or the loss is not finite, or when the mean
    training loss over a check window (``CHECK_EVERY`` updates) exceeds ``LOSS_BOUND_FACTOR``·ln(K)
    for K classes; the message names the last checkpoint on disk, if any. Ctrl-C stops after the
    current batch, writes a checkpoint and raises ``TrainingInterrupted`` (a KeyboardInterrupt).
    """
    given = locals()
    options = {k: given[k] for k in MODEL_OPTIONS if given[k] is not None}
    _check_count("epochs", epochs, 1)
    _check_count("batch_size", batch_size, 1)
    _check_count("train_limit", train_limit, 1, optional=True)
    _check_count("test_limit", test_limit, 1, optional=True)
    _check_count("seed", seed, 0)
    _check_count("checkpoint_every", checkpoint_every, 0)
    _check_count("threads", threads, 1, optional=True)
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}")
    if beta_end is not None:
        check_range("beta_end", beta_end, *OPTION_RANGES["beta"])
    if resume and out_dir is None:
        raise ValueError("resume=True needs out_dir (where the checkpoint is)")
    if resume and overwrite:
        raise ValueError("resume=True continues the run in out_dir and overwrite=True replaces it: choose one")
    out = Path(out_dir) if out_dir is not None else None
    existing = [n for n in RUN_FILES if (out / n).exists()] if out is not None else []
    if existing and not (resume or overwrite):
        raise FileExistsError(f"{out} already holds a run ({', '.join(existing)}): pass resume=True (CLI --resume) "
                              "to continue it, overwrite=True (--overwrite) to replace it, or choose another folder")
    log = log or (lambda msg: None)
    threads = DEFAULT_THREADS if threads is None else int(threads)
    run_args = {"preset": preset, "rule": rule, "backend": getattr(backend, "name", backend), "batch_size": batch_size,
                "train_limit": train_limit, "test_limit": test_limit, "seed": seed,
                "dataset": dataset or PRESETS[preset]["dataset"], "schedule": schedule, "options": options}
    if beta_end is not None:  # only then: checkpoints written before the option existed still resume
        run_args["beta_end"] = beta_end

    model = build_model(preset, rule=rule, backend=backend, seed=seed, **options)  # validates every option
    beta_start = model.opts["beta"]
    if data is None:
        x_train, y_train = _load_data(run_args["dataset"], "train", data_root, train_limit)
        x_test, y_test = _load_data(run_args["dataset"], "test", data_root, test_limit)
    else:
        x_train, y_train, x_test, y_test = data
    be = model.backend
    # validated once, then resident in the backend's memory (the GPU for backend="cuda")
    n_train = len(x_train)
    x_train = be.input(model.check_input(x_train, "train"))
    y_train = be.labels(model.check_labels(y_train, n_train, "train"))
    x_test = be.input(model.check_input(x_test, "test"))
    y_test = be.labels(model.check_labels(y_test, len(x_test), "test"))

    history: list[dict] = []
    epoch, position = 0, 0
    partial = None  # (loss sum, correct, seen) of an epoch resumed mid-way
    saved = None  # (epoch, position) of the checkpoint on disk written by this run or resumed from
    seconds_before = 0.0  # training seconds of the earlier processes of a resumed run
    if resume:
        ckpt = out / CHECKPOINT
        if not ckpt.exists():
            raise FileNotFoundError(f"resume: no checkpoint at {ckpt}")
        arrays, state = load_checkpoint(ckpt)
        if state["run_args"] != json.loads(json.dumps(run_args)):
            raise ValueError(f"resume: {ckpt} was written by a run with different settings:\n"
                             f"  checkpoint: {state['run_args']}\n  now:        {run_args}")
        try:
            model.load_checkpoint_arrays(arrays)
        except ValueError as exc:
            raise ValueError(f"resume: checkpoint {ckpt} does not fit this model: {exc}") from exc
        epoch, position, history = state["epoch"], state["position"], state["history"]
        partial = state.get("partial")
        # checkpoints written before "seconds" was stored: the time up to the last finished epoch
        seconds_before = float(state.get("seconds", history[-1]["seconds"] if history else 0.0))
        saved = (epoch, position)
        log(f"resumed from {ckpt} at epoch {epoch + 1}, batch {position}, step {model.step_count}")
    elif existing:  # overwrite=True: the old run's files go only now that the new run is known to start
        for name in existing:
            (out / name).unlink()
        log(f"overwrite: removed {', '.join(existing)} of the previous run in {out}")

    environment = run_environment(be, threads)
    metrics_run = {**run_args, "backend": be.name, "backend_requested": run_args["backend"]}
    loss_bound = LOSS_BOUND_FACTOR * math.log(model.classes)
    if resume:
        # metrics follow the checkpoint: a kill between the two writes (or a resume of a run that
        # had already finished) would otherwise leave them an epoch behind for good
        _write_metrics(out, metrics_run, environment, history)

    def where_saved() -> str:
        if out is None:
            return "no checkpoint (no out_dir)"
        if saved is None or not (out / CHECKPOINT).exists():
            return f"no checkpoint was written yet in {out} (one is written after every epoch)"
        e, pos = saved
        at = f"after epoch {e}" if pos == 0 else f"epoch {e + 1}, batch {pos}"
        return f"last good checkpoint: {out / CHECKPOINT} ({at})"

    def diverged(at: str, why: str) -> TrainingDiverged:
        exc = TrainingDiverged(f"training diverged at {at}: {why}; {where_saved()}")
        exc.checkpoint = str(out / CHECKPOINT) if saved is not None else None
        return exc

    def check_updates(at: str) -> None:
        bad = model.nonfinite_updates()  # the optimizer kernel's device flags: one read, no per-step test
        if bad:
            raise diverged(at, f"the update of {', '.join(bad)} is not finite")

    def checkpoint(epoch_done: int, pos: int, totals=None) -> None:
        nonlocal saved
        if out is not None:
            check_updates(f"epoch {epoch_done + 1}")
            if not be.all_finite(model.params.values()):  # never write a bad model over a good one
                raise diverged(f"epoch {epoch_done + 1}", "a parameter is not finite")
            save_checkpoint(out / CHECKPOINT, model, {"run_args": run_args, "epoch": epoch_done, "position": pos,
                                                      "partial": totals, "history": history,
                                                      "seconds": elapsed()})
            saved = (epoch_done, pos)

    def interrupted(at: str) -> TrainingInterrupted:
        if out is None:
            exc = TrainingInterrupted(f"interrupted at {at}; nothing saved (no out_dir)")
        else:
            exc = TrainingInterrupted(f"interrupted at {at}; checkpoint written to {out / CHECKPOINT}")
        exc.checkpoint = str(out / CHECKPOINT) if out is not None else None
        return exc

    # The NumPy backend tests every update before applying it (the model stays unchanged on a bad
    # step); on the GPU that test would synchronise every step, so there the optimizer kernel flags
    # a non-finite update or parameter on the device, and the flags and the running loss (which
    # turns non-finite with the first bad update) are read back every CHECK_EVERY updates, before
    # each checkpoint and at the end of each epoch. The same reads test the loss bound.
    check_each_step = be.name == "numpy"
    n_batches = -(-n_train // batch_size)
    t_start = time.perf_counter()
    images = 0
    warned_plot, plot_seconds = False, 0.0

    def elapsed() -> float:
        """Training seconds of the whole run, over all the processes of a resumed one (plots left out)."""
        return seconds_before + time.perf_counter() - t_start - plot_seconds

    window = [0.0, 0]  # the loss sum and the images seen at the epoch's last loss check

    def check_loss(at: str, loss_sum, correct, seen: int, bar) -> None:
        total = float(loss_sum)  # with the flags below, the only host synchronisation inside an epoch on the GPU
        try:
            check_updates(at)
        except TrainingDiverged:
            bar.close()
            raise
        if not math.isfinite(total):
            bar.close()
            raise diverged(at, "the training loss is not finite")
        if seen > window[1]:
            mean = (total - window[0]) / (seen - window[1])
            if mean > loss_bound:
                bar.close()
                raise diverged(at, f"the mean training loss over the last {seen - window[1]} images is {mean:.1f}, "
                                   f"above the bound {LOSS_BOUND_FACTOR:g}·ln({model.classes}) = {loss_bound:.1f} "
                                   f"(guessing uniformly scores {math.log(model.classes):.2f})")
        window[:] = [total, seen]
        bar.set_postfix(loss=f"{total / seen:.4f}", acc=f"{float(correct) / seen:.4f}")

    with blas_threads(threads), _deferred_sigint(log) as stop:
        while epoch < epochs:
            if stop["set"]:  # Ctrl-C during the evaluation: the epoch's checkpoint is already written
                raise interrupted(f"the end of epoch {epoch}")
            # the permutation comes from (seed, epoch) on the host, so every backend sees the same batches
            order = be.indices(np.random.default_rng([seed, epoch]).permutation(n_train))
            bar = _progress(n_batches, position, f"epoch {epoch + 1}/{epochs}", progress)
            loss_sum, correct, seen = partial or (0.0, 0, 0)
            window[:] = [float(loss_sum), seen]
            partial = None

            for b in range(position, n_batches):
                idx = order[b * batch_size:(b + 1) * batch_size]
                step, total = epoch * n_batches + b, epochs * n_batches
                try:
                    scale = lr_scale(schedule, step, total)
                    if beta_end is not None:
                        model.opts["beta"] = target_step(beta_start, beta_end, step, total)
                    batch_loss, batch_correct = model.step_arrays(x_train[idx], y_train[idx], scale,
                                                                  check_finite=check_each_step)
                except FloatingPointError as exc:
                    bar.close()
                    raise diverged(f"epoch {epoch + 1}, batch {b}", str(exc)) from exc
                loss_sum, correct, seen = loss_sum + batch_loss, correct + batch_correct, seen + len(idx)
                images += len(idx)
                bar.update(1)
                last = b + 1 == n_batches
                periodic = checkpoint_every and model.step_count % checkpoint_every == 0 and not last
                if (b + 1) % CHECK_EVERY == 0 or last or periodic or stop["set"]:
                    check_loss(f"epoch {epoch + 1}, by batch {b}", loss_sum, correct, seen, bar)
                if periodic or (stop["set"] and out is not None):
                    checkpoint(epoch, b + 1, (float(loss_sum), int(correct), seen))
                if stop["set"]:
                    bar.close()
                    raise interrupted(f"epoch {epoch + 1}, batch {b + 1} of {n_batches} (step {model.step_count})")
            bar.close()
            check_updates(f"epoch {epoch + 1}")
            if not math.isfinite(float(loss_sum)):
                raise diverged(f"epoch {epoch + 1}", "the training loss is not finite")
            test = model.evaluate_arrays(x_test, y_test)
            record = {"epoch": epoch + 1, "step": model.step_count, "train_loss": float(loss_sum) / seen,
                      "train_accuracy": int(correct) / seen, "test_loss": test["loss"],
                      "test_accuracy": test["accuracy"], "seconds": elapsed()}
            history.append(record)
            log(f"epoch {epoch + 1}/{epochs}: train loss {record['train_loss']:.4f} acc "
                f"{record['train_accuracy']:.4f} | test loss {record['test_loss']:.4f} "
                f"acc {record['test_accuracy']:.4f}")
            epoch, position = epoch + 1, 0
            checkpoint(epoch, 0)
            if out is not None:
                _write_metrics(out, metrics_run, environment, history)
                if plot:  # drawing is not training: its time is left out of the timings
                    t_plot = time.perf_counter()
                    warned_plot = _write_curves(out / CURVES, history, f"{preset}, rule {rule}", log, warned_plot)
                    plot_seconds += time.perf_counter() - t_plot

    seconds = elapsed()
    own_seconds = seconds - seconds_before  # this process's share, for the image rate
    last = history[-1]
    return TrainResult(test_accuracy=last["test_accuracy"], test_loss=last["test_loss"],
                       train_accuracy=last["train_accuracy"], history=history, seconds=seconds,
                       images_per_second=images / own_seconds if own_seconds > 0 else 0.0, steps=model.step_count,
                       out_dir=str(out) if out is not None else None, model=model, backend=be.name)


def _write_curves(path: Path, history: list, title: str, log, warned: bool) -> bool:
    """Draw the run's learning curves; without matplotlib say so once. Returns whether it has said so."""
    try:
        from .plots import run_curves

        run_curves(history, path, title)
    except ImportError as exc:
        if not warned:
            log(f"note: {path.name} not written: {exc}")
        return True
    return warned


class _NoBar:
    visible = False

    def update(self, n):
        pass

    def set_postfix(self, **kw):
        pass

    def close(self):
        pass


def _progress(total: int, initial: int, desc: str, enabled: bool):
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    bar = tqdm(total=total, initial=initial, desc=desc, unit="batch", mininterval=0.5, leave=False)
    bar.visible = True
    return bar

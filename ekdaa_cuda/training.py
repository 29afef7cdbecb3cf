"""The training loop behind ``ekdaa_cuda.train`` and ``ekdaa-cuda train``.

Each epoch visits the training set in a permutation drawn from (seed, epoch), so a run
resumed from a checkpoint continues exactly where it stopped: the checkpoint holds the
parameters, the optimizer state, the step count, the epoch, the position inside the
epoch and the history so far. Checkpoints and metrics are written atomically (temporary
file, fsync, rename), and a step whose update is not finite stops training with
``TrainingDiverged`` while the last good checkpoint stays on disk.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .layers import PRESETS
from .model import Model, build_model

CHECKPOINT = "checkpoint.npz"
METRICS = "metrics.json"
SCHEDULES = ("constant", "cosine")


def lr_scale(schedule: str, step: int, total_steps: int) -> float:
    """Learning-rate multiplier at a step: 1 ("constant") or 0.5·(1 + cos(π·step/total)) ("cosine",
    from 1 at the first update towards 0 at the last)."""
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * step / total_steps))
    return 1.0


class TrainingDiverged(RuntimeError):
    """A step produced NaN or inf; the model and the last checkpoint are unchanged."""


@dataclass
class TrainResult:
    test_accuracy: float
    test_loss: float
    train_accuracy: float
    history: list = field(default_factory=list)
    seconds: float = 0.0
    images_per_second: float = 0.0
    steps: int = 0
    out_dir: str | None = None
    model: Model | None = field(default=None, repr=False)

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


SAFETENSORS = "checkpoint.safetensors"


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


def train(preset: str = "fmnist", rule: str = "ekdaa", backend: str = "auto", epochs: int = 10,
          batch_size: int = 50, train_limit: int | None = None, test_limit: int | None = None, seed: int = 0,
          dataset: str | None = None, data_root=None, out_dir=None, resume: bool = False,
          checkpoint_every: int = 0, progress: bool = True, data=None, log=None, schedule: str = "constant",
          **options) -> TrainResult:
    """Train a preset on its dataset and evaluate on the test split after every epoch.

    ``options`` are model options (see ``build_model``): lr, optimizer, momentum, beta, gamma,
    activation, dropout, rho, variant, dtype, ... ``data`` may supply ``(x_train, y_train,
    x_test, y_test)`` arrays instead of reading ``dataset``. With ``out_dir`` the run writes
    ``metrics.json`` and ``checkpoint.npz`` there (every epoch, and every ``checkpoint_every``
    steps if > 0); ``resume=True`` continues from that checkpoint. ``schedule`` ("constant" or
    "cosine") scales the learning rate per update over the ``epochs`` requested.
    """
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive int, got {epochs!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}")
    if resume and out_dir is None:
        raise ValueError("resume=True needs out_dir (where the checkpoint is)")
    log = log or (lambda msg: None)
    run_args = {"preset": preset, "rule": rule, "backend": getattr(backend, "name", backend), "batch_size": batch_size,
                "train_limit": train_limit, "test_limit": test_limit, "seed": seed,
                "dataset": dataset or PRESETS[preset]["dataset"], "schedule": schedule, "options": options}

    if data is None:
        x_train, y_train = _load_data(run_args["dataset"], "train", data_root, train_limit)
        x_test, y_test = _load_data(run_args["dataset"], "test", data_root, test_limit)
    else:
        x_train, y_train, x_test, y_test = data
    model = build_model(preset, rule=rule, backend=backend, seed=seed, **options)
    be = model.backend
    # validated once, then resident in the backend's memory (the GPU for backend="cuda")
    n_train = len(x_train)
    x_train = be.input(model.check_input(x_train, "train"))
    y_train = be.labels(model.check_labels(y_train, n_train, "train"))
    x_test = be.input(model.check_input(x_test, "test"))
    y_test = be.labels(model.check_labels(y_test, len(x_test), "test"))

    out = Path(out_dir) if out_dir is not None else None
    history: list[dict] = []
    epoch, position = 0, 0
    partial = None  # (loss sum, correct, seen) of an epoch resumed mid-way
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
        log(f"resumed from {ckpt} at epoch {epoch + 1}, batch {position}, step {model.step_count}")
        # metrics.json follows the checkpoint: a kill between the two writes (or a resume of a run
        # that had already finished) would otherwise leave it an epoch behind for good
        atomic_write_json(out / METRICS, {"run": run_args, "history": history})

    def diverged(where: str, why: str) -> TrainingDiverged:
        kept = f"; last good checkpoint: {out / CHECKPOINT}" if out is not None else ""
        return TrainingDiverged(f"training diverged at {where}: {why}{kept}")

    def checkpoint(epoch_done: int, pos: int, totals=None) -> None:
        if out is not None:
            if not be.all_finite(model.params.values()):  # never write a bad model over a good one
                raise diverged(f"epoch {epoch_done + 1}", "a parameter is not finite")
            save_checkpoint(out / CHECKPOINT, model, {"run_args": run_args, "epoch": epoch_done, "position": pos,
                                                      "partial": totals, "history": history})

    # The NumPy backend tests every update before applying it (the model stays unchanged on a bad
    # step); on the GPU that test would synchronise every step, so there the running loss, which
    # turns non-finite with the first bad update, is checked at each progress refresh, before each
    # checkpoint and at the end of each epoch.
    check_each_step = be.name == "numpy"
    n_batches = -(-n_train // batch_size)
    t_start = time.perf_counter()
    images = 0
    while epoch < epochs:
        # the permutation comes from (seed, epoch) on the host, so every backend sees the same batches
        order = be.indices(np.random.default_rng([seed, epoch]).permutation(n_train))
        bar = _progress(n_batches, position, f"epoch {epoch + 1}/{epochs}", progress)
        loss_sum, correct, seen = partial or (0.0, 0, 0)
        partial = None
        for b in range(position, n_batches):
            idx = order[b * batch_size:(b + 1) * batch_size]
            try:
                scale = lr_scale(schedule, epoch * n_batches + b, epochs * n_batches)
                batch_loss, batch_correct = model.step_arrays(x_train[idx], y_train[idx], scale,
                                                              check_finite=check_each_step)
            except FloatingPointError as exc:
                bar.close()
                raise diverged(f"epoch {epoch + 1}, batch {b}", str(exc)) from exc
            loss_sum, correct, seen = loss_sum + batch_loss, correct + batch_correct, seen + len(idx)
            images += len(idx)
            bar.update(1)
            if b % 20 == 0 and bar.visible:  # the only host synchronisation inside an epoch
                if not math.isfinite(float(loss_sum)):
                    bar.close()
                    raise diverged(f"epoch {epoch + 1}, by batch {b}", "the training loss is not finite")
                bar.set_postfix(loss=f"{float(loss_sum) / seen:.4f}", acc=f"{float(correct) / seen:.4f}")
            if checkpoint_every and model.step_count % checkpoint_every == 0 and b + 1 < n_batches:
                checkpoint(epoch, b + 1, (float(loss_sum), int(correct), seen))
        bar.close()
        if not math.isfinite(float(loss_sum)):
            raise diverged(f"epoch {epoch + 1}", "the training loss is not finite")
        test = model.evaluate_arrays(x_test, y_test)
        record = {"epoch": epoch + 1, "step": model.step_count, "train_loss": float(loss_sum) / seen,
                  "train_accuracy": int(correct) / seen, "test_loss": test["loss"], "test_accuracy": test["accuracy"],
                  "seconds": time.perf_counter() - t_start}
        history.append(record)
        log(f"epoch {epoch + 1}/{epochs}: train loss {record['train_loss']:.4f} acc {record['train_accuracy']:.4f} | "
            f"test loss {record['test_loss']:.4f} acc {record['test_accuracy']:.4f}")
        epoch, position = epoch + 1, 0
        checkpoint(epoch, 0)
        if out is not None:
            atomic_write_json(out / METRICS, {"run": run_args, "history": history})

    seconds = time.perf_counter() - t_start
    last = history[-1]
    return TrainResult(test_accuracy=last["test_accuracy"], test_loss=last["test_loss"],
                       train_accuracy=last["train_accuracy"], history=history, seconds=seconds,
                       images_per_second=images / seconds if seconds > 0 else 0.0, steps=model.step_count,
                       out_dir=str(out) if out is not None else None, model=model)


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

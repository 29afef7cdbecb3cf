"""Many training runs at once: trials and hyper-parameter sweeps on one machine or a Ray cluster.

    ekdaa-cuda sweep sweep.toml --out runs/s1                       # one run after another, here
    ekdaa-cuda sweep sweep.toml --out runs/s1 --engine ray          # a local Ray, every core busy
    ekdaa-cuda sweep sweep.toml --out /shared/s1 --engine ray --address HEAD:6379   # a cluster

One *run* is one ``train()`` call: (dataset, rule, settings, seed, epochs). It has a stable id (a
hash of everything that decides its result), its own folder and an atomic ``result.json``
(metrics, history, a hash of the final model state, machine, versions, commit). A run whose
``result.json`` matches is never trained again, so a stopped sweep continues where it was when
rerun; a run that was interrupted resumes from its own ``checkpoint.npz``. A run that raises is
recorded in ``error.json`` (with the traceback) and the others go on; rerunning the sweep tries it
again. With ``--engine ray`` a run whose worker process died (killed, out of memory, node lost) is
retried by Ray up to ``retries`` times, resuming from its checkpoint.

The config (TOML, or YAML when PyYAML is installed)::

    seeds = [0, 1]            # or a count: seeds = 3 means 0, 1, 2
    [base]                    # train() and model options shared by every run
    preset = "fmnist"
    epochs = 1
    train_limit = 2000
    [grid]                    # every combination of these lists
    rule = ["ekdaa", "fa"]
    lr = [5e-4, 1e-3]
    [random]                  # optional: `samples` random points (crossed with the grid)
    beta = {uniform = [0.5, 1.0]}
    lr = {log_uniform = [1e-4, 1e-2]}
    dropout = {choice = [0.0, 0.1]}
    # top level: samples = 8, search_seed = 0

Options are ``train()``'s (preset, rule, backend, epochs, batch_size, train_limit, test_limit,
dataset, data_root, schedule, beta_end, checkpoint_every) and the model options of ``build_model`` (lr,
optimizer, beta, gamma, rho, dropout, widths, ...); ``seed`` comes from ``seeds``. Every point
is validated before anything runs.
"""

from __future__ import annotations

import difflib
import hashlib
import itertools
import json
import math
import os
import platform
import random
import re
import socket
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .training import CHECKPOINT, METRICS, atomic_write_json

RESULT = "result.json"
ERROR = "error.json"
WORKER = "worker.json"
ENGINES = ("local", "ray")
SEARCHES = ("grid", "optuna")
#: train() keywords a sweep may set (seed comes from `seeds`; out_dir, resume, data, log, progress are the sweep's)
TRAIN_OPTIONS = ("preset", "rule", "backend", "epochs", "batch_size", "train_limit", "test_limit", "dataset",
                 "data_root", "schedule", "beta_end", "checkpoint_every")
_RESERVED = {"seed": "set seeds with the top-level `seeds` list", "out_dir": "use --out",
             "resume": "sweeps always resume", "data": "not a config option", "log": "not a config option",
             "progress": "use --no-progress"}
_DISTRIBUTIONS = ("uniform", "log_uniform", "int_uniform", "choice")


class SweepConfigError(ValueError):
    """A sweep config that cannot run; raised before any run starts."""


# ---------------------------------------------------------------- runs


@dataclass
class Run:
    """One training run of a sweep: the ``train()`` keywords, where it lives and what identifies it."""

    setting: str  # the label of its point (runs differing only in seed share it)
    params: dict  # the options that vary between points
    seed: int
    train: dict  # train() keywords, seed included (not out_dir / resume / data / progress / log)
    dir: str  # folder relative to the sweep's output folder
    key: dict  # a finished result.json counts only when its "key" equals this
    data_key: tuple = field(default=(), repr=False)  # runs with equal data_key share the loaded data

    @property
    def id(self) -> str:
        return hashlib.sha256(_canonical(self.key).encode()).hexdigest()[:12]

    def as_dict(self) -> dict:
        return {"id": self.id, "setting": self.setting, "params": self.params, "seed": self.seed,
                "train": self.train, "dir": self.dir, "key": self.key}


def _canonical(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def _jsonable(obj):
    return json.loads(json.dumps(obj, default=str))


def state_hash(model) -> str:
    """SHA-256 over the model's parameters, optimizer state and step count (name, dtype, shape, bytes)."""
    h = hashlib.sha256()
    arrays = model.checkpoint_arrays()
    for name in sorted(arrays):
        if name == "config_json":
            continue
        a = np.ascontiguousarray(np.asarray(arrays[name]))
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def finished_result(run_dir: Path, key: dict) -> dict | None:
    """The run's result.json when it exists and was written for ``key``, else None."""
    path = Path(run_dir) / RESULT
    try:
        done = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    if done.get("key") != _jsonable(key):
        return None
    done.setdefault("status", "diverged" if done.get("diverged") else "ok")  # results of older versions
    return done


def _versions() -> dict:
    import sys

    out = {"python": platform.python_version()}
    for mod in ("numpy", "ray", "cupy"):
        m = sys.modules.get(mod)
        if m is not None:
            out[mod] = getattr(m, "__version__", None)
    return out


def execute_run(run: dict, data, out_root: str, keep_checkpoint: bool = False, threads: int | None = None,
                evaluate_train: bool = True, train_progress: bool = False) -> dict:
    """Train one run (``Run.as_dict()``) in ``out_root/run["dir"]`` and write its ``result.json``
    (or ``error.json`` when it raises). Resumes from the run's checkpoint when one is there; a run
    already finished is read back. Returns the result; this is the task each engine executes."""
    from . import training
    from .reproduce import code_commit, machine_info

    run_dir = Path(out_root) / run["dir"]
    done = finished_result(run_dir, run["key"])
    if done is not None:
        return done
    code_commit()  # read before training, so the result names the code that ran, not the checkout at its end
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        attempt = int(json.loads((run_dir / WORKER).read_text()).get("attempt", 0)) + 1
    except (FileNotFoundError, json.JSONDecodeError, ValueError, AttributeError):
        attempt = 1
    atomic_write_json(run_dir / WORKER, {"host": socket.gethostname(), "pid": os.getpid(), "attempt": attempt,
                                         "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")})
    resumed = []
    ckpt = run_dir / CHECKPOINT
    kwargs = dict(run["train"])
    base = {"key": run["key"], "id": run["id"], "setting": run["setting"], "params": run["params"],
            "seed": run["seed"], "attempt": attempt}
    try:
        with training.blas_threads(threads):  # the training set's evaluation below too
            res = training.train(**kwargs, data=data, out_dir=run_dir, resume=ckpt.exists(),
                                 overwrite=not ckpt.exists(),  # a run killed before its first checkpoint restarts
                                 threads=threads, progress=train_progress,
                                 log=lambda msg: resumed.append(msg) if msg.startswith("resumed") else None)
            train_eval = res.model.evaluate(data[0], data[1]) if evaluate_train and data is not None else None
    except training.TrainingDiverged as exc:  # an outcome, not a failure: recorded, left out of the means
        metrics = run_dir / METRICS
        history = json.loads(metrics.read_text())["history"] if metrics.exists() else []
        out = {**base, "status": "diverged", "diverged": True, "error": str(exc), "history": history,
               "seconds": 0.0}
    except Exception as exc:  # recorded for this run; the sweep goes on
        out = {**base, "status": "failed", "error": f"{type(exc).__name__}: {exc}",
               "traceback": traceback.format_exc(), "machine": {**machine_info(str(kwargs.get("backend", "auto"))),
                                                                **_versions()}}
        atomic_write_json(run_dir / ERROR, out)
        return out
    else:
        out = {**base, "status": "ok", "diverged": False, "test_accuracy": res.test_accuracy,
               "test_loss": res.test_loss,
               "train_accuracy": train_eval["accuracy"] if train_eval else res.train_accuracy,
               "train_loss": train_eval["loss"] if train_eval else None,
               "train_accuracy_running": res.train_accuracy, "history": res.history, "seconds": res.seconds,
               "images_per_second": res.images_per_second, "steps": res.steps, "state_hash": state_hash(res.model)}
    out["resumed"] = resumed[0] if resumed else None
    out["machine"] = {**machine_info(res.model.backend.name if out["status"] == "ok" else
                                     str(kwargs.get("backend", "auto"))), **_versions()}
    metrics = run_dir / METRICS
    if metrics.exists():  # so a driver on another machine can write it too
        out["metrics_json"] = json.loads(metrics.read_text())
    atomic_write_json(run_dir / RESULT, out)
    for leftover in ([] if keep_checkpoint else [ckpt, run_dir / training.SAFETENSORS]) + [run_dir / ERROR,
                                                                                       run_dir / WORKER]:
        if leftover.exists():
            leftover.unlink()
    return out


def _record_locally(out_root: Path, run: Run, result: dict) -> None:
    """Write a result that came back from a worker into this machine's output folder, unless the
    worker wrote the same file there already (same folder, or a shared file system)."""
    run_dir = out_root / run.dir
    name = ERROR if result.get("status") == "failed" else RESULT
    path = run_dir / name
    try:
        if json.loads(path.read_text()) == _jsonable(result):
            return
    except (FileNotFoundError, json.JSONDecodeError):
        pass
    atomic_write_json(path, result)
    if name == RESULT:
        if result.get("metrics_json") and not (run_dir / METRICS).exists():
            atomic_write_json(run_dir / METRICS, result["metrics_json"])
        if (run_dir / ERROR).exists():
            (run_dir / ERROR).unlink()


# ---------------------------------------------------------------- engines


class LocalEngine:
    """Runs one after another in this process (no extra dependency). If the process is killed, rerunning
    the sweep resumes the interrupted run from its checkpoint."""

    name = "local"

    def __init__(self, threads: int | None = None, progress: bool = False):
        self.threads, self.progress = threads, progress  # progress: each run's own epoch bar
        self.slots = 1

    def run(self, runs, data_for, out_root: Path, keep_checkpoint: bool, on_start, on_done) -> None:
        for run in runs:
            on_start(run)
            on_done(run, execute_run(run.as_dict(), data_for(run), str(out_root), keep_checkpoint, self.threads,
                                     train_progress=self.progress))

    def close(self) -> None:
        pass


class RayEngine:
    """Each run is a Ray task: one GPU for backend "cuda" (and "auto" when the cluster has GPUs),
    ``cpus_per_run`` CPUs otherwise, with BLAS threads set to match. Ray retries a task whose worker
    died up to ``retries`` times (it resumes from its checkpoint); exceptions are not retried."""

    name = "ray"

    def __init__(self, address: str | None = None, cpus_per_run: int = 1, retries: int = 2,
                 num_cpus: int | None = None, init_kwargs: dict | None = None):
        try:
            import ray
        except ImportError as exc:
            raise ImportError("--engine ray needs Ray: pip install 'ekdaa-cuda[ray]' (or pip install ray)") from exc
        if not isinstance(cpus_per_run, int) or cpus_per_run < 1:
            raise ValueError(f"cpus_per_run must be a positive int, got {cpus_per_run!r}")
        if not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries must be an int >= 0, got {retries!r}")
        self.ray, self.cpus_per_run, self.retries = ray, cpus_per_run, retries
        self.started = False
        if not ray.is_initialized():
            kwargs = {"address": address, "include_dashboard": False, "log_to_driver": False, **(init_kwargs or {})}
            if address is None and num_cpus is not None:
                kwargs["num_cpus"] = num_cpus
            ray.init(**kwargs)
            self.started = True
        res = ray.cluster_resources()
        self.gpus = int(res.get("GPU", 0))
        self.slots = max(1, int(res.get("CPU", 1)) // cpus_per_run)
        self._task = ray.remote(execute_run)

    def _options(self, run: Run) -> dict:
        backend = run.train.get("backend", "auto")
        opts = {"max_retries": self.retries, "retry_exceptions": False, "name": f"ekdaa:{run.setting}:seed{run.seed}"}
        if backend == "cuda" or (backend == "auto" and self.gpus):
            opts.update(num_gpus=1, num_cpus=1)
        else:
            opts["num_cpus"] = self.cpus_per_run
        return opts

    def run(self, runs, data_for, out_root: Path, keep_checkpoint: bool, on_start, on_done) -> None:
        ray = self.ray
        refs_by_data: dict = {}
        pending = {}
        for run in runs:
            if run.data_key not in refs_by_data:
                refs_by_data[run.data_key] = ray.put(data_for(run))
            opts = self._options(run)
            threads = None if "num_gpus" in opts else self.cpus_per_run
            ref = self._task.options(**opts).remote(run.as_dict(), refs_by_data[run.data_key], str(out_root),
                                                    keep_checkpoint, threads)
            pending[ref] = run
        # Ray does not say which queued task has started: the display counts the first `slots` as running
        order = list(runs)
        started = 0
        try:
            while pending:
                while started < len(order) and started - (len(order) - len(pending)) < self.slots:
                    on_start(order[started])
                    started += 1
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
                for ref in ready:
                    run = pending.pop(ref)
                    try:
                        result = ray.get(ref)
                    except Exception as exc:  # the worker died more than `retries` times, or Ray failed
                        result = {"key": run.key, "id": run.id, "setting": run.setting, "params": run.params,
                                  "seed": run.seed, "status": "failed",
                                  "error": f"{type(exc).__name__} after {self.retries} retries: {exc}"}
                    _record_locally(out_root, run, result)
                    on_done(run, result)
        except BaseException:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise

    def close(self) -> None:
        if self.started:
            self.ray.shutdown()


def make_engine(engine: str = "local", address: str | None = None, cpus_per_run: int | None = None,
                retries: int = 2, progress: bool = False, **kwargs):
    """``LocalEngine`` or ``RayEngine``; ``progress`` shows each local run's epoch bar."""
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    if engine == "local":
        if address is not None:
            raise ValueError("--address needs --engine ray")
        return LocalEngine(threads=cpus_per_run, progress=progress)
    return RayEngine(address=address, cpus_per_run=cpus_per_run or 1, retries=retries, **kwargs)


# ---------------------------------------------------------------- progress and running a list of runs


def _quiet(msg: str) -> None:
    pass


class _Progress:
    """done / running / failed and the best test accuracy so far, on a tqdm bar or in log lines."""

    def __init__(self, total: int, done: int, desc: str, enabled: bool, log):
        self.total, self.done, self.running, self.failed, self.diverged = total, done, 0, 0, 0
        self.best: tuple[float, str] | None = None
        self.log = log
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=done, desc=desc, unit="run", dynamic_ncols=True)
        self._show()

    def _show(self):
        best = "–" if self.best is None else f"{100 * self.best[0]:.2f}% ({self.best[1]})"
        if self.bar is not None:
            self.bar.set_postfix_str(f"running {self.running}, failed {self.failed}, best {best}")

    def seed(self, result: dict, run: Run):
        if result.get("status") == "ok" and (self.best is None or result["test_accuracy"] > self.best[0]):
            self.best = (result["test_accuracy"], f"{run.setting} seed {run.seed}")

    def start(self, run: Run):
        self.running += 1
        self._show()

    def finish(self, run: Run, result: dict):
        self.running = max(0, self.running - 1)
        self.done += 1
        status = result.get("status")
        self.failed += status == "failed"
        self.diverged += status == "diverged"
        self.seed(result, run)
        if self.bar is not None:
            self.bar.update(1)
        self._show()
        what = (f"test {100 * result['test_accuracy']:.2f}% ({result['seconds']:.0f} s)" if status == "ok"
                else f"{status}: {result.get('error')}")
        self.say(f"[{self.done}/{self.total}] {run.setting} seed {run.seed}: {what}")

    def say(self, msg: str):
        if self.bar is not None and self.log is not _quiet:  # a line above the bar, not through it
            self.bar.write(msg)
        else:
            self.log(msg)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def run_all(runs: list, engine, out_dir, data_for, keep_checkpoints: bool = False, progress: bool = True,
            log=None, desc: str = "sweep") -> list:
    """Execute ``runs`` on ``engine`` (finished ones are read back, not run) and return their results
    in the order of ``runs``. ``data_for(run)`` gives the (x_train, y_train, x_test, y_test) of a run."""
    out = Path(out_dir).resolve()
    log = log or _quiet
    ids = [r.id for r in runs]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise SweepConfigError(f"the sweep has identical runs (ids {dup}); remove the repeated grid values or seeds")
    results: dict[str, dict] = {}
    todo = []
    for run in runs:
        done = finished_result(out / run.dir, run.key)
        if done is not None:
            results[run.id] = done
        else:
            todo.append(run)
    bar = _Progress(len(runs), len(runs) - len(todo), desc, progress, log)
    for run in runs:
        if run.id in results:
            bar.seed(results[run.id], run)
    bar.say(f"{len(runs)} runs: {len(runs) - len(todo)} finished before, {len(todo)} to run on engine {engine.name}")

    def on_done(run, result):
        results[run.id] = result
        bar.finish(run, result)

    try:
        if todo:
            engine.run(todo, data_for, out, keep_checkpoints, bar.start, on_done)
    finally:
        bar.close()
    return [results[r.id] for r in runs]


# ---------------------------------------------------------------- configs


def load_config(path) -> dict:
    """A sweep config from a TOML (.toml) or YAML (.yaml / .yml, needs PyYAML) file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"sweep config {path} not found")
    text = path.read_text()
    if path.suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError as exc:
            raise SweepConfigError(f"{path}: YAML configs need PyYAML (pip install pyyaml), or write it as TOML") \
                from exc
        try:
            cfg = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise SweepConfigError(f"{path}: not valid YAML: {exc}") from exc
    else:
        try:
            import tomllib
        except ImportError:  # Python 3.10
            try:
                import tomli as tomllib
            except ImportError as exc:
                raise SweepConfigError("TOML configs need Python >= 3.11 or `pip install tomli`") from exc
        try:
            cfg = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise SweepConfigError(f"{path}: not valid TOML: {exc}") from exc
    if not isinstance(cfg, dict):
        raise SweepConfigError(f"{path}: the config must be a table / mapping, got {type(cfg).__name__}")
    return cfg


def _known_options() -> set:
    from .training import MODEL_OPTIONS

    return set(TRAIN_OPTIONS) | set(MODEL_OPTIONS)


def _check_name(name, where: str) -> None:
    if name in _RESERVED:
        raise SweepConfigError(f"{where}: {name!r} cannot be set here ({_RESERVED[name]})")
    known = _known_options()
    if name not in known:
        close = difflib.get_close_matches(str(name), sorted(known), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise SweepConfigError(f"{where}: unknown option {name!r}{hint}; train() options: {', '.join(TRAIN_OPTIONS)}; "
                               f"model options: {', '.join(sorted(known - set(TRAIN_OPTIONS)))}")


def parse_seeds(seeds) -> list[int]:
    if isinstance(seeds, bool):
        raise SweepConfigError(f"seeds must be a list of ints or a count, got {seeds!r}")
    if isinstance(seeds, int):
        if seeds < 1:
            raise SweepConfigError(f"seeds = {seeds}: a count of seeds must be >= 1")
        return list(range(seeds))
    if not isinstance(seeds, list) or not seeds:
        raise SweepConfigError(f"seeds must be a non-empty list of ints or a count, got {seeds!r}")
    bad = [s for s in seeds if isinstance(s, bool) or not isinstance(s, int) or s < 0]
    if bad:
        raise SweepConfigError(f"seeds must be ints >= 0, got {bad} in {seeds}")
    if len(set(seeds)) != len(seeds):
        raise SweepConfigError(f"seeds has repeated values: {seeds}")
    return list(seeds)


def _check_distribution(name, spec) -> None:
    where = f"[random] {name}"
    if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in _DISTRIBUTIONS:
        raise SweepConfigError(f"{where}: expected one of {{{', '.join(f'{d} = [...]' for d in _DISTRIBUTIONS)}}}, "
                               f"got {spec!r}")
    kind, args = next(iter(spec.items()))
    if not isinstance(args, list) or not args:
        raise SweepConfigError(f"{where}: {kind} needs a non-empty list, got {args!r}")
    if kind != "choice":
        if len(args) != 2 or not all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in args) \
                or not args[0] < args[1]:
            raise SweepConfigError(f"{where}: {kind} needs [low, high] with low < high, got {args!r}")
        if kind == "log_uniform" and args[0] <= 0:
            raise SweepConfigError(f"{where}: log_uniform needs low > 0, got {args!r}")
        if kind == "int_uniform" and not all(isinstance(a, int) for a in args):
            raise SweepConfigError(f"{where}: int_uniform needs integer bounds, got {args!r}")


def _sample(spec: dict, rng: random.Random):
    kind, args = next(iter(spec.items()))
    if kind == "choice":
        return args[rng.randrange(len(args))]
    if kind == "uniform":
        return rng.uniform(args[0], args[1])
    if kind == "int_uniform":
        return rng.randint(args[0], args[1])
    return math.exp(rng.uniform(math.log(args[0]), math.log(args[1])))


def check_config(cfg: dict, need_samples: bool = True) -> dict:
    """Validate the shape of a config; returns it normalised: {seeds, base, grid, random, samples, search_seed}.
    ``need_samples=False``: [random] without `samples` (Optuna chooses the points)."""
    allowed = {"seeds", "base", "grid", "random", "samples", "search_seed", "name", "out"}
    unknown = set(cfg) - allowed
    if unknown:
        raise SweepConfigError(f"unknown top-level key(s) {sorted(unknown)} in the sweep config; allowed: "
                               f"{', '.join(sorted(allowed))} (options go in [base], [grid] or [random])")
    if "seeds" not in cfg:
        raise SweepConfigError("the sweep config needs `seeds` (a list such as [0, 1], or a count)")
    seeds = parse_seeds(cfg["seeds"])
    parts = {}
    for section in ("base", "grid", "random"):
        value = cfg.get(section, {})
        if not isinstance(value, dict):
            raise SweepConfigError(f"[{section}] must be a table of options, got {value!r}")
        for name in value:
            _check_name(name, f"[{section}]")
        parts[section] = dict(value)
    if "grid" in cfg and not parts["grid"]:
        raise SweepConfigError("[grid] is empty: give it at least one option with a list of values, or remove it")
    for name, values in parts["grid"].items():
        if not isinstance(values, list):
            raise SweepConfigError(f"[grid] {name}: expected a list of values, got {values!r} "
                                   f"(put single values in [base])")
        if not values:
            raise SweepConfigError(f"[grid] {name} is empty: the grid would have no points")
    for name, spec in parts["random"].items():
        _check_distribution(name, spec)
    both = (set(parts["base"]) & set(parts["grid"])) | (set(parts["base"]) & set(parts["random"])) \
        | (set(parts["grid"]) & set(parts["random"]))
    if both:
        raise SweepConfigError(f"option(s) {sorted(both)} set in more than one of [base], [grid], [random]")
    samples = cfg.get("samples")
    if parts["random"] and (need_samples or samples is not None):
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
            raise SweepConfigError(f"[random] needs a top-level `samples` = a positive int, got {samples!r}")
    elif samples is not None and not parts["random"]:
        raise SweepConfigError("`samples` is set but there is no [random] table to sample from")
    search_seed = cfg.get("search_seed", 0)
    if isinstance(search_seed, bool) or not isinstance(search_seed, int):
        raise SweepConfigError(f"search_seed must be an int, got {search_seed!r}")
    return {"seeds": seeds, "base": parts["base"], "grid": parts["grid"], "random": parts["random"],
            "samples": samples or 0, "search_seed": search_seed}


def grid_points(cfg: dict) -> list[dict]:
    """The varying options of every point: the grid's product, crossed with ``samples`` random draws."""
    names = list(cfg["grid"])
    points = [dict(zip(names, combo)) for combo in itertools.product(*(cfg["grid"][n] for n in names))]
    if cfg["random"]:
        rng = random.Random(cfg["search_seed"])
        draws = [{n: _sample(spec, rng) for n, spec in cfg["random"].items()} for _ in range(cfg["samples"])]
        points = [{**p, **d} for p in points for d in draws]
    return points


def _fmt_value(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        return "x".join(_fmt_value(x) for x in v)
    return str(v)


def setting_label(params: dict) -> str:
    return " ".join(f"{k}={_fmt_value(v)}" for k, v in params.items()) or "base"


def _slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9=.,+-]+", "_", label.replace(" ", ","))[:60]


def validate_train_kwargs(kwargs: dict, where: str) -> None:
    """The checks train() / build_model would make, done before anything runs."""
    from .layers import PRESETS, build_blocks, preset_layers
    from .model import OPTION_RANGES, RULES, check_layer_lr, check_range, resolve_options
    from .training import SCHEDULES

    def fail(msg):
        raise SweepConfigError(f"{where}: {msg}")

    for k in ("epochs", "batch_size"):
        v = kwargs.get(k)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            fail(f"{k} must be a positive int, got {v!r}")
    for k in ("train_limit", "test_limit", "checkpoint_every"):
        v = kwargs.get(k)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
            fail(f"{k} must be an int >= 0, got {v!r}")
    if kwargs.get("preset", "fmnist") not in PRESETS:
        fail(f"unknown preset {kwargs['preset']!r}; choose one of {', '.join(PRESETS)}")
    if kwargs.get("rule", "ekdaa") not in RULES:
        fail(f"unknown rule {kwargs['rule']!r}; choose one of {', '.join(RULES)}")
    if kwargs.get("schedule", "constant") not in SCHEDULES:
        fail(f"unknown schedule {kwargs['schedule']!r}; choose one of {', '.join(SCHEDULES)}")
    if kwargs.get("beta_end") is not None:
        try:
            check_range("beta_end", kwargs["beta_end"], *OPTION_RANGES["beta"])
        except ValueError as exc:
            fail(str(exc))
    if kwargs.get("backend", "auto") not in ("auto", "numpy", "cuda"):
        fail(f"unknown backend {kwargs['backend']!r}; choose auto, numpy or cuda")
    model_options = {k: v for k, v in kwargs.items() if k not in TRAIN_OPTIONS and k != "seed"}
    widths = model_options.pop("widths", None)
    if widths is not None and (not isinstance(widths, list) or not all(isinstance(w, int) and w > 0 for w in widths)):
        fail(f"widths must be a list of positive ints, got {widths!r}")
    try:
        opts = resolve_options(model_options)
        if opts["layer_lr"]:  # the names exist only once the network is laid out (no weights needed)
            layers, shape = preset_layers(kwargs.get("preset", "fmnist"), widths)
            names = [b.name for b in build_blocks(layers, shape, opts["activation"], 0.0, 0.0, False)]
            check_layer_lr(opts["layer_lr"], names)
    except (ValueError, TypeError) as exc:
        fail(str(exc))


def _data_key(kwargs: dict) -> tuple:
    from .layers import PRESETS

    dataset = kwargs.get("dataset") or PRESETS[kwargs.get("preset", "fmnist")]["dataset"]
    return (dataset, kwargs.get("train_limit"), kwargs.get("test_limit"), kwargs.get("data_root"))


def make_runs(points: list[dict], base: dict, seeds: list[int], data_sizes=None) -> list[Run]:
    """One Run per (point, seed); each point validated. ``data_sizes(data_key)`` -> (n_train, n_test)
    puts the data's size in the run's key (None: the limits alone identify the data)."""
    runs = []
    for i, params in enumerate(points):
        label = setting_label(params)
        kwargs = {**base, **params}
        validate_train_kwargs(kwargs, f"point {i + 1} ({label})")
        if isinstance(kwargs.get("widths"), list):
            kwargs["widths"] = list(kwargs["widths"])
        point_key = {k: v for k, v in kwargs.items() if k not in ("data_root", "checkpoint_every")}
        point_hash = hashlib.sha256(_canonical(point_key).encode()).hexdigest()[:8]
        dk = _data_key(kwargs)
        sizes = data_sizes(dk) if data_sizes else None
        for seed in seeds:
            key = {**point_key, "seed": seed}
            if sizes is not None:
                key["n_train"], key["n_test"] = sizes
            runs.append(Run(setting=label, params=params, seed=seed, train={**kwargs, "seed": seed},
                            dir=f"runs/{_slug(label)}-{point_hash}/seed{seed}", key=_jsonable(key), data_key=dk))
    return runs


class DataCache:
    """Each distinct (dataset, train_limit, test_limit, data_root) loaded once, on the driver."""

    def __init__(self, data=None):
        self.fixed, self.loaded = data, {}

    def __call__(self, key: tuple):
        if self.fixed is not None:
            return self.fixed
        if key not in self.loaded:
            from .reproduce import load_data

            dataset, train_limit, test_limit, data_root = key
            self.loaded[key] = load_data(dataset, train_limit, test_limit, data_root)
        return self.loaded[key]

    def sizes(self, key: tuple) -> tuple[int, int]:
        d = self(key)
        return len(d[0]), len(d[2])

    def for_run(self, run: Run):
        return self(run.data_key)


# ---------------------------------------------------------------- the summary table


def _stats(values) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


def summarize(runs: list, results: list) -> list[dict]:
    """One row per setting: mean ± sample std (percent) over its finished seeds, best test accuracy first."""
    rows: dict[str, dict] = {}
    for run, res in zip(runs, results):
        row = rows.setdefault(run.setting, {"setting": run.setting, "params": run.params, "seeds": [], "ok": [],
                                            "failed": 0, "diverged": 0, "runs": []})
        status = res.get("status", "diverged" if res.get("diverged") else "ok")
        row["seeds"].append(run.seed)
        row["runs"].append({"id": run.id, "seed": run.seed, "dir": run.dir, "status": status,
                            "test": 100 * res["test_accuracy"] if status == "ok" else None,
                            "train": 100 * res["train_accuracy"] if status == "ok" else None,
                            "seconds": res.get("seconds"), "error": res.get("error")})
        if status == "ok":
            row["ok"].append(res)
        else:
            row[status if status in ("failed", "diverged") else "failed"] += 1
    out = []
    for row in rows.values():
        ok = row.pop("ok")
        row["test_mean"], row["test_std"] = _stats([100 * r["test_accuracy"] for r in ok])
        row["train_mean"], row["train_std"] = _stats([100 * r["train_accuracy"] for r in ok])
        row["finished"] = len(ok)
        row["seconds_per_run"] = float(np.mean([r["seconds"] for r in ok])) if ok else None
        out.append(row)
    out.sort(key=lambda r: (r["test_mean"] is None, -(r["test_mean"] or 0.0)))
    return out


def _fmt(mean, std) -> str:
    return "–" if mean is None else f"{mean:.2f} ± {std:.2f}"


def markdown_table(rows: list[dict], title: str = "Sweep") -> str:
    lines = [f"# {title}", "", "Accuracy in percent, mean ± sample std over seeds; best test accuracy first.", "",
             "| # | setting | test | train | seeds ok | failed | diverged | s/run |",
             "|---|---|---|---|---|---|---|---|"]
    for i, r in enumerate(rows, 1):
        secs = "–" if r["seconds_per_run"] is None else f"{r['seconds_per_run']:.0f}"
        lines.append(f"| {i} | {r['setting']} | {_fmt(r['test_mean'], r['test_std'])} | "
                     f"{_fmt(r['train_mean'], r['train_std'])} | {r['finished']}/{len(r['seeds'])} | {r['failed']} | "
                     f"{r['diverged']} | {secs} |")
    failed = [(r["setting"], x) for r in rows for x in r["runs"] if x["status"] == "failed"]
    if failed:
        lines += ["", "Failed runs (rerun the sweep to try them again):", ""]
        lines += [f"- {s} seed {x['seed']} (`{x['dir']}`): {x['error']}" for s, x in failed]
    return "\n".join(lines) + "\n"


def write_summary(out_dir, rows: list[dict], info: dict, name: str = "sweep") -> tuple[Path, Path]:
    from .training import atomic_write_bytes

    out = Path(out_dir)
    json_path, md_path = out / f"{name}.json", out / f"{name}.md"
    atomic_write_json(json_path, {"info": info, "rows": rows})
    atomic_write_bytes(md_path, lambda f: f.write(markdown_table(rows, info.get("title", "Sweep")).encode()))
    return json_path, md_path


# ---------------------------------------------------------------- the sweep


def plan(config, data=None) -> tuple[dict, list[Run], DataCache]:
    """Parse and validate a config (a dict or a file path) into its runs, loading no data yet unless
    the runs' keys need its size (they do: n_train / n_test identify subsets)."""
    cfg = check_config(load_config(config) if not isinstance(config, dict) else config)
    points = grid_points(cfg) or [{}]
    cache = DataCache(data)
    runs = make_runs(points, cfg["base"], cfg["seeds"])  # validates every point before loading any data
    runs = make_runs(points, cfg["base"], cfg["seeds"], cache.sizes)
    return cfg, runs, cache


def sweep(config, out_dir, engine: str = "local", address: str | None = None, cpus_per_run: int | None = None,
          retries: int = 2, search: str = "grid", budget: int | None = None, data=None, progress: bool = True,
          keep_checkpoints: bool = False, log=None, engine_kwargs: dict | None = None) -> list[dict]:
    """Run a sweep (a config dict or a TOML / YAML file) and write ``sweep.json`` / ``sweep.md`` in
    ``out_dir``; returns the summary rows, best mean test accuracy first. ``search="optuna"`` asks
    Optuna for ``budget`` points instead of the grid / random points (see ``optuna_sweep``)."""
    from .reproduce import machine_info

    if search not in SEARCHES:
        raise SweepConfigError(f"unknown search {search!r}; choose one of {', '.join(SEARCHES)}")
    if search == "optuna":
        return optuna_sweep(config, out_dir, budget, engine=engine, address=address, cpus_per_run=cpus_per_run,
                            retries=retries, data=data, progress=progress, keep_checkpoints=keep_checkpoints,
                            log=log, engine_kwargs=engine_kwargs)
    if budget is not None:
        raise SweepConfigError("--budget applies to --search optuna (a grid runs every point)")
    cfg, runs, cache = plan(config, data)
    eng = make_engine(engine, address, cpus_per_run, retries, **(engine_kwargs or {}))
    t0 = time.perf_counter()
    try:
        results = run_all(runs, eng, out_dir, cache.for_run, keep_checkpoints, progress, log)
    finally:
        eng.close()
    rows = summarize(runs, results)
    info = {"title": "Sweep", "config": cfg, "engine": engine, "address": address, "runs": len(runs),
            "wall_seconds": time.perf_counter() - t0, "machine": machine_info(str(cfg["base"].get("backend", "auto")))}
    write_summary(out_dir, rows, info)
    return rows


def optuna_sweep(config, out_dir, budget: int | None, engine: str = "local", address: str | None = None,
                 cpus_per_run: int | None = None, retries: int = 2, data=None, progress: bool = True,
                 keep_checkpoints: bool = False, log=None, engine_kwargs: dict | None = None) -> list[dict]:
    """Optuna (TPE, seeded with ``search_seed``) proposes ``budget`` points from [random] (and [grid]
    lists as categorical choices); each is run for every seed on the same machinery as a grid sweep
    and scored by its mean test accuracy. Proposals are made in batches of the engine's parallel
    slots. Rerunning replays the same proposals, so finished runs are read back."""
    from .reproduce import machine_info

    try:
        import optuna
    except ImportError as exc:
        raise ImportError("--search optuna needs Optuna: pip install optuna") from exc
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise SweepConfigError(f"--search optuna needs --budget N (a positive int), got {budget!r}")
    cfg = check_config(load_config(config) if not isinstance(config, dict) else config, need_samples=False)
    if not cfg["grid"] and not cfg["random"]:
        raise SweepConfigError("--search optuna needs options to search: a [random] table and/or [grid] lists")
    # validate the corners of the space before anything runs
    make_runs(grid_points({**cfg, "samples": 2}) or [{}], cfg["base"], cfg["seeds"])
    cache = DataCache(data)
    eng = make_engine(engine, address, cpus_per_run, retries, **(engine_kwargs or {}))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=cfg["search_seed"]))

    def propose(trial) -> dict:
        params = {}
        for name, values in cfg["grid"].items():
            params[name] = values[trial.suggest_categorical(name, list(range(len(values))))] \
                if any(isinstance(v, (list, dict)) for v in values) else trial.suggest_categorical(name, values)
        for name, spec in cfg["random"].items():
            kind, args = next(iter(spec.items()))
            if kind == "choice":
                params[name] = trial.suggest_categorical(name, args)
            elif kind == "int_uniform":
                params[name] = trial.suggest_int(name, args[0], args[1])
            else:
                params[name] = trial.suggest_float(name, args[0], args[1], log=kind == "log_uniform")
        return params

    all_runs, all_results = [], []
    t0 = time.perf_counter()
    try:
        while len(study.trials) < budget:
            batch = [study.ask() for _ in range(min(eng.slots, budget - len(study.trials)))]
            points = [propose(t) for t in batch]
            runs = make_runs(points, cfg["base"], cfg["seeds"], cache.sizes)
            seen = {r.id for r in all_runs}
            fresh = list({r.id: r for r in runs if r.id not in seen}.values())
            results = {r.id: res for r, res in zip(fresh, run_all(fresh, eng, out_dir, cache.for_run,
                                                                  keep_checkpoints, progress, log, "optuna"))}
            old = {r.id: res for r, res in zip(all_runs, all_results)}
            for trial, point in zip(batch, points):
                mine = [r for r in runs if r.setting == setting_label(point)]
                accs = [(results.get(r.id) or old[r.id]) for r in mine]
                ok = [a["test_accuracy"] for a in accs if a.get("status") == "ok"]
                if ok:
                    study.tell(trial, float(np.mean(ok)))
                else:
                    study.tell(trial, state=optuna.trial.TrialState.FAIL)
            all_runs += fresh
            all_results += [results[r.id] for r in fresh]
    finally:
        eng.close()
    rows = summarize(all_runs, all_results)
    info = {"title": "Sweep (Optuna)", "config": cfg, "engine": engine, "address": address, "search": "optuna",
            "budget": budget, "runs": len(all_runs), "wall_seconds": time.perf_counter() - t0,
            "machine": machine_info(str(cfg["base"].get("backend", "auto")))}
    write_summary(out_dir, rows, info)
    return rows


__all__ = ["ENGINES", "LocalEngine", "RayEngine", "Run", "SweepConfigError", "execute_run", "load_config",
           "make_runs", "plan", "run_all", "summarize", "sweep"]

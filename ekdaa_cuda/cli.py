"""The ``ekdaa-cuda`` command.

    ekdaa-cuda train --preset fmnist --epochs 1            # best backend available
    ekdaa-cuda train --preset fmnist --out runs/a --resume  # continue a stopped run
    ekdaa-cuda info                                         # version, backends, CUDA status
    ekdaa-cuda reproduce table2 --dataset fashion-mnist --trials 10 --out runs/t2   # paper Table 2
    ekdaa-cuda reproduce curves|tsne|alignment ...          # paper figures (see ekdaa_cuda.reproduce)
    ekdaa-cuda sweep sweep.toml --out runs/s1 [--engine ray]  # many runs (see ekdaa_cuda.sweep)
"""

from __future__ import annotations

import argparse
import sys

from . import __version__, cuda_status
from .layers import PRESETS
from .model import _CHOICES, RULES
from .reference import ACTIVATIONS
from .training import SCHEDULES

# CLI flag -> model option, for options passed through only when given
_MODEL_FLAGS = {
    "lr": float, "optimizer": str, "momentum": float, "beta": float, "gamma": float, "activation": str,
    "dropout": float, "dropout_conv": float, "dropout_fc": float, "rho": float, "variant": str, "unpool": str,
    "error_init": str, "normalize": str, "init": str, "dtype": str,
}
_FLAG_CHOICES = {"optimizer": _CHOICES["optimizer"], "activation": ACTIVATIONS, "variant": _CHOICES["variant"],
                 "unpool": _CHOICES["unpool"], "error_init": _CHOICES["error_init"],
                 "normalize": _CHOICES["normalize"], "init": _CHOICES["init"], "dtype": _CHOICES["dtype"]}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ekdaa-cuda", description="EKDAA and friends: backprop-free CNN training.")
    p.add_argument("--version", action="version", version=f"ekdaa-cuda {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a preset and report per-epoch accuracy",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    t.add_argument("--preset", default="fmnist", choices=sorted(PRESETS))
    t.add_argument("--rule", default="ekdaa", choices=RULES)
    t.add_argument("--backend", default="auto", choices=("auto", "numpy", "cuda"))
    t.add_argument("--epochs", type=int, default=10)
    t.add_argument("--batch-size", type=int, default=50)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--train-limit", type=int, default=None, help="use only the first N training images")
    t.add_argument("--test-limit", type=int, default=None, help="use only the first N test images")
    t.add_argument("--dataset", default=None, help="dataset name (default: the preset's)")
    t.add_argument("--data-root", default=None, help="folder holding the dataset files")
    t.add_argument("--out", default=None, help="output folder for metrics.json and checkpoint.npz")
    t.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    t.add_argument("--checkpoint-every", type=int, default=0, help="also checkpoint every N updates")
    t.add_argument("--schedule", default="constant", choices=SCHEDULES, help="learning-rate schedule over the epochs")
    t.add_argument("--bias", action=argparse.BooleanOptionalAction, default=None, help="use biases")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    for flag, typ in _MODEL_FLAGS.items():
        t.add_argument(f"--{flag.replace('_', '-')}", type=typ, default=None, choices=_FLAG_CHOICES.get(flag),
                       help="model option (default: the preset's)")

    sub.add_parser("info", help="print the version, backends and CUDA status")
    _add_reproduce(sub)
    _add_sweep(sub)
    return p


def _engine_args(q) -> None:
    """--engine / --address / --cpus-per-run / --retries, shared by `sweep` and `reproduce table2`."""
    q.add_argument("--engine", default="local", choices=("local", "ray"),
                   help="local: one run after another in this process; ray: runs as Ray tasks")
    q.add_argument("--address", default=None,
                   help="Ray cluster to join (e.g. HEAD_IP:6379 or auto); default: start a local Ray")
    q.add_argument("--cpus-per-run", type=int, default=None,
                   help="CPUs (and BLAS threads) per numpy run (ray default: 1; local default: leave BLAS as is)")
    q.add_argument("--retries", type=int, default=2, help="ray: retries of a run whose worker process died")


def _add_sweep(sub) -> None:
    s = sub.add_parser("sweep", help="many runs over a grid / random search of train() options (see docs/sweeps.md)",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    s.add_argument("config", help="sweep config (.toml, or .yaml with PyYAML)")
    s.add_argument("--out", default=None, help="output folder (default: the config's `out`, else runs/<config name>)")
    _engine_args(s)
    s.add_argument("--search", default="grid", choices=("grid", "optuna"),
                   help="grid: every point of [grid] x [random] samples; optuna: --budget points chosen by Optuna")
    s.add_argument("--budget", type=int, default=None, help="--search optuna: number of points to try")
    s.add_argument("--data-root", default=None, help="folder holding the dataset files (unless the config sets it)")
    s.add_argument("--keep-checkpoints", action="store_true", help="keep each finished run's checkpoint.npz")
    s.add_argument("--dry-run", action="store_true", help="validate the config and list the runs; train nothing")
    s.add_argument("--no-progress", action="store_true", help="no progress bar (one line per finished run)")


def _sweep(args) -> int:
    from pathlib import Path

    from . import sweep as sw

    say = lambda msg: print(msg, flush=True)  # noqa: E731
    try:
        cfg = sw.load_config(args.config)
        out = args.out or cfg.pop("out", None) or str(Path("runs") / Path(args.config).stem)
        cfg.pop("out", None)
        if args.data_root is not None:
            cfg.setdefault("base", {}).setdefault("data_root", args.data_root)
        if args.dry_run:
            checked = sw.check_config(cfg)
            runs = sw.make_runs(sw.grid_points(checked) or [{}], checked["base"], checked["seeds"])
            for run in runs:
                say(f"{run.id}  {run.dir}")
            say(f"{len(runs)} runs in {out} (config ok; nothing trained)")
            return 0
        rows = sw.sweep(cfg, out, engine=args.engine, address=args.address, cpus_per_run=args.cpus_per_run,
                        retries=args.retries, search=args.search, budget=args.budget, progress=not args.no_progress,
                        keep_checkpoints=args.keep_checkpoints, log=say)
    except (ValueError, FileNotFoundError, RuntimeError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    say((Path(out) / "sweep.md").read_text())
    say(f"wrote {out}/sweep.json and {out}/sweep.md")
    failed = sum(r["failed"] for r in rows)
    if failed:
        print(f"{failed} run(s) failed; see {out}/sweep.md (rerun the same command to try them again)", file=sys.stderr)
        return 1
    return 0


def _add_reproduce(sub) -> None:
    """``ekdaa-cuda reproduce table2|curves|tsne|alignment`` (see ekdaa_cuda.reproduce)."""
    from .reproduce import DATASETS, DEFAULT_EPOCHS, SETTINGS

    r = sub.add_parser("reproduce", help="paper Table 2 trials, learning curves, t-SNE, alignment")
    what = r.add_subparsers(dest="what", required=True)
    fmt = argparse.ArgumentDefaultsHelpFormatter
    methods = ",".join(SETTINGS)

    def common(q, epochs):
        q.add_argument("--dataset", default="fashion-mnist", help=f"one of {', '.join(DATASETS)}")
        q.add_argument("--epochs", type=int, default=epochs)
        q.add_argument("--train-limit", type=int, default=None, help="use only the first N training images")
        q.add_argument("--backend", default="auto", choices=("auto", "numpy", "cuda"))
        q.add_argument("--data-root", default=None, help="folder holding the dataset files")
        q.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a setting for every method (model option or batch_size), e.g. rho=1.0")
        q.add_argument("--no-progress", action="store_true", help="no progress bars")

    t = what.add_parser("table2", help="N trials of each method; table2.json / table2.md", formatter_class=fmt)
    common(t, DEFAULT_EPOCHS)
    t.add_argument("--rules", "--methods", dest="methods", default=methods,
                   help="comma-separated methods (named settings in ekdaa_cuda.reproduce.SETTINGS)")
    t.add_argument("--trials", type=int, default=10)
    t.add_argument("--test-limit", type=int, default=None, help="use only the first N test images")
    t.add_argument("--out", default="runs/table2", help="output folder (runs, table2.json, table2.md)")
    t.add_argument("--keep-checkpoints", action="store_true", help="keep each finished run's checkpoint.npz")
    t.add_argument("--literal", action="store_true",
                   help="use the paper tables' literal settings (relu, larger lr) where ours deviate")
    _engine_args(t)

    c = what.add_parser("curves", help="learning curves from the runs of `reproduce table2`", formatter_class=fmt)
    c.add_argument("--dataset", default="fashion-mnist")
    c.add_argument("--rules", "--methods", dest="methods", default=None, help="methods to plot (default: all found)")
    c.add_argument("--out", default="runs/table2", help="the folder `reproduce table2` wrote")

    s = what.add_parser("tsne", help="t-SNE of the last hidden layer at chosen epochs", formatter_class=fmt)
    common(s, 2)
    s.add_argument("--rule", "--method", dest="method", default="ekdaa", choices=list(SETTINGS))
    s.add_argument("--at", default=None, help="comma-separated epochs to plot (0 = initial weights)")
    s.add_argument("--samples", type=int, default=1000, help="test images embedded")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", default="runs/tsne")

    a = what.add_parser("alignment", help="angle of each rule's updates to the true gradient over training",
                        formatter_class=fmt)
    common(a, 1)
    a.add_argument("--rules", "--methods", dest="methods", default="ekdaa,fa,kp,dfa,sdfa,drtp")
    a.add_argument("--every", type=int, default=20, help="measure every N steps (and at every epoch end)")
    a.add_argument("--probe", type=int, default=100, help="training images in the probe batch")
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--out", default="runs/alignment")


def _reproduce(args) -> int:
    from . import reproduce as rp

    say = lambda msg: print(msg, flush=True)  # noqa: E731
    try:
        if args.what == "curves":
            say(f"wrote {rp.curves(args.out, args.dataset, args.methods)}")
            return 0
        common = dict(dataset=args.dataset, epochs=args.epochs, train_limit=args.train_limit, backend=args.backend,
                      out_dir=args.out, data_root=args.data_root, overrides=rp.parse_overrides(args.set),
                      progress=not args.no_progress)
        if args.what == "table2":
            rows = rp.table2(methods=args.methods, trials=args.trials, test_limit=args.test_limit,
                             keep_checkpoints=args.keep_checkpoints, literal=args.literal, log=say,
                             engine=args.engine, address=args.address, cpus_per_run=args.cpus_per_run,
                             retries=args.retries, **common)
            say(rp.summary_table(rows))
            say(f"wrote {args.out}/table2.json and {args.out}/table2.md")
        elif args.what == "tsne":
            at = None if args.at is None else [int(a) for a in args.at.split(",")]
            say(f"wrote {rp.tsne(method=args.method, at=at, samples=args.samples, seed=args.seed, **common)}")
        else:
            path = rp.alignment(methods=args.methods, every=args.every, probe=args.probe, seed=args.seed, **common)
            say(f"wrote {path}")
    except (ValueError, FileNotFoundError, RuntimeError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def _train(args) -> int:
    from .training import TrainingDiverged, train

    options = {k: getattr(args, k) for k in _MODEL_FLAGS if getattr(args, k) is not None}
    if args.bias is not None:
        options["bias"] = args.bias
    print(f"ekdaa-cuda {__version__}: training preset {args.preset} with rule {args.rule} "
          f"(backend {args.backend}; CUDA: {cuda_status()})", flush=True)
    try:
        result = train(preset=args.preset, rule=args.rule, backend=args.backend, epochs=args.epochs,
                       batch_size=args.batch_size, train_limit=args.train_limit, test_limit=args.test_limit,
                       seed=args.seed, dataset=args.dataset, data_root=args.data_root, out_dir=args.out,
                       resume=args.resume, checkpoint_every=args.checkpoint_every, progress=not args.no_progress,
                       schedule=args.schedule,
                       log=lambda msg: print(msg, flush=True), **options)
    except TrainingDiverged as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"done: {result.summary()}")
    if result.out_dir:
        print(f"metrics and checkpoint in {result.out_dir}")
    return 0


def _info() -> int:
    print(f"ekdaa-cuda {__version__}")
    print(f"rules: {', '.join(RULES)}; presets: {', '.join(sorted(PRESETS))}")
    print(f"CUDA: {cuda_status()}")
    return 0


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "train":
        return _train(args)
    if args.command == "reproduce":
        return _reproduce(args)
    if args.command == "sweep":
        return _sweep(args)
    return _info()


if __name__ == "__main__":
    sys.exit(main())

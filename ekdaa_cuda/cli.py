"""The ``ekdaa-cuda`` command.

    ekdaa-cuda train --preset fmnist --epochs 1            # best backend available
    ekdaa-cuda train --preset fmnist --out runs/a --resume  # continue a stopped run
    ekdaa-cuda train --preset fmnist --out runs/a --overwrite  # replace a run (else an existing run is refused)
    ekdaa-cuda info                                         # version, backends, CUDA and simulator status
    ekdaa-cuda reproduce table2 --dataset fashion-mnist --trials 10 --out runs/t2   # paper Table 2
    ekdaa-cuda reproduce curves|tsne|alignment ...          # paper figures (see ekdaa_cuda.reproduce)
    ekdaa-cuda sweep sweep.toml --out runs/s1 [--engine ray]  # many runs (see ekdaa_cuda.sweep)
"""

from __future__ import annotations

import argparse
import shlex
import sys

from . import __version__, cuda_status, sim_status
from .layers import PRESETS
from .model import _CHOICES, BACKENDS, DEFAULT_OPTIONS, RULES, check_layer_lr, check_range, check_widths
from .reference import ACTIVATIONS
from .training import DEFAULT_THREADS, MODEL_OPTIONS, SCHEDULES


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Shows "(default: X)" after an option's help when X is a real value (never "None"/"False":
    such options say in their help what leaving them out means)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if ("%(default)" not in text and "default:" not in text and action.option_strings and action.nargs != 0
                and action.default not in (None, argparse.SUPPRESS)):
            text += " (default: %(default)s)"
        return text


def _checked(key: str, typ=float):
    """An argparse type that parses a model option and checks its range (the same test as train())."""
    def parse(text: str):
        try:
            value = typ(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {typ.__name__}, got {text!r}") from None
        try:
            check_range(key, value)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc).replace(f"option {key} ", "")) from None
        return value

    parse.__name__ = typ.__name__
    return parse


def _count(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    parse.__name__ = "int"
    return parse


def _widths(text: str) -> tuple:
    try:
        return tuple(check_widths([int(w) for w in text.split(",")]))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers such as 32,64,128,128, "
                                         f"got {text!r}") from None


def _layer_lr(text: str) -> dict:
    try:
        pairs = [item.split("=") for item in text.split(",")]
        if any(len(p) != 2 for p in pairs):
            raise ValueError
        return check_layer_lr({name.strip(): float(factor) for name, factor in pairs})
    except ValueError as exc:
        why = f" ({exc})" if str(exc) else ""
        raise argparse.ArgumentTypeError(f"expected comma-separated LAYER=FACTOR pairs with FACTOR >= 0, such as "
                                         f"conv1=0.1,conv2=0.5, got {text!r}{why}") from None


def _default(key: str) -> str:
    return f"default: {DEFAULT_OPTIONS[key]}"


_EXIT_CODES = """exit status: 0 done; 1 training diverged (NaN/inf, or the loss passed its bound); 2 bad
arguments, missing data or an --out folder that already holds a run; 130 interrupted (Ctrl-C: a
checkpoint is written to --out and the command that resumes is printed)."""


def _add_train(sub) -> None:
    t = sub.add_parser("train", help="train a preset and report per-epoch accuracy", formatter_class=_Formatter,
                       description="Train a preset (the paper's networks and settings) on its dataset, evaluating on "
                                   "the test split after every epoch.", epilog=_EXIT_CODES)
    r = t.add_argument_group("run")
    r.add_argument("--preset", default="fmnist", choices=sorted(PRESETS),
                   help="network and dataset: the paper's CNNs (fmnist, cifar, svhn) or the FC baselines (*-fc)")
    r.add_argument("--rule", default="ekdaa", choices=RULES, help="learning rule (see ekdaa_cuda/rules.py)")
    r.add_argument("--backend", default="auto", choices=BACKENDS,
                   help="auto: cuda when usable (extension built, driver, device and CuPy; see `ekdaa-cuda info`), "
                        "else numpy; cuda-sim: the same kernels on the CPU simulator (slow, for testing kernels)")
    r.add_argument("--epochs", type=_count(1), default=10, help="epochs in all (a resumed run continues up to it)")
    r.add_argument("--batch-size", type=_count(1), default=50, help="images per update")
    r.add_argument("--seed", type=_count(0), default=0, help="seed of the initial weights, batch order and dropout")
    r.add_argument("--train-limit", type=_count(1), default=None,
                   help="use only the first N training images (default: all)")
    r.add_argument("--test-limit", type=_count(1), default=None, help="use only the first N test images (default: all)")
    r.add_argument("--dataset", default=None,
                   help="dataset name (default: the preset's, e.g. fashion-mnist for fmnist)")
    r.add_argument("--data-root", default=None,
                   help="folder holding the dataset files (default: $EKDAA_DATA, then the cache and system folders "
                        "listed in the README)")
    r.add_argument("--schedule", default="constant", choices=SCHEDULES, help="learning-rate schedule over the epochs")
    r.add_argument("--threads", type=_count(1), default=None,
                   help=f"BLAS threads for the CPU arithmetic (default: {DEFAULT_THREADS}, the fastest measured on a "
                        "busy 2-core machine; see the README)")
    r.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    o = t.add_argument_group("output")
    o.add_argument("--out", default=None,
                   help="output folder: checkpoint.npz, metrics.json, metrics.csv, curves.png (default: none, "
                        "nothing is written)")
    o.add_argument("--resume", action="store_true", help="continue the run in --out exactly from its checkpoint")
    o.add_argument("--overwrite", action="store_true",
                   help="replace the run in --out (without --resume or --overwrite an --out holding a run is refused)")
    o.add_argument("--checkpoint-every", type=_count(0), default=0,
                   help="also checkpoint every N updates (0: only after each epoch)")
    o.add_argument("--no-plot", dest="plot", action="store_false",
                   help="do not draw curves.png (drawn after every epoch when matplotlib is installed)")
    m = t.add_argument_group("model options", "Left out, an option keeps the default shown, which is the paper's "
                                              "setting (ekdaa_cuda.model.DEFAULT_OPTIONS).")
    m.add_argument("--lr", type=_checked("lr"), default=None, help=f"learning rate, > 0 ({_default('lr')})")
    m.add_argument("--optimizer", default=None, choices=_CHOICES["optimizer"],
                   help=f"optimizer ({_default('optimizer')})")
    m.add_argument("--momentum", type=_checked("momentum"), default=None,
                   help=f"SGD momentum, in [0, 1) ({_default('momentum')})")
    m.add_argument("--beta1", type=_checked("beta1"), default=None, help=f"Adam β1, in [0, 1) ({_default('beta1')})")
    m.add_argument("--beta2", type=_checked("beta2"), default=None, help=f"Adam β2, in [0, 1) ({_default('beta2')})")
    m.add_argument("--eps", type=_checked("eps"), default=None, help=f"Adam/RMSprop ε, > 0 ({_default('eps')})")
    m.add_argument("--decay", type=_checked("decay"), default=None,
                   help=f"RMSprop decay of the squared-update average, in [0, 1) ({_default('decay')})")
    m.add_argument("--rho", type=_checked("rho"), default=None,
                   help=f"Pascanu rescaling threshold per tensor, >= 0, 0 = off ({_default('rho')})")
    m.add_argument("--weight-decay", type=_checked("weight_decay"), default=None,
                   help="decoupled weight decay wd, >= 0: p ← p − lr·wd·p after each step, on every tensor "
                        f"(AdamW / SGDW; {_default('weight_decay')}, off)")
    m.add_argument("--beta", type=_checked("beta"), default=None,
                   help=f"EKDAA β, the step of the target y = φ(h − βd), >= 0 ({_default('beta')})")
    m.add_argument("--beta-end", type=_checked("beta"), default=None,
                   help="move β linearly from --beta at the first update to this value at the last, >= 0 "
                        "(default: β stays fixed); 0 is part of the best signum setting "
                        "(ekdaa-signum-release-fc1-fast, with --layer-lr conv1=0.1,fc1=2)")
    m.add_argument("--gamma", type=_checked("gamma"), default=None,
                   help=f"EKDAA γ, the scale of the error-kernel update ΔE = γΔW, >= 0 ({_default('gamma')})")
    m.add_argument("--activation", default=None, choices=ACTIVATIONS,
                   help=f"hidden activation ({_default('activation')})")
    m.add_argument("--dropout", type=_checked("dropout"), default=None,
                   help="dropout rate of every hidden layer, in [0, 1); sets both of the next two (default: 0, off)")
    m.add_argument("--dropout-conv", type=_checked("dropout_conv"), default=None,
                   help=f"dropout rate of the conv layers, in [0, 1) ({_default('dropout_conv')})")
    m.add_argument("--dropout-fc", type=_checked("dropout_fc"), default=None,
                   help=f"dropout rate of the hidden FC layers, in [0, 1) ({_default('dropout_fc')})")
    m.add_argument("--bias", action=argparse.BooleanOptionalAction, default=None,
                   help="give every layer a bias (default: no bias, as in the paper)")
    m.add_argument("--init", default=None, choices=_CHOICES["init"], help=f"forward weight init ({_default('init')})")
    m.add_argument("--error-init", default=None, choices=_CHOICES["error_init"],
                   help=f"error-kernel init; forward = a copy of W ({_default('error_init')}; forward with --variant "
                        "release)")
    m.add_argument("--unpool", default=None, choices=_CHOICES["unpool"],
                   help=f"how d passes a max-pool upwards ({_default('unpool')}; bilinear with --variant release)")
    m.add_argument("--normalize", default=None, choices=_CHOICES["normalize"],
                   help=f"rescale d before the target: release = divide d and ΔW by their peak, rms = d to the RMS "
                        f"of h ({_default('normalize')}; release with --variant release)")
    m.add_argument("--variant", default=None, choices=_CHOICES["variant"],
                   help=f"paper equations, or the authors' TensorFlow release ({_default('variant')})")
    m.add_argument("--dtype", default=None, choices=_CHOICES["dtype"],
                   help=f"working precision; cuda computes in float32 ({_default('dtype')})")
    m.add_argument("--kp-decay", type=_checked("kp_decay"), default=None,
                   help=f"Kolen–Pollack weight decay κ, rule kp only, >= 0 ({_default('kp_decay')})")
    m.add_argument("--layer-lr", type=_layer_lr, default=None,
                   help="per-layer factors of the learning rate, LAYER=FACTOR,...: e.g. conv1=0.1 steps conv1 (W, E, "
                        "bias) at lr × 0.1; 0 freezes a layer (default: every layer at lr; conv1=0.1,fc1=2 gave the "
                        "best signum runs, setting ekdaa-signum-release-fc1-fast)")
    m.add_argument("--widths", type=_widths, default=None,
                   help="comma-separated sizes of the preset's conv/FC layers in order, e.g. 32,64,128,128 for "
                        "fmnist (default: the preset's)")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ekdaa-cuda", formatter_class=_Formatter,
                                description="EKDAA and friends: backprop-free CNN training.",
                                epilog="`ekdaa-cuda COMMAND --help` describes a command. Without a command "
                                       "this help is printed and the exit status is 2.")
    p.add_argument("--version", action="version", version=f"ekdaa-cuda {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    _add_train(sub)
    sub.add_parser("info", help="print the version, backends, BLAS threads and CUDA status")
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
    r.set_defaults(print_help=r.print_help)
    what = r.add_subparsers(dest="what", metavar="WHAT")
    fmt = argparse.ArgumentDefaultsHelpFormatter
    methods = ",".join(SETTINGS)

    def common(q, epochs):
        q.add_argument("--dataset", default="fashion-mnist", help=f"one of {', '.join(DATASETS)}")
        q.add_argument("--epochs", type=int, default=epochs)
        q.add_argument("--train-limit", type=int, default=None, help="use only the first N training images")
        q.add_argument("--backend", default="auto", choices=BACKENDS)
        q.add_argument("--data-root", default=None, help="folder holding the dataset files")
        q.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a setting for every method (model option or batch_size), e.g. rho=1.0")
        q.add_argument("--no-progress", action="store_true", help="no progress bars")

    t = what.add_parser("table2", help="N trials of each method; table2.json / table2.md", formatter_class=fmt)
    common(t, DEFAULT_EPOCHS)
    t.add_argument("--rules", "--methods", dest="methods", default=methods,
                   help="comma-separated methods (named settings in ekdaa_cuda.reproduce.SETTINGS)")
    t.add_argument("--trials", type=int, default=10)
    t.add_argument("--seeds", default=None,
                   help="comma-separated seeds to run instead of 0..trials-1 (e.g. 3,4: spread a campaign over "
                   "processes sharing --out; a later run with --trials tabulates them)")
    t.add_argument("--test-limit", type=int, default=None, help="use only the first N test images")
    t.add_argument("--out", default="runs/table2", help="output folder (runs, table2.json, table2.md)")
    t.add_argument("--keep-checkpoints", action="store_true", help="keep each finished run's checkpoint.npz")
    t.add_argument("--literal", action="store_true",
                   help="use the paper tables' literal settings (relu, larger lr) where ours deviate")
    _engine_args(t)

    c = what.add_parser("curves", help="learning curves from the runs of `reproduce table2`", formatter_class=fmt)
    c.add_argument("--dataset", default="fashion-mnist")
    c.add_argument("--rules", "--methods", dest="methods", default=None, help="methods to plot (default: all found)")
    c.add_argument("--out", nargs="+", default=["runs/table2"],
                   help="the folder(s) `reproduce table2` wrote; several are drawn in one figure")
    c.add_argument("--path", default=None, help="the figure (default: curves-<dataset>.png in the first folder)")

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
            say(f"wrote {rp.curves(args.out, args.dataset, args.methods, args.path)}")
            return 0
        common = dict(dataset=args.dataset, epochs=args.epochs, train_limit=args.train_limit, backend=args.backend,
                      out_dir=args.out, data_root=args.data_root, overrides=rp.parse_overrides(args.set),
                      progress=not args.no_progress)
        if args.what == "table2":
            rows = rp.table2(methods=args.methods, trials=args.trials, test_limit=args.test_limit,
                             keep_checkpoints=args.keep_checkpoints, literal=args.literal, log=say,
                             engine=args.engine, address=args.address, cpus_per_run=args.cpus_per_run,
                             retries=args.retries, seeds=args.seeds, **common)
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


def _resume_command(argv: list) -> str:
    """The command line that continues this run: the same arguments, --resume instead of --overwrite."""
    args = [a for a in argv if a != "--overwrite"]
    if "--resume" not in args:
        args.append("--resume")
    return shlex.join(["ekdaa-cuda", *args])


def _train(args, argv: list) -> int:
    from .training import TrainingDiverged, TrainingInterrupted, train

    options = {k: getattr(args, k) for k in MODEL_OPTIONS if getattr(args, k) is not None}
    print(f"ekdaa-cuda {__version__}: training preset {args.preset} with rule {args.rule} "
          f"(backend {args.backend}; CUDA: {cuda_status()})", flush=True)
    try:
        result = train(preset=args.preset, rule=args.rule, backend=args.backend, epochs=args.epochs,
                       batch_size=args.batch_size, train_limit=args.train_limit, test_limit=args.test_limit,
                       seed=args.seed, dataset=args.dataset, data_root=args.data_root, out_dir=args.out,
                       resume=args.resume, overwrite=args.overwrite, checkpoint_every=args.checkpoint_every,
                       progress=args.progress, plot=args.plot, schedule=args.schedule, beta_end=args.beta_end,
                       threads=args.threads,
                       log=lambda msg: print(msg, flush=True), **options)
    except TrainingDiverged as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except TrainingInterrupted as exc:
        print(f"\n{exc}", file=sys.stderr)
        if exc.checkpoint:
            print(f"resume with:\n  {_resume_command(argv)}", file=sys.stderr)
        return 130
    except FileExistsError as exc:
        print(f"error: {exc}".replace("resume=True (CLI --resume)", "--resume").replace(
              "overwrite=True (--overwrite)", "--overwrite").replace("another folder", "another --out"),
              file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"done on backend {result.backend}: {result.summary()}")
    if result.out_dir:
        print(f"checkpoint, metrics.json, metrics.csv and curves in {result.out_dir}")
    return 0


def _info() -> int:
    from .training import _blas_description

    print(f"ekdaa-cuda {__version__}")
    print(f"rules: {', '.join(RULES)}; presets: {', '.join(sorted(PRESETS))}")
    print(f"CPU backend: BLAS {_blas_description()}, {DEFAULT_THREADS} thread(s) by default (--threads)")
    print(f"CUDA (ekdaa_cuda._C, backend cuda): {cuda_status()}")
    print(f"CUDA simulator (ekdaa_cuda._sim, backend cuda-sim): {sim_status()}")
    return 0


def main(argv=None) -> int:
    """Run the command in ``argv`` (default: ``sys.argv[1:]``) and return the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.command is None:
            parser.print_help()
            return 2
        if args.command == "train":
            return _train(args, argv)
        if args.command == "sweep":
            return _sweep(args)
        if args.command == "reproduce":
            if args.what is None:
                args.print_help()
                return 2
            return _reproduce(args)
        return _info()
    except KeyboardInterrupt:  # a second Ctrl-C, or one outside the training loop (loading data, reproduce)
        print("\ninterrupted: nothing more was saved (a checkpoint already in --out is unchanged)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

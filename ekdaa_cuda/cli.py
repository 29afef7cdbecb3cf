"""The ``ekdaa-cuda`` command.

    ekdaa-cuda train --preset fmnist --epochs 1            # best backend available
    ekdaa-cuda train --preset fmnist --out runs/a --resume  # continue a stopped run
    ekdaa-cuda info                                         # version, backends, CUDA status
"""

from __future__ import annotations

import argparse
import sys

from . import __version__, cuda_status
from .layers import PRESETS
from .model import _CHOICES, RULES
from .reference import ACTIVATIONS

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
    t.add_argument("--bias", action=argparse.BooleanOptionalAction, default=None, help="use biases")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    for flag, typ in _MODEL_FLAGS.items():
        t.add_argument(f"--{flag.replace('_', '-')}", type=typ, default=None, choices=_FLAG_CHOICES.get(flag),
                       help="model option (default: the preset's)")

    sub.add_parser("info", help="print the version, backends and CUDA status")
    return p


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
    return _info()


if __name__ == "__main__":
    sys.exit(main())

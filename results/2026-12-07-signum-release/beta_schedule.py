"""EKDAA-signum on the release network with a β schedule (issue 13, point 4: "try a β schedule").

The setting is `ekdaa-signum-release-slow` (linear conv stack, signum in fc1, SGD 1e-4, momentum 0.9,
cosine decay of the step, batch 50); only β, the step of the target y = φ(h − βd), changes during the
run: β(t) = β_start + (β_end − β_start)·s(t), with s rising from 0 at the first update to 1 at the last,
linearly or along the cosine's shape (s = 0.5·(1 − cos(π t/T))). The linear shape is now the package's
``train(beta_end=...)`` (setting ``ekdaa-signum-release-beta-decay``); the script, written before that option,
sets the model's β before every update, with the same batch order, dropout masks and
step schedule as `reproduce` / `ekdaa-cuda train` (``reproduce._train_with_hook``). Not resumable
(a 10-epoch run is 10-20 minutes of one core); the JSON is rewritten after every epoch.

    PYTHONPATH=<clone> python beta_schedule.py --beta-start 0.9 --beta-end 0 --out beta-0.9to0.json
"""

from __future__ import annotations

import argparse
import math
import time

from ekdaa_cuda import reproduce
from ekdaa_cuda.training import atomic_write_json, blas_threads


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--setting", default="ekdaa-signum-release-slow")
    ap.add_argument("--beta-start", type=float, required=True)
    ap.add_argument("--beta-end", type=float, required=True)
    ap.add_argument("--shape", choices=("linear", "cosine"), default="linear")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    cfg = reproduce.method_config(args.setting, "fashion-mnist")
    x, y, xt, yt = reproduce.load_data("fashion-mnist")
    model, schedules = reproduce._build_for_hook(cfg, "numpy", args.seed)
    batches = -(-len(x) // cfg["batch_size"])
    total = args.epochs * batches

    def beta_at(step: int) -> float:
        s = step / max(total - 1, 1)
        if args.shape == "cosine":
            s = 0.5 * (1.0 - math.cos(math.pi * s))
        return args.beta_start + (args.beta_end - args.beta_start) * s

    record = {"setting": args.setting, "options": cfg["options"], "batch_size": cfg["batch_size"],
              "beta_start": args.beta_start, "beta_end": args.beta_end, "shape": args.shape,
              "epochs": args.epochs, "seed": args.seed, "machine": reproduce.machine_info("numpy"), "history": []}
    clock = [time.time()]

    def hook(epoch: int, step: int) -> None:
        if step > 0 and step % batches == 0:  # an epoch ended: evaluate on the test split
            test = model.evaluate(xt, yt)
            record["history"].append({"epoch": step // batches, "beta": model.opts["beta"],
                                      "test_accuracy": test["accuracy"], "test_loss": test["loss"],
                                      "seconds": time.time() - clock[0]})
            print(f"epoch {step // batches}: beta {model.opts['beta']:.3f} test {100 * test['accuracy']:.2f}",
                  flush=True)
            clock[0] = time.time()
            if step == total:
                record["train_accuracy"] = model.evaluate(x, y)["accuracy"]
                record["test_accuracy"] = test["accuracy"]
            atomic_write_json(args.out, record)
        model.opts["beta"] = beta_at(step)  # β of the next update

    with blas_threads(1):
        reproduce._train_with_hook(model, x, y, cfg["batch_size"], args.seed, args.epochs, hook, every=1,
                                   progress=False, schedule=schedules["schedule"])


if __name__ == "__main__":
    main()

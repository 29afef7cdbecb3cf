"""EKDAA-signum on the release network with a larger SGD step for chosen layers (issue 13, point 4).

At SGD 1e-4, the step of the best signum setting, conv2 and conv3 of the release network move by under
3% of their norm over a whole run: their updates are 4-5 orders of magnitude smaller, relative to their
weights, than fc1's (`../2026-12-07-signum-release/`, "Where the release network learns"). This screen
asks whether letting them learn helps: every update of the named layers (forward weight W and error
kernel E alike, so ΔE = γΔW still holds) is multiplied by a factor before the optimizer sees it. Under
SGD with momentum that is the same as a per-layer learning rate (the momentum buffer is linear in Δ).

Everything else is the named setting (default ``ekdaa-signum-release-beta-decay``): same batch order,
dropout masks, cosine step schedule and β line as ``ekdaa-cuda train`` (``reproduce._train_with_hook``).
After every epoch the JSON (test accuracy, and ‖W − W₀‖ / ‖W₀‖ per layer) is rewritten atomically.

    PYTHONPATH=<clone> python layer_step.py --scale conv2=100 --scale conv3=300 --out screen/a.json
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from ekdaa_cuda import reproduce
from ekdaa_cuda.training import atomic_write_json, blas_threads


def parse_scale(text: str) -> tuple[str, float]:
    layer, _, factor = text.partition("=")
    if not layer or not factor or float(factor) < 0:
        raise argparse.ArgumentTypeError(f"expected LAYER=FACTOR with FACTOR >= 0, got {text!r}")
    return layer, float(factor)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--setting", default="ekdaa-signum-release-beta-decay")
    ap.add_argument("--scale", type=parse_scale, action="append", default=[],
                    help="LAYER=FACTOR: multiply that layer's updates by FACTOR (0 freezes it; repeatable)")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    scales = dict(args.scale)

    cfg = reproduce.method_config(args.setting, "fashion-mnist")
    x, y, xt, yt = reproduce.load_data("fashion-mnist")
    model, schedules = reproduce._build_for_hook(cfg, "numpy", args.seed)
    layers = sorted({key.split(".")[0] for key in model.params})
    unknown = set(scales) - set(layers)
    if unknown:
        raise SystemExit(f"unknown layer(s) {sorted(unknown)}; this network has {layers}")
    initial = {key: value.copy() for key, value in model.params.items() if key.endswith(".weight")}
    batches = -(-len(x) // cfg["batch_size"])
    total = args.epochs * batches

    plain_step = model.optimizer.step

    def scaled_step(params, grads, lr_scale=1.0):
        grads = {key: g * scales.get(key.split(".")[0], 1.0) for key, g in grads.items()}
        return plain_step(params, grads, lr_scale)

    model.optimizer.step = scaled_step

    record = {"setting": args.setting, "options": cfg["options"], "batch_size": cfg["batch_size"],
              "scales": scales, "epochs": args.epochs, "seed": args.seed,
              "machine": reproduce.machine_info("numpy"), "history": []}
    clock = [time.time()]

    def hook(epoch: int, step: int) -> None:
        if step == 0 or step % batches:
            return
        test = model.evaluate(xt, yt)
        drift = {key.split(".")[0]: float(np.linalg.norm(model.params[key] - w0) / np.linalg.norm(w0))
                 for key, w0 in initial.items()}
        record["history"].append({"epoch": step // batches, "test_accuracy": test["accuracy"],
                                  "test_loss": test["loss"], "drift": drift, "seconds": time.time() - clock[0]})
        print(f"epoch {step // batches}: test {100 * test['accuracy']:.2f} drift "
              + " ".join(f"{k} {v:.3g}" for k, v in drift.items()), flush=True)
        clock[0] = time.time()
        if step == total:
            record["train_accuracy"] = model.evaluate(x, y)["accuracy"]
            record["test_accuracy"] = test["accuracy"]
        atomic_write_json(args.out, record)

    with blas_threads(1):
        reproduce._train_with_hook(model, x, y, cfg["batch_size"], args.seed, args.epochs, hook,
                                   progress=False, **schedules)


if __name__ == "__main__":
    main()

"""How FA's conv updates change its network over the first epoch (issue 13, point 4; see README).

Trains the whole fmnist CNN with a rule's named setting (default FA: tanh, SGD 5e-4, momentum 0.9,
summed updates, batch 64) for one epoch and, every ``--every`` updates, records on fixed probe images
(the first 500 training images, the first 2,000 test images; inference, no dropout): each layer's
relative weight change ‖W − W₀‖ / ‖W₀‖, the share of its outputs in tanh's saturated range
(|a| > 0.96, i.e. |h| > 2) and their mean |a|, and the test accuracy on the 2,000 probe images.
``--freeze-conv`` puts the conv weights back to their initial values after every step (the control:
the same run with conv layers that never learn).

    PYTHONPATH=<clone> python fa_drift.py --setting fa --seed 0 --every 47 --out fa_drift-fa.json
"""

from __future__ import annotations

import argparse

import numpy as np

from ekdaa_cuda.data import load_dataset
from ekdaa_cuda.model import build_model
from ekdaa_cuda.reproduce import SETTINGS, machine_info
from ekdaa_cuda.training import atomic_write_json, blas_threads


def snapshot(model, w0: dict, probe_x, test_x, test_y, step: int) -> dict:
    layers = {}
    for b in model.blocks[:-1]:
        w = model.backend.to_numpy(model.params[f"{b.name}.weight"])
        a = model.hidden_features(probe_x, b.name)
        layers[b.name] = {"weight_change": float(np.linalg.norm(w - w0[b.name]) / np.linalg.norm(w0[b.name])),
                          "saturated": float(np.mean(np.abs(a) > 0.96)), "mean_abs": float(np.mean(np.abs(a)))}
    return {"step": step, "test_accuracy": model.evaluate(test_x, test_y)["accuracy"], "layers": layers}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--setting", default="fa")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--every", type=int, default=47)
    ap.add_argument("--freeze-conv", action="store_true")
    ap.add_argument("--out", default="fa_drift.json")
    args = ap.parse_args()
    setting = SETTINGS[args.setting]
    x, y = load_dataset("fashion-mnist", "train")
    xt, yt = load_dataset("fashion-mnist", "test", limit=2000)
    model = build_model("fmnist", rule=setting["rule"], backend="numpy", seed=args.seed, **setting["options"])
    w0 = {b.name: model.backend.to_numpy(model.params[f"{b.name}.weight"]).copy() for b in model.blocks}
    record = {"what": __doc__.splitlines()[0], "setting": args.setting, "seed": args.seed,
              "freeze_conv": args.freeze_conv, "options": setting["options"], "batch_size": setting["batch_size"],
              "machine": machine_info("numpy"), "snapshots": []}
    conv_blocks = [b for b in model.blocks if b.kind == "conv"]
    batch, order = setting["batch_size"], np.random.default_rng(args.seed).permutation(len(x))
    with blas_threads(1):
        for step, i in enumerate(range(0, len(order), batch)):
            if step % args.every == 0:
                record["snapshots"].append(snapshot(model, w0, x[:500], xt, yt, step))
                atomic_write_json(args.out, record)
                s = record["snapshots"][-1]
                print(f"step {step}: test {100 * s['test_accuracy']:.1f} " + " ".join(
                    f"{k} dW {v['weight_change']:.2f} sat {v['saturated']:.2f}" for k, v in s["layers"].items()),
                    flush=True)
            model.step(x[order[i:i + batch]], y[order[i:i + batch]])
            if args.freeze_conv:
                for b in conv_blocks:
                    model.params[f"{b.name}.weight"][...] = model.backend.asarray(w0[b.name])
        record["snapshots"].append(snapshot(model, w0, x[:500], xt, yt, step + 1))
        atomic_write_json(args.out, record)


if __name__ == "__main__":
    main()

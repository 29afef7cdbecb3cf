"""Watch one EKDAA-signum run from the inside: every K steps, per layer, the share of units with
e != 0, the median |h| and the share of hidden units that are constant across the batch (a
collapsed code); the running training accuracy; and the churn: the share of fc1 bits of 200
fixed training images that flipped since the last report. Writes probe-<name>.json beside this file.

    python probe.py NAME '{"activation": "signum", ...}' [--train 3000] [--epochs 1] [--every 20] [--freeze L1,L2]
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

import ekdaa_cuda as ek
from ekdaa_cuda.data import load_dataset


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("name")
    ap.add_argument("options")
    ap.add_argument("--train", type=int, default=3000)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--every", type=int, default=20)
    ap.add_argument("--freeze", default="", help="comma-separated layers whose W and E are reset after every step "
                    "(a control: e.g. conv1,conv2,conv3 trains only fc1 and the output)")
    ap.add_argument("--fix-norm", action="store_true", help="after every step, rescale each hidden layer's W to its "
                    "initial Frobenius norm (leaves a signum network's function unchanged; an experiment, not an "
                    "option of the package)")
    args = ap.parse_args()
    opts = json.loads(args.options)
    x, y = load_dataset("fashion-mnist", "train", limit=args.train)
    xt, yt = load_dataset("fashion-mnist", "test", limit=2000)
    model = ek.build_model("fmnist", backend="numpy", seed=0, **opts)
    be, rows, seen = model.backend, [], {}
    hidden = [f"{b.name}.weight" for b in model.blocks[:-1]]
    norms = {k: float(np.linalg.norm(model.params[k])) for k in hidden}
    orig = be.epilogue

    def spy(d, cache, block, kind, beta, forward_linear):
        e = orig(d, cache, block, kind, beta, forward_linear)
        seen[block.name] = (np.asarray(cache["h"]), np.asarray(e))
        return e

    be.epilogue = spy
    correct = total = 0
    fixed, prev = x[:200], None  # churn: share of fc1 bits on 200 fixed images that flipped since the last report
    for epoch in range(args.epochs):
        order = np.random.default_rng([0, epoch]).permutation(len(x))
        for b in range(len(x) // 50):
            idx = order[b * 50:(b + 1) * 50]
            keep = {k: v.copy() for k, v in model.params.items() if k.split(".")[0] in args.freeze.split(",")}
            s = model.step(x[idx], y[idx])
            for k, v in keep.items():
                model.params[k][...] = v
            if args.fix_norm:
                for k in hidden:
                    model.params[k] *= model.params[k].dtype.type(norms[k] / float(np.linalg.norm(model.params[k])))
            correct, total = correct + s["accuracy"] * 50, total + 50
            if model.step_count % args.every == 0:
                code = model.hidden_features(fixed, "fc1")
                row = {"step": model.step_count, "train_acc_running": correct / total,
                       "fc1_churn": None if prev is None else float(np.mean(code != prev))}
                prev = code
                for name, (h, e) in seen.items():
                    z = np.sign(h).reshape(len(h), -1)
                    row[name] = {"e_nonzero": float(np.mean(e != 0)), "median_abs_h": float(np.median(np.abs(h))),
                                 "constant_units": float(np.mean(np.all(z == z[:1], axis=0)))}
                rows.append(row)
                correct = total = 0
                print(json.dumps(row), flush=True)
    be.epilogue = orig
    acc = model.evaluate(xt, yt)["accuracy"]
    print("test accuracy (2k)", acc)
    Path(__file__).with_name(f"probe-{args.name}.json").write_text(
        json.dumps({"options": opts, "freeze": args.freeze, "fix_norm": args.fix_norm, "train": args.train,
                    "epochs": args.epochs, "rows": rows, "test_accuracy_2k": acc}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Issue 13 points 3 and 4: cheap screening runs of EKDAA (signum; tanh in group tanh-a) on Fashion-MNIST.

Protocol per run: the first N training images (default 10,000), E epochs (default 2), batch 50,
seed 0, test accuracy on all 10,000 test images after every epoch, NumPy backend (float32).
Results are appended to sweep.json (one entry per run name; finished runs are skipped).

    python sweep.py GROUP [GROUP ...] [--train N] [--epochs E] [--seeds 0,1]
"""

import argparse
import json
import sys
import time
from pathlib import Path

import ekdaa_cuda as ek
from ekdaa_cuda.data import load_dataset

SIG = {"activation": "signum"}
REL = {"activation": "signum", "variant": "release"}
ADAM = {"optimizer": "adam", "lr": 1e-3, "schedule": "cosine"}
GROUPS = {
    "faithful-a": {
        "paper (sgd 5e-4, beta 0.9)": SIG,
        "sgd 5e-4, rms, beta 0.3": {**SIG, "normalize": "rms", "beta": 0.3},
        "adam cos, beta 0.9": {**SIG, **ADAM},
        "adam cos, rms, beta 0.3": {**SIG, **ADAM, "normalize": "rms", "beta": 0.3},
        "adam cos, rms, beta 1": {**SIG, **ADAM, "normalize": "rms", "beta": 1.0},
        "adam cos, rms, beta 0.1": {**SIG, **ADAM, "normalize": "rms", "beta": 0.1},
        "adam cos, beta 30": {**SIG, **ADAM, "beta": 30.0},
        "sgd 5e-5, beta 10": {**SIG, "lr": 5e-5, "beta": 10.0},
    },
    "release-a": {
        "release: paper (sgd 5e-4, beta 0.9)": REL,
        "release: adam cos": {**REL, **ADAM},
        "release: adam cos, rms, beta 0.3": {**REL, **ADAM, "normalize": "rms", "beta": 0.3},
        "release: adam cos, normalize none": {**REL, **ADAM, "normalize": "none"},
    },
    "reference": {
        "tanh, adam cos (ekdaa-tuned)": {**ADAM},
        "tanh, release variant, adam cos, rms, beta 0.3": {"variant": "release", **ADAM, "normalize": "rms",
                                                           "beta": 0.3},
    },
    "tanh-a": {  # issue 13 point 3 (EKDAA >= 91.5%): does normalize="rms" or the release network help tanh?
        "tanh, adam cos, rms, beta 0.3": {**ADAM, "normalize": "rms", "beta": 0.3},
        "tanh, adam cos, rms, beta 1": {**ADAM, "normalize": "rms", "beta": 1.0},
        "tanh, adam cos, beta 3": {**ADAM, "beta": 3.0},
        "tanh, release variant, adam cos": {"variant": "release", **ADAM},
        "tanh, release variant, adam cos, rms, beta 1": {"variant": "release", **ADAM, "normalize": "rms",
                                                         "beta": 1.0},
    },
    "release-b": {
        "release: adam 3e-4 cos, rms, beta 0.3": {**REL, **ADAM, "lr": 3e-4, "normalize": "rms", "beta": 0.3},
        "release: adam cos, rms, beta 1": {**REL, **ADAM, "normalize": "rms", "beta": 1.0},
    },
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("groups", nargs="+", choices=sorted(GROUPS))
    ap.add_argument("--train", type=int, default=10000)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--only", default=None, help="comma-separated run names within the groups")
    args = ap.parse_args()
    data = (*load_dataset("fashion-mnist", "train", limit=args.train), *load_dataset("fashion-mnist", "test"))
    path = Path(__file__).with_name("sweep.json")
    for group in args.groups:
        for name, opts in GROUPS[group].items():
            if args.only and name not in args.only.split(","):
                continue
            for seed in (int(s) for s in args.seeds.split(",")):
                key = f"{name} | {args.train} img x {args.epochs} ep | seed {seed}"
                res = json.loads(path.read_text()) if path.exists() else {}
                if key in res:
                    continue
                opts = dict(opts)
                schedule = opts.pop("schedule", "constant")
                t0 = time.time()
                try:
                    r = ek.train("fmnist", epochs=args.epochs, backend="numpy", progress=False, data=data, seed=seed,
                                 schedule=schedule, **opts)
                    entry = {"test_accuracy": [h["test_accuracy"] for h in r.history],
                             "train_accuracy_running": [h["train_accuracy"] for h in r.history]}
                except Exception as exc:  # a diverged run is a result too
                    entry = {"error": str(exc)}
                entry.update({"group": group, "options": opts, "schedule": schedule, "train_images": args.train,
                              "epochs": args.epochs, "seed": seed, "test_images": 10000,
                              "seconds": round(time.time() - t0, 1)})
                res = json.loads(path.read_text()) if path.exists() else {}
                res[key] = entry
                path.write_text(json.dumps(res, indent=1) + "\n")
                print(key, entry.get("test_accuracy", entry.get("error")), entry["seconds"], flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""One longer confirmation run: all 60,000 training images, all 10,000 test images, E epochs
(cosine decay over those E epochs when the setting uses it), seed 0, NumPy backend. Writes
runs/<name>/metrics.json after every epoch (and a checkpoint, so it can be resumed).

    python longrun.py NAME '{"activation": "signum", "variant": "release", ...}' [--epochs 3] [--resume]
"""

import argparse
import json
import sys
from pathlib import Path

import ekdaa_cuda as ek


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("name")
    ap.add_argument("options")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--resume", action="store_true")
    args = ap.parse_args()
    opts = json.loads(args.options)
    out = Path(__file__).parent / "runs" / args.name
    r = ek.train("fmnist", epochs=args.epochs, backend="numpy", progress=False, seed=args.seed, out_dir=out,
                 resume=args.resume, checkpoint_every=200, log=lambda m: print(m, flush=True), **opts)
    print("final test accuracy", r.test_accuracy)
    return 0


if __name__ == "__main__":
    sys.exit(main())

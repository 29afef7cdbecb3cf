"""How far each layer of a trained run moved from its initial weights: ‖W − W₀‖_F / ‖W₀‖_F per forward
weight, from the checkpoint an `ekdaa-cuda train --out DIR` run leaves in DIR, against the same
setting and seed built afresh (the initial weights derive from the seed alone).

    PYTHONPATH=<clone> python weight_drift.py screen/lr1e-4-rho0-ep20-seed0 --seed 0 > weight_drift.log
"""

import argparse
from pathlib import Path

import numpy as np

from ekdaa_cuda import reproduce
from ekdaa_cuda.training import load_checkpoint

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("run_dir", nargs="+")
ap.add_argument("--setting", default="ekdaa-signum-release-slow", help="named setting the runs started from")
ap.add_argument("--seed", type=int, default=0)
args = ap.parse_args()

cfg = reproduce.method_config(args.setting, "fashion-mnist")
initial = reproduce._build_for_hook(cfg, "numpy", args.seed)[0].state_dict()
for run_dir in args.run_dir:
    arrays, state = load_checkpoint(Path(run_dir) / "checkpoint.npz")
    print(f"{run_dir} (epoch {state['epoch']}, update {int(arrays['step_count'])}):")
    for key, w0 in initial.items():
        if key.endswith(".weight"):  # forward weights; error weights end in "_weight"
            w = arrays[f"param.{key}"]
            print(f"  {key:14s} |W - W0| / |W0| = {np.linalg.norm(w - w0) / np.linalg.norm(w0):.3e}")

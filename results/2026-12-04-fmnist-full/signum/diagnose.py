"""Issue 13 point 4, question 1: how often does EKDAA's signum target differ from φ(h)?

For each hidden layer, on a few training batches, record the pre-activation h and the projected
error d that forms the target y = sign(h - βd) (SPEC.md step 3), and report
- the share of units whose error e = sign(h) - sign(h - βd) is non-zero, at the β used and for
  other β (recomputed from the same h and d: only the hidden layer's own target changes; the
  layers below would see a different d, so the β grid is exact for the top hidden layer only),
- quantiles of |h| and of |βd| (over units with d != 0; argmax unpooling leaves 3/4 of the
  pre-pool positions of a pooled conv with d = 0),
- for how many units |h| < β|d| (necessary for e != 0).
Networks: fresh, and after one epoch on the first 10k training images under a given setting.

    python diagnose.py            # writes diagnose.json beside this file
"""

import json
import sys
import time
from pathlib import Path

import numpy as np

import ekdaa_cuda as ek
from ekdaa_cuda.data import load_dataset

BETAS = [0.9, 3.0, 10.0, 30.0, 100.0]
N_BATCHES, BATCH = 4, 50
NETS = {  # name -> model options
    "faithful (signum everywhere), paper SGD 5e-4": {"activation": "signum"},
    "faithful, Adam 1e-3": {"activation": "signum", "optimizer": "adam", "lr": 1e-3},
    "release variant, paper SGD 5e-4": {"activation": "signum", "variant": "release"},
}


def record(model, x, y):
    """Run the EKDAA sweep on one batch, capturing (h, d) at every hidden layer's epilogue."""
    be, seen = model.backend, []
    orig = be.epilogue

    def spy(d, cache, block, kind, beta, forward_linear):
        seen.append((block.name, np.array(cache["h"], dtype=np.float64), np.array(d, dtype=np.float64)))
        return orig(d, cache, block, kind, beta, forward_linear)

    be.epilogue = spy
    try:
        model.updates(x, y)
    finally:
        be.epilogue = orig
    return seen


def stats(model, x, y):
    per = {}
    for i in range(N_BATCHES):
        for name, h, d in record(model, x[i * BATCH:(i + 1) * BATCH], y[i * BATCH:(i + 1) * BATCH]):
            acc = per.setdefault(name, {"h": [], "d": []})
            acc["h"].append(h.ravel())
            acc["d"].append(d.ravel())
    out = {}
    for name, acc in per.items():
        h, d = np.concatenate(acc["h"]), np.concatenate(acc["d"])
        nz = d != 0
        q = [0.1, 0.5, 0.9]
        row = {"units": int(h.size), "share_d_nonzero": float(nz.mean()),
               "abs_h_q10_50_90": np.quantile(np.abs(h), q).round(4).tolist(),
               "abs_d_q10_50_90_where_d_nonzero": np.quantile(np.abs(d[nz]), q).round(5).tolist() if nz.any() else None,
               "median_abs_h_over_median_abs_d": float(np.median(np.abs(h)) / np.median(np.abs(d[nz]))) if nz.any()
               else None}
        for beta in BETAS:
            e = np.sign(h) - np.sign(h - beta * d)
            row[f"beta={beta}"] = {"share_e_nonzero": float((e != 0).mean()),
                                   "share_e_nonzero_where_d_nonzero": float((e[nz] != 0).mean()) if nz.any() else 0.0,
                                   "share_abs_h_below_beta_abs_d": float((np.abs(h) < beta * np.abs(d)).mean())}
        out[name] = row
    return out


def main():
    xtr, ytr = load_dataset("fashion-mnist", "train", limit=10000)
    xte, yte = load_dataset("fashion-mnist", "test", limit=2000)
    probe_x, probe_y = xtr[:N_BATCHES * BATCH], ytr[:N_BATCHES * BATCH]
    path = Path(__file__).with_name("diagnose.json")
    res = json.loads(path.read_text()) if path.exists() else {}
    for net, opts in NETS.items():
        if net in res:
            continue
        t0 = time.time()
        entry = {"options": opts}
        model = ek.build_model("fmnist", backend="numpy", seed=0, **opts)
        entry["fresh"] = stats(model, probe_x, probe_y)
        r = ek.train("fmnist", epochs=1, backend="numpy", progress=False, data=(xtr, ytr, xte, yte), seed=0, **opts)
        entry["after_1_epoch_10k"] = stats(r.model, probe_x, probe_y)
        entry["after_1_epoch_10k_test_accuracy_2k"] = r.test_accuracy
        entry["seconds"] = time.time() - t0
        res[net] = entry
        path.write_text(json.dumps(res, indent=1) + "\n")
        print(net, f"{r.test_accuracy:.4f}", f"{entry['seconds']:.0f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Does DRTP collapse the CIFAR network's features? Train a rule's Table 2 setting (argv: lr, rule,
last step; default DRTP) on the CIFAR-10 subset and print, at some steps, the last hidden layer's
saturation (share of |z| > 0.99), the spread of each unit across 200 training images relative to
its size (std over images / rms), and the probe accuracy."""
import json
import sys

import numpy as np

from ekdaa_cuda import reproduce as rp
from ekdaa_cuda.model import build_model

lr = float(sys.argv[1]) if len(sys.argv) > 1 else 5e-4
method = sys.argv[2] if len(sys.argv) > 2 else "drtp"
last = int(sys.argv[3]) if len(sys.argv) > 3 else 600
x, y, _, _ = rp.load_data("cifar10", data_root="/work/shared/data")
cfg = rp.method_config(method, "cifar10", {"lr": lr})
model = build_model(cfg["preset"], rule=cfg["rule"], backend="numpy", seed=0, **cfg["options"])
probe_x, probe_y = x[:200], y[:200]
rng = np.random.default_rng(0)
rows = []
for step in range(0, last + 1):
    if step in (0, 25, 50, 100, 200, 400, 600):
        z = model.hidden_features(probe_x).astype(np.float64)
        rms = np.sqrt(np.mean(z**2)) + 1e-12
        row = {"method": method, "lr": lr, "step": step, "saturated": float(np.mean(np.abs(z) > 0.99)),
               "spread_over_images": float(np.mean(z.std(0)) / rms),
               "probe_accuracy": model.evaluate(probe_x, probe_y)["accuracy"]}
        rows.append(row)
        print(json.dumps(row), flush=True)
    idx = rng.integers(0, len(x), cfg["batch_size"])
    model.step(x[idx], y[idx])

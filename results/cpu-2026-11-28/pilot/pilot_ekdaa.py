"""CPU pilot for tuning EKDAA on Fashion-MNIST (issue: beat the paper): 3 epochs on all 60k
training images, test on all 10k, one seed, NumPy backend. Only a pointer for the GPU runs:
3 epochs is far from convergence. Writes pilot_ekdaa.json beside this file."""

import json
import sys
import time
from pathlib import Path

import ekdaa_cuda as ek
from ekdaa_cuda.data import load_dataset

CONFIGS = {
    "paper (sgd 5e-4)": {},
    "sgd 1e-3": {"lr": 1e-3},
    "adam 1e-3": {"optimizer": "adam", "lr": 1e-3},
    "adam 3e-4": {"optimizer": "adam", "lr": 3e-4},
    "sgd 5e-4, dropout 0.1/0.3": {"dropout_conv": 0.1, "dropout_fc": 0.3},
    "sgd 5e-4, beta 0.5": {"beta": 0.5},
}

data = (*load_dataset("fmnist", "train"), *load_dataset("fmnist", "test"))
out = Path(__file__).with_name("pilot_ekdaa.json")
rows = json.loads(out.read_text()) if out.exists() else {}
for name, opts in CONFIGS.items():
    if name in rows:
        continue
    t0 = time.time()
    r = ek.train("fmnist", epochs=3, backend="numpy", progress=False, data=data, **opts)
    rows[name] = {"options": opts, "test_accuracy_per_epoch": [h["test_accuracy"] for h in r.history],
                  "train_accuracy_per_epoch": [h["train_accuracy"] for h in r.history], "seconds": time.time() - t0}
    out.write_text(json.dumps(rows, indent=2) + "\n")
    print(name, rows[name]["test_accuracy_per_epoch"], f"{rows[name]['seconds']:.0f} s", flush=True)
sys.exit(0)

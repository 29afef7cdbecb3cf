# SDFA learning-rate probe (seed 0, 10k training / first 2k test images, 2 epochs, numpy backend, one BLAS
# thread), run from a checkout: PYTHONPATH=../../.. OMP_NUM_THREADS=1 python sdfa_probe.py
import json

import ekdaa_cuda as e
from ekdaa_cuda.reproduce import SETTINGS

opts = dict(SETTINGS["sdfa"]["options"])
out = {}
for lr in (3e-3, 1e-3, 5e-4):
    o = {**opts, "lr": lr}
    r = e.train(preset="fmnist", rule="sdfa", backend="numpy", epochs=2, batch_size=64, train_limit=10000,
                test_limit=2000, seed=0, progress=False, **o)
    h = r.history if hasattr(r, "history") else r["history"]
    out[lr] = [(x["train_accuracy"], x["test_accuracy"]) for x in h]
    print(lr, out[lr], flush=True)
json.dump({str(k): v for k, v in out.items()}, open("probe-10k-2epochs.json", "w"))

# Short learning-rate / optimizer probes for the feedback-alignment rules of Table 2 (issue 13): seed 0,
# the first 10k training / first 2k test images, 2 epochs, numpy backend, one BLAS thread; each config is
# the rule's reproduce.SETTINGS options with the listed overrides. Resumable (finished configs are kept in
# the JSON). Run from a checkout:
#   PYTHONPATH=../.. OMP_NUM_THREADS=1 python probe.py
import json
import os
from pathlib import Path

import ekdaa_cuda as e
from ekdaa_cuda.reproduce import SETTINGS

OUT = Path(__file__).with_name("probe-10k-2epochs.json")
CONFIGS = [  # (method, overrides)
    ("fa", {}), ("fa", {"lr": 2e-4}), ("fa", {"lr": 1e-4}),
    ("fa", {"optimizer": "adam", "lr": 1e-3, "schedule": "cosine"}),
    ("fa", {"optimizer": "adam", "lr": 3e-4, "schedule": "cosine"}),
    ("fa", {"activation": "relu", "lr": 1e-4}),
    ("drtp", {}), ("drtp", {"lr": 2e-4}), ("drtp", {"lr": 1e-4}),
    ("drtp", {"optimizer": "adam", "lr": 1e-3, "schedule": "cosine"}),
    ("dfa", {}), ("dfa", {"lr": 2e-4}),
    ("dfa", {"optimizer": "adam", "lr": 1e-3, "schedule": "cosine"}),
    ("ekdaa", {}), ("bp", {}),  # the same budget for the paper-setting EKDAA and BP rows, for scale
]

done = json.loads(OUT.read_text()) if OUT.exists() else {}
for method, over in CONFIGS:
    key = f"{method} {json.dumps(over, sort_keys=True)}"
    if key in done:
        continue
    s = SETTINGS[method]
    opts = {**s["options"], **over}
    if opts.get("optimizer", "sgd") != "sgd":
        opts.pop("momentum", None)
    r = e.train(preset="fmnist", rule=s["rule"], backend="numpy", epochs=2, batch_size=s["batch_size"],
                train_limit=10000, test_limit=2000, seed=0, progress=False, **opts)
    h = r.history if hasattr(r, "history") else r["history"]
    done[key] = [(x["train_accuracy"], x["test_accuracy"]) for x in h]
    print(key, done[key], flush=True)
    tmp = OUT.with_suffix(".tmp")
    tmp.write_text(json.dumps(done, indent=1))
    os.replace(tmp, OUT)

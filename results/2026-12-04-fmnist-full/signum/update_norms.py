"""Size of one batch's raw EKDAA update against the weights, per layer, on a fresh fmnist network
(seed 0, the first 50 training images): ‖ΔW‖_F and ‖W‖_F. With signum the hidden errors are
±2 instead of ~β·d·φ'(h), so the summed updates are orders of magnitude larger than with tanh.
Writes update_norms.json beside this file."""
import json
from pathlib import Path

import numpy as np

import ekdaa_cuda as ek
from ekdaa_cuda.data import load_dataset

NETS = {
    "tanh (faithful)": {"activation": "tanh"},
    "signum (faithful)": {"activation": "signum"},
    "signum (faithful), normalize rms, beta 0.3": {"activation": "signum", "normalize": "rms", "beta": 0.3},
    "signum, release variant": {"activation": "signum", "variant": "release"},
    "signum, release variant, normalize rms, beta 0.3": {"activation": "signum", "variant": "release",
                                                          "normalize": "rms", "beta": 0.3},
}
x, y = load_dataset("fashion-mnist", "train", limit=50)
out = {}
for name, opts in NETS.items():
    m = ek.build_model("fmnist", backend="numpy", seed=0, **opts)
    upd, par = m.updates(x, y), m.state_dict()
    out[name] = {k.split(".")[0]: {"update_norm": float(np.linalg.norm(upd[k])),
                                   "weight_norm": float(np.linalg.norm(par[k]))} for k in upd if k.endswith(".weight")}
    print(name, {k: round(v["update_norm"] / v["weight_norm"], 3) for k, v in out[name].items()})
Path(__file__).with_name("update_norms.json").write_text(json.dumps(out, indent=1) + "\n")

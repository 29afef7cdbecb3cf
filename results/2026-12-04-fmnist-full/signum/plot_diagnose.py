"""Plot from diagnose.json: share of units with e != 0 (among units with d != 0) against β, per layer,
for the faithful signum network fresh and after one epoch of the paper's SGD (diagnose.png)."""
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

here = Path(__file__).parent
r = json.loads((here / "diagnose.json").read_text())
nets = ["faithful (signum everywhere), paper SGD 5e-4", "release variant, paper SGD 5e-4"]
fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
for ax, net in zip(axes, nets):
    for stage, style in (("fresh", "-o"), ("after_1_epoch_10k", "--x")):
        for layer, row in r[net][stage].items():
            betas = [float(k.split("=")[1]) for k in row if k.startswith("beta=")]
            share = [100 * row[k]["share_e_nonzero_where_d_nonzero"] for k in row if k.startswith("beta=")]
            ax.plot(betas, share, style, label=f"{layer}, {stage.replace('_', ' ')}")
    ax.set_xscale("log")
    ax.set_xlabel("β")
    ax.set_title(net, fontsize=9)
    ax.grid(alpha=0.3)
axes[0].set_ylabel("units with e ≠ 0 (% of units with d ≠ 0)")
axes[1].legend(fontsize=7)
fig.suptitle("EKDAA with signum: how many units get an error, y = sign(h − βd) ≠ sign(h)", fontsize=10)
fig.tight_layout()
fig.savefig(here / "diagnose.png", dpi=110)

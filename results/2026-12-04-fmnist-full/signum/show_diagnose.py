"""Print diagnose.json as markdown tables (share of units with e != 0, |h| and |βd| quantiles)."""
import json
from pathlib import Path

r = json.loads(Path(__file__).with_name("diagnose.json").read_text())
for net, e in r.items():
    print(f"\n### {net} (after 1 epoch: {100 * e['after_1_epoch_10k_test_accuracy_2k']:.1f}% on 2k test images)\n")
    print("| network | layer | d != 0 | median abs h | median abs d "
          "| e != 0 at β = 0.9 / 3 / 10 / 30 / 100 (share of units with d != 0) |")
    print("|---|---|---|---|---|---|")
    for stage in ("fresh", "after_1_epoch_10k"):
        for layer, row in e[stage].items():
            dq = row["abs_d_q10_50_90_where_d_nonzero"]
            shares = " / ".join(f"{100 * row[k]['share_e_nonzero_where_d_nonzero']:.2f}%" for k in row
                                if k.startswith("beta="))
            print(f"| {stage} | {layer} | {100 * row['share_d_nonzero']:.1f}% | {row['abs_h_q10_50_90'][1]:.3g} | "
                  f"{dq[1] if dq else 0:.3g} | {shares} |")

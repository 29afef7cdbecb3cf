"""Print sweep.json as a markdown table (test accuracy after each epoch, all 10k test images)."""
import json
from pathlib import Path

rows = json.loads(Path(__file__).with_name("sweep.json").read_text())
print("| run | protocol | test accuracy per epoch (%) | seconds |")
print("|---|---|---|---|")
for key, r in rows.items():
    name = key.split(" | ")[0]
    acc = " / ".join(f"{100 * a:.1f}" for a in r["test_accuracy"]) if "test_accuracy" in r else r["error"][:60]
    print(f"| {name} | {r['train_images']} img x {r['epochs']} ep, seed {r['seed']} | {acc} | {r['seconds']:.0f} |")

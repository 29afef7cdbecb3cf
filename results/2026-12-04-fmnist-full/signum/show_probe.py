"""Print probe-*.log files compactly: step, running train accuracy, fc1 churn, per layer e!=0 / median|h| / constant."""
import json
import sys

for f in sys.argv[1:]:
    print("==", f)
    for line in open(f):
        if not line.startswith("{"):
            print(line.strip())
            continue
        r = json.loads(line)
        layers = " ".join(f"{k}:e{v['e_nonzero']:.3f},h{v['median_abs_h']:.3g},c{v['constant_units']:.2f}"
                          for k, v in r.items() if isinstance(v, dict))
        churn = r.get("fc1_churn")
        print(r["step"], round(r["train_acc_running"], 3), "churn", None if churn is None else round(churn, 3), layers)

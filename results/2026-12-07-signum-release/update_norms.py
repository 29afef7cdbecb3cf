"""Per-tensor update norms ‖ΔW‖_F of the release signum network (`ekdaa-signum-release-slow`: linear
conv stack, signum in fc1, SGD 1e-4, momentum 0.9) at updates 0, 20, 40 and 60 on the first training
images, seed 0, beside the weights' norms ‖W‖_F: what a Pascanu ρ would clip, and how far one SGD
step moves each layer.

    PYTHONPATH=<clone> python update_norms.py > update_norms.log
"""

import numpy as np

from ekdaa_cuda import reproduce

cfg = reproduce.method_config("ekdaa-signum-release-slow", "fashion-mnist")
model, _ = reproduce._build_for_hook(cfg, "numpy", 0)
lr = cfg["options"]["lr"]
x_train, y_train, _, _ = reproduce.load_data("fashion-mnist", train_limit=3100, test_limit=10)
print(reproduce.machine_info("numpy"))
for step in range(61):
    x, y = x_train[step * 50:(step + 1) * 50], y_train[step * 50:(step + 1) * 50]
    if step % 20 == 0:
        updates, params = model.updates(x, y), model.state_dict()
        print(f"update {step}:")
        for key in updates:
            du, w = float(np.linalg.norm(updates[key])), float(np.linalg.norm(params[key]))
            print(f"  {key:20s} |dW| {du:10.4g}  |W| {w:8.4g}  lr*|dW|/|W| at lr {lr:g}: {lr * du / w:.2e}")
    model.step(x, y)

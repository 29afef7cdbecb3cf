"""Does gamma (the error-kernel update scale, dE = gamma * dW) change EKDAA training under Adam?

Same seed and batches (the first 2,000 Fashion-MNIST training images, 40 steps of 50, NumPy
backend), gamma 0.1 (the default) against 1 and 0.01; the largest difference in any weight tensor
after the 40 steps, relative to that tensor's largest entry. Adam divides each entry's step by the
root of its own squared-gradient average, so a constant gamma cancels except where |gamma * g| is
near Adam's eps; SGD with momentum is shown for contrast. Run: python gamma_check.py (about 10 min
on one core).
"""
import numpy as np

import ekdaa_cuda
from ekdaa_cuda.data import load_dataset

STEPS, BATCH = 40, 50
TUNED = dict(optimizer="adam", lr=1e-3, activation="tanh", dropout_conv=0.1, dropout_fc=0.3, normalize="rms",
             beta=0.3)  # ekdaa-tuned-rms-dropout without the cosine schedule (40 steps: lr constant)
CASES = [("Adam, float32, eps 1e-8", TUNED, (1.0, 0.01)),
         ("Adam, float64, eps 1e-8", {**TUNED, "dtype": "float64"}, (1.0,)),
         ("Adam, float64, eps 1e-14", {**TUNED, "dtype": "float64", "eps": 1e-14}, (1.0,)),
         ("SGD 5e-4 momentum 0.9, float32", dict(optimizer="sgd", lr=5e-4, momentum=0.9, activation="tanh"),
          (1.0, 0.01))]


def weights_after(x, y, gamma, opts):
    model = ekdaa_cuda.build_model("fmnist", rule="ekdaa", backend="numpy", seed=0, gamma=gamma, **opts)
    for s in range(STEPS):
        model.step(x[s * BATCH:(s + 1) * BATCH], y[s * BATCH:(s + 1) * BATCH])
    return {k: np.asarray(v, np.float64) for k, v in model.state_dict().items() if k.endswith("weight")}


def rel_diff(a, b, keys):
    return max(float(np.abs(a[k] - b[k]).max() / np.abs(b[k]).max()) for k in keys)


def main():
    x, y = load_dataset("fashion-mnist", "train", limit=STEPS * BATCH)
    print("| optimizer | gamma vs 0.1 | max rel. diff, all weights (W and E) | forward weights W only |")
    print("|---|---|---|---|")
    for name, opts, gammas in CASES:
        ref = weights_after(x, y, 0.1, opts)
        forward = [k for k in ref if not k.endswith("error_weight")]
        for g in gammas:
            w = weights_after(x, y, g, opts)
            print(f"| {name} | {g} | {rel_diff(w, ref, ref):.2e} | {rel_diff(w, ref, forward):.2e} |", flush=True)


if __name__ == "__main__":
    main()

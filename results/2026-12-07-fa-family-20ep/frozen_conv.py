"""Random-conv-feature baseline for the FA-family rows (issue 13, point 4: explain the gaps).

What a network reaches when its conv stack never learns: the fmnist CNN's three conv layers are
kept at their random initialisation (``--setting``'s init, tanh), and only the FC head (fc128 tanh
+ softmax out10) is trained, with the setting's optimizer, batch and FC dropout (e.g. fa: SGD 5e-4,
momentum 0.9, summed updates, batch 64, dropout 0.3; drtp: the same with batch 32), by backprop
(exact gradients, ``--head-rule bp``) or by the rule under study (``fa``, ``dfa``, ``sdfa``, ``drtp``:
the output layer learns from its own error, fc128 from the rule's feedback). Set beside
the full networks' rows, this separates what a rule loses in its conv layers from what it loses in
its FC layers.

    PYTHONPATH=<clone> python frozen_conv.py --setting fa --head-rule bp --seeds 0,1,2 --epochs 20 \
        --out frozen_conv-bp.json
"""

from __future__ import annotations

import argparse
import functools
import time

import numpy as np

from ekdaa_cuda.data import load_dataset
from ekdaa_cuda.model import build_model
from ekdaa_cuda.reproduce import SETTINGS, machine_info
from ekdaa_cuda.training import atomic_write_json, blas_threads


def run(setting_name: str, head_rule: str, seed: int, epochs: int, x, y, xt, yt, log) -> dict:
    setting = SETTINGS[setting_name]
    opts = setting["options"]
    cnn = build_model("fmnist", rule=setting["rule"], backend="numpy", seed=seed, **opts)
    conv_names = [b.name for b in cnn.blocks if b.kind == "conv"]
    f_train, f_test = cnn.hidden_features(x, conv_names[-1]), cnn.hidden_features(xt, conv_names[-1])
    head = build_model(["flatten", "fc128", "out10"], rule=head_rule, backend="numpy", seed=seed,
                       input_shape=f_train.shape[1:], **{**opts, "dropout_conv": 0.0})
    rng, batch, history = np.random.default_rng(seed), setting["batch_size"], []
    for epoch in range(1, epochs + 1):
        t0, order = time.time(), rng.permutation(len(f_train))
        for i in range(0, len(order), batch):
            head.step(f_train[order[i:i + batch]], y[order[i:i + batch]])
        train_acc = head.evaluate(f_train, y)["accuracy"]
        test_acc = head.evaluate(f_test, yt)["accuracy"]
        history.append({"epoch": epoch, "train_accuracy": train_acc, "test_accuracy": test_acc,
                        "seconds": time.time() - t0})
        log(f"{head_rule} seed {seed} epoch {epoch}: train {100 * train_acc:.2f} test {100 * test_acc:.2f}")
    return {"seed": seed, "feature_layer": conv_names[-1], "feature_shape": list(f_train.shape[1:]),
            "history": history, "train_accuracy": history[-1]["train_accuracy"],
            "test_accuracy": history[-1]["test_accuracy"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--head-rule", default="bp", help="rule training the FC head: bp or the setting's rule")
    ap.add_argument("--setting", default="fa", help="named setting giving init, optimizer, batch and dropout")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--out", default="frozen_conv.json")
    args = ap.parse_args()
    x, y = load_dataset("fashion-mnist", "train")
    xt, yt = load_dataset("fashion-mnist", "test")
    setting = SETTINGS[args.setting]
    record = {"what": __doc__.splitlines()[0], "setting": args.setting, "head_rule": args.head_rule,
              "batch_size": setting["batch_size"], "options": setting["options"], "epochs": args.epochs,
              "machine": machine_info("numpy"), "runs": []}
    log = functools.partial(print, flush=True)
    with blas_threads(1):
        for seed in (int(s) for s in args.seeds.split(",")):
            record["runs"].append(run(args.setting, args.head_rule, seed, args.epochs, x, y, xt, yt, log))
            atomic_write_json(args.out, record)  # after every seed: nothing lost on a crash


if __name__ == "__main__":
    main()

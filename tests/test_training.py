"""Training loop: checkpoints, exact resume, divergence handling, the CLI, and the real end-to-end run."""

import json
import time

import numpy as np
import pytest
from helpers import template_data

import ekdaa_cuda as ek
from ekdaa_cuda import cli, training
from ekdaa_cuda.data import DatasetNotFoundError, load_dataset

SMALL = dict(widths=(4, 6, 8, 16), backend="numpy", progress=False)



def fmnist(train_limit, test_limit=None):
    try:
        return (*load_dataset("fmnist", "train", limit=train_limit), *load_dataset("fmnist", "test", limit=test_limit))
    except DatasetNotFoundError as exc:
        pytest.skip(f"Fashion-MNIST not installed (apt-get install dataset-fashion-mnist): {exc}")


def params_equal(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(np.array_equal(sa[k], sb[k]) for k in sa)


def test_history_and_outputs(tmp_path):
    result = ek.train("fmnist", epochs=2, batch_size=25, data=template_data(), out_dir=tmp_path, dropout=0.2, **SMALL)
    assert [h["epoch"] for h in result.history] == [1, 2]
    assert 0.0 <= result.test_accuracy <= 1.0 and result.steps == 2 * 5
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["history"] == json.loads(json.dumps(result.history))
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    arrays, state = training.load_checkpoint(tmp_path / "checkpoint.npz")
    assert state["epoch"] == 2 and int(arrays["step_count"]) == 10


def test_resume_after_epoch_equals_uninterrupted_run(tmp_path):
    data = template_data()
    full = ek.train("fmnist", epochs=3, batch_size=25, data=data, out_dir=tmp_path / "full", dropout=0.2, **SMALL)
    ek.train("fmnist", epochs=1, batch_size=25, data=data, out_dir=tmp_path / "part", dropout=0.2, **SMALL)
    resumed = ek.train("fmnist", epochs=3, batch_size=25, data=data, out_dir=tmp_path / "part", resume=True,
                       dropout=0.2, **SMALL)
    assert params_equal(full.model, resumed.model)
    assert full.model.optimizer.t == resumed.model.optimizer.t == 15
    strip = lambda h: [{k: v for k, v in r.items() if k != "seconds"} for r in h]  # noqa: E731
    assert strip(full.history) == strip(resumed.history)
    # the run's time goes on from where the first process stopped; it does not restart at 0
    seconds = [r["seconds"] for r in resumed.history]
    assert seconds == sorted(seconds) and seconds[0] > 0 and resumed.seconds >= seconds[-1]


def test_resume_mid_epoch_equals_uninterrupted_run(tmp_path, monkeypatch):
    data = template_data()
    full = ek.train("fmnist", epochs=2, batch_size=20, data=data, optimizer="adam", **SMALL)

    real_step = ek.Model.step_arrays
    calls = {"n": 0}

    def crashing_step(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 9:  # killed during epoch 2, after the checkpoint at step 8
            raise KeyboardInterrupt
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(ek.Model, "step_arrays", crashing_step)
    with pytest.raises(KeyboardInterrupt):
        ek.train("fmnist", epochs=2, batch_size=20, data=data, optimizer="adam", out_dir=tmp_path,
                 checkpoint_every=4, **SMALL)
    monkeypatch.setattr(ek.Model, "step_arrays", real_step)
    _, state = training.load_checkpoint(tmp_path / "checkpoint.npz")
    assert (state["epoch"], state["position"]) == (1, 2)
    assert state["seconds"] >= state["history"][0]["seconds"] > 0  # includes the part of epoch 2 done
    resumed = ek.train("fmnist", epochs=2, batch_size=20, data=data, optimizer="adam", out_dir=tmp_path,
                       resume=True, checkpoint_every=4, **SMALL)
    assert params_equal(full.model, resumed.model)
    assert resumed.history[-1]["train_loss"] == pytest.approx(full.history[-1]["train_loss"], rel=1e-12)
    assert resumed.history[-1]["test_accuracy"] == full.history[-1]["test_accuracy"]
    assert resumed.history[-1]["seconds"] >= state["seconds"] and resumed.seconds >= state["seconds"]


def test_resume_refuses_other_settings_and_missing_checkpoint(tmp_path):
    data = template_data()
    ek.train("fmnist", epochs=1, data=data, out_dir=tmp_path, **SMALL)
    with pytest.raises(ValueError, match="different settings"):
        ek.train("fmnist", epochs=2, data=data, out_dir=tmp_path, resume=True, lr=1e-2, **SMALL)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        ek.train("fmnist", epochs=2, data=data, out_dir=tmp_path / "empty", resume=True, **SMALL)
    (tmp_path / "checkpoint.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="unreadable"):
        ek.train("fmnist", epochs=2, data=data, out_dir=tmp_path, resume=True, **SMALL)


def test_divergence_stops_and_keeps_last_good_checkpoint(tmp_path):
    data = template_data()
    with pytest.raises(training.TrainingDiverged, match="diverged.*last good checkpoint"):
        ek.train("fmnist", epochs=50, data=data, out_dir=tmp_path, rule="bp", activation="linear", lr=10.0,
                 checkpoint_every=1, **SMALL)
    arrays, _ = training.load_checkpoint(tmp_path / "checkpoint.npz")
    assert int(arrays["step_count"]) >= 1
    assert all(np.all(np.isfinite(v)) for k, v in arrays.items() if k.startswith("param."))


def test_bad_arguments():
    with pytest.raises(ValueError, match="epochs"):
        ek.train("fmnist", epochs=0, data=template_data(), **SMALL)
    with pytest.raises(ValueError, match="preset"):
        ek.train("mnist", data=template_data(), **SMALL)
    x, y, xt, yt = template_data()
    with pytest.raises(ValueError, match="NaN"):
        ek.train("fmnist", data=(np.where(x > 0.3, np.nan, x), y, xt, yt), **SMALL)


def test_cli_train_on_real_data(tmp_path, capsys):
    fmnist(10)  # skips when the data is not installed
    code = cli.main(["train", "--preset", "fmnist", "--epochs", "1", "--train-limit", "300", "--test-limit", "200",
                     "--backend", "numpy", "--out", str(tmp_path), "--no-progress", "--lr", "1e-3"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "epoch 1/1" in out and "test accuracy" in out
    assert (tmp_path / "metrics.json").exists() and (tmp_path / "checkpoint.npz").exists()
    code = cli.main(["train", "--epochs", "2", "--train-limit", "300", "--test-limit", "200", "--backend", "numpy",
                     "--out", str(tmp_path), "--no-progress", "--lr", "1e-3", "--resume"])
    assert code == 0 and "resumed" in capsys.readouterr().out
    assert cli.main(["train", "--epochs", "1", "--backend", "numpy", "--dropout", "0.2", "--dataset", "nope"]) == 2
    assert "unknown" in capsys.readouterr().err.lower()
    assert cli.main(["info"]) == 0
    info = capsys.readouterr().out
    assert "ekdaa_cuda._C, backend cuda" in info and "ekdaa_cuda._sim, backend cuda-sim" in info
    assert cli._parser().parse_args(["train", "--backend", "cuda-sim"]).backend == "cuda-sim"


def test_one_epoch_of_10k_fashion_mnist_reaches_75_percent():
    """Acceptance check of the foundation issue, on the numpy backend (about 15 s on 2 cores).

    Adam (lr 1e-3) is used: with the paper's SGD setting one epoch of 10k images lands at 75-79%
    depending on the seed, too close to the bar for a test; Adam measured 80.5% (seed 0).
    """
    data = fmnist(10_000)
    t0 = time.perf_counter()
    result = ek.train("fmnist", epochs=1, backend="numpy", progress=False, data=data, optimizer="adam", lr=1e-3)
    print(f"1 epoch, 10k images: test accuracy {result.test_accuracy:.4f}, {result.images_per_second:.0f} images/s, "
          f"{time.perf_counter() - t0:.1f} s")
    assert result.test_accuracy >= 0.75


def lr_scales_of_train(monkeypatch, schedule):
    """The lr_scale of every update of a 2-epoch, 3-batch-per-epoch ``train`` under ``schedule``."""
    seen = []
    real = ek.Model.step_arrays

    def spy(self, x, labels, lr_scale=1.0, **kwargs):
        seen.append(lr_scale)
        return real(self, x, labels, lr_scale, **kwargs)

    monkeypatch.setattr(ek.Model, "step_arrays", spy)
    ek.train("fmnist", epochs=2, batch_size=40, data=template_data(), schedule=schedule, **SMALL)
    return seen


def test_cosine_schedule_scales_every_update(monkeypatch):
    seen = lr_scales_of_train(monkeypatch, "cosine")
    total = 2 * 3
    assert seen == pytest.approx([0.5 * (1 + np.cos(np.pi * s / total)) for s in range(total)])
    assert seen[0] == 1.0 and seen[-1] < 0.1
    with pytest.raises(ValueError, match="schedule"):
        ek.train("fmnist", data=template_data(), schedule="linear", **SMALL)


def test_warmup_cosine_schedule_rises_then_decays(monkeypatch):
    """warmup-cosine: (s + 1)/w over the first w = ceil(0.05·total) updates, then the cosine from 1."""
    from ekdaa_cuda.training import lr_scale

    total = 41  # w = 3: 1/3, 2/3, 1, then cos over the remaining 38 updates
    scales = [lr_scale("warmup-cosine", s, total) for s in range(total)]
    assert scales[:4] == pytest.approx([1 / 3, 2 / 3, 1.0, 1.0])
    assert scales[3:] == pytest.approx([0.5 * (1 + np.cos(np.pi * k / 38)) for k in range(38)])
    assert lr_scale("warmup-cosine", 0, 1) == 1.0  # a single update is not left at zero
    # 6 updates: w = 1, then the cosine over 5
    seen = lr_scales_of_train(monkeypatch, "warmup-cosine")
    assert seen == pytest.approx([1.0] + [0.5 * (1 + np.cos(np.pi * k / 5)) for k in range(5)])


def test_beta_end_moves_beta_linearly_and_resumes_exactly(monkeypatch, tmp_path):
    """beta_end: EKDAA's β goes in a straight line from ``beta`` at the first update to ``beta_end`` at
    the last (6 updates: 2 epochs x 3 batches); without it β stays fixed. A run interrupted mid-way
    resumes on the same line (its checkpoint records beta_end and refuses another)."""
    data = template_data()
    seen = []
    real = ek.Model.step_arrays

    def spy(self, *args, **kwargs):
        seen.append(self.opts["beta"])
        return real(self, *args, **kwargs)

    monkeypatch.setattr(ek.Model, "step_arrays", spy)
    run = dict(epochs=2, batch_size=40, data=data, beta=0.9, **SMALL)
    full = ek.train(**run, beta_end=0.0)
    assert seen == pytest.approx([0.9 * (1 - s / 5) for s in range(6)]) and seen[0] == 0.9 and seen[-1] == 0.0
    seen.clear()
    fixed = ek.train(**run)
    assert seen == [0.9] * 6 and not params_equal(full.model, fixed.model)

    def crashing_step(self, *args, **kwargs):
        if self.step_count == 4:  # killed in epoch 2, after the checkpoint at step 4
            raise KeyboardInterrupt
        return spy(self, *args, **kwargs)

    monkeypatch.setattr(ek.Model, "step_arrays", crashing_step)
    with pytest.raises(KeyboardInterrupt):
        ek.train(**run, beta_end=0.0, out_dir=tmp_path, checkpoint_every=2)
    monkeypatch.setattr(ek.Model, "step_arrays", spy)
    with pytest.raises(ValueError, match="different settings"):
        ek.train(**run, beta_end=0.5, out_dir=tmp_path, resume=True, checkpoint_every=2)
    seen.clear()
    resumed = ek.train(**run, beta_end=0.0, out_dir=tmp_path, resume=True, checkpoint_every=2)
    assert seen == pytest.approx([0.9 * (1 - s / 5) for s in (4, 5)])
    assert params_equal(full.model, resumed.model)


def test_layer_lr_scales_a_layers_steps_and_resume_refuses_another(tmp_path):
    """layer_lr={"conv1": 0} freezes conv1 (W and E) while the other layers learn; a factor of 0.5 gives
    that layer another trajectory; the checkpoint records the factors and a resume with others is
    refused."""
    data = template_data()
    run = dict(epochs=1, batch_size=40, data=data, **SMALL)
    start = ek.build_model("fmnist", backend="numpy", widths=SMALL["widths"]).params
    frozen = ek.train(**run, layer_lr={"conv1": 0.0}).model
    plain = ek.train(**run).model
    for key in ("conv1.weight", "conv1.error_weight"):
        np.testing.assert_array_equal(frozen.params[key], start[key], err_msg=key)
        assert not np.array_equal(plain.params[key], start[key]), key
    assert not np.array_equal(frozen.params["fc1.weight"], start["fc1.weight"])
    assert frozen.opts["layer_lr"] == {"conv1": 0.0} and plain.opts["layer_lr"] == {}
    half = ek.train(**run, layer_lr={"out": 0.5}).model
    assert not np.array_equal(half.params["out.weight"], plain.params["out.weight"])
    ek.train(**run, layer_lr={"conv1": 0.5}, out_dir=tmp_path, plot=False)
    with pytest.raises(ValueError, match="different settings"):
        ek.train(**{**run, "epochs": 2}, layer_lr={"conv1": 0.25}, out_dir=tmp_path, resume=True, plot=False)
    resumed = ek.train(**{**run, "epochs": 2}, layer_lr={"conv1": 0.5}, out_dir=tmp_path, resume=True, plot=False)
    assert [h["epoch"] for h in resumed.history] == [1, 2]

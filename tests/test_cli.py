"""The `ekdaa-cuda` command and the API a newcomer meets first: help that covers every train()
keyword, range checks, refusing to overwrite a run, Ctrl-C, divergence, and the files a run writes."""

import gzip
import inspect
import json
import re
import shlex
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from helpers import template_data

import ekdaa_cuda as ek
from ekdaa_cuda import cli, training

SMALL = dict(widths=(4, 6, 8, 16), backend="numpy", progress=False)
README = Path(__file__).resolve().parents[1] / "README.md"
# train() keywords that are not CLI options, and why: arrays and a callback exist only in Python
API_ONLY = {"data": "in-memory arrays", "log": "a Python callback"}
RENAMED = {"out_dir": "--out", "progress": "--no-progress", "plot": "--no-plot"}


def train_help(capsys) -> str:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["train", "--help"])
    assert exit_.value.code == 0
    return capsys.readouterr().out


def test_train_has_an_explicit_documented_signature():
    sig = inspect.signature(ek.train)
    assert all(p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in sig.parameters.values())
    doc = ek.train.__doc__
    missing = [name for name in sig.parameters if not re.search(rf"\b{name}\b", doc)]
    assert not missing, f"train() docstring does not describe {missing}"
    assert set(training.MODEL_OPTIONS) <= set(sig.parameters)


def test_every_train_parameter_is_a_cli_option_with_help(capsys):
    text = train_help(capsys)
    for name in inspect.signature(ek.train).parameters:
        if name in API_ONLY:
            continue
        flag = RENAMED.get(name, "--" + name.replace("_", "-"))
        assert re.search(rf"(^|\s|\[){re.escape(flag)}\b", text), f"train({name}=...) has no CLI option {flag}"
    assert "(default: None)" not in text and "(default: False)" not in text
    for action in cli._parser()._subparsers._group_actions[0].choices["train"]._actions:
        assert action.help, f"{action.option_strings} has no help"
    # the real defaults are shown, taken from the model's defaults
    assert "(default: 0.9)" in text and "(default: 0.0005)" in text and "default: 1," in text


def test_readme_train_flags_exist(capsys):
    text = train_help(capsys)
    lines = [line for line in README.read_text().splitlines() if "ekdaa-cuda train" in line]
    flags = {f for line in lines for f in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", line)}
    assert flags, "the README shows no ekdaa-cuda train command"
    unknown = sorted(f for f in flags if not re.search(rf"(^|\s|\[){re.escape(f)}\b", text))
    assert not unknown, f"the README promises train options that do not exist: {unknown}"
    assert "../shared" not in README.read_text()


def test_no_command_prints_help(capsys):
    assert cli.main([]) == 2
    out = capsys.readouterr().out
    assert "usage: ekdaa-cuda" in out and "train" in out and "reproduce" in out
    assert cli.main(["reproduce"]) == 2
    assert "table2" in capsys.readouterr().out


@pytest.mark.parametrize("kwargs, name", [
    (dict(beta=-1.0), "beta"), (dict(gamma=-0.1), "gamma"), (dict(lr=0.0), "lr"), (dict(lr=-1e-3), "lr"),
    (dict(momentum=1.0), "momentum"), (dict(beta1=-0.1), "beta1"), (dict(beta2=1.0), "beta2"), (dict(eps=0.0), "eps"),
    (dict(decay=1.5), "decay"), (dict(rho=-1.0), "rho"), (dict(weight_decay=-1e-4), "weight_decay"),
    (dict(dropout=1.0), "dropout"),
    (dict(dropout_fc=-0.1), "dropout_fc"), (dict(kp_decay=-1.0), "kp_decay"), (dict(beta=float("nan")), "beta"),
    (dict(widths=(4, 0, 8, 16)), "widths"), (dict(widths=(4, 6.5, 8, 16)), "widths"), (dict(bias="yes"), "bias"),
    (dict(epochs=0), "epochs"), (dict(batch_size=0), "batch_size"), (dict(threads=0), "threads"),
    (dict(seed=-1), "seed"), (dict(train_limit=0), "train_limit"), (dict(checkpoint_every=-1), "checkpoint_every"),
    (dict(beta_end=-0.5), "beta_end"), (dict(beta_end=float("inf")), "beta_end"),
    (dict(layer_lr={"conv1": -1.0}), "layer_lr"), (dict(layer_lr={"conv7": 0.1}), "layer_lr"),
    (dict(layer_lr=[0.1]), "layer_lr"), (dict(layer_lr={"conv1": float("nan")}), "layer_lr"),
])
def test_api_rejects_out_of_range_values_naming_the_option(kwargs, name):
    args = {**SMALL, **kwargs}
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        ek.train("fmnist", data=template_data(), **args)


@pytest.mark.parametrize("argv, flag", [
    (["--beta", "-1"], "--beta"), (["--lr", "0"], "--lr"), (["--momentum", "1"], "--momentum"),
    (["--dropout", "1.5"], "--dropout"), (["--widths", "4,0,8,16"], "--widths"), (["--epochs", "0"], "--epochs"),
    (["--batch-size", "0"], "--batch-size"), (["--threads", "0"], "--threads"), (["--gamma", "x"], "--gamma"),
    (["--weight-decay", "-1"], "--weight-decay"), (["--beta-end", "-1"], "--beta-end"),
    (["--layer-lr", "conv1"], "--layer-lr"), (["--layer-lr", "conv1=-1"], "--layer-lr"),
    (["--layer-lr", "conv1=0.1,fc1"], "--layer-lr"), (["--layer-lr", "conv1=x"], "--layer-lr"),
])
def test_cli_rejects_out_of_range_values_naming_the_option(argv, flag, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["train", *argv])
    assert exit_.value.code == 2
    assert f"argument {flag}:" in capsys.readouterr().err


def test_existing_run_is_refused_unless_resume_or_overwrite(tmp_path):
    data = template_data()
    ek.train("fmnist", epochs=1, data=data, out_dir=tmp_path, plot=False, **SMALL)
    before = (tmp_path / "checkpoint.npz").read_bytes()
    with pytest.raises(FileExistsError, match="already holds a run.*resume.*overwrite"):
        ek.train("fmnist", epochs=1, data=data, out_dir=tmp_path, plot=False, **SMALL)
    assert (tmp_path / "checkpoint.npz").read_bytes() == before  # untouched
    with pytest.raises(ValueError, match="choose one"):
        ek.train("fmnist", epochs=1, data=data, out_dir=tmp_path, resume=True, overwrite=True, **SMALL)
    again = ek.train("fmnist", epochs=2, data=data, out_dir=tmp_path, overwrite=True, plot=False, seed=1, **SMALL)
    assert [h["epoch"] for h in again.history] == [1, 2]
    _, state = training.load_checkpoint(tmp_path / "checkpoint.npz")
    assert state["run_args"]["seed"] == 1 and state["epoch"] == 2
    # an empty folder is fine
    (tmp_path / "empty").mkdir()
    ek.train("fmnist", epochs=1, data=data, out_dir=tmp_path / "empty", plot=False, **SMALL)


def test_run_records_backend_device_versions_csv_and_curves(tmp_path):
    pytest.importorskip("matplotlib")
    result = ek.train("fmnist", epochs=2, data=template_data(), out_dir=tmp_path, widths=(4, 6, 8, 16),
                      progress=False, backend="auto")
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    env = metrics["environment"]
    assert env["backend"] == result.backend == metrics["run"]["backend"] and env["backend"] in ("numpy", "cuda")
    assert metrics["run"]["backend_requested"] == "auto"
    assert env["device"] and env["versions"]["numpy"] == np.__version__ and env["versions"]["ekdaa_cuda"]
    assert env["threads"] == training.DEFAULT_THREADS
    rows = (tmp_path / "metrics.csv").read_text().splitlines()
    assert rows[0].split(",") == list(training.CSV_FIELDS) and len(rows) == 3
    assert float(rows[2].split(",")[5]) == pytest.approx(result.history[1]["test_accuracy"])
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_missing_matplotlib_is_a_note_not_an_error(tmp_path, monkeypatch):
    import ekdaa_cuda.plots as plots

    def no_matplotlib(*args, **kwargs):
        raise ImportError("plots need matplotlib: pip install matplotlib")

    monkeypatch.setattr(plots, "run_curves", no_matplotlib)
    notes = []
    ek.train("fmnist", epochs=2, data=template_data(), out_dir=tmp_path, log=notes.append, **SMALL)
    assert sum("curves.png not written" in n and "pip install matplotlib" in n for n in notes) == 1
    assert (tmp_path / "metrics.csv").exists() and not (tmp_path / "curves.png").exists()


def test_threads_limit_blas_inside_training(monkeypatch):
    from threadpoolctl import threadpool_info

    seen = []
    real = ek.Model.step_arrays

    def spy(self, *args, **kwargs):
        seen.append({i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"})
        return real(self, *args, **kwargs)

    monkeypatch.setattr(ek.Model, "step_arrays", spy)
    ek.train("fmnist", epochs=1, data=template_data(), threads=1, **SMALL)
    assert seen and all(s <= {1} for s in seen)


def test_loss_past_the_bound_stops_training_and_names_no_missing_checkpoint(tmp_path):
    with pytest.raises(training.TrainingDiverged) as info:
        ek.train("fmnist", epochs=3, data=template_data(600, 40), out_dir=tmp_path, lr=1e6, **SMALL)
    msg = str(info.value)
    assert "above the bound 10·ln(10) = 23.0" in msg
    assert "no checkpoint was written yet" in msg and info.value.checkpoint is None
    assert not (tmp_path / "checkpoint.npz").exists()


def test_divergence_names_the_checkpoint_that_exists(tmp_path):
    data = template_data()
    with pytest.raises(training.TrainingDiverged) as info:
        ek.train("fmnist", epochs=50, data=data, out_dir=tmp_path, rule="bp", activation="linear", lr=10.0,
                 checkpoint_every=1, plot=False, **SMALL)
    assert info.value.checkpoint == str(tmp_path / "checkpoint.npz")
    assert f"last good checkpoint: {tmp_path / 'checkpoint.npz'}" in str(info.value)
    assert (tmp_path / "checkpoint.npz").exists()
    with pytest.raises(training.TrainingDiverged, match=r"no checkpoint \(no out_dir\)"):
        ek.train("fmnist", epochs=50, data=data, rule="bp", activation="linear", lr=10.0, **SMALL)


# --------------------------------------------------------------- the command in a subprocess


def write_fake_fashion_mnist(folder: Path, n_train: int, n_test: int) -> None:
    """Template images as Fashion-MNIST IDX files, so the CLI can be driven without the dataset."""
    x, y, xt, yt = template_data(n_train, n_test)
    folder.mkdir(parents=True)
    for prefix, images, labels in (("train", x, y), ("t10k", xt, yt)):
        pixels = np.clip((images[:, 0] + 0.5) * 255, 0, 255).astype(np.uint8)
        header = np.array([0x803, len(pixels), 28, 28], ">u4").tobytes()
        (folder / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(header + pixels.tobytes()))
        header = np.array([0x801, len(labels)], ">u4").tobytes() + labels.astype(np.uint8).tobytes()
        (folder / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(header))


# `ekdaa-cuda` in a subprocess, reading the fake files without the official checksums
CLI = [sys.executable, "-c", "import sys; from ekdaa_cuda import cli, data, training; "
       "training._load_data = lambda d, s, r, n: data.load_dataset(d, split=s, root=r, limit=n, verify=False); "
       "sys.exit(cli.main(sys.argv[1:]))"]


def run_cli(args, timeout=300):
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def fake_data(tmp_path):
    root = tmp_path / "data"
    write_fake_fashion_mnist(root, 600, 40)
    return root


def test_cli_ctrl_c_checkpoints_prints_the_resume_command_and_exits_130(tmp_path, fake_data):
    out = tmp_path / "run"
    args = ["train", "--data-root", str(fake_data), "--out", str(out), "--widths", "4,6,8,16", "--backend", "numpy",
            "--epochs", "1000", "--no-progress", "--no-plot"]
    # SIG_DFL in the child: a test run started in the background by a non-interactive shell ignores
    # SIGINT, and the child would inherit that and never see the Ctrl-C
    proc = subprocess.Popen([*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    watchdog = threading.Timer(240, proc.kill)
    watchdog.start()
    try:
        for line in proc.stdout:  # inside the training loop once the first epoch has been reported
            if line.startswith("epoch 1/1000"):
                break
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
    finally:
        watchdog.cancel()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert f"checkpoint written to {out / 'checkpoint.npz'}" in stderr
    command = stderr.split("resume with:\n", 1)[1].strip()
    words = shlex.split(command)
    assert words[0] == "ekdaa-cuda" and words[-1] == "--resume" and words[1:-1] == args
    _, state = training.load_checkpoint(out / "checkpoint.npz")
    assert state["epoch"] >= 1
    # the printed command continues the run (with --epochs lowered so that the test ends)
    words[words.index("--epochs") + 1] = str(state["epoch"] + 1)
    done = run_cli(words[1:])
    assert done.returncode == 0, done.stderr
    assert "resumed from" in done.stdout
    history = json.loads((out / "metrics.json").read_text())["history"]
    assert [h["epoch"] for h in history] == list(range(1, state["epoch"] + 2))


def test_cli_refuses_existing_out_diverges_with_exit_1_and_overwrites(tmp_path, fake_data):
    out = tmp_path / "run"
    base = ["train", "--data-root", str(fake_data), "--out", str(out), "--widths", "4,6,8,16", "--backend", "numpy",
            "--no-progress", "--no-plot"]
    first = run_cli([*base, "--epochs", "1"])
    assert first.returncode == 0, first.stderr
    assert "done on backend numpy" in first.stdout
    again = run_cli([*base, "--epochs", "1"])
    assert again.returncode == 2 and "already holds a run" in again.stderr
    assert "--resume" in again.stderr and "--overwrite" in again.stderr
    blown = run_cli([*base, "--epochs", "2", "--lr", "1e6", "--overwrite"])
    assert blown.returncode == 1, blown.stderr
    assert "above the bound" in blown.stderr and "no checkpoint was written yet" in blown.stderr
    assert "Traceback" not in blown.stderr

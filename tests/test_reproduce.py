"""Table 2 trials, learning curves, t-SNE and alignment figures on tiny runs (reproduce.py, plots.py)."""

import json
import shutil
import subprocess

import numpy as np
import pytest
from helpers import template_data

from ekdaa_cuda import cli, plots, training
from ekdaa_cuda import reproduce as rp

pytest.importorskip("matplotlib")
pytest.importorskip("sklearn")

WIDTHS = {"cnn": (3, 4, 5, 6), "fc": (8, 8)}



def is_png(path):
    data = path.read_bytes()
    return len(data) > 1000 and data[:8] == b"\x89PNG\r\n\x1a\n"


def test_settings_cover_every_rule_and_the_paper_rows():
    from ekdaa_cuda.rules import RULES

    used = {s["rule"] for s in rp.SETTINGS.values()}
    assert used == set(RULES)
    for ds, rows in rp.PAPER_TABLE2.items():
        assert set(rows) - {"hsic"} <= set(rp.SETTINGS), ds
    assert rp.method_config("lra-e", "cifar10")["preset"] == "cifar-fc"
    assert rp.method_config("dfa", "svhn")["preset"] == "svhn"
    assert rp.method_config("dfa", "fashion-mnist", literal=True)["options"]["activation"] == "relu"
    assert rp.method_config("dfa", "fashion-mnist")["deviation"]
    cfg = rp.method_config("ekdaa", "fashion-mnist", overrides={"batch_size": 10, "rho": 2.0})
    assert cfg["batch_size"] == 10 and cfg["options"]["rho"] == 2.0
    with pytest.raises(ValueError, match="unknown method"):
        rp.parse_methods("ekdaa,hebb")
    assert rp.parse_overrides(["rho=1", "optimizer=adam"]) == {"rho": 1, "optimizer": "adam"}


def test_table2_writes_json_markdown_and_skips_finished_runs(tmp_path, monkeypatch):
    data = template_data(60)
    rows = rp.table2("fashion-mnist", methods=list(rp.SETTINGS), trials=2, epochs=1, data=data, widths=WIDTHS,
                     out_dir=tmp_path, backend="numpy", progress=False, overrides={"batch_size": 20})
    table = json.loads((tmp_path / "table2.json").read_text())
    assert list(table) == ["fashion-mnist"] and list(table["fashion-mnist"]) == list(rp.SETTINGS)
    for name, row in table["fashion-mnist"].items():
        assert row == json.loads(json.dumps(rows[name]))
        assert row["trials"] == 2 and row["epochs"] == 1 and row["diverged"] == 0
        assert 0 <= row["test_mean"] <= 100 and row["test_std"] >= 0 and 0 <= row["train_mean"] <= 100
        tests = [r["test"] for r in row["runs"]]
        assert row["test_mean"] == pytest.approx(np.mean(tests))
        assert row["test_std"] == pytest.approx(np.std(tests, ddof=1))
        assert row["settings"]["rule"] == rp.SETTINGS[name]["rule"] and row["settings"]["batch_size"] == 20
    assert table["fashion-mnist"]["ekdaa"]["paper"] == 90.01 and table["fashion-mnist"]["kp"]["paper"] is None
    md = (tmp_path / "table2.md").read_text()
    assert "| EKDAA | ekdaa | fmnist |" in md and "90.01 ± 0.11" in md and "deviation" in md
    assert "60 training / 40 test images (**subset: not the paper's protocol**)" in md
    assert not list(tmp_path.rglob("checkpoint.*"))  # removed after each finished run (.npz and .safetensors)
    assert len(list(tmp_path.rglob("result.json"))) == 2 * len(rp.SETTINGS)

    def forbidden(*a, **k):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(training, "train", forbidden)
    again = rp.table2("fashion-mnist", methods="ekdaa,bp", trials=2, epochs=1, data=data, widths=WIDTHS,
                      out_dir=tmp_path, backend="numpy", progress=False, overrides={"batch_size": 20})
    assert again["ekdaa"]["test_mean"] == rows["ekdaa"]["test_mean"]
    # the curves of those runs
    path = rp.curves(tmp_path, "fashion-mnist")
    assert is_png(path)
    # several folders in one figure: a method found in two is labelled with its folder
    other = tmp_path / "search"
    shutil.copytree(tmp_path / "runs" / "fashion-mnist" / "ekdaa", other / "runs" / "fashion-mnist" / "ekdaa")
    drawn = {}
    monkeypatch.setattr(plots, "learning_curves", lambda hist, path, title: drawn.update(hist) or path)
    assert rp.curves([tmp_path, other], "fashion-mnist", "ekdaa,bp", tmp_path / "both.png") == tmp_path / "both.png"
    assert set(drawn) == {"bp", f"ekdaa ({tmp_path})", f"ekdaa ({other})"}
    with pytest.raises(FileNotFoundError, match="no runs under"):
        rp.curves([tmp_path / "nothing"], "fashion-mnist")
    # a run still training (metrics.json, no result.json yet) is left out, not drawn cut short
    (other / "runs" / "fashion-mnist" / "ekdaa" / "seed0" / "result.json").unlink()
    drawn.clear()
    rp.curves([tmp_path, other], "fashion-mnist", "ekdaa,bp", tmp_path / "both.png")
    assert len(drawn[f"ekdaa ({other})"]) == 1 and len(drawn[f"ekdaa ({tmp_path})"]) == 2


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_table2_seeds_split_a_campaign_and_trials_tabulates_them(tmp_path, monkeypatch):
    data = template_data(60)
    kw = dict(epochs=1, data=data, widths=WIDTHS, out_dir=tmp_path, backend="numpy", progress=False,
              overrides={"batch_size": 20})
    for seed in ("1", [0]):  # two "processes", one seed each (string form as on the command line)
        rows = rp.table2("fashion-mnist", methods="bp-tuned", seeds=seed, **kw)
        assert rows["bp-tuned"]["trials"] == 1
    assert sorted(p.parent.name for p in tmp_path.rglob("result.json")) == ["seed0", "seed1"]
    monkeypatch.setattr(training, "train", lambda *a, **k: pytest.fail("a finished run was trained again"))
    rows = rp.table2("fashion-mnist", methods="bp-tuned", trials=2, **kw)
    assert rows["bp-tuned"]["trials"] == 2 and [r["seed"] for r in rows["bp-tuned"]["runs"]] == [0, 1]
    assert rows["bp-tuned"]["settings"]["options"]["optimizer"] == "adam"
    monkeypatch.undo()
    # rows of one protocol merge per method, so one table holds rows with different trial counts ...
    rp.table2("fashion-mnist", methods="bp", trials=1, **kw)
    table = json.loads((tmp_path / "table2.json").read_text())["fashion-mnist"]
    assert list(table) == ["bp-tuned", "bp"] and table["bp-tuned"]["trials"] == 2
    assert "1 or 2 trials per method" in (tmp_path / "table2.md").read_text()
    # ... and a call with another protocol replaces them
    rp.table2("fashion-mnist", methods="bp", trials=1, **{**kw, "epochs": 2})
    assert list(json.loads((tmp_path / "table2.json").read_text())["fashion-mnist"]) == ["bp"]
    assert "1 trials per method (seeds 0..0), 2 epochs" in (tmp_path / "table2.md").read_text()
    for bad in ("", "1,x", [-1], [2, 2], [True]):
        with pytest.raises(ValueError, match="seeds"):
            rp.table2("fashion-mnist", methods="bp", seeds=bad, **kw)


def test_subset_flag():
    assert rp.is_subset("cifar10", {"n_train": 4000, "n_test": 1000})  # the real CIFAR-10 subset
    assert not rp.is_subset("cifar10", {"n_train": 50000, "n_test": 10000})
    assert rp.is_subset("fashion-mnist", {"n_train": 60000, "n_test": 10000, "train_limit": 60000})
    assert not rp.is_subset("fashion-mnist", {"n_train": 60000, "n_test": 10000})


def test_table2_records_divergence(tmp_path):
    rows = rp.table2("fashion-mnist", methods="bp", trials=1, epochs=3, data=template_data(60), widths=WIDTHS,
                     out_dir=tmp_path, backend="numpy", progress=False,
                     overrides={"lr": 10.0, "activation": "linear", "dropout_conv": 0.0, "dropout_fc": 0.0})
    assert rows["bp"]["diverged"] == 1 and rows["bp"]["trials"] == 0 and rows["bp"]["test_mean"] is None
    assert "1 (0)" not in (tmp_path / "table2.md").read_text() and "| 0 (1) |" in (tmp_path / "table2.md").read_text()


def test_tsne_figure(tmp_path):
    path = rp.tsne("fashion-mnist", "ekdaa", epochs=1, at=[0, 1], samples=30, data=template_data(60), widths=WIDTHS,
                   out_dir=tmp_path, backend="numpy", progress=False, overrides={"batch_size": 20})
    assert is_png(path)
    info = json.loads((tmp_path / "tsne-fashion-mnist-ekdaa.json").read_text())
    assert info["at"] == [0, 1] and set(info["test_accuracy_at"]) == {"0", "1"}
    with pytest.raises(ValueError, match="epochs to plot"):
        rp.tsne("fashion-mnist", "ekdaa", epochs=1, at=[3], data=template_data(60), widths=WIDTHS, out_dir=tmp_path,
                backend="numpy", progress=False)


def test_alignment_figure(tmp_path):
    path = rp.alignment("fashion-mnist", methods="ekdaa,ekdaa-tuned,fa,kp,dfa,ekdaa-signum", epochs=1, every=1,
                        probe=10, data=template_data(60), widths=WIDTHS, out_dir=tmp_path, backend="numpy",
                        progress=False, overrides={"batch_size": 20})
    assert is_png(path)
    info = json.loads((tmp_path / "alignment-fashion-mnist.json").read_text())
    # signum has no true gradient to compare with; ekdaa-tuned trains with its cosine schedule
    assert set(info["records"]) == {"ekdaa", "ekdaa-tuned", "fa", "kp", "dfa"}
    rec = info["records"]["ekdaa"]
    assert [r["step"] for r in rec] == [0, 1, 2, 3]
    assert "conv1.error_weight_angle" in rec[0] and "conv1.error_weight_angle" not in info["records"]["dfa"][0]
    assert all(r["out.update_angle"] < 1e-2 for r in rec)  # the output layer's update is the exact gradient


@pytest.mark.parametrize("method, schedules", [
    ("ekdaa-tuned", {"schedule": "cosine", "beta_end": None}),
    ("ekdaa-signum-release-beta-decay", {"schedule": "cosine", "beta_end": 0.0}),
    ("ekdaa-signum-release-conv1-slow", {"schedule": "cosine", "beta_end": 0.0}),
    ("ekdaa-signum-release-fc1-fast", {"schedule": "cosine", "beta_end": 0.0}),
])
def test_hooked_training_follows_the_schedules_like_train(method, schedules):
    """t-SNE and alignment retrain a setting with its learning-rate and β schedules (training options,
    not model options) exactly as ``train`` does: Adam + cosine, and SGD + cosine with β falling to 0
    in the signum release network, end with the same weights."""
    data = template_data(60)
    cfg = rp.method_config(method, "fashion-mnist", {"batch_size": 20}, WIDTHS)
    model, found = rp._build_for_hook(cfg, "numpy", 0)
    assert found == schedules and "schedule" in cfg["options"]
    rp._train_with_hook(model, data[0], data[1], 20, 0, 2, lambda epoch, step: None, progress=False, **found)
    ref = training.train(cfg["preset"], rule=cfg["rule"], backend="numpy", epochs=2, batch_size=20, seed=0,
                         data=data, progress=False, **cfg["options"]).model
    assert model.params.keys() == ref.params.keys()
    last_beta = 0.9 if schedules["beta_end"] is None else schedules["beta_end"]  # the β of the last update
    assert model.opts["beta"] == ref.opts["beta"] == last_beta
    for name, value in ref.params.items():
        np.testing.assert_array_equal(model.params[name], value, err_msg=name)


def test_plot_functions_directly(tmp_path):
    hist = [[{"epoch": e, "train_accuracy": 0.1 * e, "test_accuracy": 0.09 * e} for e in (1, 2, 3)]] * 2
    assert is_png(plots.learning_curves({"a": hist, "b": hist[:1]}, tmp_path / "c.png", "t"))
    r = np.random.default_rng(0)
    snaps = {0: (r.normal(size=(50, 6)), r.integers(0, 10, 50)),
             5: (r.normal(size=(50, 2, 2)), r.integers(0, 10, 50), 0.5)}
    assert is_png(plots.tsne_grid(snaps, tmp_path / "t.png"))
    recs = {"x": [{"step": s, "fc1.update_angle": 80 - s, "fc1.error_weight_angle": 85.0, "out.update_angle": 0.0}
                  for s in range(5)]}
    assert is_png(plots.alignment_plot(recs, tmp_path / "a.png", "t"))


def test_cli_reproduce(tmp_path, capsys):
    from ekdaa_cuda.data import DatasetNotFoundError, load_dataset

    try:
        load_dataset("fashion-mnist", "test", limit=1)
    except DatasetNotFoundError as exc:
        pytest.skip(str(exc))
    out = tmp_path / "t2"
    code = cli.main(["reproduce", "table2", "--dataset", "fashion-mnist", "--trials", "1", "--epochs", "1",
                     "--rules", "lra-e,bp-fc", "--train-limit", "200", "--test-limit", "100", "--backend", "numpy",
                     "--out", str(out), "--no-progress", "--set", "batch_size=25"])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "lra-e" in text and (out / "table2.json").exists() and (out / "table2.md").exists()
    assert cli.main(["reproduce", "curves", "--out", str(out), "--dataset", "fashion-mnist"]) == 0
    assert is_png(out / "curves-fashion-mnist.png")
    with pytest.warns(UserWarning, match="drawn without it"):  # a folder without runs beside one with runs
        assert cli.main(["reproduce", "curves", "--out", str(out), str(tmp_path / "empty"), "--path",
                         str(tmp_path / "two.png")]) == 0
    assert is_png(tmp_path / "two.png")
    assert cli.main(["reproduce", "table2", "--rules", "nope", "--out", str(out), "--no-progress"]) == 2
    assert "unknown method" in capsys.readouterr().err
    assert cli.main(["reproduce", "curves", "--out", str(tmp_path / "empty")]) == 2


def test_git_commit_names_the_checkout_and_its_changes(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git not installed")
    assert rp.git_commit(tmp_path) is None  # not a checkout
    repo, pkg = tmp_path / "repo", tmp_path / "repo" / "pkg"
    pkg.mkdir(parents=True)
    (pkg / "a.py").write_text("x = 1\n")
    (repo / "other.txt").write_text("o\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(repo)]
    for args in (["init", "-q"], ["add", "."], ["commit", "-qm", "c"]):
        subprocess.run([*git, *args], check=True)
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert rp.git_commit(pkg) == head
    (repo / "other.txt").write_text("changed outside the package\n")
    assert rp.git_commit(pkg) == head
    (pkg / "a.py").write_text("x = 2\n")
    assert rp.git_commit(pkg) == head + "+changes"
    assert rp.code_commit() is rp.code_commit()  # read once per process

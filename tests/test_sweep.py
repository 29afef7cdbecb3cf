"""Sweeps on the local engine: configs checked before anything runs, finished runs skipped, a run
that raises recorded while the others finish, the summary table, the CLI (ekdaa_cuda.sweep)."""

import json

import numpy as np
import pytest
from helpers import template_data

from ekdaa_cuda import cli, training
from ekdaa_cuda import sweep as sw

DATA = template_data(200, 60)
BASE = {"epochs": 1, "backend": "numpy", "widths": [3, 4, 5, 6], "batch_size": 50}


def config(**extra):
    return {"seeds": [0, 1], "base": dict(BASE), "grid": {"rule": ["ekdaa", "fa"]}, **extra}


def forbid_training(monkeypatch):
    def forbidden(*a, **k):
        raise AssertionError("a run was trained")

    monkeypatch.setattr(training, "train", forbidden)


@pytest.mark.parametrize("cfg, match", [
    ({"seeds": [0], "base": {"lrr": 0.1}}, r"unknown option 'lrr' \(did you mean 'lr'\?\)"),
    ({"seeds": [0], "grid": {"rule": ["ekdaa"], "colour": [1]}}, "unknown option 'colour'"),
    ({"seeds": [0], "base": {"seed": 3}}, "seeds"),
    ({"seeds": [0], "grid": {}}, r"\[grid\] is empty"),
    ({"seeds": [0], "grid": {"rule": []}}, r"\[grid\] rule is empty"),
    ({"seeds": [0], "grid": {"lr": 0.1}}, "expected a list"),
    ({"base": {}}, "needs `seeds`"),
    ({"seeds": []}, "non-empty list"),
    ({"seeds": [0, -1]}, "ints >= 0"),
    ({"seeds": [0, "1"]}, "ints >= 0"),
    ({"seeds": [1, 1]}, "repeated"),
    ({"seeds": 0}, ">= 1"),
    ({"seeds": True}, "list of ints"),
    ({"seeds": [0], "grid": {"rule": ["ekdaa", "hebb"]}}, r"point 2 \(rule=hebb\): unknown rule"),
    ({"seeds": [0], "grid": {"optimizer": ["sgd", "lion"]}}, "optimizer='lion' is not one of"),
    ({"seeds": [0], "base": {"epochs": 0}}, "epochs must be a positive int"),
    ({"seeds": [0], "grid": {"beta_end": [0.0, -0.5]}}, r"point 2 \(beta_end=-0.5\): option beta_end must be >= 0"),
    ({"seeds": [0], "grid": {"layer_lr": [{"conv1": 0.1}, {"conv9": 1.0}]}},
     r"point 2 \(layer_lr=.*conv9.*\): option layer_lr names 'conv9', not a layer of this network"),
    ({"seeds": [0], "grid": {"layer_lr": [{"conv1": -0.1}]}}, r"option layer_lr\['conv1'\] must be >= 0"),
    ({"seeds": [0], "random": {"lr": {"log_uniform": [1e-4, 1e-2]}}}, "samples"),
    ({"seeds": [0], "samples": 2, "random": {"lr": {"gauss": [0, 1]}}}, "expected one of"),
    ({"seeds": [0], "samples": 2, "random": {"lr": {"log_uniform": [0, 1]}}}, "low > 0"),
    ({"seeds": [0], "base": {"lr": 1e-3}, "grid": {"lr": [1e-3]}}, "more than one"),
    ({"seeds": [0], "grids": {}}, "unknown top-level"),
])
def test_bad_configs_fail_before_anything_starts(tmp_path, monkeypatch, cfg, match):
    forbid_training(monkeypatch)
    with pytest.raises(sw.SweepConfigError, match=match):
        sw.sweep(cfg, tmp_path / "out", data=DATA, progress=False)
    assert not (tmp_path / "out").exists()


def test_sweep_runs_summarizes_and_skips_finished_runs(tmp_path, monkeypatch):
    rows = sw.sweep(config(), tmp_path, data=DATA, progress=False)
    assert [r["setting"] for r in rows] in (["rule=ekdaa", "rule=fa"], ["rule=fa", "rule=ekdaa"])
    assert rows[0]["test_mean"] >= rows[1]["test_mean"]  # best first
    results = sorted(tmp_path.glob("runs/*/seed*/result.json"))
    assert len(results) == 4 and not list(tmp_path.rglob("checkpoint.npz")) and not list(tmp_path.rglob("worker.json"))
    for row in rows:
        tests = [x["test"] for x in row["runs"]]
        assert row["test_mean"] == pytest.approx(np.mean(tests))
        assert row["test_std"] == pytest.approx(np.std(tests, ddof=1))
    r = json.loads(results[0].read_text())
    assert r["status"] == "ok" and len(r["state_hash"]) == 64 and r["attempt"] == 1 and r["machine"]["numpy"]
    assert {"python", "commit", "host", "ekdaa_cuda"} <= set(r["machine"]) and r["history"][0]["epoch"] == 1
    assert (results[0].parent / "metrics.json").exists()
    saved = json.loads((tmp_path / "sweep.json").read_text())
    assert saved["rows"] == json.loads(json.dumps(rows)) and saved["info"]["runs"] == 4
    assert "| 1 | rule=" in (tmp_path / "sweep.md").read_text()
    # the same runs, trained directly, give the same final state
    direct = training.train(preset="fmnist", rule="fa", seed=1, data=DATA, progress=False, **BASE)
    fa1 = json.loads(next(tmp_path.glob("runs/rule=fa-*/seed1/result.json")).read_text())
    assert fa1["state_hash"] == sw.state_hash(direct.model) and fa1["test_accuracy"] == direct.test_accuracy
    # restarting a finished sweep runs nothing and gives the same table
    forbid_training(monkeypatch)
    again = sw.sweep(config(), tmp_path, data=DATA, progress=False)
    assert again == rows


def test_a_run_that_raises_is_recorded_and_the_others_finish(tmp_path, monkeypatch):
    real = training.train

    def flaky(**kw):
        if kw["rule"] == "fa" and kw["seed"] == 1:
            raise RuntimeError("boom")
        return real(**kw)

    monkeypatch.setattr(training, "train", flaky)
    rows = sw.sweep(config(), tmp_path, data=DATA, progress=False)
    fa = next(r for r in rows if r["setting"] == "rule=fa")
    assert fa["failed"] == 1 and fa["finished"] == 1 and fa["test_std"] == 0.0
    assert sum(r["finished"] for r in rows) == 3
    err = json.loads(next(tmp_path.glob("runs/rule=fa-*/seed1/error.json")).read_text())
    assert err["status"] == "failed" and err["error"] == "RuntimeError: boom" and "Traceback" in err["traceback"]
    assert "boom" in (tmp_path / "sweep.md").read_text()
    # rerunning tries the failed run again (and only it)
    calls = []

    def counting(**kw):
        calls.append((kw["rule"], kw["seed"]))
        return real(**kw)

    monkeypatch.setattr(training, "train", counting)
    rows = sw.sweep(config(), tmp_path, data=DATA, progress=False)
    assert calls == [("fa", 1)] and all(r["failed"] == 0 and r["finished"] == 2 for r in rows)
    assert not list(tmp_path.rglob("error.json"))


def test_random_points_are_reproducible_and_crossed_with_the_grid():
    cfg = sw.check_config({"seeds": 2, "grid": {"rule": ["ekdaa", "fa"]}, "samples": 3, "search_seed": 7,
                           "random": {"lr": {"log_uniform": [1e-4, 1e-2]}, "dropout": {"choice": [0.0, 0.1]},
                                      "beta": {"uniform": [0.5, 1.0]}}})
    points = sw.grid_points(cfg)
    assert len(points) == 6 and points == sw.grid_points(cfg)
    assert all(1e-4 <= p["lr"] <= 1e-2 and p["dropout"] in (0.0, 0.1) and 0.5 <= p["beta"] <= 1.0 for p in points)
    runs = sw.make_runs(points, BASE, cfg["seeds"])
    assert len(runs) == 12 and len({r.id for r in runs}) == 12 and len({r.dir for r in runs}) == 12


def test_config_files_toml_and_yaml(tmp_path):
    toml = tmp_path / "s.toml"
    toml.write_text('seeds = [0, 1]\n[base]\nepochs = 1\nwidths = [3, 4, 5, 6]\n[grid]\nrule = ["ekdaa", "fa"]\n')
    assert sw.load_config(toml) == {"seeds": [0, 1], "base": {"epochs": 1, "widths": [3, 4, 5, 6]},
                                    "grid": {"rule": ["ekdaa", "fa"]}}
    bad = tmp_path / "bad.toml"
    bad.write_text("seeds = [0,\n")
    with pytest.raises(sw.SweepConfigError, match="not valid TOML"):
        sw.load_config(bad)
    yaml = pytest.importorskip("yaml")
    y = tmp_path / "s.yaml"
    y.write_text(yaml.safe_dump(sw.load_config(toml)))
    assert sw.load_config(y) == sw.load_config(toml)


def test_cli_sweep(tmp_path, capsys):
    from ekdaa_cuda.data import DatasetNotFoundError, load_dataset

    cfg = tmp_path / "tiny.toml"
    cfg.write_text('seeds = [0]\n[base]\nepochs = 1\nbackend = "numpy"\ntrain_limit = 100\ntest_limit = 50\n'
                   'widths = [3, 4, 5, 6]\n[grid]\nrule = ["ekdaa", "bp"]\n')
    assert cli.main(["sweep", str(cfg), "--out", str(tmp_path / "o"), "--dry-run"]) == 0
    assert "2 runs" in capsys.readouterr().out and not (tmp_path / "o").exists()
    bad = tmp_path / "bad.toml"
    bad.write_text('seeds = [0]\n[grid]\nrul = ["ekdaa"]\n')
    assert cli.main(["sweep", str(bad), "--out", str(tmp_path / "b"), "--no-progress"]) == 2
    assert "unknown option 'rul'" in capsys.readouterr().err and not (tmp_path / "b").exists()
    try:
        load_dataset("fashion-mnist", "test", limit=1)
    except DatasetNotFoundError as exc:
        pytest.skip(str(exc))
    assert cli.main(["sweep", str(cfg), "--out", str(tmp_path / "o"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "rule=ekdaa" in out and "rule=bp" in out and "wrote" in out
    assert (tmp_path / "o" / "sweep.json").exists() and len(list((tmp_path / "o").glob("runs/*/seed0"))) == 2


def test_optuna_search_on_the_same_runs(tmp_path, monkeypatch):
    pytest.importorskip("optuna")
    cfg = {"seeds": [0], "base": dict(BASE), "grid": {"rule": ["ekdaa", "fa"]},
           "random": {"lr": {"log_uniform": [1e-4, 1e-2]}}}
    with pytest.raises(sw.SweepConfigError, match="budget"):
        sw.sweep(cfg, tmp_path, search="optuna", data=DATA, progress=False)
    rows = sw.sweep(cfg, tmp_path, search="optuna", budget=3, data=DATA, progress=False)
    assert sum(len(r["runs"]) for r in rows) <= 3 and all(r["finished"] == len(r["runs"]) for r in rows)
    assert json.loads((tmp_path / "sweep.json").read_text())["info"]["search"] == "optuna"
    forbid_training(monkeypatch)  # the seeded sampler proposes the same points again: nothing is retrained
    assert sw.sweep(cfg, tmp_path, search="optuna", budget=3, data=DATA, progress=False) == rows

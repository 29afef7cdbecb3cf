"""Sweeps on a local Ray (2 CPUs): the same results as the local engine, and a worker killed
with SIGKILL mid-run is retried from its checkpoint with nothing lost. One Ray start for the file."""

import json
import os
import signal
import threading
import time

import pytest
from helpers import template_data

from ekdaa_cuda import sweep as sw

ray = pytest.importorskip("ray")

DATA = template_data(300, 100)
BASE = {"epochs": 1, "backend": "numpy", "widths": [3, 4, 5, 6], "batch_size": 50}
TINY = {"seeds": [0, 1], "base": BASE, "grid": {"rule": ["ekdaa", "fa"]}}


@pytest.fixture(scope="module")
def local_ray():
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    if started:
        ray.shutdown()


def strip(history):
    return [{k: v for k, v in h.items() if k != "seconds"} for h in history]


def results_by_dir(out):
    return {p.parent.relative_to(out).as_posix(): json.loads(p.read_text()) for p in out.glob("runs/*/*/result.json")}


def test_ray_sweep_equals_local_sweep(tmp_path, local_ray):
    local_rows = sw.sweep(TINY, tmp_path / "local", data=DATA, progress=False)
    ray_rows = sw.sweep(TINY, tmp_path / "ray", engine="ray", data=DATA, progress=False)
    local, remote = results_by_dir(tmp_path / "local"), results_by_dir(tmp_path / "ray")
    assert len(local) == 4 and set(local) == set(remote)
    for d, a in local.items():
        b = remote[d]
        assert b["status"] == a["status"] == "ok"
        assert (b["state_hash"], b["test_accuracy"], b["train_accuracy"]) == \
            (a["state_hash"], a["test_accuracy"], a["train_accuracy"])
        assert strip(b["history"]) == strip(a["history"]) and b["machine"]["ray"] == ray.__version__
    strip_rows = lambda rows: [{k: v for k, v in r.items() if k not in ("runs", "seconds_per_run")}  # noqa: E731
                               for r in rows]
    assert strip_rows(ray_rows) == strip_rows(local_rows)


KILL_CFG = {"seeds": [0, 1], "base": {**BASE, "epochs": 3, "checkpoint_every": 1}, "grid": {"rule": ["ekdaa"]}}


def sweep_and_kill_one(out, retries):
    """Run KILL_CFG on Ray in a thread, SIGKILL the worker of the first run seen mid-run; (rows, killed run dir)."""
    box = {}
    thread = threading.Thread(target=lambda: box.setdefault("rows", sw.sweep(KILL_CFG, out, engine="ray", data=DATA,
                                                                              progress=False, retries=retries)))
    thread.start()
    killed = None
    deadline = time.monotonic() + 60
    while killed is None and thread.is_alive() and time.monotonic() < deadline:
        for ckpt in out.glob("runs/*/seed*/checkpoint.npz"):  # a run that has checkpointed and not finished yet
            try:
                worker = json.loads((ckpt.parent / "worker.json").read_text())
            except (FileNotFoundError, json.JSONDecodeError):
                continue
            if not (ckpt.parent / "result.json").exists():
                os.kill(worker["pid"], signal.SIGKILL)
                killed = ckpt.parent
                break
        time.sleep(0.02)
    thread.join(timeout=90)
    assert killed is not None, "no run was caught mid-run"
    assert not thread.is_alive() and "rows" in box
    return box["rows"], killed


def test_a_worker_killed_mid_run_is_retried_from_its_checkpoint(tmp_path, local_ray):
    out = tmp_path / "kill"
    rows, killed = sweep_and_kill_one(out, retries=2)
    assert rows[0]["finished"] == 2 and rows[0]["failed"] == 0  # nothing lost
    retried = json.loads((killed / "result.json").read_text())
    assert retried["attempt"] == 2 and retried["resumed"] and retried["resumed"].startswith("resumed from")
    # resuming from the checkpoint gives exactly the uninterrupted run
    reference = sw.sweep(KILL_CFG, tmp_path / "reference", data=DATA, progress=False)
    ref = results_by_dir(tmp_path / "reference")[killed.relative_to(out).as_posix()]
    assert (retried["state_hash"], strip(retried["history"])) == (ref["state_hash"], strip(ref["history"]))
    assert reference[0]["test_mean"] == rows[0]["test_mean"]


def test_a_worker_that_dies_more_than_retries_is_recorded_failed_and_rerun_later(tmp_path, local_ray):
    out = tmp_path / "kill0"
    rows, killed = sweep_and_kill_one(out, retries=0)
    assert rows[0]["finished"] == 1 and rows[0]["failed"] == 1  # the other run finished
    err = json.loads((killed / "error.json").read_text())
    assert err["status"] == "failed" and "after 0 retries" in err["error"]
    assert (killed / "checkpoint.npz").exists()
    rows = sw.sweep(KILL_CFG, out, data=DATA, progress=False)  # rerun (local engine): resumes the killed run
    assert rows[0]["finished"] == 2 and rows[0]["failed"] == 0 and not (killed / "error.json").exists()
    assert json.loads((killed / "result.json").read_text())["resumed"]

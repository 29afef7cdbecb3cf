"""Robustness: training killed with SIGKILL resumes bit-exactly; damaged checkpoints are refused
with a clear error and change nothing.

The SIGKILL test runs a tiny training job in a subprocess (a conv preset narrowed to a few
channels, dropout, Adam, 60 images, a checkpoint every 2 updates) and kills it 20 times: at
random moments, and inside a checkpoint / safetensors / metrics write at a random one of the
run's writes (half of the bytes written, after the fsync but before the rename, and just after
the rename). Each killed run is resumed (or restarted when no checkpoint exists yet) until it
finishes, and its final checkpoint must equal the uninterrupted run's bit for bit.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import ekdaa_cuda as ek
from ekdaa_cuda import training

CHILD = r'''
import io, os, signal, sys
import numpy as np
out, stage, nth = sys.argv[1], sys.argv[2], int(sys.argv[3])
from ekdaa_cuda import training
import ekdaa_cuda as ek

def die():
    os.kill(os.getpid(), signal.SIGKILL)

real_write, writes = training.atomic_write_bytes, [0]

def write_then_maybe_die(path, write):
    """atomic_write_bytes, killed inside the nth call at the chosen stage."""
    writes[0] += 1
    if stage == "none" or writes[0] != nth:
        return real_write(path, write)
    if stage == "mid-write":
        def half(f):
            buf = io.BytesIO()
            write(buf)
            f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
            f.flush()
            die()
        return real_write(path, half)
    if stage == "before-rename":
        real_fsync = os.fsync
        def fsync_then_die(fd):
            real_fsync(fd)
            die()
        os.fsync = fsync_then_die
        return real_write(path, write)
    real_write(path, write)  # "after-rename"
    die()

training.atomic_write_bytes = write_then_maybe_die
rng = np.random.default_rng(0)
templates = rng.uniform(-0.5, 0.5, (10, 1, 28, 28))
def images(labels):
    return (templates[labels] + 0.2 * rng.standard_normal((len(labels), 1, 28, 28))).astype(np.float32)
ytr, yte = rng.integers(0, 10, 60), rng.integers(0, 10, 20)
data = (images(ytr), ytr, images(yte), yte)
resume = os.path.exists(os.path.join(out, "checkpoint.npz"))
print("READY", flush=True)
r = ek.train("fmnist", epochs=2, batch_size=10, data=data, out_dir=out, resume=resume, checkpoint_every=2,
             widths=(2, 3, 4, 8), backend="numpy", progress=False, dropout=0.2, optimizer="adam", lr=1e-3)
print("DONE", writes[0], r.test_accuracy, flush=True)
'''
STAGES = ("mid-write", "before-rename", "after-rename")


def start(script: Path, out: Path, stage: str = "none", nth: int = 0) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, str(script), str(out), stage, str(nth)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def wait_ready(proc: subprocess.Popen) -> float:
    line = proc.stdout.readline()
    assert line.startswith("READY"), (line, proc.stderr.read())
    return time.perf_counter()


def run_to_end(script: Path, out: Path) -> str:
    """Resume (or start over when no checkpoint exists) and finish without interference."""
    if not (out / "checkpoint.npz").exists() and out.exists():
        shutil.rmtree(out)  # killed before its first checkpoint: nothing to resume
    proc = start(script, out)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    return stdout


def final_state(out: Path) -> dict:
    arrays, state = training.load_checkpoint(out / "checkpoint.npz")
    for record in state["history"]:
        record.pop("seconds")
    metrics = json.loads((out / "metrics.json").read_text())
    return {"arrays": arrays, "history": state["history"], "metrics": [
        {k: v for k, v in r.items() if k != "seconds"} for r in metrics["history"]]}


def test_sigkill_at_random_moments_resumes_bit_exactly(tmp_path, rng):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    t0 = time.perf_counter()
    proc = start(script, tmp_path / "reference")
    ready = wait_ready(proc)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    run_seconds = time.perf_counter() - ready
    n_writes = int(stdout.split()[-2])  # checkpoint, safetensors and metrics writes of a whole run
    want = final_state(tmp_path / "reference")

    outcomes = []
    for trial in range(20):
        out = tmp_path / f"trial{trial}"
        if trial % 2:  # inside the nth write, at one of three stages
            stage, nth = STAGES[(trial // 2) % 3], int(rng.integers(1, n_writes + 1))
            proc = start(script, out, stage, nth)
            wait_ready(proc)
            proc.wait(timeout=120)
            how = f"{stage} of write {nth}/{n_writes}"
        else:  # at a random moment of the training proper
            proc = start(script, out)
            wait_ready(proc)
            delay = float(rng.uniform(0, 0.8 * run_seconds))  # mostly before the run would end
            time.sleep(delay)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=120)
            how = f"after {delay:.2f} s of {run_seconds:.2f} s"
        proc.stdout.close()
        proc.stderr.close()
        killed = proc.returncode == -signal.SIGKILL
        had_checkpoint = (out / "checkpoint.npz").exists()
        if killed:
            run_to_end(script, out)
        got = final_state(out)
        assert got["history"] == want["history"] and got["metrics"] == want["metrics"], how
        assert got["arrays"].keys() == want["arrays"].keys(), how
        for key, value in want["arrays"].items():
            assert np.array_equal(got["arrays"][key], value), f"{key} differs after a kill {how}"
        leftovers = {p.name for p in out.iterdir()} - set(training.RUN_FILES)
        assert all(name.startswith(".") and name.endswith(".tmp") for name in leftovers), leftovers
        outcomes.append((how, killed, had_checkpoint))
    print(f"20 trials in {time.perf_counter() - t0:.1f} s; reference run {run_seconds:.2f} s, {n_writes} writes")
    for how, killed, had in outcomes:
        print(f"  kill {how}: " + ("finished before the kill" if not killed else
                                     "resumed" if had else "restarted (killed before its first checkpoint)"))
    assert sum(killed for _, killed, _ in outcomes) >= 15  # most random kills land before the end


# ---------------------------------------------------------------- damaged checkpoints

TINY = dict(widths=(2, 3, 4, 8), backend="numpy", progress=False, optimizer="adam", lr=1e-3)


@pytest.fixture(scope="module")
def good_run(tmp_path_factory):
    """A finished 1-epoch run: (folder, checkpoint bytes, data)."""
    from helpers import template_data

    out = tmp_path_factory.mktemp("good")
    data = template_data(n_train=40, n_test=10)
    ek.train("fmnist", epochs=1, batch_size=20, data=data, out_dir=out, **TINY)
    return out, (out / "checkpoint.npz").read_bytes(), data


def model_snapshot(model) -> tuple:
    return model.state_dict(), model.optimizer.state_dict(), model.step_count


def assert_same_snapshot(a, b):
    assert a[2] == b[2]
    for x, y in zip(a[:2], b[:2]):
        assert x.keys() == y.keys() and all(np.array_equal(x[k], y[k]) for k in x)


def refused(path: Path, good_arrays: dict, data) -> str | None:
    """Try the damaged checkpoint every way a user can: load_checkpoint, load_checkpoint_arrays into
    a trained model, export.load_model and train(resume=True). Returns None when the file still
    loads as the good checkpoint, else the (single, ValueError) message; asserts that nothing
    changed: the file's bytes and mtime, the model's parameters, optimizer state and step."""
    from ekdaa_cuda import export

    before, mtime = path.read_bytes(), path.stat().st_mtime_ns
    try:
        arrays, _ = training.load_checkpoint(path)
    except ValueError as exc:
        message = str(exc)
        assert str(path) in message, message
        for attempt in (lambda: export.load_model(path),
                        lambda: ek.train("fmnist", epochs=2, batch_size=20, data=data, out_dir=path.parent,
                                         resume=True, **TINY)):
            with pytest.raises(ValueError) as err:
                attempt()
            assert str(path) in str(err.value), str(err.value)
    else:
        message = None
        model = export.load_model(path.parent / "reference.npz")
        snap = model_snapshot(model)
        try:
            model.load_checkpoint_arrays(arrays)
        except ValueError as exc:
            message = str(exc)
            assert_same_snapshot(snap, model_snapshot(model))
            with pytest.raises(ValueError, match=re.escape(str(path))):
                ek.train("fmnist", epochs=2, batch_size=20, data=data, out_dir=path.parent, resume=True, **TINY)
        else:  # a byte nobody reads (e.g. a zip timestamp): the data must be exactly the good data
            assert arrays.keys() == good_arrays.keys()
            assert all(np.array_equal(arrays[k], v) for k, v in good_arrays.items())
    assert path.read_bytes() == before and path.stat().st_mtime_ns == mtime
    return message


def damaged_folder(tmp_path, good_run, content: bytes) -> Path:
    folder = tmp_path / "run"
    folder.mkdir(exist_ok=True)
    (folder / "reference.npz").write_bytes(good_run[1])
    path = folder / "checkpoint.npz"
    path.write_bytes(content)
    return path


@pytest.mark.parametrize("keep", [0, 1, 21, 100, 0.5, -22, -1])
def test_truncated_checkpoint_is_refused(tmp_path, good_run, keep):
    raw = good_run[1]
    keep = int(len(raw) * keep) if isinstance(keep, float) else keep % len(raw) if keep < 0 else keep
    good_arrays, _ = training.load_checkpoint(good_run[0] / "checkpoint.npz")
    message = refused(damaged_folder(tmp_path, good_run, raw[:keep]), good_arrays, good_run[2])
    assert message and "unreadable or incomplete" in message


def test_bit_flips_are_refused_or_harmless(tmp_path, good_run, rng):
    """Flip one byte at 60 random positions (plus the first and last): every damaged file is either
    refused with a ValueError naming it, or still holds exactly the good data (zip CRCs guard
    the arrays; a flipped timestamp is harmless)."""
    raw = good_run[1]
    good_arrays, _ = training.load_checkpoint(good_run[0] / "checkpoint.npz")
    positions = [0, len(raw) - 1, *rng.integers(0, len(raw), 60)]
    outcomes = {"refused": 0, "harmless": 0}
    for pos in positions:
        damaged = bytearray(raw)
        damaged[pos] ^= 0xFF
        path = damaged_folder(tmp_path, good_run, bytes(damaged))
        outcomes["refused" if refused(path, good_arrays, good_run[2]) else "harmless"] += 1
    print(outcomes)
    assert outcomes["refused"] > 0


def rewrite(good_run, tmp_path, change) -> Path:
    arrays, state = training.load_checkpoint(good_run[0] / "checkpoint.npz")
    change(arrays, state)
    arrays["train_state_json"] = np.array(json.dumps(state))
    path = damaged_folder(tmp_path, good_run, b"")
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return path


def _wider(arrays, state):
    other = ek.build_model("fmnist", widths=(3, 3, 4, 8), backend="numpy").checkpoint_arrays()
    arrays.update({k: v for k, v in other.items() if k.startswith("param.")})


@pytest.mark.parametrize("change, message", [
    (_wider, r"conv1.weight has shape \(3, 1, 3, 3\), expected \(2, 1, 3, 3\)"),
    (lambda a, s: a.update({"param.fc1.weight": np.full_like(a["param.fc1.weight"], np.nan)}),
     "fc1.weight contains NaN"),
    (lambda a, s: a.pop("param.out.error_weight"), r"missing keys \['out.error_weight'\]"),
    (lambda a, s: a.pop("step_count"), "no step_count"),
    (lambda a, s: a.update({"step_count": np.array([1, 2])}), "step_count must be an integer"),
    (lambda a, s: a.update({"optimizer.q.conv1.weight": a["param.conv1.weight"]}), "optimizer.q.conv1.weight"),
    (lambda a, s: a.update({"optimizer.m.conv1.weight": np.zeros(3, np.float32)}), "optimizer.m.conv1.weight"),
    (lambda a, s: a.pop("optimizer.v.fc1.weight"), r"optimizer state of \['fc1.weight'\] lacks"),
    (lambda a, s: s.pop("history"), "no valid 'history'"),
    (lambda a, s: s.update(position=-3), "negative epoch/position"),
    (lambda a, s: s.update(partial="x"), "malformed 'partial'"),
])
def test_inconsistent_checkpoint_is_refused(tmp_path, good_run, change, message):
    path = rewrite(good_run, tmp_path, change)
    good_arrays, _ = training.load_checkpoint(good_run[0] / "checkpoint.npz")
    got = refused(path, good_arrays, good_run[2])
    assert got is not None
    assert re.search(message, got), got

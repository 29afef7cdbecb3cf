"""Where the tests in tests/gpu run: the same test code on the GPU ("cuda": CuPy arrays, ``_C``)
and on the CPU simulator ("cuda-sim": NumPy arrays, ``_sim`` executing the same kernels).

- ``device`` is parametrised over both; a device that is not usable here is skipped with its
  status as the reason (on a machine without a GPU: "cuda" skipped, "cuda-sim" runs).
  ``--device cuda`` / ``--device cuda-sim`` (or ``EKDAA_TEST_DEVICE``) selects one (tests/conftest.py).
- A test marked ``slow_on_sim`` has its "cuda-sim" instance marked ``slow`` (left out of the
  default run; ``pytest -m slow`` runs it): layer-sized shapes that take a minute on the simulator
  and check nothing the small shapes do not.
- ``xp`` is the device's array module (cupy or numpy): tests allocate with it.
- In the op tests (tests/gpu/test_ops_*.py), every call of an op on "cuda-sim" is executed
  under each of ``SIM_RUNS`` — thread schedules forward, reverse and two seeded shuffles, on one
  and two worker threads — from identical inputs and identically poisoned outputs, and every
  result (returned arrays and every array argument afterwards) must be bitwise equal across the
  runs: a missing barrier or a race shows up without any reference. The shuffle seeds are
  printed (replay with EKDAA_SIM_SEED=<seed>). The session summary lists how many op calls each
  kernel family got.
"""

from __future__ import annotations

import collections
import functools
import os
import secrets

import numpy as np
import pytest

from ekdaa_cuda._device import DEVICES, device_status, get_device

# (schedule, workers) of the simulator runs of each op call; "shuffle" runs twice with different seeds
SIM_RUNS = (("forward", 1), ("reverse", 2), ("shuffle", 2), ("shuffle", 1))
CONV_OPS = ("conv_block_fwd", "conv_error_proj", "conv_proj", "unpool_error", "unpool_bilinear", "conv_filter_update",
            "conv_filter_update_pooled")
FC_OPS = ("fc_fwd", "fc_proj", "fc_error_proj", "error_epilogue", "fc_update", "softmax_error", "fc_update_proj",
          "fc_softmax_error")
SIM_CALLS: collections.Counter = collections.Counter()  # op name -> calls checked across SIM_RUNS


def pytest_generate_tests(metafunc):
    if "device" in metafunc.fixturenames:
        chosen = metafunc.config.getoption("--device")
        names = DEVICES if chosen == "all" else (chosen,)
        if metafunc.definition.get_closest_marker("slow_on_sim"):
            names = [pytest.param(n, marks=pytest.mark.slow) if n == "cuda-sim" else n for n in names]
        metafunc.parametrize("device", names, indirect=True)


@pytest.fixture
def device(request):
    name = request.param
    status = device_status(name)
    if not status.startswith("ok:"):
        pytest.skip(f"{name} not usable: {status}")
    dev = get_device(name)
    if dev.simulated:
        dev.ext.set_schedule("forward", 0)
        dev.ext.set_workers(1)
    yield dev
    if dev.simulated:
        dev.ext.set_schedule("forward", 0)
        dev.ext.set_workers(1)


@pytest.fixture
def xp(device):
    return device.xp


# ---------------------------------------------------------------- every op call under several schedules


def _arrays(obj, out):
    """Every NumPy array inside obj (nested tuples / lists / dicts), in order."""
    if isinstance(obj, np.ndarray):
        out.append(obj)
    elif isinstance(obj, (tuple, list)):
        for item in obj:
            _arrays(item, out)
    elif isinstance(obj, dict):
        for item in obj.values():
            _arrays(item, out)
    return out


def _optimizer_arrays(opt):
    return [*opt.params, *(a for st in opt.state for a in st.values())]


def _across_schedules(sim, name, fn, seeds, inplace=None):
    """``fn`` wrapped: run under every SIM_RUNS setting from the same starting memory, results bitwise equal."""

    @functools.wraps(fn)
    def run(*args, **kwargs):
        touched = _arrays((args, kwargs), [])
        if inplace is not None:
            touched += inplace(args[0])
        start = [a.copy() for a in touched]
        t0 = getattr(args[0], "t", None) if inplace is not None else None
        outcomes = []
        for i, (schedule, workers) in enumerate(SIM_RUNS):
            for a, b in zip(touched, start):
                a[...] = b
            if inplace is not None:
                args[0].t = t0
            shuffle_seed = seeds[i % len(seeds)]
            sim.set_schedule(schedule, shuffle_seed if schedule == "shuffle" else 0)
            sim.set_workers(workers)
            result = fn(*args, **kwargs)
            outcomes.append(((schedule, shuffle_seed if schedule == "shuffle" else None, workers),
                             [a.copy() for a in _arrays(result, []) + touched]))
        (first_setting, first), rest = outcomes[0], outcomes[1:]
        for setting, arrays in rest:
            assert len(arrays) == len(first)
            for j, (a, b) in enumerate(zip(first, arrays)):
                assert a.tobytes() == b.tobytes(), (
                    f"{name}: array {j} differs between simulator runs {first_setting} and {setting} "
                    f"(schedule, shuffle seed, workers): a race or a missing barrier; "
                    f"{int(np.sum(a.view(np.uint8) != b.view(np.uint8)))} bytes differ"
                )
        SIM_CALLS[name] += 1
        sim.set_schedule("forward", 0)
        sim.set_workers(1)
        return result

    return run


@pytest.fixture(autouse=True)
def _schedules(request, monkeypatch):
    """On "cuda-sim", in tests/gpu/test_ops_*.py: every op runs under all SIM_RUNS (see module doc)."""
    if "device" not in request.fixturenames or not request.node.path.name.startswith("test_ops_"):
        yield
        return
    dev = request.getfixturevalue("device")
    if not dev.simulated:
        yield
        return
    from ekdaa_cuda.ops import conv, fc, optim

    env = os.environ.get("EKDAA_SIM_SEED")
    base = int(env) if env else secrets.randbits(31)
    print(f"[{request.node.name}] EKDAA_SIM_SEED={base} (shuffle seeds {base}, {base + 1})")
    seeds = (base, base + 1)
    for module, names in ((conv, CONV_OPS), (fc, FC_OPS)):
        for name in names:
            monkeypatch.setattr(module, name, _across_schedules(dev.ext, name, getattr(module, name), seeds))
    step = optim.MultiTensorOptimizer.step
    monkeypatch.setattr(optim.MultiTensorOptimizer, "step",
                        _across_schedules(dev.ext, "MultiTensorOptimizer.step", step, seeds, _optimizer_arrays))
    yield


def pytest_terminal_summary(terminalreporter):
    if SIM_CALLS:
        terminalreporter.write_sep("-", f"simulator: op calls checked under {len(SIM_RUNS)} settings each "
                                        f"{[f'{s}/{w}w' for s, w in SIM_RUNS]}")
        for name, count in sorted(SIM_CALLS.items()):
            terminalreporter.write_line(f"  {name}: {count}")

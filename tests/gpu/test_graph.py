"""The host path of a training step on the CUDA backend (ekdaa_cuda/backend_cuda.py ``StepPlan``,
docs/kernels.md "The host path"): step 1 at a batch size runs eagerly through the checked ops,
step 2 is recorded, later steps replay the recorded launches (on a GPU: one CUDA graph, with the
conv filter updates on a forked stream branch). Every comparison here is bitwise: the replay
launches the very kernels of the eager path with the very arguments, in an order that keeps
every dependency, and every kernel is deterministic.

On the simulator the recorded sequence is replayed launch by launch (no graph exists there); the
graph tests need a GPU and are skipped here with that reason.
"""

import numpy as np
import pytest
from helpers import model_widths

import ekdaa_cuda as ek
from ekdaa_cuda.backend_cuda import CudaBackend

pytestmark = pytest.mark.gpu


def fmnist(device, **kw):
    return ek.build_model("fmnist", backend=device.name, widths=model_widths(device, "fmnist"), seed=1, **kw)


def batches(rng, sizes):
    return [(rng.uniform(-0.5, 0.5, (n, 1, 28, 28)).astype(np.float32), rng.integers(0, 10, n)) for n in sizes]


def train(model, data, scales, eager=False):
    be = model.backend
    be.replay = not eager
    stats = []
    for (x, y), s in zip(data, scales):
        loss, correct = model.step_arrays(be.input(x), be.labels(y), s, check_finite=False)
        stats.append((float(loss), int(correct)))
    return stats


def assert_same_model(a, b):
    sa, sb = a.checkpoint_arrays(), b.checkpoint_arrays()
    assert sorted(sa) == sorted(sb)
    for k in sa:
        if k != "config_json":
            assert np.asarray(sa[k]).tobytes() == np.asarray(sb[k]).tobytes(), f"{k} differs"


@pytest.mark.parametrize("options", [
    {},
    {"bias": True, "optimizer": "adam", "lr": 1e-3},
    {"optimizer": "rmsprop", "rho": 0.5},
    {"rule": "bp", "activation": "relu", "bias": True},
    {"rule": "fa"},
    {"layer_lr": {"conv1": 0.0, "fc1": 0.5}},
])
def test_replayed_steps_equal_eager_steps_bitwise(device, rng, options):
    """Two batch sizes alternating (one plan each), a changing learning-rate scale, 6 steps each."""
    data = batches(rng, [5, 3] * 6)
    scales = [1.0, 1.0, 0.5, 0.5, 0.25, 1.0] * 2
    replayed, eager = fmnist(device, **options), fmnist(device, **options)
    assert CudaBackend.replay_blocker(replayed) is None
    assert train(replayed, data, scales) == train(eager, data, scales, eager=True)
    assert_same_model(replayed, eager)
    plans = replayed.backend._plans
    assert sorted(plans) == [3, 5] and all(p.launches is not None for p in plans.values())
    tags = [tag for *_, tag in plans[5].launches]
    assert tags.count("update") == 3  # one conv_filter_update call per conv layer: the graph's side branch
    assert tags.count("optimizer") == 1 + (options.get("rho", 0) > 0)
    assert not eager.backend._plans


@pytest.mark.parametrize("options, why", [
    ({"dropout": 0.2}, "dropout"),
    ({"rule": "dfa"}, "rule 'dfa'"),
    ({"rule": "kp"}, "rule 'kp'"),
    ({"unpool": "bilinear"}, "bilinear"),
    ({"normalize": "rms"}, "normalize='rms'"),
])
def test_steps_that_change_between_steps_run_eagerly(device, rng, options, why):
    model = fmnist(device, **options)
    assert why in CudaBackend.replay_blocker(model)
    data = batches(rng, [4] * 3)
    twin = fmnist(device, **options)
    assert train(model, data, [1.0] * 3) == train(twin, data, [1.0] * 3, eager=True)
    assert not model.backend._plans
    assert_same_model(model, twin)


def test_a_changed_beta_is_recorded_anew_not_replayed_stale(device, rng, monkeypatch):
    """The options are raw arguments of the recorded launches, and train(beta_end=...) changes β every
    step: a step with another β than the recorded one runs eagerly and is recorded anew (bitwise equal
    to the eager twin); steps that keep the recorded options replay them."""
    from ekdaa_cuda.backend_cuda import StepPlan

    replays = []
    real_replay = StepPlan._replay
    monkeypatch.setattr(StepPlan, "_replay",
                        lambda plan, *a: replays.append(plan.opts["beta"]) or real_replay(plan, *a))
    data = batches(rng, [4] * 6)
    betas = [0.9, 0.7, 0.5, 0.5, 0.5, 0.3]

    def run(model, eager):
        model.backend.replay = not eager
        stats = []
        for (x, y), beta in zip(data, betas):
            model.opts["beta"] = beta
            loss, correct = model.step_arrays(model.backend.input(x), model.backend.labels(y), 1.0,
                                              check_finite=False)
            stats.append((float(loss), int(correct)))
        return stats

    stepped, eager = fmnist(device), fmnist(device)
    assert run(stepped, eager=False) == run(eager, eager=True)
    assert_same_model(stepped, eager)
    # step 1 eager, 2 and 3 recorded (β 0.7, then 0.5), 4 and 5 replay β 0.5, 6 recorded (β 0.3)
    assert replays == [0.5, 0.5] and stepped.backend._plans[4].opts["beta"] == 0.3


def test_a_diverging_replayed_step_leaves_the_model_unchanged(device, rng):
    """Model.step keeps its contract on the replayed path: the optimizer kernel's flags name the bad
    tensors, and parameters, optimizer state and step count are restored."""
    x, y = batches(rng, [4])[0]
    model = fmnist(device, rule="bp", activation="linear", lr=1e-3)
    for _ in range(3):  # eager, recorded, replayed
        model.step(x, y)
    assert model.backend._plans[4].launches is not None
    blow_up(model, rng)
    before = model.checkpoint_arrays()
    with pytest.raises(FloatingPointError, match=r"step 3: update of .*fc1\.weight.* not finite; model unchanged"):
        model.step(x, y)
    assert model.nonfinite_updates() == []
    assert_same_model(model, _with(before, fmnist(device, rule="bp", activation="linear", lr=1e-3)))


def blow_up(model, rng):
    """Finite parameters whose next step overflows: W of the output layer ~ ±1e30 makes BP's δ of
    fc1 ~ 1e30, and a learning rate of 1e38 takes fc1's new weights past float32's range."""
    w = model.params["out.weight"]
    w[...] = model.backend.asarray(np.where(rng.random(w.shape) < 0.5, -1e30, 1e30))
    model.optimizer.inner.lr = 1e38


def _with(arrays, model):
    model.load_checkpoint_arrays(arrays)
    return model


def test_training_without_per_step_checks_reads_the_flags(device, rng):
    """step_arrays(check_finite=False) never synchronises: a bad step only sets the device flags,
    which nonfinite_updates() reads (the training loop does so every CHECK_EVERY steps)."""
    x, y = batches(rng, [4])[0]
    model = fmnist(device, rule="bp", activation="linear")
    be = model.backend
    for _ in range(3):
        model.step_arrays(be.input(x), be.labels(y), check_finite=False)
    assert model.nonfinite_updates() == []
    blow_up(model, rng)
    model.step_arrays(be.input(x), be.labels(y), check_finite=False)
    assert "fc1.weight" in model.nonfinite_updates()


def test_loading_a_checkpoint_re_records_the_step(device, rng):
    """A loaded optimizer state is a new optimizer (new tables): the plan is recorded again."""
    data = batches(rng, [4] * 6)
    a, b = fmnist(device), fmnist(device)
    train(a, data[:3], [1.0] * 3)
    train(b, data[:3], [1.0] * 3, eager=True)
    arrays = b.checkpoint_arrays()
    a.load_checkpoint_arrays(arrays)
    b.load_checkpoint_arrays(arrays)
    assert train(a, data[3:], [1.0] * 3) == train(b, data[3:], [1.0] * 3, eager=True)
    assert_same_model(a, b)


@pytest.fixture
def gpu(device):
    if device.simulated:
        pytest.skip("CUDA graphs need a GPU: the simulator replays the recorded launches one by one")
    return device


@pytest.mark.parametrize("options", [{}, {"optimizer": "adam", "lr": 1e-3, "bias": True}, {"rho": 0.5}])
def test_graph_replay_equals_eager_bitwise(gpu, rng, monkeypatch, options):
    monkeypatch.delenv("EKDAA_CUDA_GRAPH", raising=False)
    monkeypatch.delenv("EKDAA_SYNC_LAUNCHES", raising=False)
    data = batches(rng, [50] * 6)
    scales = [1.0, 1.0, 0.5, 0.5, 1.0, 0.25]
    graphed, eager = fmnist(gpu, **options), fmnist(gpu, **options)
    assert train(graphed, data, scales) == train(eager, data, scales, eager=True)
    plan = graphed.backend._plans[50]
    assert plan.graph is not None and plan.graph_error is None
    assert_same_model(graphed, eager)


def test_graph_capture_can_be_switched_off(gpu, rng, monkeypatch):
    monkeypatch.setenv("EKDAA_CUDA_GRAPH", "0")
    data = batches(rng, [20] * 4)
    model, eager = fmnist(gpu), fmnist(gpu)
    assert train(model, data, [1.0] * 4) == train(eager, data, [1.0] * 4, eager=True)
    assert model.backend._plans[20].graph is None
    assert_same_model(model, eager)

"""The benchmark harness (bench/) on the CPU: floors arithmetic, the summary and its target checks,
the PyTorch reference network, and micro.py's validation path with the kernels replaced by their
NumPy reference semantics (called through the real ops' signatures).

Nothing here needs a GPU; the tests that need torch are skipped when it is not installed
(``pip install ".[bench]"``).
"""

from __future__ import annotations

import importlib
import json
import math
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import ekdaa_cuda as ek
from ekdaa_cuda import reference as ref

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))

floors = importlib.import_module("floors")
summarize = importlib.import_module("summarize")

try:
    import torch
except ImportError:  # the bench extra is not installed: the torch tests skip, the rest run
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="torch not installed (pip install '.[bench]')")


def _bench(name):
    """A bench module that imports torch (only inside tests marked needs_torch)."""
    return importlib.import_module(name)

TINY = (["conv2", "maxpool", "flatten", "out3"], (1, 4, 4))


# ---------------------------------------------------------------- floors.py


def test_floors_tiny_net_by_hand():
    """conv2 (1->2, 3x3, 4x4, pool) -> flatten(8) -> out3, batch 2. Each number worked out by hand:
    conv fwd MACs 2·2·16·1·9 = 576 -> 1152 FLOPs; bytes (x 32 + W 18 + h 64 + out 16 floats)·4 + 16
    argmax bytes = 536; out fwd 2·8·3 MACs -> 96 FLOPs, (z 16 + W 24 + h 6)·4 = 184; softmax error
    (h 6 + e 6)·4 + labels 2·4 = 56; projection out -> conv (e 6 + E 24 + h 64 + e_below 64)·4 + 16 = 648,
    96 FLOPs; conv update (z 32 + e 64 + ΔW 18 + ΔE 18)·4 = 528; out update (16 + 6 + 24 + 24)·4 = 280;
    SGD over W+E = 84 elements: 336 FLOPs, 1680 bytes."""
    blocks = floors.blocks_of(*TINY)
    rows = floors.update_rows(blocks, 2, "ekdaa")
    got = [(r["phase"], r["layer"], r["op"], r["flops"], r["bytes"]) for r in rows]
    assert got == [
        ("forward", "conv1", "conv_block_fwd", 1152, 536),
        ("forward", "out", "fc_fwd", 96, 184),
        ("error", "out", "softmax_error", 0, 56),
        ("error", "out", "fc_error_proj_to_map", 96, 648),
        ("update", "conv1", "conv_filter_update", 1152, 528),
        ("update", "out", "fc_update", 96, 280),
        ("optimizer", "all", "optimizer", 336, 1680),
    ]
    t = floors.totals(rows)
    assert t["forward"] == {"flops": 1248, "bytes": 720}
    assert t["error"] == {"flops": 96, "bytes": 704}
    assert t["total"] == {"flops": 2928, "bytes": 3912}
    # BP: no ΔE (conv update 456 = 528 − 18·4, out update 184 = 280 − 24·4), SGD over W only (42 elements)
    bp = floors.totals(floors.update_rows(blocks, 2, "bp"))
    assert bp["update"] == {"flops": 1248, "bytes": 456 + 184}
    assert bp["optimizer"] == {"flops": 168, "bytes": 840}
    assert bp["forward"] == t["forward"] and bp["error"] == t["error"]


def test_floors_conv_above_conv_and_fc_above_fc():
    # conv1 (1->2 at 4x4, pool) -> conv2 (2->3 at 2x2) -> flatten(12) -> fc5 -> out3, batch 1
    blocks = floors.blocks_of(["conv2", "maxpool", "conv3", "flatten", "fc5", "out3"], (1, 4, 4))
    rows = {(r["phase"], r["layer"]): r for r in floors.update_rows(blocks, 1, "ekdaa")}
    # conv2 -> conv1: MACs 1·3·2·2·2·9 = 216; e 12 + K 54 + h 32 + e_below 32 floats, argmax 8 bytes
    assert (rows["error", "conv2"]["flops"], rows["error", "conv2"]["bytes"]) == (432, 130 * 4 + 8)
    # out -> fc1: MACs 3·5 = 15; e 3 + E 15 + h 5 + e_below 5 floats
    assert (rows["error", "out"]["flops"], rows["error", "out"]["bytes"]) == (30, 28 * 4)
    # fc1 -> conv2 (not pooled): MACs 12·5 = 60; e 5 + E 60 + h 12 + e_below 12 floats
    assert (rows["error", "fc1"]["flops"], rows["error", "fc1"]["bytes"]) == (120, 89 * 4)
    assert ("error", "conv1") not in rows  # nothing below the first layer


def test_floor_time_and_achieved():
    peaks = {"fp32_tflops": 1e-9, "tf32_tflops": 1e-8, "copy_gbs": 1e-6}  # 1000 FLOP/s, 1000 B/s
    fl = floors.update_floor(floors.blocks_of(*TINY), 2, "ekdaa", peaks)
    conv = fl["rows"][0]  # 1152 FLOPs, 536 bytes: FLOP-bound, 1.152 s
    assert conv["floor_ms_fp32"] == pytest.approx(1152.0)
    assert conv["floor_ms_tf32"] == pytest.approx(536.0)  # TF32 10x faster: now byte-bound
    assert fl["floor_ms_fp32"]["total"] == pytest.approx(sum(max(r["flops"], r["bytes"]) for r in fl["rows"]))
    a = floors.achieved(2000, 1000, 4000.0, peaks)  # 2000 FLOPs in 4 s
    assert a["tflops"] == pytest.approx(500e-12) and a["gbs"] == pytest.approx(250e-9)
    assert a["floor_ms"] == pytest.approx(2000.0) and a["floor_fraction"] == pytest.approx(0.5)
    assert a["bound"] == "flops"


def test_floors_presets_scale_with_batch():
    for preset in ("fmnist", "cifar"):
        blocks = floors.blocks_of(preset)
        f50 = floors.totals(floors.update_rows(blocks, 50, "ekdaa"))
        f100 = floors.totals(floors.update_rows(blocks, 100, "ekdaa"))
        assert f100["forward"]["flops"] == 2 * f50["forward"]["flops"]
        assert f100["optimizer"] == f50["optimizer"]  # parameters do not depend on the batch
    # fmnist forward FLOPs by hand: 2·50·(32·784·1·9 + 64·196·32·9 + 128·49·64·9 + 128·6272 + 10·128)
    fwd = 2 * 50 * (32 * 784 * 9 + 64 * 196 * 32 * 9 + 128 * 49 * 64 * 9 + 128 * 6272 + 10 * 128)
    assert floors.totals(floors.update_rows(floors.blocks_of("fmnist"), 50, "bp"))["forward"]["flops"] == fwd


# ---------------------------------------------------------------- summarize.py


def _e2e(preset, batch, impl, rule, mode, precision, ms, mem, status="ok"):
    row = {"type": "e2e", "preset": preset, "batch": batch, "impl": impl, "rule": rule, "mode": mode,
           "precision": precision, "status": status, "peak_mem_mb": mem}
    if status == "ok":
        row["ms_per_update"] = ms
    else:
        row["reason"] = "RuntimeError: boom"
    return row


def _synthetic_run():
    rows = [{"type": "env", "card": "NVIDIA H100 80GB HBM3", "commit": "abc1234", "torch": "2.11.0"}]
    # fmnist 50: EKDAA 0.3 vs best fp32 0.5 (graph) -> ratio 0.6 > 0.5: missed by 1.2x; 0.3 ms > 0.1: missed 3x
    rows += [_e2e("fmnist", 50, "ekdaa_cuda", "ekdaa", "step_arrays", "fp32", 0.3, 10.0),
             _e2e("fmnist", 50, "ekdaa_cuda", "bp", "step_arrays", "fp32", 0.25, 9.0),
             _e2e("fmnist", 50, "torch", "bp", "eager", "fp32", 0.9, 20.0),
             _e2e("fmnist", 50, "torch", "bp", "graph", "fp32", 0.5, 30.0),
             _e2e("fmnist", 50, "torch", "bp", "graph", "tf32", 0.4, 30.0),
             _e2e("fmnist", 50, "torch", "bp", "compile", "fp32", None, None, status="failed")]
    # fmnist 1024: 9 vs 10 -> met; memory 50 > 40 -> missed by 1.25x
    rows += [_e2e("fmnist", 1024, "ekdaa_cuda", "ekdaa", "step_arrays", "fp32", 9.0, 50.0),
             _e2e("fmnist", 1024, "torch", "bp", "eager", "fp32", 10.0, 40.0)]
    # cifar 50: 0.2 vs 0.5 -> met; cifar 1024: EKDAA failed -> no data
    rows += [_e2e("cifar", 50, "ekdaa_cuda", "ekdaa", "step_arrays", "fp32", 0.2, 5.0),
             _e2e("cifar", 50, "torch", "bp", "eager", "fp32", 0.5, 6.0),
             _e2e("cifar", 1024, "ekdaa_cuda", "ekdaa", "step_arrays", "fp32", None, None, status="failed"),
             _e2e("cifar", 1024, "torch", "bp", "eager", "fp32", 30.0, 60.0)]
    rows.append({"type": "check", "check": "bp_update_vs_torch_grad", "preset": "fmnist", "batch": 50,
                 "max_rel_err": 1e-6, "status": "ok"})
    micro = [{"type": "micro", "op": "conv_block_fwd", "preset": "fmnist", "layer": "conv1", "batch": 50,
              "rule": "ekdaa", "status": "ok", "ekdaa_ms": 0.01, "torch_ms": 0.02, "ratio": 0.5},
             {"type": "micro", "op": "fc_update", "preset": "fmnist", "layer": "fc1", "batch": 50, "rule": "ekdaa",
              "status": "mismatch", "errors": {"out0": 0.5}, "torch_ms": 0.01}]
    return rows, micro


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"type": "e2e", "cut by a time')  # torn last line
    return path


def test_summarize_synthetic_run(tmp_path):
    e2e, micro = _synthetic_run()
    res = summarize.summarize(_write_jsonl(tmp_path / "e2e.jsonl", e2e), _write_jsonl(tmp_path / "m.jsonl", micro),
                              out_dir=tmp_path / "out", date="20270102")
    assert Path(res["json"]).name == "20270102-h100-80gb-hbm3-summary.json"
    s = json.loads(Path(res["json"]).read_text())
    assert s["card"] == "NVIDIA H100 80GB HBM3" and s["commit"] == "abc1234"
    rows = {(r["preset"], r["batch"]): r for r in s["rows"]}
    f50 = rows["fmnist", 50]
    assert {k: f50[k] for k in ("ekdaa_ms", "bp_cudnn_ms", "bp_ours_ms", "ekdaa_mem_mb", "bp_mem_mb")} == \
        {"ekdaa_ms": 0.3, "bp_cudnn_ms": 0.5, "bp_ours_ms": 0.25, "ekdaa_mem_mb": 10.0, "bp_mem_mb": 30.0}
    assert f50["bp_cudnn_path"] == "graph fp32" and f50["bp_cudnn_tf32_ms"] == 0.4
    assert f50["ekdaa_vs_cudnn"] == pytest.approx(0.6)
    assert any("compile" in f for f in f50["failed"])
    assert rows["cifar", 1024]["ekdaa_ms"] is None

    targets = {t["target"]: t for t in s["targets"]}
    t = targets["fmnist batch 50: EKDAA <= 0.5x best cuDNN BP (fp32)"]
    assert t["status"] == "missed" and t["factor"] == pytest.approx(1.2)
    assert targets["fmnist batch 1024: EKDAA <= 1.0x best cuDNN BP (fp32)"]["status"] == "met"
    assert targets["cifar batch 50: EKDAA <= 0.5x best cuDNN BP (fp32)"]["status"] == "met"
    assert targets["cifar batch 1024: EKDAA <= 1.0x best cuDNN BP (fp32)"]["status"] == "no data"
    t = targets["fmnist batch 50: EKDAA <= 0.1 s per 1000 updates"]
    assert t["status"] == "missed" and t["factor"] == pytest.approx(3.0)
    t = targets["fmnist batch 1024: EKDAA peak memory <= BP's"]
    assert t["status"] == "missed" and t["factor"] == pytest.approx(1.25)
    assert targets["fmnist batch 50: EKDAA peak memory <= BP's"]["status"] == "met"
    assert targets["cifar batch 1024: EKDAA peak memory <= BP's"]["status"] == "no data"
    assert s["targets_met"] == sum(t["status"] == "met" for t in s["targets"]) == 4
    assert s["micro"]["rows"] == 2 and [m["case"] for m in s["micro"]["mismatch"]] == ["fmnist/fc1/fc_update/ekdaa/b50"]

    md = Path(res["md"]).read_text()
    assert md.count("**MISSED**") == 3 and md.count("**NO DATA**") == 2 and md.count("**met**") == 4
    assert "| fmnist | 50 | 0.3 | 0.25 | 0.5 | graph fp32 |" in md
    png = Path(res["png"]).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_summarize_tf32_baseline_and_cli(tmp_path, capsys):
    e2e, _ = _synthetic_run()
    path = _write_jsonl(tmp_path / "e2e.jsonl", e2e)
    assert summarize.main(["--e2e", str(path), "--out-dir", str(tmp_path), "--baseline", "tf32", "--date", "20270102",
                           "--card", "Test Card"]) == 0
    s = json.loads((tmp_path / "20270102-test-card-summary.json").read_text())
    f50 = next(r for r in s["rows"] if (r["preset"], r["batch"]) == ("fmnist", 50))
    assert f50["bp_cudnn_ms"] == 0.4 and f50["bp_cudnn_fp32_ms"] == 0.5
    out = capsys.readouterr().out
    assert "targets met:" in out and "missed" in out


def test_card_slug():
    assert summarize.card_slug("NVIDIA H200") == "h200"
    assert summarize.card_slug("") == "unknown"


# ---------------------------------------------------------------- torch_reference.py (torch on the CPU)

@needs_torch
@pytest.mark.parametrize("preset,widths,bias",
                         [("fmnist", (3, 4, 5, 6), False), ("cifar", (3, 4, 3, 5, 4, 3, 7), True)])
def test_torch_reference_is_ekdaa_cuda_bp(preset, widths, bias):
    """Same weights, same batch: PyTorch backprop + SGD momentum equals ekdaa_cuda's rule "bp" update
    (NumPy backend, float64) to rounding, over three steps."""
    tr = _bench("torch_reference")
    model = ek.build_model(preset, rule="bp", backend="numpy", seed=1, dtype="float64", widths=widths, bias=bias)
    net = tr.build_torch_model(model, dtype=torch.float64)
    opt = tr.make_optimizer(net)
    step = tr.make_step("eager", net, opt)
    rng = np.random.default_rng(2)
    x = rng.uniform(-0.5, 0.5, (5, *model.input_shape))
    y = rng.integers(0, 10, 5)
    w0 = model.state_dict()
    for _ in range(3):
        loss = model.step(x, y)["loss"] * len(y)
        assert float(step(torch.from_numpy(x), torch.from_numpy(y))) == pytest.approx(loss, rel=1e-12)
    w1 = model.state_dict()
    for name in net.names:
        layer = getattr(net, name)
        for key, p in (("weight", layer.weight), ("bias", layer.bias)):
            if p is None:
                continue
            mine, theirs = w1[f"{name}.{key}"] - w0[f"{name}.{key}"], p.detach().numpy() - w0[f"{name}.{key}"]
            assert np.linalg.norm(mine - theirs) <= 1e-10 * np.linalg.norm(mine), f"{name}.{key}"


@needs_torch
def test_torch_reference_full_preset_float32_and_paths():
    tr = _bench("torch_reference")
    model = ek.build_model("fmnist", rule="bp", backend="numpy", seed=0)
    net = tr.build_torch_model(model)
    assert [n for n, _ in net.named_parameters()] == [f"{b}.weight" for b in ("conv1", "conv2", "conv3", "fc1", "out")]
    rng = np.random.default_rng(0)
    x = rng.uniform(-0.5, 0.5, (3, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, 3)
    grads = model.updates(x, y)
    tr.loss_fn(net(torch.from_numpy(x)), torch.from_numpy(y)).backward()
    for name in net.names:
        g = getattr(net, name).weight.grad.numpy()
        assert np.linalg.norm(grads[f"{name}.weight"] - g) <= 1e-5 * np.linalg.norm(g)
    step, why = tr.try_make_step("graph", net, tr.make_optimizer(net), torch.from_numpy(x), torch.from_numpy(y))
    assert step is None and "CUDA" in why  # reported, not raised
    with pytest.raises(ValueError, match="dropout"):
        tr.build_torch_model(ek.build_model("fmnist", backend="numpy", dropout=0.1))


# ---------------------------------------------------------------- micro.py on the CUDA simulator


def _sim_ext(bug=None):
    """micro.py's ``ext`` on the CPU: the real ``ekdaa_cuda.ops`` wrappers, launchers and kernels on
    the CUDA simulator (NumPy views of the benchmark's torch tensors), so every benchmark call passes
    the wrappers' checks and computes what the kernel computes. ``bug`` plants a known error in one
    op's result, to show that micro.py reports a mismatch instead of timing it."""
    if not ek.sim_available():
        pytest.skip(f"cuda-sim not usable: {ek.sim_status()}")
    from ekdaa_cuda.ops import conv, fc, optim

    def conv_block_fwd(*args, out, **kw):
        conv.conv_block_fwd(*args, out=out, **kw)
        if bug == "codes":
            out[2][...] = 3 - out[2]

    def conv_error_proj(*args, beta, **kw):
        conv.conv_error_proj(*args, beta=-beta if bug == "beta" else beta, **kw)

    def fc_update(*args, out, **kw):
        fc.fc_update(*args, out=out, **kw)
        if bug == "transpose":
            out[0][...] *= 1.01

    return SimpleNamespace(
        name="cuda-sim",
        arr=lambda t: t.detach().numpy(),  # shares the tensor's memory: the kernels write the torch outputs
        conv=SimpleNamespace(conv_block_fwd=conv_block_fwd, conv_error_proj=conv_error_proj,
                             unpool_error=conv.unpool_error, conv_filter_update=conv.conv_filter_update,
                             conv_filter_update_workspace=conv.conv_filter_update_workspace,
                             conv_filter_update_pooled=conv.conv_filter_update_pooled,
                             conv_filter_update_pooled_workspace=conv.conv_filter_update_pooled_workspace),
        fc=SimpleNamespace(error_epilogue=fc.error_epilogue, fc_proj=fc.fc_proj, fc_error_proj=fc.fc_error_proj,
                           fc_fwd=fc.fc_fwd, fc_fwd_workspace=fc.fc_fwd_workspace, softmax_error=fc.softmax_error,
                           fc_update=fc_update),
        optim=optim,
    )


@pytest.fixture
def quick_timer():
    return _bench("micro").Timer("cpu", budget_s=0.0, min_reps=1, max_reps=1, warmup=0)


@needs_torch
def test_indices_to_codes_matches_reference_argmax():
    micro = _bench("micro")
    x = torch.randn(3, 4, 6, 10, generator=torch.Generator().manual_seed(0))
    _, idx = torch.nn.functional.max_pool2d(x, 2, return_indices=True)
    np.testing.assert_array_equal(micro.indices_to_codes(idx, 10).numpy(), ref.maxpool2x2(x.numpy())[1])


@needs_torch
@pytest.mark.parametrize("preset,widths", [("fmnist", (4, 6, 8, 16)), ("cifar", (3, 5, 4, 6, 5, 7, 9))])
@pytest.mark.parametrize("bias", [False, True])
def test_micro_sequences_match_the_kernels_semantics(preset, widths, bias, quick_timer):
    """Every case of a preset (batch 2): PyTorch's sequence and the ekdaa_cuda op (the real wrapper,
    launcher and kernel on the CUDA simulator, called with micro.py's arguments) agree within micro.py's
    own tolerances, so the benchmark compares the same work and no call of it is refused by a wrapper
    on the GPU; rows carry counts and timings of both sides. The presets' spatial sizes with fewer
    channels (quick on a CPU), with and without biases."""
    micro = _bench("micro")
    gen = torch.Generator().manual_seed(0)
    ext = _sim_ext()
    cases = micro.cases_for(preset, 2, bias, widths)
    assert {c.op for c in cases} >= {"conv_block_fwd", "conv_error_proj", "conv_filter_update", "fc_fwd", "fc_proj",
                                     "fc_error_proj", "fc_update", "softmax_error", "error_epilogue", "optimizer"}
    assert ("unpool_error" in {c.op for c in cases}) == (preset == "cifar")  # as micro.cases_for builds them
    for case in cases:
        row = micro.run_case(case, ext, quick_timer, "cpu", gen)
        assert row["status"] == "ok", (case.key(), row)
        assert row["ekdaa_ms"] > 0 and row["torch_ms"] > 0 and row["ratio"] > 0
        assert row["flops"] == micro.counts(case)["flops"] and row["bytes"] > 0
        json.dumps(row)


@needs_torch
@pytest.mark.parametrize("bug,op",
                         [("codes", "conv_block_fwd"), ("beta", "conv_error_proj"), ("transpose", "fc_update")])
def test_micro_reports_a_mismatch_and_does_not_time_it(bug, op, quick_timer):
    micro = _bench("micro")
    gen = torch.Generator().manual_seed(1)
    case = next(c for c in micro.cases_for("fmnist", 2) if c.op == op)
    row = micro.run_case(case, _sim_ext(bug), quick_timer, "cpu", gen)
    assert row["status"] == "mismatch" and "ekdaa_ms" not in row and row["torch_ms"] > 0


@needs_torch
def test_micro_cli_without_gpu(tmp_path):
    micro = _bench("micro")
    out = tmp_path / "m.jsonl"
    assert micro.main(["--device", "cpu", "--batches", "2", "--presets", "fmnist", "--ops", "fc_fwd,optimizer",
                       "--budget-s", "0", "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows[0]["type"] == "env" and rows[0]["ekdaa_side"].startswith("no CUDA")
    assert [r["op"] for r in rows[1:]] == ["fc_fwd"] * 4 + ["optimizer"] * 2  # fc1, out: v2 and v1 each
    assert all(r["status"] == "unavailable" and r["torch_ms"] > 0 for r in rows[1:])


# ---------------------------------------------------------------- end_to_end.py pieces on the CPU


@needs_torch
def test_end_to_end_rows_and_check():
    e2e = _bench("end_to_end")
    blocks = floors.blocks_of("fmnist")
    peaks = {"fp32_tflops": 50.0, "tf32_tflops": 400.0, "copy_gbs": 3000.0}
    row = e2e._row("fmnist", 50, "ekdaa_cuda", "ekdaa", "step_arrays", "fp32", {"ms_per_update": 2.0}, blocks, peaks)
    assert row["s_per_1000_updates"] == 2.0 and row["images_per_s"] == pytest.approx(25000)
    assert row["paper_p4_s_per_1000"] == 96.39 and row["paper_p4_mem_mb"] == 2574
    assert row["speedup_vs_paper"] == pytest.approx(96.39 / 2.0)
    assert 0 < row["floor_fraction"] < 1 and row["flops"] > 0
    assert "paper_p4_s_per_1000" not in e2e._row("cifar", 256, "torch", "bp", "eager", "fp32", {}, blocks, None)

    calls = []
    t = e2e.time_updates(lambda x, y: calls.append(x), [(0, 0), (1, 1)], "cpu", repeats=2, run_s=0.0, warmup=1)
    assert t["updates_timed"] == 2 * t["k"] and calls[:4] == [0, 1, 0, 1]  # cycles over the batch pool

    side = e2e.EkdaaSide("cpu")  # NumPy backend on the CPU
    check = e2e.bp_check(side, "fmnist", e2e.make_batches((1, 28, 28), 3, "cpu"), "cpu")
    assert check["status"] == "ok" and check["max_rel_err"] < 1e-4
    assert math.isfinite(check["max_rel_err"])


@needs_torch
def test_micro_tolerance_scales_with_the_reduction():
    micro = _bench("micro")
    small = next(c for c in micro.cases_for("fmnist", 2) if c.op == "error_epilogue")
    assert micro.tolerance(small, 0.0) == 1e-4 and micro.tolerance(small, 1e-4) == pytest.approx(1e-3)
    big = next(c for c in micro.cases_for("cifar", 1024) if c.op == "conv_filter_update" and c.layer == "conv2")
    assert micro.reduction_length(big) == 1024 * 32 * 32
    assert micro.tolerance(big, 0.0) == pytest.approx(8 * 2.0**-24 * 1024)  # float32 sums over 1M products
    assert micro.tolerance(big, 0.0) < 1e-3  # still far below an indexing bug's error

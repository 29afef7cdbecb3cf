"""One full training update: ekdaa_cuda (rule ekdaa and rule bp) against PyTorch backprop on cuDNN.

    python bench/end_to_end.py --out e2e.jsonl [--presets fmnist,cifar] [--batches 50,1024,256] [--compile]

For each preset and batch size:

- ekdaa_cuda: ``Model.step_arrays`` (the training loop's call) on batches already on the GPU,
  for rule "ekdaa" and rule "bp" (backend "cuda": from the third step on, the recorded update
  replayed as one CUDA graph; for rule "ekdaa" also mode "no_graph", the same replay launch by
  launch with ``EKDAA_CUDA_GRAPH=0``; ``--device cpu`` runs the NumPy backend instead, a smoke
  test of the harness only);
- PyTorch (``torch_reference.py``, the same network and weights, summed cross-entropy, SGD
  momentum 0.9, lr 5e-4, cuDNN benchmark mode): eager, the whole update captured in a CUDA graph,
  and with ``--compile`` torch.compile (after everything else, skipped with its reason when
  unavailable or failing), each in IEEE float32 and, for eager and graph, with TF32 on
  (PyTorch's default for convolutions);
- a check that ekdaa_cuda's rule "bp" and PyTorch do the same update: one step of each from the
  same weights on the same batch, parameters compared (relative error of the change).

Timing: a pool of 4 random batches (uniform in [−0.5, 0.5), random labels) resident on the device,
cycled; warm-up steps, then ``--repeats`` runs of K consecutive updates (K sized so a run takes
about ``--run-s``), each timed by the wall clock between two device synchronisations, and the
median run divided by K: time per update as a training loop sees it, host overhead included
(ekdaa_cuda synchronises with the host in no step: its optimizer kernel flags non-finite updates). s per 1000 updates
equals ms per update.

Memory: peak bytes allocated during the updates, from a clean allocator, minus what was
allocated before the model was built (so the data pool is excluded on both sides): PyTorch's
``torch.cuda.max_memory_allocated`` (graph pools, cuDNN/cuBLAS workspaces included) and, for
ekdaa_cuda, the peak of ``used_bytes`` of a fresh CuPy memory pool seen at every allocation
(tracked during two untimed updates: the tracking allocator is swapped out before timing).
Also each side's reserved/pooled bytes.

The paper's Table 1 (Tesla P4, batch 50, TensorFlow) is attached to the batch-50 rows.
One JSON line per measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import floors
import torch_reference as tr

# Paper Table 1: Tesla P4, batch 50: (s per 1000 updates, GPU MB)
PAPER_TABLE1 = {
    "fmnist": {"bp": (96.36, 1517), "ekdaa": (96.39, 2574)},
    "cifar": {"bp": (319.72, 4724), "ekdaa": (271.99, 4728)},
}
PAPER_BATCH = 50
POOL = 4
MB = 2**20


def _sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def time_updates(step, batches, device, repeats=5, run_s=0.1, warmup=5, min_k=3, max_k=200) -> dict:
    """Median ms per update of ``step(x, y)`` cycling over ``batches`` (see the module doc). An update
    slower than ``run_s`` gets fewer warm-ups and runs (2, 3) of one update each, to bound the time."""
    i = 0

    def run(k):
        nonlocal i
        for _ in range(k):
            x, y = batches[i % len(batches)]
            step(x, y)
            i += 1

    _sync(device)
    t0 = time.perf_counter()
    run(1)
    _sync(device)
    if time.perf_counter() - t0 > run_s:
        warmup, repeats, min_k = min(warmup, 2), min(repeats, 3), 1
    run(warmup - 1)
    _sync(device)
    t0 = time.perf_counter()
    run(min_k)
    _sync(device)
    est = (time.perf_counter() - t0) / min_k
    k = int(min(max_k, max(min_k, run_s / max(est, 1e-6))))
    per = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        run(k)
        _sync(device)
        per.append((time.perf_counter() - t0) / k * 1e3)
    return {"ms_per_update": statistics.median(per), "min_ms": min(per), "max_ms": max(per),
            "updates_timed": k * repeats, "k": k}


# ---------------------------------------------------------------- data


def make_batches(shape, batch, device, seed=0, pool=POOL):
    """``pool`` (x float32 NCHW, y int64) batches on the device."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    xs = (torch.rand((pool, batch, *shape), generator=gen) - 0.5).to(device)
    ys = torch.randint(0, 10, (pool, batch), generator=gen).to(device)
    return [(xs[j], ys[j]) for j in range(pool)]


class EkdaaSide:
    """ekdaa_cuda on the GPU (CuPy views of the PyTorch batches), or the NumPy backend on the CPU."""

    def __init__(self, device):
        import ekdaa_cuda

        self.ek = ekdaa_cuda
        self.cuda = torch.device(device).type == "cuda"
        if self.cuda:
            if not ekdaa_cuda.cuda_available():
                raise RuntimeError(ekdaa_cuda.cuda_status())
            import cupy

            self.cp = cupy
        self.backend = "cuda" if self.cuda else "numpy"

    def batches(self, model, batches):
        be = model.backend
        if self.cuda:
            import micro

            return [(micro.to_cupy(x, self.cp), micro.to_cupy(y.to(torch.int32).contiguous(), self.cp))
                    for x, y in batches]
        return [(be.input(x.numpy()), be.labels(y.numpy())) for x, y in batches]

    def build(self, preset, rule, seed=0):
        return self.ek.build_model(preset, rule=rule, backend=self.backend, seed=seed)

    def measure(self, preset, rule, batches, device, **timing) -> dict:
        """Peak memory over two tracked updates (the first also gives the cold-start time), then the
        timed updates."""
        out = {}
        if not self.cuda:
            model = self.build(preset, rule)
            data = self.batches(model, batches)
            t0 = time.perf_counter()
            model.step_arrays(*data[0])
            out["first_step_s"] = time.perf_counter() - t0
            out.update(time_updates(model.step_arrays, data, device, **timing))
            return out
        cp = self.cp
        pool, peak = cp.cuda.MemoryPool(), [0]

        def tracked(size):
            mem = pool.malloc(size)
            peak[0] = max(peak[0], pool.used_bytes())
            return mem

        cp.cuda.set_allocator(tracked)
        try:
            model = self.build(preset, rule)
            data = self.batches(model, batches)
            t0 = time.perf_counter()
            model.step_arrays(*data[0])
            cp.cuda.Device().synchronize()
            out["first_step_s"] = time.perf_counter() - t0  # includes CuPy's JIT of its elementwise kernels
            model.step_arrays(*data[1])
            cp.cuda.Device().synchronize()
            out["peak_mem_mb"] = peak[0] / MB
            out["reserved_mem_mb"] = pool.total_bytes() / MB
            cp.cuda.set_allocator(pool.malloc)  # no Python hook while timing
            out.update(time_updates(model.step_arrays, data, device, **timing))
            model = data = None  # free before the pool is emptied
        finally:
            cp.cuda.set_allocator(cp.get_default_memory_pool().malloc)
            pool.free_all_blocks()
        return out


# ---------------------------------------------------------------- PyTorch side


def torch_measure(kind, ek_ref, batches, device, precision, **timing) -> dict:
    """One PyTorch path (kind eager/graph/compile) at one precision: memory and timing, or the reason it failed."""
    cuda = torch.device(device).type == "cuda"
    try:
        if cuda:
            floors.set_tf32(torch, precision == "tf32")
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        step, why = None, None
        for impl in ("auto", "foreach") if cuda else ("auto",):  # a graph capture may refuse the fused SGD
            net = tr.build_torch_model(ek_ref, device=device)
            opt = tr.make_optimizer(net, impl=impl)
            step, err = tr.try_make_step(kind, net, opt, *batches[0])
            if step is not None:
                break
            why = f"{why}; with {impl} SGD: {err}" if why else f"with {impl} SGD: {err}"
        if step is None:
            return {"status": "failed", "reason": why}
        out = {"status": "ok", "build_s": time.perf_counter() - t0, "optimizer": _opt_impl(opt)}
        if kind == "compile":
            out["compile_s"] = step.compile_s
        for x, y in batches[:2]:
            step(x, y)
        _sync(device)
        if cuda:
            out["peak_mem_mb"] = (torch.cuda.max_memory_allocated() - base) / MB
            out["reserved_mem_mb"] = torch.cuda.max_memory_reserved() / MB
        out.update(time_updates(step, batches, device, **timing))
        return out
    except Exception as exc:
        return {"status": "failed", "reason": f"{type(exc).__name__}: {exc}"[:300]}
    finally:
        if cuda:
            floors.set_tf32(torch, False)


def _opt_impl(opt) -> str:
    d = opt.defaults
    return "fused" if d.get("fused") else "foreach" if d.get("foreach") else "single-tensor"


def bp_check(side: EkdaaSide, preset, batches, device) -> dict:
    """ekdaa_cuda's rule-"bp" updates (``Model.updates``, the raw ΔW before the optimizer) against
    PyTorch's gradients of the summed cross-entropy, same weights, same batch, float32 (TF32 off):
    max over layers of ‖ΔW_ek − ∇W_torch‖ / ‖∇W_torch‖. Passes at ≤ 1e-3."""
    if torch.device(device).type == "cuda":
        floors.set_tf32(torch, False)
    model = side.build(preset, "bp")
    net = tr.build_torch_model(model, device=device)
    x, y = batches[0]
    net.zero_grad(set_to_none=True)
    tr.loss_fn(net(x), y).backward()
    mine = model.updates(x.cpu().numpy(), y.cpu().numpy())
    errs = {}
    for name in net.names:
        theirs = getattr(net, name).weight.grad.detach().cpu().double().numpy()
        diff = mine[f"{name}.weight"].astype(np.float64) - theirs
        errs[name] = float(np.linalg.norm(diff) / max(np.linalg.norm(theirs), 1e-30))
    worst = max(errs.values())
    return {"type": "check", "check": "bp_update_vs_torch_grad", "preset": preset, "batch": len(x),
            "max_rel_err": worst, "errors": errs, "status": "ok" if worst <= 1e-3 else "mismatch"}


# ---------------------------------------------------------------- driver


def _row(preset, batch, impl, rule, mode, precision, result, blocks, peaks) -> dict:
    row = {"type": "e2e", "preset": preset, "batch": batch, "impl": impl, "rule": rule, "mode": mode,
           "precision": precision, **result}
    row.setdefault("status", "ok")
    ms = row.get("ms_per_update")
    if ms:
        row["s_per_1000_updates"] = ms  # ms per update × 1000 updates / 1000 ms per s
        row["images_per_s"] = batch / ms * 1e3
        fl = floors.update_floor(blocks, batch, "ekdaa" if rule == "ekdaa" else "bp", peaks)
        row["flops"], row["bytes"] = fl["phases"]["total"]["flops"], fl["phases"]["total"]["bytes"]
        if "floor_ms_fp32" in fl:
            row["floor_ms"] = fl["floor_ms_fp32"]["total"]
            row["floor_fraction"] = row["floor_ms"] / ms
    if batch == PAPER_BATCH and preset in PAPER_TABLE1:
        s, mb = PAPER_TABLE1[preset]["ekdaa" if rule == "ekdaa" else "bp"]
        row["paper_p4_s_per_1000"], row["paper_p4_mem_mb"] = s, mb
        if ms:
            row["speedup_vs_paper"] = s / ms
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--presets", default="fmnist,cifar")
    p.add_argument("--batches", default="50,1024,256")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", required=True, help="JSON-lines output (appended)")
    p.add_argument("--peaks", help="peaks JSON from floors.py --measure-peaks (for floor fractions)")
    p.add_argument("--compile", action="store_true", help="also time torch.compile (after everything else)")
    p.add_argument("--no-tf32", action="store_true", help="skip the TF32 runs of PyTorch")
    p.add_argument("--modes", default="eager,graph", help="PyTorch paths besides compile")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--run-s", type=float, default=0.1, help="target length of one timed run")
    p.add_argument("--deadline-s", type=float, default=0, help="start no measurement after this many seconds")
    p.add_argument("--compile-min-s", type=float, default=60,
                   help="start a torch.compile run only with at least this long left before the deadline")
    args = p.parse_args(argv)
    t_start = time.perf_counter()
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True
        floors.set_tf32(torch, False)
    peaks = json.loads(Path(args.peaks).read_text()).get("peaks") if args.peaks and Path(args.peaks).exists() else None
    timing = {"repeats": args.repeats, "run_s": args.run_s}
    try:
        side, why = EkdaaSide(device), None
    except Exception as exc:
        side, why = None, f"{type(exc).__name__}: {exc}"
    import micro  # environment() only

    env = {**micro.environment(device), "ekdaa_side": why or side.backend, "peaks": peaks,
           "timing": f"wall clock between syncs; {args.repeats} runs of K updates (~{args.run_s} s each), median"}
    precisions = ["fp32"] + ([] if args.no_tf32 or not cuda else ["tf32"])
    modes = [m for m in args.modes.split(",") if m]
    presets, batches_list = args.presets.split(","), [int(b) for b in args.batches.split(",")]
    from ekdaa_cuda import build_model  # NumPy model: the weights every PyTorch net starts from

    def expired(margin=0.0):
        return args.deadline_s and time.perf_counter() - t_start > args.deadline_s - margin

    with open(args.out, "a") as f:
        def emit(row):
            f.write(json.dumps(row) + "\n")
            f.flush()
            if row.get("type") == "e2e":
                ms = row.get("ms_per_update")
                mem = row.get("peak_mem_mb")
                print(f"{row['preset']:7s} {row['batch']:5d} {row['impl']:10s} {row['rule']:5s} {row['mode']:11s} "
                      f"{row['precision']:5s} {ms if ms is None else round(ms, 4)!s:>10s} ms "
                      f"{mem if mem is None else round(mem, 1)!s:>8s} MB  {row['status']} {row.get('reason', '')}",
                      flush=True)
            elif row.get("type") == "check":
                print(f"{row['preset']:7s} {row['batch']:5d} check bp update vs torch: max rel err "
                      f"{row['max_rel_err']:.2e} {row['status']}", flush=True)

        emit(env)
        print(f"# {env.get('card')} | ekdaa side: {env['ekdaa_side']}", flush=True)
        compile_todo = []
        for batch in batches_list:
            for preset in presets:
                ek_ref = build_model(preset, rule="bp", backend="numpy", seed=0)
                blocks = ek_ref.blocks
                data = make_batches(ek_ref.input_shape, batch, device)
                if side is not None and not expired():
                    try:
                        emit(bp_check(side, preset, data, device))
                    except Exception as exc:
                        emit({"type": "check", "check": "bp_update_vs_torch", "preset": preset, "batch": batch,
                              "status": "error", "max_rel_err": float("nan"), "reason": f"{type(exc).__name__}: {exc}"})
                for rule in ("ekdaa", "bp"):
                    if expired():
                        emit({"type": "skipped", "reason": "deadline", "preset": preset, "batch": batch, "rule": rule})
                        continue
                    impl_mode = "step_arrays" if side is None or side.cuda else "numpy-backend"
                    if side is None:
                        result = {"status": "failed", "reason": why}
                    else:
                        try:
                            result = side.measure(preset, rule, data, device, **timing)
                        except Exception as exc:
                            result = {"status": "failed", "reason": f"{type(exc).__name__}: {exc}"[:300]}
                    emit(_row(preset, batch, "ekdaa_cuda", rule, impl_mode, "fp32", result, blocks, peaks))
                    if side is not None and side.cuda and rule == "ekdaa" and not expired():
                        previous = os.environ.get("EKDAA_CUDA_GRAPH")
                        os.environ["EKDAA_CUDA_GRAPH"] = "0"  # the same replayed step, launch by launch
                        try:
                            result = side.measure(preset, rule, data, device, **timing)
                        except Exception as exc:
                            result = {"status": "failed", "reason": f"{type(exc).__name__}: {exc}"[:300]}
                        finally:
                            if previous is None:
                                del os.environ["EKDAA_CUDA_GRAPH"]
                            else:
                                os.environ["EKDAA_CUDA_GRAPH"] = previous
                        emit(_row(preset, batch, "ekdaa_cuda", rule, "no_graph", "fp32", result, blocks, peaks))
                for precision in precisions:
                    for mode in modes:
                        if expired():
                            emit({"type": "skipped", "reason": "deadline", "preset": preset, "batch": batch,
                                  "mode": mode, "precision": precision})
                            continue
                        result = torch_measure(mode, ek_ref, data, device, precision, **timing)
                        emit(_row(preset, batch, "torch", "bp", mode, precision, result, blocks, peaks))
                if args.compile:
                    compile_todo.append((preset, batch, ek_ref, data))
                else:
                    del data
        for preset, batch, ek_ref, data in compile_todo:
            if expired(args.compile_min_s):
                emit({"type": "skipped", "reason": "deadline", "preset": preset, "batch": batch, "mode": "compile"})
                continue
            result = torch_measure("compile", ek_ref, data, device, "fp32", **timing)
            emit(_row(preset, batch, "torch", "bp", "compile", "fp32", result, ek_ref.blocks, peaks))
    return 0


if __name__ == "__main__":
    sys.exit(main())

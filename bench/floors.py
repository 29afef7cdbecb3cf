"""FLOPs and minimum bytes of one training update, per layer and phase, and the card's measured peaks.

    python bench/floors.py                                   # counts for both presets, batch 50/256/1024
    python bench/floors.py --measure-peaks --json peaks.json # also measure the card (needs torch + a GPU)

Pure arithmetic from the layer shapes (``ekdaa_cuda.layers``); no GPU and no torch needed for the
counts. Conventions (the same for every implementation timed against them):

- float32 everywhere (4 bytes), argmax codes uint8 (1 byte), labels int32 (4 bytes);
- FLOPs = 2 per multiply-accumulate of the convolutions and matrix products. Elementwise work
  (bias, φ, pooling, the target arithmetic, softmax) is not counted as FLOPs: it is memory-bound
  and its bytes are counted. The optimizer counts 4 FLOPs per element (SGD momentum: two FMAs);
- compulsory bytes: every input of a phase's op read once, every output written once, with the
  phase boundaries of the algorithm (what must reach memory between the forward pass, the
  backward sweep and the optimizer): the forward pass writes h (pre-activation, pre-pool, kept
  for the update), the layer's output and the argmax codes; each error projection reads the
  error above, the error kernel, h (and the argmax) of the layer below and writes its error,
  with d never reaching memory (fused); the output error reads h_y and the labels and writes e_y;
  each filter update reads its input z and its error and writes ΔW (+ Δb, + ΔE for EKDAA); SGD
  with momentum reads p, Δ, v and writes p, v (20 bytes per element). Nothing stays in cache
  across ops: at batch 50 much of this fits in a 50 MB L2, so this DRAM floor is an
  under-estimate there, where launch latency usually binds instead;
- phases: ``forward``, ``error`` (output error + every projection to the layer below; the first
  layer projects nothing), ``update`` (filter/weight updates), ``optimizer``;
- EKDAA versus BP: the same FLOPs in every phase (BP's projection uses W where EKDAA uses E;
  its epilogue d ⊙ φ'(h) reads the same h); EKDAA also writes ΔE = γΔW and its optimizer steps
  W and E, BP's W only.

A phase's time floor is Σ over its ops of max(FLOPs / peak FLOP/s, bytes / peak bytes/s), with
the peaks measured on the card by ``measure_peaks`` (a large matrix product, a large
device-to-device copy counting bytes read plus written).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

F32, U8, I32 = 4, 1, 4
PHASES = ("forward", "error", "update", "optimizer")
RULES = ("ekdaa", "bp")
OPT_BYTES_PER_ELEM = 5 * F32  # SGD momentum: read p, Δ, v; write p, v
OPT_FLOPS_PER_ELEM = 4


def _row(op: str, flops: int, nbytes: int, **shape) -> dict:
    return {"op": op, "flops": int(flops), "bytes": int(nbytes), "shape": shape}


# ---------------------------------------------------------------- per-op counts (also used by micro.py)


def conv_fwd(n, c_in, c_out, h, w, k, pool, bias=False) -> dict:
    """conv + bias + φ + 2x2 max-pool with argmax: read x, W (b); write h, out (pooled), argmax."""
    ho, wo = (h // 2, w // 2) if pool else (h, w)
    flops = 2 * n * c_out * h * w * c_in * k * k
    floats = n * c_in * h * w + c_out * c_in * k * k + (c_out if bias else 0) + n * c_out * h * w + n * c_out * ho * wo
    return _row("conv_block_fwd", flops, F32 * floats + (U8 * n * c_out * ho * wo if pool else 0),
                n=n, c_in=c_in, c_out=c_out, h=h, w=w, k=k, pool=pool)


def conv_error_proj(n, c_out, c_in, hp, wp, hh, wh, k, pooled) -> dict:
    """d = convT(e, K) at hp x wp, unpooled to hh x wh at the argmax, epilogue with h: read e, K, h
    (argmax); write e_below [n, c_in, hh, wh]."""
    flops = 2 * n * c_out * hp * wp * c_in * k * k
    floats = n * c_out * hp * wp + c_out * c_in * k * k + 2 * n * c_in * hh * wh
    return _row("conv_error_proj", flops, F32 * floats + (U8 * n * c_in * hp * wp if pooled else 0),
                n=n, c_out=c_out, c_in=c_in, hp=hp, wp=wp, hh=hh, wh=wh, k=k, pooled=pooled)


def fc_error_proj_to_map(n, f_out, c, hp, wp, hh, wh, pooled) -> dict:
    """FC (or output) layer above a conv: d = e Eᵀ [n, c*hp*wp], unflattened, unpooled, epilogue:
    read e, E, h (argmax); write e_below [n, c, hh, wh]."""
    f_in = c * hp * wp
    floats = n * f_out + f_in * f_out + 2 * n * c * hh * wh
    return _row("fc_error_proj_to_map", 2 * n * f_in * f_out, F32 * floats + (U8 * n * c * hp * wp if pooled else 0),
                n=n, f_out=f_out, c=c, hp=hp, wp=wp, hh=hh, wh=wh, pooled=pooled)


def fc_error_proj(n, f_in, f_out) -> dict:
    """d = e Eᵀ, epilogue with h: read e, E, h; write e_below [n, f_in]."""
    return _row("fc_error_proj", 2 * n * f_in * f_out, F32 * (n * f_out + f_in * f_out + 2 * n * f_in),
                n=n, f_in=f_in, f_out=f_out)


def fc_proj(n, f_in, f_out) -> dict:
    """d = e Eᵀ alone: read e, E; write d."""
    return _row("fc_proj", 2 * n * f_in * f_out, F32 * (n * f_out + f_in * f_out + n * f_in),
                n=n, f_in=f_in, f_out=f_out)


def error_epilogue(numel) -> dict:
    """e = epilogue(h, d): read d, h; write e."""
    return _row("error_epilogue", 0, F32 * 3 * numel, numel=numel)


def unpool_error(n, c, hp, wp, hh, wh) -> dict:
    """Argmax unpool + epilogue of a d in memory: read d, argmax, h; write e."""
    return _row("unpool_error", 0, F32 * (n * c * hp * wp + 2 * n * c * hh * wh) + U8 * n * c * hp * wp,
                n=n, c=c, hp=hp, wp=wp, hh=hh, wh=wh)


def fc_fwd(n, f_in, f_out, write_out=True, bias=False) -> dict:
    """h = z Wᵀ (+ b), out = φ(h): read z, W (b); write h (and out; the output layer keeps only h)."""
    floats = n * f_in + f_out * f_in + (f_out if bias else 0) + n * f_out * (2 if write_out else 1)
    return _row("fc_fwd", 2 * n * f_in * f_out, F32 * floats, n=n, f_in=f_in, f_out=f_out, write_out=write_out)


def softmax_error(n, classes) -> dict:
    """e_y = softmax(h_y) − onehot: read h_y, labels; write e_y."""
    return _row("softmax_error", 0, F32 * 2 * n * classes + I32 * n, n=n, classes=classes)


def conv_filter_update(n, c_in, c_out, h, w, k, error_weights, bias=False) -> dict:
    """ΔW = z ⋆ Flip(e) (+ Δb, + ΔE = γΔW): read z, e; write ΔW (Δb, ΔE)."""
    params = c_out * c_in * k * k
    floats = n * c_in * h * w + n * c_out * h * w + params * (2 if error_weights else 1) + (c_out if bias else 0)
    return _row("conv_filter_update", 2 * n * c_out * h * w * c_in * k * k, F32 * floats,
                n=n, c_in=c_in, c_out=c_out, h=h, w=w, k=k, error_weights=error_weights)


def fc_update(n, f_in, f_out, error_weights, bias=False) -> dict:
    """ΔW = eᵀ z (+ Δb, + ΔE = γΔWᵀ): read z, e; write ΔW (Δb, ΔE)."""
    floats = n * f_in + n * f_out + f_in * f_out * (2 if error_weights else 1) + (f_out if bias else 0)
    return _row("fc_update", 2 * n * f_in * f_out, F32 * floats, n=n, f_in=f_in, f_out=f_out,
                error_weights=error_weights)


def optimizer(numel) -> dict:
    """SGD with momentum over ``numel`` parameter elements."""
    return _row("optimizer", OPT_FLOPS_PER_ELEM * numel, OPT_BYTES_PER_ELEM * numel, numel=numel)


# ---------------------------------------------------------------- whole update


def blocks_of(preset_or_layers, input_shape=None, bias=False, widths=None):
    """The parametric blocks of a preset name (``widths`` resizes its conv/FC layers) or a layer list
    (``ekdaa_cuda.layers``)."""
    from ekdaa_cuda.layers import build_blocks, preset_layers

    if isinstance(preset_or_layers, str):
        layers, input_shape = preset_layers(preset_or_layers, widths)
    else:
        layers = list(preset_or_layers)
    return build_blocks(layers, input_shape, "tanh", 0.0, 0.0, bias)


def update_rows(blocks, batch: int, rule: str) -> list[dict]:
    """Every op of one training update with its phase and layer: the algorithm's minimum."""
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    n, ekdaa, rows = batch, rule == "ekdaa", []

    def add(phase, layer, row):
        rows.append({"phase": phase, "layer": layer, **row})

    for b in blocks:  # forward
        if b.kind == "conv":
            c, hh, ww = b.in_shape
            add("forward", b.name, conv_fwd(n, c, b.size, hh, ww, b.kernel, b.pool, b.bias))
        else:
            add("forward", b.name, fc_fwd(n, b.in_shape[0], b.size, write_out=b.kind != "output", bias=b.bias))
    add("error", blocks[-1].name, softmax_error(n, blocks[-1].size))
    for i in range(len(blocks) - 1, 0, -1):  # projections to the layer below
        b, below = blocks[i], blocks[i - 1]
        if b.kind == "conv":
            c_in, hp, wp = b.in_shape
            _, hh, wh = below.h_shape
            add("error", b.name, conv_error_proj(n, b.size, c_in, hp, wp, hh, wh, b.kernel, below.pool))
        elif below.kind == "conv":
            c, hp, wp = below.out_shape
            _, hh, wh = below.h_shape
            add("error", b.name, fc_error_proj_to_map(n, b.size, c, hp, wp, hh, wh, below.pool))
        else:
            add("error", b.name, fc_error_proj(n, b.in_shape[0], b.size))
    numel = 0
    for b in blocks:  # local updates
        if b.kind == "conv":
            c, hh, ww = b.in_shape
            add("update", b.name, conv_filter_update(n, c, b.size, hh, ww, b.kernel, ekdaa, b.bias))
        else:
            add("update", b.name, fc_update(n, b.in_shape[0], b.size, ekdaa, b.bias))
        w = 1
        for s in b.weight_shape:
            w *= s
        numel += w * (2 if ekdaa else 1) + (b.size if b.bias else 0)
    add("optimizer", "all", optimizer(numel))
    return rows


def totals(rows: list[dict]) -> dict:
    """{phase: {"flops", "bytes"}} plus "total"."""
    out = {p: {"flops": 0, "bytes": 0} for p in PHASES}
    for r in rows:
        out[r["phase"]]["flops"] += r["flops"]
        out[r["phase"]]["bytes"] += r["bytes"]
    out["total"] = {k: sum(out[p][k] for p in PHASES) for k in ("flops", "bytes")}
    return out


def op_floor_ms(flops: int, nbytes: int, peaks: dict, precision: str = "fp32") -> float:
    """max(FLOPs / peak, bytes / copy bandwidth) in ms; precision "fp32" or "tf32" picks the FLOP peak."""
    rate = peaks[f"{precision}_tflops"] * 1e12
    bw = peaks["copy_gbs"] * 1e9
    return max(flops / rate, nbytes / bw) * 1e3


def update_floor(blocks, batch: int, rule: str, peaks: dict | None = None) -> dict:
    """Counts of one update per phase and in total; with peaks, the time floor (ms) of each phase
    (Σ of its ops' floors) at FP32 and TF32 rates and whether bytes or FLOPs bind."""
    rows = update_rows(blocks, batch, rule)
    out = {"rule": rule, "batch": batch, "phases": totals(rows), "ops": len(rows), "rows": rows}
    if peaks:
        for precision in ("fp32", "tf32"):
            if not peaks.get(f"{precision}_tflops") or not peaks.get("copy_gbs"):
                continue
            per = {p: 0.0 for p in PHASES}
            for r in rows:
                r[f"floor_ms_{precision}"] = op_floor_ms(r["flops"], r["bytes"], peaks, precision)
                per[r["phase"]] += r[f"floor_ms_{precision}"]
            per["total"] = sum(per[p] for p in PHASES)
            out[f"floor_ms_{precision}"] = per
    return out


def achieved(flops: int, nbytes: int, ms: float | None, peaks: dict | None = None) -> dict:
    """Achieved TFLOP/s and GB/s for counted work done in ``ms``, and the fraction of the FP32 floor."""
    if not ms or ms <= 0:
        return {}
    out = {"tflops": flops / (ms * 1e-3) / 1e12, "gbs": nbytes / (ms * 1e-3) / 1e9}
    if peaks and peaks.get("fp32_tflops") and peaks.get("copy_gbs"):
        floor = op_floor_ms(flops, nbytes, peaks, "fp32")
        out["floor_ms"] = floor
        out["floor_fraction"] = floor / ms
        flop_s, byte_s = flops / (peaks["fp32_tflops"] * 1e12), nbytes / (peaks["copy_gbs"] * 1e9)
        out["bound"] = "flops" if flop_s > byte_s else "bytes"
    return out


# ---------------------------------------------------------------- the card's peaks (needs torch + CUDA)


def set_tf32(torch, enabled: bool) -> None:
    """TF32 for cuDNN convolutions and cuBLAS matmuls on (PyTorch's conv default) or off (IEEE FP32).
    Uses the fp32_precision API where it exists (mixing it with the legacy flags is an error)."""
    mode = "tf32" if enabled else "ieee"
    cudnn = torch.backends.cudnn
    if hasattr(cudnn, "conv") and hasattr(cudnn.conv, "fp32_precision"):
        cudnn.conv.fp32_precision = mode
        if hasattr(cudnn, "rnn"):
            cudnn.rnn.fp32_precision = mode
        torch.backends.cuda.matmul.fp32_precision = mode
    else:  # older torch
        cudnn.allow_tf32 = enabled
        torch.backends.cuda.matmul.allow_tf32 = enabled


def _event_ms(torch, fn, reps: int, warmup: int = 2) -> list[float]:
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return times


def measure_peaks(torch=None, matmul_n: int = 8192, copy_bytes: int = 2 << 30) -> dict:
    """Measured ceilings of the current CUDA device: FP32 and TF32 matmul TFLOP/s (random data,
    median of 10), device-to-device copy GB/s (bytes read + written), the time of one tiny kernel
    launched from Python (eager) and replayed from a CUDA graph, and the device properties."""
    if torch is None:
        import torch
    dev = torch.device("cuda")
    props = torch.cuda.get_device_properties(dev)
    out = {"name": props.name, "sm_count": props.multi_processor_count,
           "l2_bytes": int(getattr(props, "L2_cache_size", 0)), "memory_bytes": int(props.total_memory)}
    gen = torch.Generator(device=dev).manual_seed(0)
    mats = [torch.randn(matmul_n, matmul_n, device=dev, generator=gen) for _ in range(3)]
    for precision, enabled in (("fp32", False), ("tf32", True)):
        set_tf32(torch, enabled)
        ms = statistics.median(_event_ms(torch, lambda: torch.mm(mats[0], mats[1], out=mats[2]), 10))
        out[f"{precision}_tflops"] = 2 * matmul_n**3 / (ms * 1e-3) / 1e12
    set_tf32(torch, False)
    mats.clear()
    bufs = [torch.empty(copy_bytes // 4, device=dev).uniform_(generator=gen)]
    bufs.append(torch.empty_like(bufs[0]))
    ms = statistics.median(_event_ms(torch, lambda: bufs[1].copy_(bufs[0]), 20))
    out["copy_gbs"] = 2 * bufs[0].numel() * 4 / (ms * 1e-3) / 1e9
    bufs.clear()
    x = torch.zeros(1, device=dev)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(2000):
        x.add_(1.0)
    torch.cuda.synchronize()
    out["eager_launch_us"] = (time.perf_counter() - t0) / 2000 * 1e6
    graph = torch.cuda.CUDAGraph()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        x.add_(1.0)
    torch.cuda.current_stream().wait_stream(stream)
    with torch.cuda.graph(graph):
        for _ in range(200):
            x.add_(1.0)
    out["graph_kernel_us"] = statistics.median(_event_ms(torch, graph.replay, 10)) / 200 * 1e3
    torch.cuda.empty_cache()
    return out


# ---------------------------------------------------------------- CLI


def report(presets, batches, peaks=None) -> list[dict]:
    """One entry per preset, batch and rule: totals per phase (and floors with peaks)."""
    entries = []
    for preset in presets:
        blocks = blocks_of(preset)
        for batch in batches:
            for rule in RULES:
                entries.append({"preset": preset, **update_floor(blocks, batch, rule, peaks)})
    return entries


def _fmt(v: float, unit: str) -> str:
    for scale, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= scale:
            return f"{v / scale:.2f} {prefix}{unit}"
    return f"{v:.0f} {unit}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--presets", default="fmnist,cifar")
    p.add_argument("--batches", default="50,256,1024")
    p.add_argument("--measure-peaks", action="store_true", help="measure the CUDA device's peaks (torch)")
    p.add_argument("--peaks", help="read peaks from this JSON (a --measure-peaks output)")
    p.add_argument("--json", help="write the peaks and the per-op counts here")
    args = p.parse_args(argv)
    peaks = None
    if args.peaks:
        peaks = json.loads(Path(args.peaks).read_text()).get("peaks")
    if args.measure_peaks:
        peaks = measure_peaks()
        print("peaks:", json.dumps(peaks), flush=True)
    entries = report(args.presets.split(","), [int(b) for b in args.batches.split(",")], peaks)
    print(f"{'preset':8s} {'batch':>5s} {'rule':5s} " + " ".join(f"{ph:>22s}" for ph in (*PHASES, "total"))
          + ("  floor fp32 ms" if peaks else ""))
    for e in entries:
        cells = [f"{_fmt(e['phases'][ph]['flops'], 'F')} {_fmt(e['phases'][ph]['bytes'], 'B')}"
                 for ph in (*PHASES, "total")]
        floor = f"  {e['floor_ms_fp32']['total']:.4f}" if "floor_ms_fp32" in e else ""
        print(f"{e['preset']:8s} {e['batch']:5d} {e['rule']:5s} " + " ".join(f"{c:>22s}" for c in cells) + floor)
    if args.json:
        Path(args.json).write_text(json.dumps({"peaks": peaks, "floors": entries}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

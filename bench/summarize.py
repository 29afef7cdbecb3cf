"""Summary of a benchmark run: JSON, markdown table, plot, and the check of the speed targets.

    python bench/summarize.py --e2e e2e.jsonl [--micro micro.jsonl] [--peaks peaks.json] [--out-dir bench/results]

writes ``<out-dir>/<YYYYMMDD>-<card>-summary.json`` (``{"card", "commit", "rows": [{"preset",
"batch", "ekdaa_ms", "bp_cudnn_ms", "bp_ours_ms", "ekdaa_mem_mb", "bp_mem_mb", ...}], "targets":
[...], ...}``), the same name with ``.md`` (tables) and ``.png`` (time per update against batch
size: ekdaa_cuda EKDAA and BP against cuDNN backprop).

- ``bp_cudnn_ms``: the fastest PyTorch path (eager, CUDA graph, torch.compile) at the baseline
  precision (``--baseline fp32``, IEEE float32 like ekdaa_cuda's kernels; ``tf32``: PyTorch's
  default TF32 convolutions; ``any``: the fastest of all); ``bp_mem_mb`` is that path's peak memory.
  The other precision's best is reported beside it.
- ``bp_ours_ms``: ekdaa_cuda with rule "bp" (same kernels, exact gradients).

Targets (the issue's): EKDAA ≤ 0.5 × ``bp_cudnn_ms`` at batch 50 on both presets and ≤ 1.0 × at
batch 1024; EKDAA's peak memory ≤ BP's (``bp_mem_mb``) at every measured batch; fmnist at batch 50
≤ 0.1 s per 1000 updates (0.1 ms per update). Each miss is reported with its factor; a target
whose numbers are missing counts as missed ("no data").
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import re
import sys
from pathlib import Path

TARGET_RATIO = {50: 0.5, 1024: 1.0}
FMNIST_MS_AT_50 = 0.1  # 0.1 s per 1000 updates
BASELINES = ("fp32", "tf32", "any")


def read_jsonl(path) -> list[dict]:
    """Rows of a JSON-lines file (a JSON array or object also accepted); missing file -> []."""
    if not path or not Path(path).exists():
        return []
    text = Path(path).read_text().strip()
    if not text:
        return []
    if text[0] == "[":
        return json.loads(text)
    if text[0] == "{" and "\n" not in text:
        obj = json.loads(text)
        return obj if isinstance(obj, list) else [obj]
    rows = []
    for line in text.splitlines():
        line = line.strip()
        if line:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut by a timeout
                continue
    return rows


def card_slug(card: str) -> str:
    """'NVIDIA H100 80GB HBM3' -> 'h100-80gb-hbm3'."""
    s = re.sub(r"\bnvidia\b", "", (card or "unknown").lower())
    return re.sub(r"[^a-z0-9]+", "-", s).strip("-") or "unknown"


def _ok(r: dict) -> bool:
    return r.get("status", "ok") == "ok" and isinstance(r.get("ms_per_update"), (int, float))


def _best(rows: list[dict], precision: str) -> dict | None:
    cands = [r for r in rows if r.get("impl") == "torch" and _ok(r)
             and (precision == "any" or r.get("precision") == precision)]
    return min(cands, key=lambda r: r["ms_per_update"]) if cands else None


def build_rows(e2e: list[dict], baseline: str = "fp32") -> list[dict]:
    """One row per (preset, batch) from the end_to_end rows."""
    measured = [r for r in e2e if r.get("type", "e2e") == "e2e"]
    keys = sorted({(r["preset"], r["batch"]) for r in measured}, key=lambda k: (k[0] != "fmnist", k[0], k[1]))
    other = "tf32" if baseline == "fp32" else "fp32"
    out = []
    for preset, batch in keys:
        rs = [r for r in measured if r["preset"] == preset and r["batch"] == batch]
        ours = {r["rule"]: r for r in rs if r.get("impl") == "ekdaa_cuda" and _ok(r)}
        best, alt = _best(rs, baseline), _best(rs, other)
        eager = next((r for r in rs if r.get("impl") == "torch" and r.get("mode") == "eager"
                      and r.get("precision") == "fp32" and _ok(r)), None)
        ek, bp = ours.get("ekdaa"), ours.get("bp")
        row = {
            "preset": preset, "batch": batch,
            "ekdaa_ms": ek["ms_per_update"] if ek else None,
            "bp_cudnn_ms": best["ms_per_update"] if best else None,
            "bp_ours_ms": bp["ms_per_update"] if bp else None,
            "ekdaa_mem_mb": ek.get("peak_mem_mb") if ek else None,
            "bp_mem_mb": best.get("peak_mem_mb") if best else None,
            "bp_ours_mem_mb": bp.get("peak_mem_mb") if bp else None,
            "bp_cudnn_path": f"{best['mode']} {best['precision']}" if best else None,
            f"bp_cudnn_{other}_ms": alt["ms_per_update"] if alt else None,
            f"bp_cudnn_{other}_path": f"{alt['mode']} {alt['precision']}" if alt else None,
            "bp_eager_fp32_ms": eager["ms_per_update"] if eager else None,
            "bp_eager_fp32_mem_mb": eager.get("peak_mem_mb") if eager else None,
            "baseline": baseline,
        }
        row["ekdaa_vs_cudnn"] = _div(row["ekdaa_ms"], row["bp_cudnn_ms"])
        row["bp_ours_vs_cudnn"] = _div(row["bp_ours_ms"], row["bp_cudnn_ms"])
        row["ekdaa_images_per_s"] = batch / row["ekdaa_ms"] * 1e3 if row["ekdaa_ms"] else None
        if ek and ek.get("floor_ms"):
            row["ekdaa_floor_ms"] = ek["floor_ms"]
            row["ekdaa_floor_fraction"] = ek.get("floor_fraction")
        for r in (ek, bp):
            if r and "paper_p4_s_per_1000" in r:
                row[f"paper_p4_{r['rule']}_s_per_1000"] = r["paper_p4_s_per_1000"]
                row[f"paper_p4_{r['rule']}_mem_mb"] = r["paper_p4_mem_mb"]
                row[f"{r['rule']}_speedup_vs_paper"] = r.get("speedup_vs_paper")
        failed = [f"{r.get('impl')} {r.get('rule')} {r.get('mode')} {r.get('precision')}: {r.get('reason')}"
                  for r in rs if r.get("status", "ok") != "ok"]
        if failed:
            row["failed"] = failed
        out.append(row)
    return out


def _div(a, b):
    return a / b if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b > 0 else None


def check_targets(rows: list[dict], presets=("fmnist", "cifar")) -> list[dict]:
    """Every target with its status ("met", "missed", "no data") and, for a miss, by how much."""
    by = {(r["preset"], r["batch"]): r for r in rows}
    checks = []
    for preset in presets:
        for batch, limit in TARGET_RATIO.items():
            r = by.get((preset, batch), {})
            ratio = r.get("ekdaa_vs_cudnn")
            c = {"target": f"{preset} batch {batch}: EKDAA <= {limit}x best cuDNN BP ({r.get('baseline', 'fp32')})",
                 "preset": preset, "batch": batch, "kind": "speed_vs_cudnn", "limit": limit, "value": ratio}
            _judge(c, ratio, limit, lambda r=r, ratio=ratio, limit=limit: (
                f"EKDAA {r['ekdaa_ms']:.4g} ms vs cuDNN BP {r['bp_cudnn_ms']:.4g} ms ({r.get('bp_cudnn_path')}) "
                f"= {ratio:.3g}x; needs <= {limit * r['bp_cudnn_ms']:.4g} ms"))
            checks.append(c)
    for r in rows:
        c = {"target": f"{r['preset']} batch {r['batch']}: EKDAA peak memory <= BP's", "preset": r["preset"],
             "batch": r["batch"], "kind": "memory", "limit": r.get("bp_mem_mb"), "value": r.get("ekdaa_mem_mb")}
        _judge(c, r.get("ekdaa_mem_mb"), r.get("bp_mem_mb"),
               lambda r=r: f"EKDAA {r['ekdaa_mem_mb']:.1f} MB vs BP {r['bp_mem_mb']:.1f} MB ({r.get('bp_cudnn_path')})")
        checks.append(c)
    r = by.get(("fmnist", 50), {})
    c = {"target": "fmnist batch 50: EKDAA <= 0.1 s per 1000 updates", "preset": "fmnist", "batch": 50,
         "kind": "absolute_speed", "limit": FMNIST_MS_AT_50, "value": r.get("ekdaa_ms")}
    _judge(c, r.get("ekdaa_ms"), FMNIST_MS_AT_50,
           lambda: f"EKDAA {r['ekdaa_ms']:.4g} s per 1000 updates; target {FMNIST_MS_AT_50}")
    checks.append(c)
    return checks


def _judge(c: dict, value, limit, detail) -> None:
    if not isinstance(value, (int, float)) or not isinstance(limit, (int, float)) or math.isnan(value):
        c.update(status="no data", detail="not measured (see the run's log)")
        return
    c["factor"] = value / limit if limit > 0 else math.inf
    c["status"] = "met" if value <= limit else "missed"
    c["detail"] = detail() + (f" -> missed by {c['factor']:.2f}x" if c["status"] == "missed" else "")


def micro_summary(micro: list[dict]) -> dict:
    rows = [r for r in micro if r.get("type") == "micro"]
    return {
        "rows": len(rows),
        "ok": sum(r.get("status") == "ok" for r in rows),
        "mismatch": [{"case": _case(r), "errors": r.get("errors")} for r in rows if r.get("status") == "mismatch"],
        "error": [{"case": _case(r), "message": r.get("message")} for r in rows if r.get("status") == "error"],
        "skipped": sum(len(r.get("cases", [])) for r in micro if r.get("type") == "skipped"),
    }


def _case(r: dict) -> str:
    return f"{r.get('preset')}/{r.get('layer')}/{r.get('op')}/{r.get('rule')}/b{r.get('batch')}"


# ---------------------------------------------------------------- markdown and plot


def _f(v, fmt="{:.4g}") -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else fmt.format(v)


def markdown(summary: dict, micro: list[dict], checks: list[dict]) -> str:
    env = summary.get("env", {})
    other = "tf32" if summary["baseline"] == "fp32" else "fp32"
    lines = [f"# Benchmark summary: {summary['card']}", "",
             f"- date {summary['date']}, commit `{summary['commit']}`",
             f"- torch {env.get('torch')}, CUDA {env.get('cuda')}, cuDNN {env.get('cudnn')}, driver "
             f"{env.get('driver')}, CuPy {env.get('cupy')}",
             f"- baseline: fastest PyTorch backprop path at {summary['baseline']} (eager / CUDA graph / compile)",
             "- time per update = s per 1000 updates; memory = peak allocated during updates, data excluded", ""]
    peaks = summary.get("peaks") or {}
    if peaks:
        lines += [f"- measured peaks: FP32 {_f(peaks.get('fp32_tflops'))} TFLOP/s, "
                  f"TF32 {_f(peaks.get('tf32_tflops'))} TFLOP/s, copy {_f(peaks.get('copy_gbs'))} GB/s, "
                  f"eager launch {_f(peaks.get('eager_launch_us'))} us, "
                  f"graph kernel {_f(peaks.get('graph_kernel_us'))} us", ""]
    lines += ["## One training update", "",
              f"| preset | batch | EKDAA ms | BP (ours) ms | cuDNN BP ms | path | cuDNN {other} ms | EKDAA/cuDNN "
              "| EKDAA MB | BP MB | EKDAA img/s | floor ms | paper P4 EKDAA s/1000 |",
              "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in summary["rows"]:
        lines.append(
            f"| {r['preset']} | {r['batch']} | {_f(r['ekdaa_ms'])} | {_f(r['bp_ours_ms'])} | {_f(r['bp_cudnn_ms'])} "
            f"| {r.get('bp_cudnn_path') or '–'} | {_f(r.get(f'bp_cudnn_{other}_ms'))} "
            f"| {_f(r['ekdaa_vs_cudnn'], '{:.3g}')} "
            f"| {_f(r['ekdaa_mem_mb'], '{:.1f}')} | {_f(r['bp_mem_mb'], '{:.1f}')} "
            f"| {_f(r.get('ekdaa_images_per_s'), '{:.0f}')} | {_f(r.get('ekdaa_floor_ms'))} "
            f"| {_f(r.get('paper_p4_ekdaa_s_per_1000'))} |")
    lines += ["", "## Targets", ""]
    for c in checks:
        mark = {"met": "met", "missed": "MISSED", "no data": "NO DATA"}[c["status"]]
        lines.append(f"- **{mark}** {c['target']}: {c['detail']}")
    for chk in summary.get("checks", []):
        lines.append(f"- check {chk.get('check')} {chk.get('preset')} b{chk.get('batch')}: max rel err "
                     f"{_f(chk.get('max_rel_err'), '{:.2e}')} ({chk.get('status')})")
    rows = [r for r in micro if r.get("type") == "micro"]
    if rows:
        lines += ["", "## Kernels against cuDNN/cuBLAS (median ms, L2 flushed)", "",
                  "| case | torch sequence | ekdaa ms | torch ms | ratio | ekdaa TFLOP/s | ekdaa GB/s "
                  "| ekdaa floor frac | torch TF32 ms | status |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
        for r in rows:
            lines.append(f"| {_case(r)} | {r.get('torch_sequence')} | {_f(r.get('ekdaa_ms'))} "
                         f"| {_f(r.get('torch_ms'))} "
                         f"| {_f(r.get('ratio'), '{:.3g}')} | {_f(r.get('ekdaa_tflops'), '{:.3g}')} "
                         f"| {_f(r.get('ekdaa_gbs'), '{:.0f}')} | {_f(r.get('ekdaa_floor_fraction'), '{:.2f}')} "
                         f"| {_f(r.get('torch_tf32_ms'))} | {r.get('status')} |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    presets = sorted({r["preset"] for r in rows}, key=lambda p: (p != "fmnist", p))
    fig, axes = plt.subplots(1, max(1, len(presets)), figsize=(5.5 * max(1, len(presets)), 4.2), squeeze=False)
    other = "tf32" if (rows and rows[0].get("baseline") == "fp32") else "fp32"
    series = (("ekdaa_ms", "ekdaa_cuda EKDAA", "o-", "C0"), ("bp_ours_ms", "ekdaa_cuda BP", "s-", "C1"),
              ("bp_cudnn_ms", "cuDNN BP (best, baseline)", "^-", "C2"),
              (f"bp_cudnn_{other}_ms", f"cuDNN BP (best, {other})", "v--", "C3"))
    for ax, preset in zip(axes[0], presets):
        rs = sorted((r for r in rows if r["preset"] == preset), key=lambda r: r["batch"])
        for key, label, style, color in series:
            pts = [(r["batch"], r[key]) for r in rs if isinstance(r.get(key), (int, float))]
            if pts:
                ax.plot(*zip(*pts), style, label=label, color=color)
        targets = [(b, TARGET_RATIO[b] * r["bp_cudnn_ms"]) for r in rs for b in (r["batch"],)
                   if b in TARGET_RATIO and isinstance(r.get("bp_cudnn_ms"), (int, float))]
        if targets:
            ax.plot(*zip(*targets), "k_", markersize=16, mew=2, label="target (x cuDNN BP)")
        if preset == "fmnist":
            ax.plot([50], [FMNIST_MS_AT_50], "k*", markersize=9, label="target 0.1 s / 1000 updates")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("batch size")
        ax.set_ylabel("ms per update (= s per 1000 updates)")
        ax.set_title(preset)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------- driver


def summarize(e2e_path, micro_path=None, peaks_path=None, out_dir="bench/results", card=None, commit=None,
              date=None, baseline="fp32") -> dict:
    """Write the summary JSON, markdown and PNG; return {"json", "md", "png", "summary", "targets"}."""
    if baseline not in BASELINES:
        raise ValueError(f"baseline must be one of {BASELINES}, got {baseline!r}")
    e2e, micro = read_jsonl(e2e_path), read_jsonl(micro_path)
    env = next((r for r in e2e + micro if r.get("type") == "env"), {})
    peaks = None
    if peaks_path and Path(peaks_path).exists():
        peaks = json.loads(Path(peaks_path).read_text()).get("peaks")
    peaks = peaks or env.get("peaks")
    card = card or env.get("card") or (peaks or {}).get("name") or "unknown"
    date = date or datetime.date.today().strftime("%Y%m%d")
    rows = build_rows(e2e, baseline)
    checks = check_targets(rows)
    summary = {"card": card, "commit": commit or env.get("commit") or "unknown", "date": date,
               "baseline": baseline, "env": {k: env.get(k) for k in ("torch", "cuda", "cudnn", "driver", "cupy",
                                                                      "sm_count", "l2_bytes", "ekdaa_cuda_status")},
               "peaks": peaks, "rows": rows, "targets": checks,
               "targets_met": sum(c["status"] == "met" for c in checks), "targets_total": len(checks),
               "checks": [r for r in e2e if r.get("type") == "check"],
               "micro": micro_summary(micro),
               "skipped": [r for r in e2e if r.get("type") == "skipped"]}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"{date}-{card_slug(card)}-summary"
    paths = {"json": stem.with_suffix(".json"), "md": stem.with_suffix(".md"), "png": stem.with_suffix(".png")}
    paths["json"].write_text(json.dumps(summary, indent=1) + "\n")
    paths["md"].write_text(markdown(summary, micro, checks))
    plot(rows, paths["png"], f"{card} — one training update ({summary['commit'][:10]})")
    return {**{k: str(v) for k, v in paths.items()}, "summary": summary, "targets": checks}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--e2e", required=True, help="end_to_end.py JSON lines")
    p.add_argument("--micro", help="micro.py JSON lines")
    p.add_argument("--peaks", help="floors.py --measure-peaks JSON")
    p.add_argument("--out-dir", default=str(Path(__file__).resolve().parent / "results"))
    p.add_argument("--card", help="card name (default: from the run's env row)")
    p.add_argument("--commit")
    p.add_argument("--date", help="YYYYMMDD (default today)")
    p.add_argument("--baseline", default="fp32", choices=BASELINES)
    args = p.parse_args(argv)
    res = summarize(args.e2e, args.micro, args.peaks, args.out_dir, args.card, args.commit, args.date, args.baseline)
    s = res["summary"]
    print(f"summary: {res['json']}\n         {res['md']}\n         {res['png']}")
    print(f"targets met: {s['targets_met']}/{s['targets_total']}")
    for c in res["targets"]:
        print(f"  [{c['status']:>7s}] {c['target']}: {c['detail']}")
    m = s["micro"]
    print(f"micro: {m['ok']}/{m['rows']} ok, {len(m['mismatch'])} mismatches, {len(m['error'])} errors, "
          f"{m['skipped']} skipped")
    for item in m["mismatch"] + m["error"]:
        print(f"  {item}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

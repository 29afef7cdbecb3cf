"""Time one training update of a preset on a backend: ms per update and s per 1000 updates.

    python bench/bench_update.py --preset fmnist --backend cuda --batch 50 --json out.json

Data are random batches already resident on the backend (as in ``ekdaa_cuda.train``); the
first ``--warmup`` updates are not timed. On the GPU the clock is read after a device
synchronisation at both ends, so queued work is included. Peak GPU memory comes from CuPy's
memory pool.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

import ekdaa_cuda as ek


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--preset", default="fmnist")
    p.add_argument("--rule", default="ekdaa")
    p.add_argument("--backend", default="cuda")
    p.add_argument("--batch", type=int, default=50)
    p.add_argument("--updates", type=int, default=200)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--json", default=None)
    args = p.parse_args()

    model = ek.build_model(args.preset, rule=args.rule, backend=args.backend)
    be = model.backend
    rng = np.random.default_rng(0)
    x = be.input(rng.uniform(-0.5, 0.5, (args.batch, *model.input_shape)).astype(np.float32))
    y = be.labels(rng.integers(0, 10, args.batch))

    def sync():
        if be.name == "cuda":
            be.xp.cuda.get_current_stream().synchronize()

    for _ in range(args.warmup):
        model.step_arrays(x, y)
    sync()
    t0 = time.perf_counter()
    for _ in range(args.updates):
        model.step_arrays(x, y)
    sync()
    ms = (time.perf_counter() - t0) / args.updates * 1e3
    row = {"preset": args.preset, "rule": args.rule, "backend": args.backend, "batch": args.batch,
           "ms_per_update": ms, "s_per_1000_updates": ms, "images_per_s": args.batch / ms * 1e3}
    if be.name == "cuda":
        row["pool_mb"] = be.xp.get_default_memory_pool().total_bytes() / 2**20
    print(json.dumps(row))
    if args.json:
        with open(args.json, "a") as f:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()

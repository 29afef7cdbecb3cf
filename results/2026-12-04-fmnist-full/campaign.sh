#!/usr/bin/env bash
# Issue 13 campaign (full Fashion-MNIST, 10 epochs, numpy backend, one BLAS thread per run, two
# runs at a time at low priority). Resumable: rerunning skips finished runs (result.json) and
# resumes interrupted ones from their checkpoint.npz. Run from a clone of the commit under test:
#   CODE=/path/to/clone bash campaign.sh
set -u
OUT=$(cd "$(dirname "$0")" && pwd)
CODE=${CODE:-$(cd "$OUT/../.." && pwd)}
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
cd "$CODE"
run() { nice -n 19 python -m ekdaa_cuda.cli reproduce table2 --dataset fashion-mnist --epochs 10 --backend numpy \
          --out "$OUT" --no-progress --trials "$1" --methods "$2"; }
( run 3 ekdaa,bp,fa,kp; run 5 bp-tuned ) >> "$OUT/log-a.txt" 2>&1 &
( run 3 bp-fc,lra-e,dfa,sdfa,drtp ) >> "$OUT/log-b.txt" 2>&1 &
wait

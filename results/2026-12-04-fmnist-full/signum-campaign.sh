#!/usr/bin/env bash
# Issue 13, point 4: the signum rows of Table 2 on the full Fashion-MNIST (10 epochs, NumPy backend,
# one BLAS thread per run). Each argument is one lane, run sequentially in the background:
# "method seed seed ...". Resumable: finished runs are read back, interrupted ones resume from their
# checkpoint. Run from a clone of the code:
#   CODE=/path/to/clone bash signum-campaign.sh "ekdaa-signum-release 0 1 2 3 4" "ekdaa-signum-tuned 0 1 2"
set -u
OUT=$(cd "$(dirname "$0")" && pwd)
CODE=${CODE:?clone of the code}
export PYTHONPATH=$CODE PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
PY=${PY:-python}; EPOCHS=${EPOCHS:-10}
mkdir -p "$OUT/logs"; cd "$CODE"
for lane in "$@"; do
  ( set -- $lane; method=$1; shift
    for seed in "$@"; do
      "$PY" -m ekdaa_cuda.cli reproduce table2 --dataset fashion-mnist --methods "$method" --seeds "$seed" \
          --epochs "$EPOCHS" --backend numpy --out "$OUT" --no-progress > "$OUT/logs/$method-$seed.log" 2>&1
      rc=$?  # before the echo: its $(date) would reset $?
      echo "[$(date -u +%FT%TZ)] $method seed $seed: rc=$rc" >> "$OUT/signum-campaign.log"
    done ) &
done
wait

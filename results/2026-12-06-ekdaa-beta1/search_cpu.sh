#!/usr/bin/env bash
# Issue 13, EKDAA >= 91.5% search on the full Fashion-MNIST: 20-epoch runs of the named settings
# ekdaa-tuned (Adam 1e-3, cosine, no dropout) and ekdaa-tuned-dropout (+ dropout 0.1 conv / 0.3 FC),
# NumPy backend, one BLAS thread per run. Resumable (finished runs are read back, interrupted ones
# resume from their checkpoint). Run from a clone of the code:
#   CODE=/path/to/clone OUT=results/2026-12-05-ekdaa-search bash search_cpu.sh "ekdaa-tuned 0" "ekdaa-tuned-dropout 0"
set -u
CODE=${CODE:?clone of the code}; OUT=$(realpath "${OUT:?output folder}")
export PYTHONPATH=$CODE PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
PY=${PY:-python}; EPOCHS=${EPOCHS:-20}; NICE=${NICE:-5}
mkdir -p "$OUT/logs"; cd "$CODE"
for job in "$@"; do
  set -- $job
  ( nice -n "$NICE" "$PY" -m ekdaa_cuda.cli reproduce table2 --dataset fashion-mnist --methods "$1" --seeds "$2" \
      --epochs "$EPOCHS" --backend numpy --out "$OUT" --no-progress > "$OUT/logs/$1-$2.log" 2>&1
    echo "[$(date -u +%FT%TZ)] $1 seed $2: rc=$?" >> "$OUT/search.log" ) &
done
wait

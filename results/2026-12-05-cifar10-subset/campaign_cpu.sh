#!/usr/bin/env bash
# Issue 13, CIFAR-10 subset (4,000 train / 1,000 test real images from ../shared/data) on the CPU:
# every rule x 3 seeds, 10 epochs, NumPy backend, PARALLEL processes (2) of one BLAS thread each at
# nice 19, seed 0 of every rule first so a cut-off campaign still covers every rule. Resumable: a
# finished trial is read back, an interrupted one resumes from its checkpoint. Run from a clone of
# the code (so edits to the working tree do not reach running trials):
#   CODE=/work/campaign-code OUT=results/2026-12-05-cifar10-subset bash campaign_cpu.sh
# then tabulate with `ekdaa-cuda reproduce table2 --dataset cifar10 --trials 3 --methods ... --out OUT`.
set -u
CODE=${CODE:?clone of the code}; OUT=$(realpath "${OUT:?output folder}")
export PYTHONPATH=$CODE PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
export EKDAA_DATA=${EKDAA_DATA:-/work/shared/data} OUT EPOCHS=${EPOCHS:-10} PY=${PY:-python}
mkdir -p "$OUT/logs"
for s in 0 1 2; do for m in ekdaa bp fa kp dfa sdfa drtp bp-fc lra-e; do echo "$m $s"; done; done > "$OUT/jobs.txt"
job() {
  nice -n 19 "$PY" -m ekdaa_cuda.cli reproduce table2 --dataset cifar10 --methods "$1" --seeds "$2" \
    --epochs "$EPOCHS" --backend numpy --out "$OUT" --no-progress > "$OUT/logs/$1-$2.log" 2>&1
  rc=$?  # before the echo: its $(date) would reset $?
  echo "[$(date -u +%FT%TZ)] $1 seed $2: rc=$rc" >> "$OUT/campaign.log"
}
export -f job
cd "$CODE" && xargs -P "${PARALLEL:-2}" -L 1 bash -c 'job "$@"' _ < "$OUT/jobs.txt"
echo "[$(date -u +%FT%TZ)] all jobs ended" >> "$OUT/campaign.log"

#!/usr/bin/env bash
# Why DRTP stays at chance on the CIFAR-10 subset: 2-epoch runs of its setting at lower learning rates.
cd /work/campaign-code3
export PYTHONPATH=/work/campaign-code3 PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 EKDAA_DATA=/work/shared/data
OUT=/work/main/results/2026-12-05-cifar10-subset/drtp-probe
for lr in ${LRS:-5e-4 1e-4 2e-5}; do
  /work/main/.venv/bin/python -m ekdaa_cuda.cli reproduce table2 --dataset cifar10 --methods drtp --set lr=$lr --seeds 0 \
    --epochs 2 --backend numpy --out $OUT/lr$lr --no-progress > $OUT/lr$lr.log 2>&1
done

#!/bin/sh
# after queue1: the weight-norm experiment on the faithful network, then release-variant confirmation
. /work/wt-signum/.venv/bin/activate
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
while pgrep -f "queue1.sh" > /dev/null; do sleep 5; done
S='{"activation": "signum", "optimizer": "adam", "lr": 1e-3, "normalize": "rms", "beta": 0.3}'
nice -n 10 python probe.py fixnorm-adam-rms0.3 "$S" --every 40 --train 10000 --fix-norm > probe-fixnorm-adam-rms0.3.log 2>&1

#!/bin/sh
# after release-a: references, faithful controls (frozen layers), release-b; one run at a time
. /work/wt-signum/.venv/bin/activate
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
while pgrep -f "sweep.py release-a" > /dev/null; do sleep 5; done
nice -n 10 python sweep.py reference >> sweep-reference.log 2>&1
S='{"activation": "signum", "optimizer": "adam", "lr": 1e-3, "normalize": "rms", "beta": 0.3}'
nice -n 10 python probe.py ctrl-output-only "$S" --every 40 --train 10000 --freeze conv1,conv2,conv3,fc1 > probe-ctrl-output-only.log 2>&1
nice -n 10 python probe.py ctrl-fc-only "$S" --every 40 --train 10000 --freeze conv1,conv2,conv3 > probe-ctrl-fc-only.log 2>&1
nice -n 10 python sweep.py release-b >> sweep-release.log 2>&1

#!/bin/sh
# quick screens (3k training images, 1 epoch, seed 0, 2k test images) of the faithful signum network
. /work/wt-signum/.venv/bin/activate
run() { OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 nice -n 10 python probe.py "$1" "$2" --every 20 > "probe-$1.log" 2>&1; }
run adam-rms-0.3-bias '{"activation": "signum", "optimizer": "adam", "lr": 1e-3, "normalize": "rms", "beta": 0.3, "bias": true}'
run adam-rms-0.3-bilinear '{"activation": "signum", "optimizer": "adam", "lr": 1e-3, "normalize": "rms", "beta": 0.3, "unpool": "bilinear"}'
run adam1e-4-rms-0.3 '{"activation": "signum", "optimizer": "adam", "lr": 1e-4, "normalize": "rms", "beta": 0.3}'
run adam1e-4-0.9 '{"activation": "signum", "optimizer": "adam", "lr": 1e-4}'

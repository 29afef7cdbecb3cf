#!/bin/sh
# screens (10k training images, 1 epoch, seed 0, 2k test images): SGD with Pascanu rescaling rho
. /work/wt-signum/.venv/bin/activate
run() { OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 nice -n 10 python probe.py "$1" "$2" --every 40 --train 10000 > "probe-$1.log" 2>&1; }
run sgd1e-2-rho1-rms0.3 '{"activation": "signum", "lr": 1e-2, "rho": 1.0, "normalize": "rms", "beta": 0.3}'
run sgd1e-2-rho1-b0.9 '{"activation": "signum", "lr": 1e-2, "rho": 1.0}'
run sgd1e-3-rho1-rms0.3 '{"activation": "signum", "lr": 1e-3, "rho": 1.0, "normalize": "rms", "beta": 0.3}'
run adam1e-3-rms0.3-10k '{"activation": "signum", "optimizer": "adam", "lr": 1e-3, "normalize": "rms", "beta": 0.3}'

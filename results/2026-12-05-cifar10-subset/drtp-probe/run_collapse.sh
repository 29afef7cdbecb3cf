cd /work/main
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 PYTHONPATH=/work/main
D=results/2026-12-05-cifar10-subset/drtp-probe
.venv/bin/python $D/collapse.py 5e-4 dfa 200 > $D/collapse-dfa-lr5e-4.txt 2>&1
.venv/bin/python $D/collapse.py 1e-4 drtp 200 > $D/collapse-lr1e-4.txt 2>&1
.venv/bin/python $D/collapse.py 2e-5 drtp 200 > $D/collapse-lr2e-5.txt 2>&1

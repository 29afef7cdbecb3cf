#!/usr/bin/env bash
# Benchmarks against cuDNN backprop, on the device machine, in one call:
#
#   EKDAA_COMMIT=$(git rev-parse HEAD) bash bench/run_all.sh "$OUT"
#
# Stages (each under `timeout`, the whole within BENCH_BUDGET_S, default 540 s):
#   1. build ekdaa_cuda (pip install --no-build-isolation --no-deps ., sm_90 only)   ~40-90 s
#   2. the card's peaks (floors.py --measure-peaks: FP32/TF32 matmul, copy, launch)  ~15 s
#   3. micro.py: every fused kernel against its cuDNN/cuBLAS sequence                2/5 of what is left
#   4. end_to_end.py: one update, ekdaa_cuda vs PyTorch eager/graph/compile          3/5 of what is left
#   5. summarize.py: summary JSON + markdown + PNG, and the target check             ~10 s
# A failing or timed-out stage does not stop the later ones (rows are written as they are measured); each
# is logged as passed / failed / timed-out, and the script exits 1 unless every stage passed (and at once,
# right after the build, when ekdaa_cuda's GPU path is unusable). run.log records the driver, CUDA and CuPy versions.
# OUT receives at most 8 files (the device tool returns no more):
#   run.log  build.log  peaks.json  micro.jsonl  end_to_end.jsonl  <date>-<card>-summary.{json,md,png}
# Copy the three summary files into bench/results/ afterwards.
#
# Knobs (environment): BENCH_BUDGET_S (540), BENCH_PRESETS (fmnist,cifar), BENCH_BATCHES (50,1024,256),
# BENCH_COMPILE (1: also torch.compile), BENCH_DEVICE (cuda; "cpu" = smoke test of this script without a
# GPU, ekdaa_cuda on its NumPy backend), SKIP_BUILD (1: use the installed ekdaa_cuda), PYTHON (python3),
# BENCH_TORCH_ONLY (1: go on when ekdaa_cuda's GPU path is unusable; by default the script stops right
# after the build then, exit 1, to save device time).
set -uo pipefail
OUT=${1:?usage: run_all.sh OUT_DIR}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
cd "$(dirname "$0")/.."
T0=$(date +%s)
BUDGET=${BENCH_BUDGET_S:-540}
PY=${PYTHON:-python3}
PRESETS=${BENCH_PRESETS:-fmnist,cifar}
BATCHES=${BENCH_BATCHES:-50,1024,256}
DEVICE=${BENCH_DEVICE:-cuda}
export PYTHONUNBUFFERED=1 PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1
export EKDAA_CUDA_ARCHITECTURES=${EKDAA_CUDA_ARCHITECTURES:-90-real}
export EKDAA_COMMIT=${EKDAA_COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}
LOG="$OUT/run.log"
: > "$LOG"
left() { echo $(( BUDGET - ($(date +%s) - T0) )); }
log() { echo "[run_all $(date +%T) +$(( $(date +%s) - T0 ))s] $*" | tee -a "$LOG"; }
stage() {  # stage NAME SECONDS CMD...: run with a time limit, output to run.log (and the terminal)
  local name=$1 secs=$2; shift 2
  if (( secs < 5 )); then log "$name: skipped, no time left"; return 0; fi
  log "$name: start (limit ${secs}s)"
  timeout --signal=TERM --kill-after=10 "$secs" "$@" 2>&1 | tee -a "$LOG"
  local rc=${PIPESTATUS[0]}
  log "$name: rc=$rc$( ((rc == 124 || rc == 137)) && echo ' (timed out)')"
  STATUS+=("$name=$( ((rc == 0)) && echo passed || { ((rc == 124 || rc == 137)) && echo 'timed-out' || echo failed; })")
  return 0
}
STATUS=()  # name=passed|failed|timed-out of every stage run, reported at the end (exit 1 unless all passed)

log "commit $EKDAA_COMMIT, budget ${BUDGET}s, device $DEVICE, presets $PRESETS, batches $BATCHES"
{ nvidia-smi -L; nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,temperature.gpu,power.draw \
    --format=csv; $PY -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__,
    'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version())"
  $PY -c "import cupy; print('cupy', cupy.__version__, 'cuda runtime', cupy.cuda.runtime.runtimeGetVersion(),
    'driver', cupy.cuda.runtime.driverGetVersion())"; } >> "$LOG" 2>&1
git status --porcelain 2>/dev/null | head -20 | sed 's/^/[dirty] /' >> "$LOG"

# 1. build
if [[ "${SKIP_BUILD:-0}" == 1 ]]; then
  log "build: skipped (SKIP_BUILD=1)"
  : > "$OUT/build.log"
else
  log "build: archs $EKDAA_CUDA_ARCHITECTURES"
  timeout --kill-after=10 200 $PY -m pip install --no-build-isolation --no-deps . > "$OUT/build.log" 2>&1
  build_rc=$?
  log "build: rc=$build_rc"
  STATUS+=("build=$( ((build_rc == 0)) && echo passed || echo failed)")
fi
(cd / && $PY -c "import ekdaa_cuda; print('ekdaa_cuda', ekdaa_cuda.__file__, '|', ekdaa_cuda.cuda_status())") \
  2>&1 | tee -a "$LOG"
(cd / && $PY -c "from ekdaa_cuda import _C; print('_C: CUDA runtime', _C.runtime_version(), 'driver', _C.driver_version())") \
  >> "$LOG" 2>&1
if [[ "$DEVICE" == cuda && "${BENCH_TORCH_ONLY:-0}" != 1 ]] && \
   ! (cd / && $PY -c "import sys, ekdaa_cuda; sys.exit(not ekdaa_cuda.cuda_available())") 2>/dev/null; then
  log "ekdaa_cuda's GPU path is not usable (see above and build.log): stopping early to save device time"
  log "(BENCH_TORCH_ONLY=1 runs the PyTorch side anyway)"
  tail -40 "$OUT/build.log"
  exit 1
fi

# 2. peaks
if [[ "$DEVICE" == cuda ]]; then
  stage peaks 60 $PY bench/floors.py --measure-peaks --presets "$PRESETS" --batches "$BATCHES" --json "$OUT/peaks.json"
else
  echo '{"peaks": null, "reason": "no CUDA device (smoke test)"}' > "$OUT/peaks.json"
fi

# 3-4. micro and end_to_end share what is left, 35 s kept for the summary
avail=$(( $(left) - 35 ))
micro_s=$(( avail * 2 / 5 ))
e2e_s=$(( avail - micro_s ))
stage micro "$micro_s" $PY bench/micro.py --device "$DEVICE" --presets "$PRESETS" --batches "$BATCHES" --tf32 \
  --peaks "$OUT/peaks.json" --deadline-s $(( micro_s - 25 )) --out "$OUT/micro.jsonl"
e2e_s=$(( $(left) - 35 ))
compile_flag=$([[ "${BENCH_COMPILE:-1}" == 1 ]] && echo --compile)
stage end_to_end "$e2e_s" $PY bench/end_to_end.py --device "$DEVICE" --presets "$PRESETS" --batches "$BATCHES" \
  $compile_flag --peaks "$OUT/peaks.json" --deadline-s $(( e2e_s - 20 )) --out "$OUT/end_to_end.jsonl"

# 5. summary (written into OUT; copy to bench/results/ afterwards)
stage summarize $(( $(left) > 30 ? $(left) : 30 )) $PY bench/summarize.py --e2e "$OUT/end_to_end.jsonl" \
  --micro "$OUT/micro.jsonl" --peaks "$OUT/peaks.json" --out-dir "$OUT"
log "done in $(( $(date +%s) - T0 ))s; files: $(cd "$OUT" && ls | tr '\n' ' ')"
md=$(ls "$OUT"/*-summary.md 2>/dev/null | head -1)
[[ -n "$md" ]] && sed -n '/^## One training update/,/^## Kernels/p' "$md"
log "stages: ${STATUS[*]}"
for st in "${STATUS[@]}"; do [[ "$st" == *=passed ]] || { log "not every stage passed"; exit 1; }; done
exit 0

#!/usr/bin/env bash
# Issue 13 campaign on a lent GPU: a queue of `reproduce table2` trials (one dataset, method and seed
# per job, highest priority first) run by PARALLEL worker processes until DEADLINE_S, with the whole
# work folder packed into OUT/campaign.tar.gz every 30 s (the device tool returns only OUT's files)
# and once more at the end. Run from the repository root, data under ./device_data:
#
#   DEADLINE_S=480 bash results/2026-12-04-gpu-campaign/campaign_gpu.sh "$OUT"
#
# Afterwards, here: unpack into results/2026-12-04-gpu-campaign/ and tabulate the finished trials
# with `ekdaa-cuda reproduce table2 --trials N --methods ... --out ...` (finished runs are read back,
# not rerun). Knobs: BACKEND (cuda), PARALLEL (12), EPOCHS (10), SKIP_BUILD (0), MPS (1: start the
# CUDA MPS daemon so the small batch-50 kernels of different processes share the GPU at once),
# TABLE2_ARGS (more `reproduce table2` arguments, e.g. "--train-limit 200" for a smoke test).
set -u
OUT=${1:?usage: campaign_gpu.sh OUT_DIR}
mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
cd "$(dirname "$0")/../.."
T0=$(date +%s)
END=$(( T0 + ${DEADLINE_S:-480} ))
BACKEND=${BACKEND:-cuda} PARALLEL=${PARALLEL:-12} EPOCHS=${EPOCHS:-10}
WORK=${WORK:-/tmp/ekdaa-campaign}
mkdir -p "$WORK/logs"
export EKDAA_DATA=${EKDAA_DATA:-$PWD/device_data} PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 \
  MKL_NUM_THREADS=1 PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1
export EKDAA_CUDA_ARCHITECTURES=${EKDAA_CUDA_ARCHITECTURES:-90-real}
LOG="$WORK/campaign.log"
log() { echo "[campaign $(date +%T) +$(( $(date +%s) - T0 ))s] $*" | tee -a "$LOG"; }
pack() {  # everything but checkpoints, atomically
  tar czf "$OUT/.campaign.tar.gz" -C "$WORK" --exclude='checkpoint.*' . 2>/dev/null && \
    mv "$OUT/.campaign.tar.gz" "$OUT/campaign.tar.gz"
}

log "commit $(git rev-parse HEAD 2>/dev/null || echo unknown), backend $BACKEND, $PARALLEL workers, deadline +$(( END - T0 ))s"
nvidia-smi -L >> "$LOG" 2>&1
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
  python -m pip install --no-build-isolation --no-deps . > "$WORK/build.log" 2>&1 || { log "build failed"; pack; exit 1; }
  log "built"
fi
if [[ ${MPS:-1} == 1 && $BACKEND == cuda ]] && command -v nvidia-cuda-mps-control > /dev/null; then
  export CUDA_MPS_PIPE_DIRECTORY=/tmp/mps-pipe CUDA_MPS_LOG_DIRECTORY=/tmp/mps-log
  mkdir -p "$CUDA_MPS_PIPE_DIRECTORY" "$CUDA_MPS_LOG_DIRECTORY"
  if nvidia-cuda-mps-control -d && timeout 30 python -c "import cupy; assert float(cupy.ones(4).sum()) == 4"; then
    log "MPS on"
  else
    echo quit | nvidia-cuda-mps-control 2>/dev/null; unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY
    log "MPS unavailable: processes time-share the GPU"
  fi
fi

# The queue: "dataset method seed", in priority order (rows with no trials yet first; for CIFAR
# seed 0 of every rule before seed 1, so a cut-off campaign still covers every rule).
JOBS="$WORK/jobs.txt"
{
  for m in bp-tuned bp fa kp sdfa drtp ekdaa-signum-release; do
    n=3; [[ $m == bp-tuned || $m == ekdaa-signum-release ]] && n=5
    for s in $(seq 0 $(( n - 1 ))); do echo "fashion-mnist $m $s"; done
  done
  for s in 0 1 2; do
    for m in ekdaa bp fa kp dfa sdfa drtp bp-fc lra-e ekdaa-tuned bp-tuned ekdaa-signum-release; do
      echo "cifar10 $m $s"
    done
  done
  for s in 0 1 2 3 4; do echo "fashion-mnist ekdaa-tuned $s"; done
  for s in 0 1 2 3 4; do echo "fashion-mnist ekdaa-signum-tuned $s"; done
} > "$JOBS"
log "$(wc -l < "$JOBS") jobs queued"

job() {  # job DATASET METHOD SEED: one trial, cut off at the campaign's deadline
  local left=$(( END - $(date +%s) ))
  (( left > 5 )) || return 0
  timeout --signal=TERM --kill-after=5 "$left" python -P -m ekdaa_cuda.cli reproduce table2 --dataset "$1" \
    --methods "$2" --seeds "$3" --epochs "$EPOCHS" --backend "$BACKEND" --out "$WORK/$1" --no-progress ${TABLE2_ARGS:-} \
    > "$WORK/logs/$1-$2-$3.log" 2>&1
  rc=$?  # before the echo: its $(date) would reset $?
  echo "[job $(date +%T)] $1 $2 seed $3: rc=$rc" >> "$LOG"
}
export -f job
export END EPOCHS BACKEND WORK LOG TABLE2_ARGS

( while sleep 30; do pack; done ) &
PACKER=$!
xargs -P "$PARALLEL" -L 1 bash -c 'job "$@"' _ < "$JOBS"
kill "$PACKER" 2>/dev/null
[[ -n ${CUDA_MPS_PIPE_DIRECTORY:-} ]] && echo quit | nvidia-cuda-mps-control
log "done: $(grep -c 'rc=0' "$LOG") jobs finished, $(grep -c 'rc=' "$LOG") ended"
pack

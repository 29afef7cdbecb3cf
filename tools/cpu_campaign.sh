#!/usr/bin/env bash
# Runs `ekdaa-cuda reproduce table2` jobs ("<setting> <seed>" each) on the CPU in the background:
# NumPy backend, one BLAS thread per job, PARALLEL jobs at a time (default: all), each job's output
# in OUT/logs/<setting>-<seed>.log and a line per finished job in OUT/search.log. Resumable: a
# finished run is read back, an interrupted one resumes from its checkpoint. Run it from anywhere
# against a clone of the code, so edits to the working tree do not reach running jobs (PY must not
# have another checkout installed: the script checks that the jobs import CODE's package):
#   CODE=/path/to/clone OUT=results/<folder> setsid bash tools/cpu_campaign.sh "bp-tuned-dropout 0" "bp-tuned-dropout 1" &
# then tabulate: ekdaa-cuda reproduce table2 --dataset DATASET --methods ... --trials N --epochs EPOCHS --out OUT
# Each setsid starts a new scheduler autogroup, and Linux shares the CPU between autogroups before
# it shares it between their processes (NICE only orders jobs within one campaign): a campaign of
# three jobs beside two single runs, each started with its own setsid, gets 1/3 of the CPU, not 3/5.
# Start everything through one campaign, or weight a group: echo 19 > /proc/<pid>/autogroup.
set -u
CODE=${CODE:?clone of the code}; OUT=$(realpath "${OUT:?output folder}")
export PYTHONPATH=$CODE PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
export OUT PY=${PY:-python} DATASET=${DATASET:-fashion-mnist} EPOCHS=${EPOCHS:-20} NICE=${NICE:-5}
(( $# )) || { echo "usage: CODE=... OUT=... $0 '<setting> <seed>' ..." >&2; exit 2; }
# An editable install's import hook wins over PYTHONPATH: make sure the jobs really run CODE.
where=$(cd /tmp && "$PY" -c 'import ekdaa_cuda; print(ekdaa_cuda.__file__)') || exit 2
[[ $where == "$(realpath "$CODE")"/* ]] || { echo "$PY imports ekdaa_cuda from $where, not from CODE=$CODE" \
  "(an editable install of another checkout takes precedence over PYTHONPATH): use a Python environment" \
  "without ekdaa_cuda installed, or install CODE into it" >&2; exit 2; }
mkdir -p "$OUT/logs"
job() {
  nice -n "$NICE" "$PY" -m ekdaa_cuda.cli reproduce table2 --dataset "$DATASET" --methods "$1" --seeds "$2" \
    --epochs "$EPOCHS" --backend numpy --out "$OUT" --no-progress > "$OUT/logs/$1-$2.log" 2>&1
  rc=$?  # before the echo: its $(date) would reset $?
  echo "[$(date -u +%FT%TZ)] $1 seed $2: rc=$rc" >> "$OUT/search.log"
}
export -f job
cd "$CODE" && printf '%s\n' "$@" | xargs -P "${PARALLEL:-$#}" -L 1 bash -c 'job "$@"' _

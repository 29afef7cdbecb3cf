#!/usr/bin/env bash
# Device check for the CUDA backend (issue "CUDA backend"): build, GPU tests, compute-sanitizer,
# a short benchmark and a 10-epoch Fashion-MNIST run, with a JSON report and raw logs in OUT.
#
#   EKDAA_COMMIT=$(git rev-parse HEAD) bash bench/device_check.sh "$OUT"
#
# Expects Fashion-MNIST under ./device_data/fashion-mnist (copy /usr/share/datasets/fashion-mnist
# there and name device_data in the device tool's `carry`). Every stage has its own time limit
# and a failing stage does not stop the others, so the report always gets written. The limits add
# up to under 600 s, one device call.
set -uo pipefail
OUT=${1:?usage: device_check.sh OUT_DIR}
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
export EKDAA_DATA="$PWD/device_data" PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1
export EKDAA_CUDA_ARCHITECTURES=${EKDAA_CUDA_ARCHITECTURES:-90-real}
log() { echo "[device_check $(date +%T)] $*" | tee -a "$OUT/check.log"; }

nvidia-smi -L > "$OUT/nvidia-smi.txt" 2>&1; nvidia-smi >> "$OUT/nvidia-smi.txt" 2>&1
log "building (archs $EKDAA_CUDA_ARCHITECTURES)"
timeout 200 python -m pip install --no-build-isolation --no-deps . > "$OUT/build.log" 2>&1; build_rc=$?
log "build rc=$build_rc"

# `python -P`: without it the repository root is first on sys.path, so the source folder (which
# has no _C) shadows the installed package and every GPU test skips as "extension not built".
log "GPU tests"
timeout 120 python -P -m pytest tests/gpu -v -m gpu -p no:cacheprovider --junitxml="$OUT/pytest.xml" \
  > "$OUT/pytest-gpu.log" 2>&1; tests_rc=$?
log "pytest rc=$tests_rc"

log "compute-sanitizer memcheck + racecheck on the kernel tests"
: > "$OUT/sanitizer.log"
for tool in memcheck racecheck; do
  echo "=== $tool ===" >> "$OUT/sanitizer.log"
  timeout 50 compute-sanitizer --tool "$tool" --target-processes all \
    python -P -m pytest tests/gpu/test_ops_conv.py tests/gpu/test_ops_fc.py tests/gpu/test_ops_optim.py -x -q \
    -p no:cacheprovider -k "not bad_input" >> "$OUT/sanitizer.log" 2>&1
  echo "=== $tool rc=$? ===" >> "$OUT/sanitizer.log"
done

log "benchmark: one update, batch 50"
BENCH=/tmp/ekdaa-bench.jsonl RUN=/tmp/ekdaa-run  # outside OUT: the device tool returns at most 8 files
rm -rf "$BENCH" "$RUN"
for preset in fmnist cifar; do
  for rule in ekdaa bp; do
    timeout 12 python bench/bench_update.py --preset $preset --rule $rule --json "$BENCH" >> "$OUT/check.log" 2>&1
  done
done

log "training: fmnist preset, paper settings, 10 epochs"
timeout 120 ekdaa-cuda train --preset fmnist --epochs 10 --backend cuda --no-progress --out "$RUN" \
  > "$OUT/train.log" 2>&1; train_rc=$?
log "train rc=$train_rc"

python - "$OUT" "$BENCH" "$RUN" "$build_rc" "$tests_rc" "$train_rc" <<'PY'
import json, os, re, sys, datetime, xml.etree.ElementTree as ET
out, bench_file, run, build_rc, tests_rc, train_rc = *sys.argv[1:4], *map(int, sys.argv[4:])
card = open(f"{out}/nvidia-smi.txt").read().splitlines()[0] if os.path.exists(f"{out}/nvidia-smi.txt") else "?"
tests = {"passed": 0, "failed": 0, "skipped": 0, "errors": 0}
if os.path.exists(f"{out}/pytest.xml"):
    root = ET.parse(f"{out}/pytest.xml").getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    total, fail, err, skip = (int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped"))
    tests = {"passed": total - fail - err - skip, "failed": fail, "errors": err, "skipped": skip}
san = open(f"{out}/sanitizer.log").read()
counts = {}
for tool in ("memcheck", "racecheck"):
    part = san.split(f"=== {tool} ===")[-1].split(f"=== {tool} rc=")[0]
    found = [int(n) for n in re.findall(r"ERROR SUMMARY: (\d+) error", part)]
    counts[f"{tool}_errors"] = sum(found) if found else None  # None: the tool did not report
bench = [json.loads(line) for line in open(bench_file)] if os.path.exists(bench_file) else []
metrics = f"{run}/metrics.json"
history = json.load(open(metrics))["history"] if os.path.exists(metrics) else []
report = {"card": card, "commit": os.environ.get("EKDAA_COMMIT", "unknown"),
          "date": datetime.date.today().isoformat(), "build_rc": build_rc,
          "gpu_tests": tests, "sanitizer": counts, "bench": bench,
          "train_fmnist_10_epochs": {"rc": train_rc, "history": history}}
json.dump(report, open(f"{out}/report.json", "w"), indent=2)
print(json.dumps({k: report[k] for k in ("card", "gpu_tests", "sanitizer")}))
PY

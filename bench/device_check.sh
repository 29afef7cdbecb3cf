#!/usr/bin/env bash
# Device check of the CUDA backend (issues 8 and 10): build, the GPU tests, compute-sanitizer,
# a short benchmark and a 10-epoch Fashion-MNIST run, with a JSON report and raw logs in OUT.
#
#   EKDAA_COMMIT=$(git rev-parse HEAD) bash bench/device_check.sh "$OUT"
#
# Needs Fashion-MNIST under ./device_data/fashion-mnist (the device has no network: copy
# /usr/share/datasets/fashion-mnist there; device_data/ is git-ignored, so name it in the device
# tool's `carry`). Through the device tool: one `run` call, timeout_s 570.
#
# Every stage runs under its own time limit (they add up to 510 s) and is recorded in report.json
# as passed / failed / timed out, with its counts; a stage that did not finish never reports
# "0 errors". A failing stage does not stop the later ones, except that nothing runs on the GPU
# when the extension _C is unusable after the build. Exit status 0 only when every stage passed,
# at least one GPU test passed, and no test failed.
#
# Stages: build (170 s) | GPU tests, `--device cuda`, EKDAA_SYNC_LAUNCHES=1 so a fault is reported
# by the op that caused it (75 s) | compute-sanitizer memcheck (45 s), racecheck (40 s), synccheck
# (30 s), initcheck (40 s) on the kernel tests with CuPy's memory pool off (EKDAA_NO_CUPY_POOL=1:
# every array is its own cudaMalloc, so an overrun inside a pooled block is seen) | benchmark, one
# update at batch 50, EKDAA and BP (2 x 10 s) | training: fmnist, 10 epochs, Adam 1e-3, cosine (90 s).
# OUT gets 7 files: check.log build.log pytest-gpu.log pytest.xml sanitizer.log train.log report.json.
set -uo pipefail
OUT=${1:?usage: device_check.sh OUT_DIR}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
cd "$(dirname "$0")/.."
export EKDAA_DATA="$PWD/device_data" PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1
export EKDAA_CUDA_ARCHITECTURES=${EKDAA_CUDA_ARCHITECTURES:-90-real}
STAGES="$OUT/.stages.tsv"  # name, rc, seconds, limit (one line per stage; folded into report.json)
: > "$STAGES"
: > "$OUT/check.log"
log() { echo "[device_check $(date +%T)] $*" | tee -a "$OUT/check.log"; }
stage() {  # stage NAME LIMIT_S LOGFILE CMD...: run under a time limit, append output to LOGFILE
  local name=$1 limit=$2 logfile=$3 t0 rc
  shift 3
  log "$name: start (limit ${limit}s)"
  t0=$(date +%s)
  timeout --signal=TERM --kill-after=5 "$limit" "$@" >> "$logfile" 2>&1
  rc=$?
  printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$(( $(date +%s) - t0 ))" "$limit" >> "$STAGES"
  log "$name: rc=$rc$( ((rc == 124 || rc == 137)) && echo ' (timed out)')"
}

{ nvidia-smi -L; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; nvcc --version | tail -2; } \
  >> "$OUT/check.log" 2>&1
: > "$OUT/build.log"
stage build 170 "$OUT/build.log" python -m pip install --no-build-isolation --no-deps .

# `python -P` / `cd /`: the installed package, not the source folder (which has no _C), is imported.
usable=0
(cd / && python -c "import sys, ekdaa_cuda as e; print('cuda:', e.cuda_status()); print('cuda-sim:', e.sim_status());
sys.exit(not e.cuda_available())") >> "$OUT/check.log" 2>&1 && usable=1
log "_C usable: $usable"
: > "$OUT/pytest-gpu.log"
: > "$OUT/sanitizer.log"
: > "$OUT/train.log"
KERNEL_TESTS=(tests/gpu/test_ops_conv.py tests/gpu/test_ops_fc.py tests/gpu/test_ops_optim.py)
if (( usable )); then
  stage gpu_tests 75 "$OUT/pytest-gpu.log" env EKDAA_SYNC_LAUNCHES=1 python -P -m pytest tests/gpu --device cuda -v \
    -p no:cacheprovider --junitxml="$OUT/pytest.xml"
  for tool in memcheck racecheck synccheck initcheck; do
    case $tool in memcheck) limit=45 ;; racecheck) limit=40 ;; synccheck) limit=30 ;; initcheck) limit=40 ;; esac
    echo "=== $tool ===" >> "$OUT/sanitizer.log"
    stage "$tool" "$limit" "$OUT/sanitizer.log" env EKDAA_NO_CUPY_POOL=1 compute-sanitizer --tool "$tool" \
      --target-processes all python -P -m pytest "${KERNEL_TESTS[@]}" --device cuda -v -p no:cacheprovider \
      -k "not layer_sized and not launcher_checks"
    echo "=== end $tool ===" >> "$OUT/sanitizer.log"
  done
  BENCH=/tmp/ekdaa-bench.jsonl
  rm -f "$BENCH"
  for rule in ekdaa bp; do
    stage "bench_$rule" 10 "$OUT/check.log" python -P bench/bench_update.py --preset fmnist --rule "$rule" \
      --json "$BENCH"
  done
  RUN=/tmp/ekdaa-run
  rm -rf "$RUN"
  stage train 90 "$OUT/train.log" ekdaa-cuda train --preset fmnist --epochs 10 --backend cuda --optimizer adam \
    --lr 1e-3 --schedule cosine --no-progress --out "$RUN"
else
  log "ekdaa_cuda._C is not usable after the build: no GPU stage runs (see build.log and the status above)"
fi

python - "$OUT" "$STAGES" "${BENCH:-/nonexistent}" "${RUN:-/nonexistent}" "$usable" <<'PY'
import datetime, json, os, re, subprocess, sys, xml.etree.ElementTree as ET

out, stages_file, bench_file, run, usable = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
read = lambda p: open(p, errors="replace").read() if os.path.exists(p) else ""


def status(rc):
    return "passed" if rc == 0 else "timed out" if rc in (124, 137) else "failed"


def test_counts(text):
    """Per-test outcomes from `pytest -v` lines: exact even when the run was cut off."""
    return {k: len(re.findall(rf"^\S+::.*? {k.upper()}\b", text, re.M)) for k in ("passed", "failed", "skipped", "error")}


stages = {}
for line in read(stages_file).splitlines():
    name, rc, secs, limit = line.split("\t")
    stages[name] = {"status": status(int(rc)), "rc": int(rc), "seconds": int(secs), "limit_s": int(limit)}

gpu = stages.get("gpu_tests")
if gpu is not None:
    counts = test_counts(read(f"{out}/pytest-gpu.log"))
    if os.path.exists(f"{out}/pytest.xml"):  # complete runs: junit's totals
        root = ET.parse(f"{out}/pytest.xml").getroot()
        suite = root if root.tag == "testsuite" else root.find("testsuite")
        total, fail, err, skip = (int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped"))
        counts = {"passed": total - fail - err - skip, "failed": fail, "skipped": skip, "error": err}
    gpu["tests"] = counts
    if counts["passed"] == 0 and gpu["status"] == "passed":
        gpu["status"] = "failed"  # a run where nothing passed checks nothing
        gpu["why"] = "zero GPU tests passed"

san = read(f"{out}/sanitizer.log")
for tool in ("memcheck", "racecheck", "synccheck", "initcheck"):
    if tool not in stages:
        continue
    part = san.split(f"=== {tool} ===")[-1].split(f"=== end {tool} ===")[0]
    # memcheck/synccheck/initcheck end with "ERROR SUMMARY: N errors", racecheck with
    # "RACECHECK SUMMARY: N hazards displayed (E errors, W warnings)": every hazard counts
    found = [int(errors or hazards) for errors, hazards in
             re.findall(r"ERROR SUMMARY: (\d+) error|RACECHECK SUMMARY: (\d+) hazard", part)]
    st = stages[tool]
    st["tests"] = test_counts(part)
    # only a finished run has a summary; a cut-off one has no error count at all
    st["errors"] = sum(found) if found and st["status"] != "timed out" else None
    if st["errors"]:
        st["status"] = "failed"
    elif st["status"] == "passed" and not found:
        st["status"], st["why"] = "failed", "no ERROR/RACECHECK SUMMARY printed"

bench = [json.loads(x) for x in read(bench_file).splitlines() if x.strip()]
history = json.load(open(f"{run}/metrics.json"))["history"] if os.path.exists(f"{run}/metrics.json") else []
if "train" in stages:
    stages["train"]["epochs_done"] = len(history)
    stages["train"]["final_test_accuracy"] = history[-1].get("test_accuracy") if history else None
    if stages["train"]["status"] == "passed" and len(history) < 10:
        stages["train"]["status"], stages["train"]["why"] = "failed", "metrics.json missing or incomplete"


def cmd(*args):
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=30).stdout.strip()
    except Exception as exc:
        return f"unavailable: {exc}"


versions = {"driver": cmd("nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"),
            "nvcc": cmd("nvcc", "--version").splitlines()[-1:] or None}
probe = ("import json, ekdaa_cuda as e\nv = {}\ntry:\n    from ekdaa_cuda import _C\n"
         "    v['cuda_runtime_in_C'] = _C.runtime_version(); v['cuda_driver_api'] = _C.driver_version()\n"
         "except Exception as x:\n    v['C'] = repr(x)\ntry:\n    import cupy\n    v['cupy'] = cupy.__version__\n"
         "    v['cupy_cuda_runtime'] = cupy.cuda.runtime.runtimeGetVersion()\nexcept Exception as x:\n"
         "    v['cupy'] = repr(x)\nprint(json.dumps(v))")
try:
    versions.update(json.loads(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                                              timeout=60, cwd="/").stdout))
except Exception as exc:
    versions["probe"] = repr(exc)

card = read(f"{out}/check.log").split("\n")[0] or "?"
ok = (usable and all(s["status"] == "passed" for s in stages.values())
      and gpu is not None and gpu["tests"]["passed"] > 0 and gpu["tests"]["failed"] == 0)
report = {"ok": bool(ok), "card": card, "commit": os.environ.get("EKDAA_COMMIT", "unknown"),
          "date": datetime.date.today().isoformat(), "versions": versions, "c_usable": bool(usable),
          "stages": stages, "bench": bench, "train_fmnist_10_epochs_adam_cosine": {"history": history}}
json.dump(report, open(f"{out}/report.json", "w"), indent=2)
print(json.dumps({"ok": report["ok"], "stages": {k: v["status"] for k, v in stages.items()}}))
sys.exit(0 if ok else 1)
PY
rc=$?
rm -f "$STAGES"
exit $rc

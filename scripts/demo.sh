#!/usr/bin/env bash
# The main job, end to end on this machine: installs what is missing, builds,
# starts care-server (SQLite in a temporary or given directory) and one
# care-worker on loopback, submits a conversion with carectl, shows its live
# progress, prints the report and shuts everything down cleanly.
#
#   scripts/demo.sh                       synthetic model (generated here)
#   scripts/demo.sh MODEL [CALIB_DATA]    a model directory or hf://org/name;
#                                         CALIB_DATA (.txt/.jsonl/.u16/.u32)
#                                         is required unless MODEL has
#                                         calibration text beside it
# Environment: CARE_DEMO_DIR (work directory, default a new /tmp dir, kept),
#   KV_SAVE (fraction of the KV cache saved, default 0.5), BUILD_DIR (build).
#
# Without arguments the input is a synthetic Llama-style checkpoint written
# by the project's own generator (care-synth --preset demo): random weights
# with structure (a few outlier hidden channels and correlated directions),
# so CARE's covariance-aware factorization and plain SVD differ visibly, and
# a seeded Markov token stream over its vocabulary. It is not a trained
# model: its perplexities show the pipeline working, not language quality;
# compare the activation errors.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
build=${BUILD_DIR:-build}
kv_save=${KV_SAVE:-0.5}

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "dependencies and build"
scripts/install-deps.sh
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$repo}
if [ ! -f "$build/CMakeCache.txt" ]; then
  gen=(); command -v ninja >/dev/null && gen=(-G Ninja)
  cmake -S . -B "$build" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release >/dev/null
fi
cmake --build "$build" -j "$(nproc)" --target care-server care-worker \
  care-worker-service carectl care-synth

dir=${CARE_DEMO_DIR:-$(mktemp -d /tmp/care-demo.XXXXXX)}
mkdir -p "$dir"/{models,data,outputs,logs}
dir=$(cd "$dir" && pwd -P)
pids=()
shutdown() {
  # SIGTERM: the worker releases its lease, the server drains and closes the
  # database cleanly.
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait "${pids[@]}" 2>/dev/null || true
}
trap shutdown EXIT

if [ $# -ge 1 ]; then
  model=$1
  calib=${2:-}
  if [ -z "$calib" ]; then
    echo "demo: give calibration data as the second argument" >&2
    exit 2
  fi
  calib=$(realpath "$calib")
  model_root=$dir/models
  [[ $model == hf://* ]] || { model=$(realpath "$model"); model_root=$(dirname "$model"); }
  data_root=$(dirname "$calib")
else
  say "synthetic model (care-synth --preset demo)"
  model=$dir/models/demo-llama
  calib=$dir/data/demo-tokens.u32
  if [ ! -d "$model" ]; then
    "$build/bench/engine/care-synth" --preset demo --out "$model" \
      --tokens-out "$calib" --tokens 200000 --seed 1
  fi
  model_root=$dir/models
  data_root=$dir/data
fi
echo "model: $model"
echo "calibration/evaluation data: $calib"

say "starting care-server and care-worker on loopback"
head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$dir/client.token"
head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$dir/worker.token"
"$build/server/care-server" --listen=127.0.0.1:0 --metrics-listen=127.0.0.1:0 \
  --db="$dir/jobs.db" --client-token-file="$dir/client.token" \
  --worker-token-file="$dir/worker.token" --model-root="$model_root" \
  --data-root="$data_root" --output-root="$dir/outputs" \
  >"$dir/logs/server.out" 2>"$dir/logs/server.log" &
pids+=($!)
for _ in $(seq 1 300); do
  grep -q "listening grpc=" "$dir/logs/server.out" 2>/dev/null && break
  sleep 0.1
done
listening=$(grep -m1 "listening grpc=" "$dir/logs/server.out") || {
  echo "demo: care-server did not start; see $dir/logs/server.log" >&2
  exit 1
}
grpc=$(sed -n 's/.*grpc=\([^ ]*\).*/\1/p' <<<"$listening")
echo "care-server: $listening (database $dir/jobs.db)"
"$build/worker/cli/care-worker" serve --server="$grpc" \
  --token-file="$dir/worker.token" --work-dir="$dir/work" \
  --metrics-listen=127.0.0.1:0 >"$dir/logs/worker.log" 2>&1 &
pids+=($!)
echo "care-worker: serving $grpc (log $dir/logs/worker.log)"

say "submitting: save $(awk "BEGIN{print $kv_save*100}")% of the KV cache with CARE"
out=$dir/outputs/$(basename "${model#hf://}" | tr '/@' '--')-mla-$(date +%s)
export CARE_SERVER=$grpc CARE_TOKEN_FILE=$dir/client.token
job=$("$build/client/carectl" submit --quiet --model="$model" --out="$out" \
  --kv-save="$kv_save" --method=care --allocation=auto --calib="$calib" \
  --calib-samples=256 --calib-seq-len=32 --eval="$calib" --eval-seq-len=256 \
  --eval-windows=8 --label=source=demo)
echo "job: $job"
status=0
"$build/client/carectl" watch "$job" || status=$?

say "report"
"$build/client/carectl" get "$job"
[ $status -eq 0 ] || { echo "work directory (kept): $dir"; exit $status; }

say "the same budget with plain SVD of the weights (no calibration data)"
svd_job=$("$build/client/carectl" submit --quiet --model="$model" \
  --out="$out-svd" --kv-save="$kv_save" --method=svd --allocation=uniform \
  --calib="$calib" --calib-samples=256 --calib-seq-len=32 --eval="$calib" \
  --eval-seq-len=256 --eval-windows=8 --label=source=demo)
"$build/client/carectl" watch --plain "$svd_job" >/dev/null || true
for j in "$job" "$svd_job"; do
  "$build/client/carectl" get --output json "$j" >"$dir/$j.json"
done
python3 - "$dir/$job.json" "$dir/$svd_job.json" <<'PY'
import json, sys
print(f"{'method':<8} {'ppl before':>11} {'ppl after':>11} "
      f"{'mean K err':>11} {'mean V err':>11}")
for path in sys.argv[1:]:
    job = json.load(open(path))
    r = job.get("report", {})
    layers = r.get("layers", [])
    def mean(key):
        return sum(l.get(key, 0) for l in layers) / max(len(layers), 1)
    method = job["spec"]["method"].replace("METHOD_", "").lower()
    print(f"{method:<8} {r['original']['ppl']:>11.2f} "
          f"{r['converted']['ppl']:>11.2f} {mean('kRelativeError'):>11.5f} "
          f"{mean('vRelativeError'):>11.5f}")
PY
echo
echo "converted checkpoint: $out"
echo "report JSON: $out/care_report.json"
echo "work directory (kept): $dir"

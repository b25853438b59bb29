#!/usr/bin/env bash
# The main job, end to end on this machine: installs what is missing, builds,
# starts care-server (SQLite in a temporary or given directory) and one
# care-worker on loopback, converts a model with carectl at one or more KV
# budgets with plain SVD, CARE (uniform ranks) and CARE with `auto` rank
# allocation, shows the first conversion's live progress, prints the
# perplexities side by side and the paths of the HTML reports, and shuts
# everything down cleanly.
#
#   scripts/demo.sh                       stories260K (a real trained model,
#                                         shipped in examples/) on TinyStories
#   scripts/demo.sh --synthetic           a synthetic model generated here
#   scripts/demo.sh MODEL CALIB_DATA      a model directory or hf://org/name;
#                                         CALIB_DATA (.txt/.jsonl/.u16/.u32)
#                                         also serves as evaluation text
# Environment: CARE_DEMO_DIR (work directory, default a new /tmp dir, kept),
#   KV_SAVE (fractions of the KV cache saved, space-separated; default
#   "0.5 0.75" for stories260K, "0.5" otherwise), BUILD_DIR (build).
#
# The default protocol (docs/deploy.md): examples/tinystories is one text
# file of 218,454 tokens; calibration draws 256 windows x 32 tokens from its
# first 90 % (the last tenth of that is the held-out slice `auto` scores
# on), evaluation scores 64 plain windows x 256 tokens from token 196,608.
#
# --synthetic: a Llama-style checkpoint written by the project's own
# generator (care-synth --preset demo), random weights with structure and a
# seeded Markov token stream. It is not a trained model: its perplexities
# show the pipeline working, not language quality.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
build=${BUILD_DIR:-build}

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

mode=stories
if [ "${1:-}" = "--synthetic" ]; then
  mode=synthetic
  shift
elif [ $# -ge 1 ]; then
  mode=custom
  if [ $# -lt 2 ]; then
    echo "demo: give calibration data as the second argument" >&2
    exit 2
  fi
fi
[ $# -le 2 ] || { echo "demo: too many arguments" >&2; exit 2; }
if [ "$mode" = stories ]; then
  kv_saves=${KV_SAVE:-0.5 0.75}
else
  kv_saves=${KV_SAVE:-0.5}
fi

say "dependencies and build"
scripts/install-deps.sh
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$repo}
if [ ! -f "$build/CMakeCache.txt" ]; then
  gen=(); command -v ninja >/dev/null && gen=(-G Ninja)
  cmake -S . -B "$build" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release >/dev/null
fi
targets=(care-server care-worker care-worker-service carectl)
[ "$mode" = synthetic ] && targets+=(care-synth)
cmake --build "$build" -j "$(nproc)" --target "${targets[@]}"

dir=${CARE_DEMO_DIR:-$(mktemp -d /tmp/care-demo.XXXXXX)}
mkdir -p "$dir"/{models,data,outputs,logs,reports}
dir=$(cd "$dir" && pwd -P)
pids=()
shutdown() {
  # SIGTERM: the worker releases its lease, the server drains and closes the
  # database cleanly.
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait "${pids[@]}" 2>/dev/null || true
}
trap shutdown EXIT

eval_windows=64
case $mode in
  stories)
    say "stories260K (examples/stories260K) on TinyStories text"
    model=$repo/examples/stories260K
    calib=$repo/examples/tinystories/tinystories_excerpt.txt
    model_root=$repo/examples
    data_root=$repo/examples
    ;;
  synthetic)
    say "synthetic model (care-synth --preset demo)"
    model=$dir/models/demo-llama
    calib=$dir/data/demo-tokens.u32
    if [ ! -d "$model" ]; then
      "$build/bench/engine/care-synth" --preset demo --out "$model" \
        --tokens-out "$calib" --tokens 200000 --seed 1
    fi
    model_root=$dir/models
    data_root=$dir/data
    eval_windows=8
    ;;
  custom)
    model=$1
    calib=$(realpath "$2")
    model_root=$dir/models
    [[ $model == hf://* ]] || { model=$(realpath "$model"); model_root=$(dirname "$model"); }
    data_root=$(dirname "$calib")
    ;;
esac
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

export CARE_SERVER=$grpc CARE_TOKEN_FILE=$dir/client.token
name=$(basename "${model#hf://}" | tr '/@' '--')
stamp=$(date +%s)
# One job per (budget, method, allocation); the worker runs them in turn.
jobs=()
names=()  # kv<save>-<method>-<allocation>, for the report files
submit() {  # submit SAVE METHOD ALLOCATION
  local out=$dir/outputs/$name-mla-$1-$2-$3-$stamp
  "$build/client/carectl" submit --quiet --model="$model" --out="$out" \
    --kv-save="$1" --method="$2" --allocation="$3" --calib="$calib" \
    --calib-samples=256 --calib-seq-len=32 --eval="$calib" \
    --eval-seq-len=256 --eval-windows="$eval_windows" --heldout \
    --label=source=demo
}
say "submitting: KV save $kv_saves x {care auto, care uniform, plain svd}"
for save in $kv_saves; do
  for m in "care auto" "care uniform" "svd uniform"; do
    set -- $m
    jobs+=("$(submit "$save" "$1" "$2")")
    names+=("kv$save-$1-$2")
  done
done
printf '%s\n' "${jobs[@]}"

say "following ${jobs[0]} (care, auto, KV save ${kv_saves%% *})"
status=0
"$build/client/carectl" watch "${jobs[0]}" || status=$?
"$build/client/carectl" get "${jobs[0]}"
[ $status -eq 0 ] || { echo "work directory (kept): $dir"; exit $status; }

say "waiting for the other $((${#jobs[@]} - 1)) conversions"
for j in "${jobs[@]:1}"; do
  "$build/client/carectl" watch --plain "$j" >"$dir/logs/$j.watch" ||
    { echo "demo: job $j did not succeed:"; tail -n 5 "$dir/logs/$j.watch";
      echo "work directory (kept): $dir"; exit 1; }
done

say "results (perplexity on the same evaluation windows)"
for i in "${!jobs[@]}"; do
  j=${jobs[$i]}
  "$build/client/carectl" get --output json "$j" >"$dir/logs/$j.json"
  "$build/client/carectl" report "$j" --html "$dir/reports/${names[$i]}.html" \
    --json >"$dir/reports/${names[$i]}.json"
done
python3 - "$dir" "${jobs[@]}" -- "${names[@]}" <<'PY'
import json, sys
d = sys.argv[1]
sep = sys.argv.index("--")
ids, names = sys.argv[2:sep], sys.argv[sep + 1:]
rows = []
for j, name in zip(ids, names):
    job = json.load(open(f"{d}/logs/{j}.json"))
    r, spec = job["report"], job["spec"]
    rep = json.load(open(f"{d}/reports/{name}.json"))  # carectl report --json
    before, after = int(r["kvWidthBefore"]), int(r["kvWidthAfter"])
    alloc = rep["allocation"]
    if alloc == "auto":
        alloc = f"auto ({rep['allocation_chosen']})"
    def mean(key):  # held-out relative activation error over layers
        return sum(l[key] for l in rep["layers"]) / max(len(rep["layers"]), 1)
    rows.append((spec["kvBudget"]["kvSaveFraction"], rep["method"], alloc,
                 before, after, r["converted"]["ppl"],
                 mean("heldout_error_k"), mean("heldout_error_v")))
first = json.load(open(f"{d}/logs/{ids[0]}.json"))["report"]["original"]
print(f"original model: perplexity {first['ppl']:.2f} "
      f"({first['predictions']} predictions)")
print(f"{'KV save':>8}  {'KV width':<12} {'method':<7} {'allocation':<30} "
      f"{'perplexity':>10} {'K error':>8} {'V error':>8}")
for save, method, alloc, before, after, ppl, kerr, verr in rows:
    width = f"{before} -> {after}"
    print(f"{save * 100:>6.1f} %  {width:<12} {method:<7} {alloc:<30} "
          f"{ppl:>10.2f} {kerr:>8.4f} {verr:>8.4f}")
print("(K/V error: mean over layers of the held-out relative activation "
      "error |X(W - W')|^2 / |XW|^2)")
PY
echo
echo "HTML reports (carectl report JOB --html FILE):"
for i in "${!jobs[@]}"; do
  echo "  $dir/reports/${names[$i]}.html  (${jobs[$i]})"
done
echo "converted checkpoints (each with care_report.html and care_report.json):"
echo "  $dir/outputs/"
echo "work directory (kept): $dir"

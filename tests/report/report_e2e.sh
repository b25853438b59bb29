#!/usr/bin/env bash
# The HTML report end to end: care-server + one care-worker on loopback,
# real conversions of the stories260K fixture submitted with carectl, one
# per output layout (latent with auto allocation; deepseek-v3 with auto
# rope dim and freqfold); `carectl report` must return exactly the
# care_report.html and care_report.json the pipeline wrote beside each
# checkpoint, and each page must render in headless Chromium
# (check_report_page.py: no errors, one bar per layer, nothing wider than
# the page, a screenshot and a PDF kept in
# BUILD_DIR/test-artifacts/report/{latent,deepseek_v3}/).
# Usage: report_e2e.sh REPO_ROOT BUILD_DIR FIXTURES_DIR
set -euo pipefail
root=$1
build=$(cd "$2" && pwd -P)
# shellcheck source=../support/e2e.sh
. "$root/tests/support/e2e.sh"
fixtures=$(e2e_fixtures "$3")
artifacts=$build/test-artifacts/report
mkdir -p "$artifacts"

e2e_workdir care-report-e2e
e2e_start_server "$build" --model-root="$fixtures" --data-root="$fixtures" \
  --data-root="$root/tests/eval/testdata"
"$build/worker/cli/care-worker" serve --server="$grpc" \
  --token-file="$dir/worker.tokens" --worker-id=report-e2e \
  --metrics-listen=127.0.0.1:0 --lease-wait-ms=500 --threads=2 \
  >"$dir/worker.log" 2>&1 &
pids+=($!)

export CARE_SERVER=$grpc CARE_TOKEN_FILE=$dir/client.tokens
text=$fixtures/tinystories/tinystories_val_head.txt
out=$dir/out/stories-mla
dsv3=$dir/out/stories-dsv3
common=(--model="$fixtures/stories260K-hf" --calib="$text" --calib-samples=128
        --eval="$text" --eval-seq-len=256 --eval-windows=8)
# The latent job also scores a task and rolling perplexity: their results
# are the page's generic sections (tables of any further report field).
cat >"$dir/latent.yaml" <<EOF
evaluation:
  rolling_stride: 256
  tasks:
    - {name: stories, uri: $root/tests/eval/testdata/stories_which_context.jsonl, format: generic, limit: 32}
EOF
job=$("$build/client/carectl" submit --quiet -f "$dir/latent.yaml" \
  "${common[@]}" --out="$out" --kv-save=0.75 --allocation=auto) ||
  fail "submit"
job_dsv3=$("$build/client/carectl" submit --quiet "${common[@]}" \
  --out="$dsv3" --kv-save=0.5 --layout=deepseek-v3) || fail "submit deepseek-v3"
"$build/client/carectl" watch --plain "$job" >"$dir/watch.log" 2>&1 ||
  fail "job $job did not succeed"
"$build/client/carectl" watch --plain "$job_dsv3" >"$dir/watch_dsv3.log" 2>&1 ||
  fail "job $job_dsv3 (deepseek-v3) did not succeed"

# Each stored report is byte for byte what the pipeline wrote.
check_fetched() {  # JOB OUTPUT_DIR NAME
  "$build/client/carectl" report "$1" --html "$dir/$3.html" \
    >"$dir/report.log" || fail "carectl report --html ($3)"
  grep -q "^wrote $dir/$3.html" "$dir/report.log" || fail "no 'wrote' line"
  "$build/client/carectl" report "$1" --json >"$dir/$3.json" ||
    fail "carectl report --json ($3)"
  cmp "$dir/$3.html" "$2/care_report.html" || fail "HTML differs ($3)"
  cmp "$dir/$3.json" "$2/care_report.json" || fail "JSON differs ($3)"
  "$build/client/carectl" get --output json "$1" | python3 -c '
import json, os, sys
r = json.load(sys.stdin)["report"]
assert int(r["reportHtmlBytes"]) == os.path.getsize(sys.argv[1]), r
assert int(r["reportJsonBytes"]) == os.path.getsize(sys.argv[2]), r
' "$2/care_report.html" "$2/care_report.json" || fail "report sizes in get ($3)"
}
check_fetched "$job" "$out" latent
python3 - "$out/care_report.json" <<'PY' || fail "latent report: tasks, rolling"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["tasks"][0]["name"] == "stories" and r["tasks"][0]["items"] == 32, r
assert r["rolling"]["stride"] == 256, r
PY
check_fetched "$job_dsv3" "$dsv3" deepseek_v3
# The deepseek-v3 job's API report carries one entry per layer with the
# rope split's numbers (layer_reports.h).
"$build/client/carectl" get --output json "$job_dsv3" | python3 -c '
import json, sys
r = json.load(sys.stdin)["report"]
assert r["outputLayout"] == "OUTPUT_LAYOUT_DEEPSEEK_V3", r
layers = r["layers"]
assert len(layers) == 5, layers
for l in layers:
    assert l["rankK"] == l["rankV"] == r["kvLoraRank"], l
    assert 0 < l["ropeEnergy"] <= 1 and "nopeScoreError" in l, l
    assert l["vRelativeError"] > 0, l
' || fail "deepseek-v3 per-layer report in get"
"$build/client/carectl" get "$job_dsv3" >"$dir/get_dsv3.txt" || fail "get"
grep -qE "^LAYER +RANK_K +RANK_V .* V_ENERGY +ROPE_ENERGY +NOPE_ERR$" \
  "$dir/get_dsv3.txt" || fail "carectl get: no rope split columns"
[ "$(grep -cE '^[0-4] +[0-9]+ +[0-9]+ ' "$dir/get_dsv3.txt")" -eq 5 ] ||
  fail "carectl get: want 5 layer rows"
# An unknown job is NOT_FOUND: exit 1 with the server's message.
set +e
"$build/client/carectl" report job-doesnotexist --json >/dev/null 2>"$dir/missing.log"
rc=$?
set -e
[ $rc -eq 1 ] || fail "report of an unknown job exited $rc, want 1"

status=0
for layout in latent deepseek_v3; do
  src=$out
  [ "$layout" = deepseek_v3 ] && src=$dsv3
  mkdir -p "$artifacts/$layout"
  cp "$src/care_report.html" "$src/care_report.json" "$artifacts/$layout/"
  python3 "$root/tests/report/check_report_page.py" \
    "$artifacts/$layout/care_report.html" \
    "$artifacts/$layout/care_report.json" "$artifacts/$layout" || status=$?
  [ $status -eq 0 ] || exit $status
done

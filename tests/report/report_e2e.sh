#!/usr/bin/env bash
# The HTML report end to end: care-server + one care-worker on loopback, a
# real conversion of the stories260K fixture (auto allocation) submitted
# with carectl; `carectl report` must return exactly the care_report.html
# and care_report.json the pipeline wrote beside the checkpoint, and the
# page must render in headless Chromium (check_report_page.py: no errors,
# one bar per layer, a screenshot and a PDF kept in
# BUILD_DIR/test-artifacts/report/).
# Usage: report_e2e.sh REPO_ROOT BUILD_DIR FIXTURES_DIR
set -euo pipefail
root=$1
build=$(cd "$2" && pwd -P)
if [ ! -f "$3/README.md" ]; then
  [ "${CARE_REQUIRE_FIXTURES:-0}" = 1 ] && { echo "FAIL: no fixtures at $3"; exit 1; }
  echo "SKIP: no fixtures at $3 (set CARE_FIXTURES)"
  exit 77
fi
fixtures=$(cd "$3" && pwd -P)
artifacts=$build/test-artifacts/report
mkdir -p "$artifacts"

dir=$(mktemp -d /tmp/care-report-e2e.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ "${keep:-0}" = 1 ]; then echo "logs kept in $dir"; else rm -rf "$dir"; fi
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; keep=1; tail -n 20 "$dir"/*.log >&2 || true; exit 1; }

token() { head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
token > "$dir/client.tokens"
token > "$dir/worker.tokens"
mkdir -p "$dir/out"
"$build/server/care-server" --listen=127.0.0.1:0 --metrics-listen=127.0.0.1:0 \
  --db="$dir/jobs.db" --client-token-file="$dir/client.tokens" \
  --worker-token-file="$dir/worker.tokens" --model-root="$fixtures" \
  --data-root="$fixtures" --output-root="$dir/out" --poll-interval-ms=200 \
  >"$dir/server.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 300); do
  grep -q "listening grpc=" "$dir/server.log" && break
  sleep 0.1
done
grpc=$(sed -n 's/.*listening grpc=\([^ ]*\).*/\1/p' "$dir/server.log" | head -1)
[ -n "$grpc" ] || fail "care-server did not start"
"$build/worker/cli/care-worker" serve --server="$grpc" \
  --token-file="$dir/worker.tokens" --worker-id=report-e2e \
  --metrics-listen=127.0.0.1:0 --lease-wait-ms=500 --threads=2 \
  >"$dir/worker.log" 2>&1 &
pids+=($!)

export CARE_SERVER=$grpc CARE_TOKEN_FILE=$dir/client.tokens
text=$fixtures/tinystories/tinystories_val_head.txt
out=$dir/out/stories-mla
job=$("$build/client/carectl" submit --quiet --model="$fixtures/stories260K-hf" \
  --out="$out" --kv-save=0.75 --allocation=auto --calib="$text" \
  --calib-samples=128 --eval="$text" --eval-seq-len=256 --eval-windows=8) ||
  fail "submit"
"$build/client/carectl" watch --plain "$job" >"$dir/watch.log" 2>&1 ||
  fail "job $job did not succeed"

# The stored report is byte for byte what the pipeline wrote.
"$build/client/carectl" report "$job" --html "$dir/fetched.html" \
  >"$dir/report.log" || fail "carectl report --html"
grep -q "^wrote $dir/fetched.html" "$dir/report.log" || fail "no 'wrote' line"
"$build/client/carectl" report "$job" --json >"$dir/fetched.json" ||
  fail "carectl report --json"
cmp "$dir/fetched.html" "$out/care_report.html" || fail "HTML differs"
cmp "$dir/fetched.json" "$out/care_report.json" || fail "JSON differs"
"$build/client/carectl" get --output json "$job" | python3 -c '
import json, os, sys
r = json.load(sys.stdin)["report"]
assert int(r["reportHtmlBytes"]) == os.path.getsize(sys.argv[1]), r
assert int(r["reportJsonBytes"]) == os.path.getsize(sys.argv[2]), r
' "$out/care_report.html" "$out/care_report.json" || fail "report sizes in get"
# An unknown job is NOT_FOUND: exit 1 with the server's message.
set +e
"$build/client/carectl" report job-doesnotexist --json >/dev/null 2>"$dir/missing.log"
rc=$?
set -e
[ $rc -eq 1 ] || fail "report of an unknown job exited $rc, want 1"

cp "$out/care_report.html" "$out/care_report.json" "$artifacts/"
python3 "$root/tests/report/check_report_page.py" "$artifacts/care_report.html" \
  "$artifacts/care_report.json" "$artifacts"

#!/usr/bin/env bash
# End to end with the real Prometheus: care-server + one care-worker on
# loopback, Prometheus (Debian's package) scraping them with the project's
# own scrape config and alert rules rewritten to local ports, one conversion
# of the stories260K fixture submitted with carectl; then Prometheus's HTTP
# API must return the expected series from both services with the expected
# values.
# Usage: prometheus_e2e.sh REPO_ROOT BUILD_DIR FIXTURES_DIR
set -euo pipefail
root=$1
build=$2
# shellcheck source=../support/e2e.sh
. "$root/tests/support/e2e.sh"
fixtures=$(e2e_fixtures "$3")
e2e_workdir care-prom-e2e
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
e2e_start_server "$build" --model-root="$fixtures" --data-root="$fixtures"

worker_metrics_port=$(free_port)
"$build/worker/cli/care-worker" serve --server="$grpc" \
  --token-file="$dir/worker.tokens" --worker-id=e2e-worker \
  --metrics-listen="127.0.0.1:$worker_metrics_port" --lease-wait-ms=500 \
  --threads=2 >"$dir/worker.log" 2>&1 &
pids+=($!)

# The project's scrape config and rules, pointed at the local ports.
prom_port=$(free_port)
python3 - "$root" "$dir" "$server_metrics" "127.0.0.1:$worker_metrics_port" <<'PY'
import sys, yaml
root, out, server, worker = sys.argv[1:]
cfg = yaml.safe_load(open(f"{root}/deploy/prometheus/prometheus.yml"))
cfg["global"]["scrape_interval"] = "1s"
cfg["global"]["evaluation_interval"] = "1s"
cfg["rule_files"] = [f"{root}/deploy/prometheus/alerts.yml"]
for job in cfg["scrape_configs"]:
    target = server if job["job_name"] == "care-server" else worker
    job["static_configs"] = [{"targets": [target]}]
yaml.safe_dump(cfg, open(f"{out}/prometheus.yml", "w"))
PY
prometheus --config.file="$dir/prometheus.yml" --storage.tsdb.path="$dir/tsdb" \
  --web.listen-address="127.0.0.1:$prom_port" >"$dir/prometheus.log" 2>&1 &
pids+=($!)

# One real conversion through the public API.
"$build/client/carectl" submit --server="$grpc" --token-file="$dir/client.tokens" \
  --model="$fixtures/stories260K-hf" --out="$dir/out/stories-mla" \
  --kv-save=0.5 --calib="$fixtures/tinystories/tinystories_val_head.txt" \
  --calib-samples=64 --eval="$fixtures/tinystories/tinystories_val_head.txt" \
  --eval-seq-len=256 --eval-windows=4 --wait --plain >"$dir/carectl.log" 2>&1 ||
  fail "carectl submit --wait exited $?"

# Prometheus must see the services' series with the expected values.
query() {
  curl -sf --get "http://127.0.0.1:$prom_port/api/v1/query" \
    --data-urlencode "query=$1" |
    python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else "none")'
}
expect() {  # expect QUERY VALUE: polls until Prometheus returns VALUE
  local got=none
  for _ in $(seq 1 60); do
    got=$(query "$1" || echo error)
    [ "$got" = "$2" ] && { echo "ok: $1 = $2"; return 0; }
    sleep 0.5
  done
  fail "$1: expected $2, got $got"
}
expect 'care_jobs_submitted_total' 1
expect 'care_jobs_finished_total{outcome="succeeded"}' 1
expect 'care_jobs_queued' 0
expect 'care_workers_connected' 1
expect 'care_job_perplexity_ratio_count' 1
expect 'care_worker_jobs_total{outcome="succeeded"}' 1
# Every job calibrates all 5 layers (the decomposition of a uniform job
# without held-out figures runs inside that pass).
expect 'care_worker_layers_processed_total{stage="calibrating"}' 5
expect 'up{job="care-server"}' 1
expect 'up{job="care-worker"}' 1
# The project's alert rules loaded and evaluate without errors.
rules=$(curl -sf "http://127.0.0.1:$prom_port/api/v1/rules")
python3 -c '
import json, sys
groups = json.loads(sys.argv[1])["data"]["groups"]
rules = [r for g in groups for r in g["rules"]]
bad = [r["name"] for r in rules if r.get("health") != "ok"]
assert len(rules) >= 4 and not bad, (len(rules), bad)
print("ok:", len(rules), "alert rules healthy")' "$rules" || fail "alert rules"

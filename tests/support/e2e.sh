# Shared by the shell end-to-end tests (source it; bash, set -euo pipefail):
# the fixtures check, a work directory whose processes die with the test, and
# a care-server on loopback with fresh client and worker tokens.

# e2e_fixtures DIR: prints DIR's absolute path; exits 77 (CTest SKIP) when
# the fixtures are absent, or fails when $CARE_REQUIRE_FIXTURES=1.
e2e_fixtures() {
  if [ ! -f "$1/README.md" ]; then
    [ "${CARE_REQUIRE_FIXTURES:-0}" = 1 ] && { echo "FAIL: no fixtures at $1" >&2; exit 1; }
    echo "SKIP: no fixtures at $1 (set CARE_FIXTURES)" >&2
    exit 77
  fi
  (cd "$1" && pwd -P)
}

# e2e_workdir PREFIX: sets $dir (removed at exit unless a check failed) and
# $pids (killed at exit); defines fail MESSAGE.
e2e_workdir() {
  dir=$(mktemp -d "/tmp/$1.XXXXXX")
  pids=()
  trap e2e_cleanup EXIT
}
e2e_cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ "${keep:-0}" = 1 ]; then echo "logs kept in $dir"; else rm -rf "$dir"; fi
}
fail() { echo "FAIL: $*" >&2; keep=1; tail -n 20 "$dir"/*.log >&2 || true; exit 1; }

e2e_token() { head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'; }

# e2e_start_server BUILD [care-server flags...]: writes $dir/client.tokens
# and $dir/worker.tokens, makes $dir/out, starts care-server on loopback
# (gRPC and metrics on free ports, database $dir/jobs.db, output root
# $dir/out) with the extra flags, and sets $grpc and $server_metrics.
e2e_start_server() {
  local build=$1; shift
  e2e_token > "$dir/client.tokens"
  e2e_token > "$dir/worker.tokens"
  mkdir -p "$dir/out"
  "$build/server/care-server" --listen=127.0.0.1:0 \
    --metrics-listen=127.0.0.1:0 --db="$dir/jobs.db" \
    --client-token-file="$dir/client.tokens" \
    --worker-token-file="$dir/worker.tokens" --output-root="$dir/out" \
    --poll-interval-ms=200 "$@" >"$dir/server.log" 2>&1 &
  pids+=($!)
  local line=""
  for _ in $(seq 1 300); do
    line=$(grep -m1 "listening grpc=" "$dir/server.log" 2>/dev/null || true)
    [ -n "$line" ] && break
    sleep 0.1
  done
  [ -n "$line" ] || fail "care-server did not start"
  grpc=$(sed -n 's/.*grpc=\([^ ]*\).*/\1/p' <<<"$line")
  server_metrics=$(sed -n 's/.*metrics=\([^ ]*\).*/\1/p' <<<"$line")
}

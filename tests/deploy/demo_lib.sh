# Shared by the demo tests (source it after setting $root and exporting
# BUILD_DIR): runs scripts/demo.sh in a fresh CARE_DEMO_DIR and checks what
# every demo run must show.

# demo_run NAME [demo.sh args...]: runs the demo with its log in $log;
# fails with the log's tail when it exits non-zero.
demo_run() {
  local name=$1; shift
  export CARE_DEMO_DIR
  CARE_DEMO_DIR=$(mktemp -d "/tmp/$name.XXXXXX")
  trap 'rm -rf "$CARE_DEMO_DIR"' EXIT
  log=$CARE_DEMO_DIR.log
  if ! "$root/scripts/demo.sh" "$@" >"$log" 2>&1; then
    tail -n 40 "$log"; echo "FAIL: demo.sh $* exited non-zero"; exit 1
  fi
}

# check REGEX: the log has a matching line.
check() {
  grep -qE "$1" "$log" || { tail -n 40 "$log"; echo "FAIL: no '$1'"; exit 1; }
}

# demo_check_reports N: N report pages were fetched with carectl report.
demo_check_reports() {
  local reports
  reports=$(sed -n 's#^  \(/.*/reports/kv[0-9.]*-[a-z]*-[a-z]*\.html\)  (job-.*)$#\1#p' "$log")
  [ "$(wc -l <<<"$reports")" -eq "$1" ] || { echo "FAIL: want $1 report paths"; exit 1; }
  for f in $reports; do
    grep -q '<svg class="chart" data-chart="ranks"' "$f" ||
      { echo "FAIL: $f is not a report page"; exit 1; }
  done
}

# demo_check_exited: no process of the demo outlived it; removes the log.
demo_check_exited() {
  sleep 1
  if pgrep -f "$CARE_DEMO_DIR" >/dev/null; then
    echo "FAIL: demo processes still running"; exit 1
  fi
  rm -f "$log"
}

#!/usr/bin/env bash
# Runs the README's main command (scripts/demo.sh) against this build and
# checks that the conversion succeeded, the report and the CARE-vs-SVD
# comparison were printed, the checkpoint was written, and no process of the
# demo outlived it.
# Usage: demo_e2e.sh REPO_ROOT BUILD_DIR
set -euo pipefail
root=$1
export BUILD_DIR=$2
export CARE_DEMO_DIR
CARE_DEMO_DIR=$(mktemp -d /tmp/care-demo-test.XXXXXX)
trap 'rm -rf "$CARE_DEMO_DIR"' EXIT
log=$CARE_DEMO_DIR.log
if ! "$root/scripts/demo.sh" >"$log" 2>&1; then
  tail -n 40 "$log"; echo "FAIL: demo.sh exited non-zero"; exit 1
fi
check() {
  grep -qE "$1" "$log" || { tail -n 40 "$log"; echo "FAIL: no '$1'"; exit 1; }
}
check "SUCCEEDED after"
check "^perplexity: +original [0-9.]+, converted [0-9.]+"
check "^kv width: +[0-9]+ -> [0-9]+ floats/token \(50.0% saved\)"
check "^LAYER +RANK_K +RANK_V"
check "^care +[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9.]+$"
check "^svd +[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9.]+$"
out=$(sed -n 's/^converted checkpoint: //p' "$log")
[ -f "$out/config.json" ] && [ -f "$out/care_report.json" ] ||
  { echo "FAIL: no checkpoint at '$out'"; exit 1; }
# CARE must beat plain SVD on activation error (the structured weights).
python3 - "$log" <<'PY'
import re, sys
rows = {m[0]: float(m[1]) for m in re.findall(
    r"^(care|svd) +\S+ +\S+ +(\S+) +\S+$", open(sys.argv[1]).read(), re.M)}
assert rows["care"] < rows["svd"] / 10, rows
print("care K error", rows["care"], "vs svd", rows["svd"])
PY
sleep 1
if pgrep -f "$CARE_DEMO_DIR" >/dev/null; then
  echo "FAIL: demo processes still running"; exit 1
fi
rm -f "$log"
echo "demo ok"

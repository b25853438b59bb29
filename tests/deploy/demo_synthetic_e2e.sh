#!/usr/bin/env bash
# Runs `scripts/demo.sh --synthetic` against this build: care-synth writes
# the demo preset (Llama, 4 layers, GQA 8/4, head_dim 32, vocabulary 4096)
# and a seeded Markov token stream, and the demo converts it through
# care-server, care-worker and carectl at 50 % KV save with plain SVD, CARE
# uniform and CARE auto. Checks: every conversion succeeded, the table has
# its three rows at 1024 -> 512 numbers per token, the original perplexity
# is the reference run's, CARE keeps it within 1 % and its held-out
# activation errors are far below plain SVD's (what the synthetic model can
# show: docs/deploy.md), every HTML report was fetched with carectl report,
# and no process of the demo outlived it.
# Usage: demo_synthetic_e2e.sh REPO_ROOT BUILD_DIR
set -euo pipefail
root=$1
export BUILD_DIR=$2
# shellcheck source=demo_lib.sh
. "$(dirname "$0")/demo_lib.sh"
unset KV_SAVE
demo_run care-demo-synth-test --synthetic
check "synthetic model \(care-synth --preset demo\)"
check "SUCCEEDED after"
check "^kv width: +1024 -> 512 floats/token \(50.0% saved\)"
check "^LAYER +RANK_K +RANK_V"
# The generated model and token stream are where the demo says.
python3 - "$CARE_DEMO_DIR" <<'PY'
import json, os, sys
d = sys.argv[1]
c = json.load(open(f"{d}/models/demo-llama/config.json"))
assert (c["num_hidden_layers"], c["num_attention_heads"],
        c["num_key_value_heads"], c["vocab_size"]) == (4, 8, 4, 4096), c
# --tokens 200000 as uint32.
assert os.path.getsize(f"{d}/data/demo-tokens.u32") == 4 * 200000
PY
python3 - "$log" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
m = re.search(r"^original model: perplexity ([0-9.]+) \((\d+) predictions\)$",
              text, re.M)
assert m, "no original perplexity line"
original = float(m.group(1))
# 8 evaluation windows x 256 tokens: 255 predictions each.
assert int(m.group(2)) == 8 * 255, m.group(2)
rows = re.findall(
    r"^ *([0-9.]+) % +1024 -> (\d+) +(\w+) +(uniform|auto \(\S+\)) +([0-9.]+)"
    r" +([0-9.]+) +([0-9.]+)$", text, re.M)
got = {(method, alloc.split()[0]): (float(ppl), float(k), float(v))
       for save, after, method, alloc, ppl, k, v in rows
       if save == "50.0" and after == "512"}
assert set(got) == {("svd", "uniform"), ("care", "uniform"),
                    ("care", "auto")}, rows
# Deterministic (seeded weights and stream; only float summation order
# varies with the thread count, far below these margins). Reference run:
# original 5784.38 (an untrained model, worse than uniform over 4096
# tokens); care auto 5789.56, care uniform 5791.32, svd 5723.83; mean
# held-out K/V error care ~0.002, svd ~0.2.
assert 5200 < original < 6400, original
# CARE keeps the activations, so the function: within 1 % of the original.
for key in (("care", "uniform"), ("care", "auto")):
    assert abs(got[key][0] / original - 1) < 0.01, (key, got[key], original)
assert got[("svd", "uniform")][0] > 1, got
# CARE minimises the activation error SVD ignores: at the same budget, at
# least ten times lower mean held-out K + V error (measured: ~100x).
care = sum(got[("care", "uniform")][1:])
svd = sum(got[("svd", "uniform")][1:])
assert 10 * care < svd, (care, svd)
print("synthetic demo table:", got, "original", original)
PY
demo_check_reports 3
demo_check_exited
echo "synthetic demo ok"

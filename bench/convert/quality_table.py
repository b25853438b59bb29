#!/usr/bin/env python3
"""Perplexity table for docs/quality.md: original vs converted models.

Runs `care-worker convert` for every model x KV budget x method/allocation
and prints a Markdown table (and, with --json, every report). Calibration
and evaluation come from disjoint parts of the same TinyStories text:
calibration windows from [0, 0.9) of the token stream (its last 10 % held
out for the per-layer errors and `auto`), evaluation windows from [0.9, 1).

  bench/convert/quality_table.py --worker build/worker/cli/care-worker \
      [--fixtures ../shared/fixtures] [--json results.json]

Only the Python standard library is used.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

MODELS = ["stories260K-hf", "tinygqa-hf"]
BUDGETS = [0.5, 0.75, 0.875]
# (column, method, allocation)
VARIANTS = [
    ("svd", "svd", "uniform"),
    ("asvd", "asvd", "uniform"),
    ("care-c", "care-c", "uniform"),
    ("care-uniform", "care", "uniform"),
    ("care-adjusted", "care", "adjusted"),
    ("care-auto", "care", "auto"),
]


def convert(args, model, save, method, allocation, workdir):
    out = os.path.join(workdir, f"{model}-{save}-{method}-{allocation}")
    report = out + ".json"
    text = os.path.join(args.fixtures, "tinystories", "tinystories_val_head.txt")
    cmd = [
        args.worker, "convert", "--model", os.path.join(args.fixtures, model),
        "--out", out, "--kv-save", str(save), "--method", method,
        "--allocation", allocation, "--calib", text,
        "--calib-samples", str(args.calib_samples),
        "--calib-seq-len", str(args.calib_seq_len), "--seed", "0",
        "--eval", text, "--eval-seq-len", str(args.eval_seq_len),
        "--eval-windows", str(args.eval_windows), "--report", report,
        "--quiet",
    ]
    subprocess.run(cmd, check=True)
    with open(report) as f:
        return json.load(f)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    repo = os.path.dirname(os.path.dirname(here))
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--worker",
                   default=os.path.join(repo, "build", "worker", "cli",
                                        "care-worker"))
    p.add_argument("--fixtures",
                   default=os.environ.get(
                       "CARE_FIXTURES",
                       os.path.join(os.path.dirname(repo), "shared",
                                    "fixtures")))
    p.add_argument("--calib-samples", type=int, default=256)
    p.add_argument("--calib-seq-len", type=int, default=32)
    p.add_argument("--eval-seq-len", type=int, default=256)
    p.add_argument("--eval-windows", type=int, default=32)
    p.add_argument("--json", help="write every report here")
    args = p.parse_args()

    results = []
    rows = []
    with tempfile.TemporaryDirectory(prefix="care-quality-") as work:
        for model in MODELS:
            for save in BUDGETS:
                cells, original, auto_choice = {}, None, ""
                for name, method, allocation in VARIANTS:
                    r = convert(args, model, save, method, allocation, work)
                    results.append({"model": model, "kv_save": save,
                                    "variant": name, "report": r})
                    original = r["original"]["ppl"]
                    cells[name] = r["converted"]["ppl"]
                    if allocation == "auto":
                        auto_choice = r["allocation_chosen"]
                    print(f"{model} save={save} {name}: "
                          f"{r['converted']['ppl']:.3f}", file=sys.stderr)
                rows.append((model, save, original, cells, auto_choice))

    cols = [v[0] for v in VARIANTS]
    print("| model | KV save | original | " + " | ".join(cols) +
          " | auto picked |")
    print("|---|---|---|" + "---|" * len(cols) + "---|")
    for model, save, original, cells, choice in rows:
        print(f"| {model} | {save * 100:g} % | {original:.2f} | " +
              " | ".join(f"{cells[c]:.2f}" for c in cols) + f" | {choice} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Healing table for the DeepSeek-V3 export (docs/quality.md, issue 24).

Per model and KV save, the deepseek-v3 export on the docs/quality.md
"DeepSeek-V3 layout" protocol (the issue 17 prototype's) at the rope split
that table's `auto` chose, converted three times: without healing, with
`--heal local --heal-inputs original` and with `--heal-inputs healed`.
Every perplexity is the converter's evaluation of the checkpoint it writes
(the pipeline tests check that reloading it scores the same). Prints the
table with the share of the export's excess NLL that healing recovers,
(ln ppl_export - ln ppl_healed) / (ln ppl_export - ln ppl_orig), and the
healing cost (seconds of the heal stage and training tokens) from the
reports. Standard library only; one conversion at a time.
"""
import argparse
import json
import math
import os
import sys

import mla_quality_table

# model, calibration end, evaluation start, {kv save: (rope dim, freqfold)}
MODELS = [("stories260K-hf", 196000, 196608, {0.5: (8, 1), 0.75: (8, 1)}),
          ("tinygqa-hf", 353000, 353710, {0.5: (32, 2), 0.75: (16, 2)}),
          ("tinyqwen3-hf", 353000, 353710, {0.5: (16, 2), 0.75: (16, 2)})]


def run(args, model, cal, ev, save, extra, name):
    """mla_quality_table's cell, deepseek-v3 layout, niced."""
    return mla_quality_table.run(args, model, cal, ev, save,
                                 ["--layout", "deepseek-v3"] + extra, name,
                                 nice=True)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    repo = os.path.dirname(os.path.dirname(here))
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--worker", default=os.path.join(
        repo, "build", "worker", "cli", "care-worker"))
    p.add_argument("--fixtures",
                   default=os.path.join(repo, "..", "shared", "fixtures"))
    p.add_argument("--workdir", default="/tmp/care-mla-heal")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--models", default=",".join(m[0] for m in MODELS))
    p.add_argument("--saves", default="0.5,0.75")
    p.add_argument("--inputs", default="original,healed")
    p.add_argument("--heal-args", default="",
                   help="extra healing flags, space-separated")
    p.add_argument("--json")
    args = p.parse_args()
    os.makedirs(args.workdir, exist_ok=True)
    rows = []
    inputs = [i for i in args.inputs.split(",") if i]
    print("| model | KV save | R/K, r | original | export | "
          + " | ".join(f"healed ({i} inputs), recovered" for i in inputs)
          + " | heal cost (s, tokens) |")
    print("|---|---|---|---|---|" + "---|" * len(inputs) + "---|")
    for model, cal, ev, splits in MODELS:
        if model not in args.models.split(","):
            continue
        for save in [float(s) for s in args.saves.split(",")]:
            rope, fold = splits[save]
            split = ["--rope-dim", str(rope), "--freqfold", str(fold)]
            base = run(args, model, cal, ev, save, split, "none")
            orig = base["original"]["ppl"]
            export = base["converted"]["ppl"]
            row = {"model": model, "kv_save": save, "rope_dim": rope,
                   "freqfold": fold,
                   "kv_lora_rank": base["deepseek_v3"]["kv_lora_rank"],
                   "original": orig, "export": export, "healed": {}}
            cells, costs = [], []
            for i in inputs:
                extra = split + ["--heal", "local", "--heal-inputs", i]
                extra += args.heal_args.split()
                h = run(args, model, cal, ev, save, extra, f"heal-{i}")
                ppl = h["converted"]["ppl"]
                excess = math.log(export) - math.log(orig)
                rec = (math.log(export) - math.log(ppl)) / excess
                heal = h["deepseek_v3"]["heal"]
                row["healed"][i] = {"ppl": ppl, "recovered": rec,
                                    "heal": heal}
                cells.append(f"{ppl:.2f}, {rec * 100:.0f} %")
                costs.append(f"{heal['seconds']:.0f}")
                tokens = heal["train_tokens"]
            rows.append(row)
            print(f"| {model} | {save * 100:g} % | {rope}/{fold}, "
                  f"{row['kv_lora_rank']} | {orig:.2f} | {export:.2f} | "
                  + " | ".join(cells)
                  + f" | {'/'.join(costs)} s, {tokens} |", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())

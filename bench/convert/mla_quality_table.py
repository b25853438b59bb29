#!/usr/bin/env python3
"""DeepSeek-V3 export quality table (docs/quality.md, issue 17 protocol).

For each model and KV save: the original, the CARE latent layout (care,
auto allocation), "partial RoPE only" (the chosen rope split at full latent
rank), and the deepseek-v3 layout with care (rope dim and freqfold auto;
the defaults, o_proj refit auto included, and with --o-proj-refit off),
then pca and svd on care's chosen split. Runs `care-worker convert` per
cell; only the Python standard library is needed.

Protocol (the prototype's in issue 17): the tok512 id stream
stories260K_reference/tinystories_val_head.tok512.u16 (393,012 ids);
calibration 256 x 32 windows (seed 0) from ids [0, CAL) with the last 10 %
of that range held out for scoring (512 x 32 consecutive ids, regrouped by
the deepseek-v3 layout into 64 windows of 256 for its auto choice); evaluation 64 plain windows x 256 from
id EVAL. stories260K: CAL 196,000, EVAL 196,608; tinygqa and tinyqwen3:
CAL 353,000, EVAL 353,710 (their training hold-out).
"""
import argparse
import json
import os
import subprocess
import sys

N = 393012
MODELS = [("stories260K-hf", 196000, 196608), ("tinygqa-hf", 353000, 353710),
          ("tinyqwen3-hf", 353000, 353710)]
SAVES = [0.5, 0.75, 0.875]


def run(args, model, cal, ev, save, extra, name, nice=False):
    """Converts one cell on the protocol (cached in args.workdir by name)."""
    out = os.path.join(args.workdir, f"{model}-{save}-{name}")
    report = out + ".json"
    if not os.path.exists(report):
        tokens = os.path.join(args.fixtures, "stories260K_reference",
                              "tinystories_val_head.tok512.u16")
        cmd = ["nice"] * nice + [args.worker, "convert", "--model",
               os.path.join(args.fixtures, model), "--out", out,
               "--kv-save", str(save), "--calib", tokens,
               "--calib-samples", "256", "--calib-seq-len", "32", "--seed",
               "0", "--heldout-windows", "512", "--calib-range", f"0:{(cal + 0.5) / N!r}",
               "--eval", tokens, "--eval-range", f"{(ev + 0.5) / N!r}:1",
               "--eval-seq-len", "256", "--eval-windows", "64",
               "--threads", str(args.threads), "--report", report,
               "--overwrite", "--quiet"] + extra
        subprocess.run(cmd, check=True)
    with open(report) as f:
        return json.load(f)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    repo = os.path.dirname(os.path.dirname(here))
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--worker", default=os.path.join(
        repo, "build", "worker", "cli", "care-worker"))
    p.add_argument("--fixtures",
                   default=os.path.join(repo, "..", "shared", "fixtures"))
    p.add_argument("--workdir", default="/tmp/care-mla-quality")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--models", default=",".join(m for m, _, _ in MODELS))
    p.add_argument("--saves", default=",".join(str(s) for s in SAVES))
    p.add_argument("--json")
    p.add_argument("--refine", type=int, default=0,
                   help="also run care with --latent-refine N on its split")
    p.add_argument("--refine-auto", action="store_true",
                   help="also run care with --latent-refine auto (rope dim "
                   "and freqfold auto too)")
    args = p.parse_args()
    os.makedirs(args.workdir, exist_ok=True)
    rows = []
    print("| model | KV save | original | latent care-auto | partial RoPE only"
          " | dsv3 svd | dsv3 pca | dsv3 care, o_proj refit off | dsv3 care"
          " (default) | split (R/K, r), refit kept |" +
          (f" care refine {args.refine} |" if args.refine else "") +
          (" care refine auto (kept) |" if args.refine_auto else ""))
    print("|---|---|---|---|---|---|---|---|---|---|" +
          "---|" * bool(args.refine) + "---|" * args.refine_auto)
    for model, cal, ev in MODELS:
        if model not in args.models.split(","):
            continue
        for save in [float(s) for s in args.saves.split(",")]:
            latent = run(args, model, cal, ev, save,
                         ["--allocation", "auto"], "latent-auto")
            care = run(args, model, cal, ev, save,
                       ["--layout", "deepseek-v3"], "dsv3-care")
            d = care["deepseek_v3"]
            split = ["--layout", "deepseek-v3", "--rope-dim",
                     str(d["rope_dim"]), "--freqfold", str(d["freqfold"])]
            at = f"{d['rope_dim']}-{d['freqfold']}"
            pca = run(args, model, cal, ev, save, split + ["--method", "pca"],
                      f"dsv3-pca-{at}")
            svd = run(args, model, cal, ev, save, split + ["--method", "svd"],
                      f"dsv3-svd-{at}")
            off = run(args, model, cal, ev, save, [
                "--layout", "deepseek-v3", "--o-proj-refit", "off"],
                "dsv3-care-refit-off")
            refined = None
            if args.refine:
                refined = run(args, model, cal, ev, save, split + [
                    "--latent-refine", str(args.refine)],
                    f"dsv3-care-refine{args.refine}")["converted"]["ppl"]
            auto = None
            if args.refine_auto:
                a = run(args, model, cal, ev, save, [
                    "--layout", "deepseek-v3", "--latent-refine", "auto"],
                    "dsv3-care-refine-auto")
                auto = (a["converted"]["ppl"],
                        a["deepseek_v3"]["latent_refine"],
                        a["deepseek_v3"]["o_proj_refit"])
            row = {
                "model": model, "kv_save": save,
                "original": care["original"]["ppl"],
                "latent_care_auto": latent["converted"]["ppl"],
                "partial_rope_only": d["eval_ppl_partial_rope"],
                "dsv3_svd": svd["converted"]["ppl"],
                "dsv3_pca": pca["converted"]["ppl"],
                "dsv3_care": care["converted"]["ppl"],
                "dsv3_care_refit_off": off["converted"]["ppl"],
                "refit_off_split": [off["deepseek_v3"]["rope_dim"],
                                    off["deepseek_v3"]["freqfold"]],
                "o_proj_refit": d["o_proj_refit"],
                "rope_dim": d["rope_dim"], "freqfold": d["freqfold"],
                "kv_lora_rank": d["kv_lora_rank"],
                "candidates": d["candidates"],
                "dsv3_care_refined": refined,
                "dsv3_care_refine_auto": auto[0] if auto else None,
                "refine_auto_kept": auto[1] if auto else None,
                "refine_auto_refit": auto[2] if auto else None,
            }
            rows.append(row)
            print(f"| {model} | {save * 100:g} % | {row['original']:.2f} | "
                  f"{row['latent_care_auto']:.2f} | "
                  f"{row['partial_rope_only']:.2f} | {row['dsv3_svd']:.2f} | "
                  f"{row['dsv3_pca']:.2f} | {row['dsv3_care_refit_off']:.2f} | "
                  f"{row['dsv3_care']:.2f} | "
                  f"{row['rope_dim']}/{row['freqfold']}, "
                  f"{row['kv_lora_rank']}, "
                  f"{'refit' if row['o_proj_refit'] else 'no refit'} |" +
                  (f" {refined:.2f} |" if args.refine else "") +
                  (f" {auto[0]:.2f} ({auto[1]}"
                   f"{', refit' if auto[2] else ''}) |" if auto else ""),
                  flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())

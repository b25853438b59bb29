// care-worker convert: GQA checkpoint -> CARE latent-KV checkpoint at a KV
// budget, with a report (docs/conversion.md). A thin wrapper over
// care::convert::ConvertModel.
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "base/flags.h"
#include "base/status_macros.h"
#include "care/convert/pipeline.h"
#include "care/convert/write_checkpoint.h"
#include "care/eval/documents.h"
#include "cli/command.h"

namespace care::cli {
namespace {

constexpr char kUsage[] =
    "usage: care-worker convert --model URI --out DIR (--kv-save F | --rank "
    "R)\n"
    "         --calib DATA [--method care|care-c|asvd|svd|pca]\n"
    "         [--layout latent|deepseek-v3] [--rope-dim R|auto]\n"
    "         [--freqfold K|auto] [--kv-lora-rank N] [--no-kv-balance]\n"
    "         [--no-nope-correction] [--nope-scale-span N]\n"
    "         [--latent-objective attention|activation]\n"
    "         [--qk-norm-fold auto|scalar|regression] [--latent-refine "
    "N|auto]\n"
    "         [--o-proj-refit auto|on|off]\n"
    "         [--heal local|none [--heal-data DATA]\n"
    "         [--heal-tokens N] [--heal-steps N] [--heal-inputs "
    "original|healed]"
    "\n"
    "         [--heal-seq-len T] [--heal-lr L] [--heal-batch-windows W]\n"
    "         [--heal-text-field F]]\n"
    "         [--allocation uniform|adjusted|auto] [--adjusted-factors]\n"
    "         [--sequential]\n"
    "         [--calib-samples N] [--calib-seq-len T] [--seed S] [--damping "
    "A]\n"
    "         [--calib-range A:B] [--heldout-windows W] [--heldout]\n"
    "         [--calib-text-field F]\n"
    "         [--eval DATA] [--eval-seq-len T] [--eval-windows W] "
    "[--eval-range A:B]\n"
    "         [--eval-text-field F] [--eval-bos] [--dtype D]\n"
    "         [--eval-tasks FILES [--eval-task-format F] [--eval-task-limit "
    "N]]\n"
    "         [--eval-rolling-stride S [--eval-rolling-documents D]]\n"
    "         [--report FILE] [--overwrite] [--threads N] [--quiet]\n"
    "         [--device cpu|cuda[:N]] [--work-dir DIR]\n"
    "\n"
    "Converts K/V projections to low-rank latent factors (docs/conversion.md)"
    ".\n"
    "  --model URI        source model directory, file:///dir or "
    "hf://org/name\n"
    "  --out DIR          output checkpoint directory (must not exist unless\n"
    "                     --overwrite)\n"
    "  --kv-save F        fraction of the GQA KV cache saved, 0 <= F < 1\n"
    "  --rank R           average latent rank per K and V matrix per layer\n"
    "  --method M         care (default), care-c, asvd, svd, pca (= care\n"
    "                     without damping: PCA of the K/V outputs)\n"
    "  --layout L         latent (default: CARE latent checkpoint) or\n"
    "                     deepseek-v3 (stock DeepseekV3ForCausalLM, MLA)\n"
    "  --rope-dim R       deepseek-v3: qk_rope_head_dim, even, <= head_dim,\n"
    "                     or auto (default: best on held-out NLL)\n"
    "  --freqfold K       deepseek-v3: adjacent RoPE frequencies folded\n"
    "                     together (K divides R/2), or auto (default)\n"
    "  --kv-lora-rank N   deepseek-v3: latent width instead of a budget\n"
    "                     (cache per token per layer = N + rope dim)\n"
    "  --no-kv-balance    deepseek-v3: no K/V energy balancing in the latent\n"
    "  --no-nope-correction  deepseek-v3: drop the NoPE part's rotation\n"
    "                     instead of its attention-weighted 2x2 fit\n"
    "  --nope-scale-span N  deepseek-v3: tokens of the windows on which\n"
    "                     each head's NoPE score scale is fitted to the\n"
    "                     source's attention (default 256; 0: no scale)\n"
    "  --latent-objective O  deepseek-v3 with care: attention (default:\n"
    "                     query-weighted K_nope, o_proj-weighted V) or\n"
    "                     activation (plain [K_nope; V] error, as pca)\n"
    "  --latent-refine N|auto  deepseek-v3 with care: rounds of the\n"
    "                     alternating fit of the latent with V measured\n"
    "                     under the attention-averaged inputs (default 0:\n"
    "                     off); auto: each split scored with 0 and 4\n"
    "                     rounds on the held-out windows, the better kept\n"
    "  --o-proj-refit M   deepseek-v3 with care: refit o_proj by least\n"
    "                     squares to the export's attention on the\n"
    "                     calibration windows (on), keep the source's (off),\n"
    "                     or auto (default): each split scored with and\n"
    "                     without on the held-out windows, the better kept\n"
    "  --qk-norm-fold F   deepseek-v3, Qwen3's q/k norms: scalar (one\n"
    "                     least-squares scale per head), regression (the\n"
    "                     normed q/k regressed on the layer input) or auto\n"
    "                     (default: regression but for svd)\n"
    "  --heal M           deepseek-v3: none (default) or local: optimise each\n"
    "                     layer's new attention weights to match the\n"
    "                     original layer's output (docs/conversion.md,\n"
    "                     Healing)\n"
    "  --heal-data DATA   healing text/ids (default: the calibration range)\n"
    "  --heal-tokens N    healing training tokens (default 262144, bounded\n"
    "                     by the data)\n"
    "  --heal-steps N     Adam steps per layer at most (default 400)\n"
    "  --heal-inputs I    original (default): each layer heals on the\n"
    "                     original model's inputs; healed: on the inputs of\n"
    "                     the healed layers below\n"
    "  --heal-seq-len T   healing window length (default 256, at most the\n"
    "                     model's max positions)\n"
    "  --heal-lr L        Adam step relative to each weight block's RMS\n"
    "                     (default 0.016)\n"
    "  --heal-batch-windows W  windows per step (default 8)\n"
    "  --heal-text-field F  JSONL field of --heal-data (default text)\n"
    "  --allocation A     uniform (default), adjusted (paper CARE-E), auto\n"
    "                     (best of several candidates on held-out NLL)\n"
    "  --adjusted-factors use the released code's depth and rank-cost "
    "factors\n"
    "  --sequential       re-fit each layer on the converted layers' outputs\n"
    "                     (one more calibration pass)\n"
    "  --calib DATA       calibration .txt/.jsonl/.u16/.u32\n"
    "  --calib-samples N  calibration windows (default 256)\n"
    "  --calib-seq-len T  tokens per calibration window (default 32)\n"
    "  --seed S           window sampling seed (default 0)\n"
    "  --damping A        ridge A·mean(diag C) added to C (default 0.01)\n"
    "  --calib-range A:B  fractions of the calibration stream used (default\n"
    "                     0:1, or 0:0.9 when --eval is the same file)\n"
    "  --heldout-windows W  held-out calibration windows (default 64; the\n"
    "                     last 10% of the calibration range)\n"
    "  --heldout          run the held-out windows (held-out NLL and\n"
    "                     per-layer errors) even when the allocation does\n"
    "                     not need them (auto and --sequential always do)\n"
    "  --calib-text-field F  JSONL field holding the text (default text)\n"
    "  --eval DATA        evaluation text; perplexity of original and "
    "converted\n"
    "  --eval-seq-len T   evaluation window length (default 256)\n"
    "  --eval-windows W   evaluation windows (default 32; 0 = all)\n"
    "  --eval-range A:B   fractions of the evaluation stream used (default "
    "0:1,\n"
    "                     or 0.9:1 when it is the calibration file)\n"
    "  --eval-text-field F  JSONL field of the evaluation data (default text)\n"
    "  --eval-bos         prepend the model's BOS id to every evaluation\n"
    "                     window (T-1 stream tokens each; BOS not scored)\n"
    "  --eval-rolling-stride S  also score --eval as whole documents with\n"
    "                     rolling windows of --eval-seq-len, stride S, BOS\n"
    "                     first (token, word, byte perplexity)\n"
    "  --eval-rolling-documents whole (default) or wikitext\n"
    "  --eval-tasks FILES JSONL multiple-choice tasks, comma-separated:\n"
    "                     acc / acc_norm of original and converted\n"
    "  --eval-task-format F  auto (default), generic, arc, hellaswag, piqa,\n"
    "                     winogrande, boolq, openbookqa\n"
    "  --eval-task-limit N  first N items of each task (default: all)\n"
    "  --dtype D          dtype of the written factors and floating-point\n"
    "                     weights: source (default; factors F32), f32, f16,\n"
    "                     bf16\n"
    "  --report FILE      also write the JSON report here\n"
    "  --threads N        OpenMP/Eigen threads (default: all cores)\n"
    "  --device D         compute device: cpu (default), cuda (= cuda:0),\n"
    "                     cuda:N (docs/worker.md, Devices)\n"
    "  --work-dir DIR     keep resume state in DIR/<fingerprint>/: a rerun\n"
    "                     after a crash or Ctrl-C continues the calibration\n"
    "                     where it stopped (docs/worker.md, Resume)\n"
    "  --quiet            no progress bar or summary\n";

absl::StatusOr<convert::StreamFraction> ParseFraction(const Flags& flags,
                                                      const char* name) {
  const std::string v = *flags.String(name);
  std::vector<std::string> parts = absl::StrSplit(v, ':');
  convert::StreamFraction f;
  if (parts.size() != 2 || !absl::SimpleAtod(parts[0], &f.begin) ||
      !absl::SimpleAtod(parts[1], &f.end) || !(f.begin >= 0) || !(f.end <= 1) ||
      !(f.begin < f.end)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "--%s must be A:B with 0 <= A < B <= 1, got '%s'", name, v));
  }
  return f;
}

// An integer flag or "auto" (0); `what` names it in errors.
absl::StatusOr<int64_t> IntOrAuto(const Flags& flags, const char* name) {
  const std::string v = flags.StringOr(name, "auto");
  if (v == "auto") return 0;
  int64_t n = 0;
  if (!absl::SimpleAtoi(v, &n) || n < 1) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "--%s must be a positive integer or auto, got '%s'", name, v));
  }
  return n;
}

absl::StatusOr<convert::MlaExportOptions> ParseMlaFlags(const Flags& flags) {
  convert::MlaExportOptions m;
  CARE_ASSIGN_OR_RETURN(m.rope_dim, IntOrAuto(flags, "rope-dim"));
  CARE_ASSIGN_OR_RETURN(m.freqfold, IntOrAuto(flags, "freqfold"));
  CARE_ASSIGN_OR_RETURN(m.kv_lora_rank, flags.IntOr("kv-lora-rank", 0));
  if (flags.Has("kv-lora-rank") && m.kv_lora_rank < 1) {
    return absl::InvalidArgumentError("--kv-lora-rank must be >= 1");
  }
  m.balance_kv = !flags.Bool("no-kv-balance");
  m.nope_correction = !flags.Bool("no-nope-correction");
  const std::string refine = flags.StringOr("latent-refine", "0");
  if (refine == "auto") {
    m.latent_refine_auto = true;
    m.latent_refine = 4;
  } else if (!absl::SimpleAtoi(refine, &m.latent_refine) ||
             m.latent_refine < 0 || m.latent_refine > 100) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--latent-refine must be auto or a number of rounds in [0, 100], "
        "got '",
        refine, "'"));
  }
  CARE_ASSIGN_OR_RETURN(m.nope_scale_span,
                        flags.IntOr("nope-scale-span", m.nope_scale_span));
  if (m.nope_scale_span < 0) {
    return absl::InvalidArgumentError(
        "--nope-scale-span must be >= 0 (0: no NoPE scale)");
  }
  CARE_ASSIGN_OR_RETURN(m.latent_objective,
                        convert::ParseLatentObjective(
                            flags.StringOr("latent-objective", "attention")));
  CARE_ASSIGN_OR_RETURN(
      m.qk_norm_fold,
      convert::ParseQkNormFoldMode(flags.StringOr("qk-norm-fold", "auto")));
  CARE_ASSIGN_OR_RETURN(
      m.o_proj_refit,
      convert::ParseOProjRefitMode(flags.StringOr("o-proj-refit", "auto")));
  const std::string heal = flags.StringOr("heal", "none");
  if (heal != "none" && heal != "local") {
    return absl::InvalidArgumentError(
        absl::StrFormat("--heal must be local or none, got '%s'", heal));
  }
  m.heal = heal == "local";
  for (const char* name :
       {"heal-data", "heal-tokens", "heal-steps", "heal-inputs", "heal-seq-len",
        "heal-lr", "heal-batch-windows", "heal-text-field"}) {
    if (!m.heal && flags.Has(name)) {
      return absl::InvalidArgumentError(
          absl::StrFormat("--%s applies to --heal local only", name));
    }
  }
  m.heal_data = flags.StringOr("heal-data", "");
  m.heal_text_field = flags.StringOr("heal-text-field", m.heal_text_field);
  const std::string inputs = flags.StringOr("heal-inputs", "original");
  if (inputs != "original" && inputs != "healed") {
    return absl::InvalidArgumentError(absl::StrFormat(
        "--heal-inputs must be original or healed, got '%s'", inputs));
  }
  m.heal_inputs_healed = inputs == "healed";
  CARE_ASSIGN_OR_RETURN(m.heal_tokens,
                        flags.IntOr("heal-tokens", m.heal_tokens));
  CARE_ASSIGN_OR_RETURN(m.heal_steps, flags.IntOr("heal-steps", m.heal_steps));
  CARE_ASSIGN_OR_RETURN(m.heal_seq_len,
                        flags.IntOr("heal-seq-len", m.heal_seq_len));
  CARE_ASSIGN_OR_RETURN(
      m.heal_batch_windows,
      flags.IntOr("heal-batch-windows", m.heal_batch_windows));
  CARE_ASSIGN_OR_RETURN(m.heal_lr, flags.DoubleOr("heal-lr", m.heal_lr));
  if (m.heal_tokens < 2 || m.heal_steps < 0 || m.heal_seq_len < 2 ||
      m.heal_batch_windows < 1 || !(m.heal_lr > 0)) {
    return absl::InvalidArgumentError(
        "--heal-tokens and --heal-seq-len must be >= 2, --heal-steps >= 0, "
        "--heal-batch-windows >= 1 and --heal-lr > 0");
  }
  return m;
}

absl::StatusOr<convert::ConvertOptions> ParseArgs(
    const std::vector<std::string>& args, bool* quiet,
    std::string* report_file) {
  CARE_ASSIGN_OR_RETURN(
      Flags flags,
      Flags::Parse(args, {"overwrite", "quiet", "adjusted-factors",
                          "sequential", "eval-bos", "no-kv-balance",
                          "no-nope-correction", "heldout"}));
  CARE_RETURN_IF_ERROR(flags.CheckKnown({"model",
                                         "out",
                                         "kv-save",
                                         "rank",
                                         "method",
                                         "allocation",
                                         "adjusted-factors",
                                         "sequential",
                                         "calib",
                                         "calib-samples",
                                         "calib-seq-len",
                                         "seed",
                                         "damping",
                                         "calib-range",
                                         "heldout-windows",
                                         "heldout",
                                         "eval",
                                         "eval-seq-len",
                                         "eval-windows",
                                         "eval-range",
                                         "calib-text-field",
                                         "eval-text-field",
                                         "eval-bos",
                                         "eval-tasks",
                                         "eval-task-format",
                                         "eval-task-limit",
                                         "eval-rolling-stride",
                                         "eval-rolling-documents",
                                         "dtype",
                                         "report",
                                         "overwrite",
                                         "threads",
                                         "device",
                                         "work-dir",
                                         "quiet",
                                         "layout",
                                         "rope-dim",
                                         "freqfold",
                                         "kv-lora-rank",
                                         "no-kv-balance",
                                         "no-nope-correction",
                                         "latent-objective",
                                         "qk-norm-fold",
                                         "latent-refine",
                                         "o-proj-refit",
                                         "nope-scale-span",
                                         "heal",
                                         "heal-data",
                                         "heal-tokens",
                                         "heal-steps",
                                         "heal-inputs",
                                         "heal-seq-len",
                                         "heal-lr",
                                         "heal-batch-windows",
                                         "heal-text-field"}));
  if (!flags.positionals().empty()) {
    return absl::InvalidArgumentError("unexpected argument '" +
                                      flags.positionals()[0] + "'");
  }
  convert::ConvertOptions o;
  CARE_ASSIGN_OR_RETURN(o.model, flags.Required("model"));
  CARE_ASSIGN_OR_RETURN(o.output_dir, flags.Required("out"));
  CARE_ASSIGN_OR_RETURN(o.calib_data, flags.Required("calib"));
  CARE_ASSIGN_OR_RETURN(
      o.output_layout,
      convert::ParseOutputLayout(flags.StringOr("layout", "latent")));
  const bool mla = o.output_layout == convert::OutputLayout::kDeepseekV3;
  for (const char* name :
       {"rope-dim", "freqfold", "kv-lora-rank", "no-kv-balance",
        "no-nope-correction", "latent-objective", "qk-norm-fold",
        "latent-refine", "o-proj-refit", "nope-scale-span", "heal"}) {
    if (!mla && flags.Has(name)) {
      return absl::InvalidArgumentError(
          absl::StrFormat("--%s applies to --layout deepseek-v3 only", name));
    }
  }
  if (mla) {
    CARE_ASSIGN_OR_RETURN(o.mla, ParseMlaFlags(flags));
  }
  const int budgets =
      flags.Has("kv-save") + flags.Has("rank") + flags.Has("kv-lora-rank");
  if (budgets != 1) {
    return absl::InvalidArgumentError(
        mla ? "give exactly one of --kv-save F (0 <= F < 1), --rank R and "
              "--kv-lora-rank N"
            : "give exactly one of --kv-save F (0 <= F < 1) and --rank R");
  }
  if (flags.Has("kv-lora-rank")) {
    o.budget = convert::Budget::KvSave(0);  // unused: the rank is given
  } else if (flags.Has("kv-save")) {
    CARE_ASSIGN_OR_RETURN(double f, flags.DoubleOr("kv-save", 0));
    o.budget = convert::Budget::KvSave(f);
  } else {
    CARE_ASSIGN_OR_RETURN(int64_t r, flags.IntOr("rank", 0));
    o.budget = convert::Budget::Rank(r);
  }
  // Unset flags keep ConvertOptions' defaults (pipeline.h), named once.
  if (flags.Has("method")) {
    CARE_ASSIGN_OR_RETURN(o.method,
                          convert::ParseMethod(flags.StringOr("method", "")));
  }
  if (flags.Has("allocation")) {
    CARE_ASSIGN_OR_RETURN(o.allocation, convert::ParseAllocationStrategy(
                                            flags.StringOr("allocation", "")));
  }
  o.adjusted.depth_factor = o.adjusted.rank_cost_factor =
      flags.Bool("adjusted-factors");
  o.sequential = flags.Bool("sequential");
  CARE_ASSIGN_OR_RETURN(o.calib_samples,
                        flags.IntOr("calib-samples", o.calib_samples));
  CARE_ASSIGN_OR_RETURN(o.calib_seq_len,
                        flags.IntOr("calib-seq-len", o.calib_seq_len));
  CARE_ASSIGN_OR_RETURN(int64_t seed,
                        flags.IntOr("seed", static_cast<int64_t>(o.seed)));
  if (seed < 0) return absl::InvalidArgumentError("--seed must be >= 0");
  o.seed = static_cast<uint64_t>(seed);
  CARE_ASSIGN_OR_RETURN(o.damping, flags.DoubleOr("damping", o.damping));
  CARE_ASSIGN_OR_RETURN(o.heldout_windows,
                        flags.IntOr("heldout-windows", o.heldout_windows));
  o.heldout_figures = flags.Bool("heldout");
  if (flags.Has("calib-range")) {
    CARE_ASSIGN_OR_RETURN(o.calib_range, ParseFraction(flags, "calib-range"));
  }
  o.eval_data = flags.StringOr("eval", "");
  CARE_ASSIGN_OR_RETURN(o.eval_seq_len,
                        flags.IntOr("eval-seq-len", o.eval_seq_len));
  CARE_ASSIGN_OR_RETURN(o.eval_windows,
                        flags.IntOr("eval-windows", o.eval_windows));
  if (flags.Has("eval-range")) {
    CARE_ASSIGN_OR_RETURN(o.eval_range, ParseFraction(flags, "eval-range"));
  }
  o.calib_text_field = flags.StringOr("calib-text-field", o.calib_text_field);
  o.eval_text_field = flags.StringOr("eval-text-field", o.eval_text_field);
  o.eval_prepend_bos = flags.Bool("eval-bos");
  CARE_ASSIGN_OR_RETURN(o.eval_rolling_stride,
                        flags.IntOr("eval-rolling-stride", 0));
  if (o.eval_rolling_stride < 0 || o.eval_rolling_stride > o.eval_seq_len) {
    return absl::InvalidArgumentError(
        "--eval-rolling-stride must be in [0, --eval-seq-len]");
  }
  o.eval_rolling_documents = flags.StringOr("eval-rolling-documents", "whole");
  CARE_RETURN_IF_ERROR(
      eval::ParseDocumentSplit(o.eval_rolling_documents).status());
  if (auto tasks = flags.String("eval-tasks")) {
    CARE_ASSIGN_OR_RETURN(int64_t limit, flags.IntOr("eval-task-limit", 0));
    if (limit < 0) {
      return absl::InvalidArgumentError("--eval-task-limit must be >= 0");
    }
    for (absl::string_view path : absl::StrSplit(*tasks, ',')) {
      if (path.empty()) continue;
      o.eval_tasks.push_back(
          {.name = "",
           .path = std::string(path),
           .format = flags.StringOr("eval-task-format", "auto"),
           .limit = limit});
    }
  }
  CARE_ASSIGN_OR_RETURN(o.output_dtype,
                        convert::ParseOutputDType(flags.StringOr("dtype", "")));
  CARE_ASSIGN_OR_RETURN(int64_t threads, flags.IntOr("threads", o.threads));
  if (threads < 0 || threads > 4096) {
    return absl::InvalidArgumentError("--threads must be in [0, 4096]");
  }
  o.threads = static_cast<int>(threads);
  o.device = flags.StringOr("device", o.device);
  o.work_dir = flags.StringOr("work-dir", "");
  o.overwrite = flags.Bool("overwrite");
  *quiet = flags.Bool("quiet");
  *report_file = flags.StringOr("report", "");
  // The report names the output by its absolute path (the library resolves
  // the model path itself).
  std::error_code ec;
  const auto out = std::filesystem::absolute(o.output_dir, ec);
  if (!ec) o.output_dir = out.lexically_normal().string();
  return o;
}

// "calibrate [#####.....] layer 3/5  41%" on one terminal line.
void DrawProgress(const convert::ConvertProgress& p) {
  constexpr int kWidth = 30;
  const int filled = static_cast<int>(p.overall * kWidth + 0.5);
  std::cerr << absl::StrFormat(
      "\r%-10s [%s%s] %d/%d %3.0f%%", p.stage, std::string(filled, '#'),
      std::string(kWidth - filled, '.'), p.step, p.total, p.overall * 100);
  // The stage's achieved rate, and layers taken from --work-dir.
  if (p.flops > 0 && p.seconds > 0) {
    std::cerr << absl::StrFormat("  %.1f GFLOP/s", p.flops / p.seconds / 1e9);
  }
  if (p.resumed_layers > 0) {
    std::cerr << absl::StrFormat("  resumed %d", p.resumed_layers);
  }
  std::cerr << "\x1b[K" << std::flush;  // clear the rest of the line
}

int ConvertMain(const std::vector<std::string>& args) {
  bool quiet = false;
  std::string report_file;
  absl::StatusOr<convert::ConvertOptions> o =
      ParseArgs(args, &quiet, &report_file);
  if (!o.ok()) {
    std::cerr << "care-worker convert: " << o.status().message() << "\n"
              << kUsage;
    return 2;
  }
  const bool tty = !quiet && isatty(STDERR_FILENO);
  convert::ProgressCallback progress;
  if (tty) progress = DrawProgress;
  absl::StatusOr<convert::ConversionReport> report =
      convert::ConvertModel(*o, progress);
  if (tty) std::cerr << "\n";
  if (!report.ok()) {
    std::cerr << "care-worker convert: " << report.status().message() << "\n";
    return report.status().code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
  }
  if (!report_file.empty()) {
    std::ofstream out(report_file);
    out << convert::ReportToJson(*report).dump(2) << "\n";
    if (!out) {
      std::cerr << "care-worker convert: cannot write report " << report_file
                << "\n";
      return 1;
    }
  }
  if (!quiet) {
    std::cout << convert::ReportSummary(*report) << "  report: "
              << (std::filesystem::path(report->output_dir) /
                  "care_report.html")
                     .string()
              << "\n";
  }
  return 0;
}

}  // namespace

CARE_REGISTER_COMMAND(convert, "convert",
                      "convert a GQA checkpoint to CARE latent attention",
                      kUsage, ConvertMain);

}  // namespace care::cli

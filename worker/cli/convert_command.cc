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
#include "care/convert/pipeline.h"
#include "care/convert/write_checkpoint.h"
#include "care/util/flags.h"
#include "care/util/status_macros.h"
#include "cli/command.h"

namespace care::cli {
namespace {

constexpr char kUsage[] =
    "usage: care-worker convert --model URI --out DIR (--kv-save F | --rank "
    "R)\n"
    "         --calib DATA [--method care|care-c|asvd|svd]\n"
    "         [--allocation uniform|adjusted|auto] [--adjusted-factors]\n"
    "         [--sequential]\n"
    "         [--calib-samples N] [--calib-seq-len T] [--seed S] [--damping "
    "A]\n"
    "         [--calib-range A:B] [--heldout-windows W] [--heldout]\n"
    "         [--calib-text-field F]\n"
    "         [--eval DATA] [--eval-seq-len T] [--eval-windows W] "
    "[--eval-range A:B]\n"
    "         [--eval-text-field F] [--eval-bos] [--dtype D]\n"
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
    "  --method M         care (default), care-c, asvd, svd\n"
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

absl::StatusOr<convert::ConvertOptions> ParseArgs(
    const std::vector<std::string>& args, bool* quiet,
    std::string* report_file) {
  CARE_ASSIGN_OR_RETURN(
      Flags flags, Flags::Parse(args, {"overwrite", "quiet", "adjusted-factors",
                                       "sequential", "eval-bos", "heldout"}));
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
                                         "dtype",
                                         "report",
                                         "overwrite",
                                         "threads",
                                         "device",
                                         "work-dir",
                                         "quiet"}));
  if (!flags.positionals().empty()) {
    return absl::InvalidArgumentError("unexpected argument '" +
                                      flags.positionals()[0] + "'");
  }
  convert::ConvertOptions o;
  CARE_ASSIGN_OR_RETURN(o.model, flags.Required("model"));
  CARE_ASSIGN_OR_RETURN(o.output_dir, flags.Required("out"));
  CARE_ASSIGN_OR_RETURN(o.calib_data, flags.Required("calib"));
  if (flags.Has("kv-save") == flags.Has("rank")) {
    return absl::InvalidArgumentError(
        "give exactly one of --kv-save F (0 <= F < 1) and --rank R");
  }
  if (flags.Has("kv-save")) {
    CARE_ASSIGN_OR_RETURN(double f, flags.DoubleOr("kv-save", 0));
    o.budget = convert::Budget::KvSave(f);
  } else {
    CARE_ASSIGN_OR_RETURN(int64_t r, flags.IntOr("rank", 0));
    o.budget = convert::Budget::Rank(r);
  }
  CARE_ASSIGN_OR_RETURN(o.method,
                        convert::ParseMethod(flags.StringOr("method", "care")));
  CARE_ASSIGN_OR_RETURN(o.allocation,
                        convert::ParseAllocationStrategy(
                            flags.StringOr("allocation", "uniform")));
  o.adjusted.depth_factor = o.adjusted.rank_cost_factor =
      flags.Bool("adjusted-factors");
  o.sequential = flags.Bool("sequential");
  CARE_ASSIGN_OR_RETURN(o.calib_samples, flags.IntOr("calib-samples", 256));
  CARE_ASSIGN_OR_RETURN(o.calib_seq_len, flags.IntOr("calib-seq-len", 32));
  CARE_ASSIGN_OR_RETURN(int64_t seed, flags.IntOr("seed", 0));
  if (seed < 0) return absl::InvalidArgumentError("--seed must be >= 0");
  o.seed = static_cast<uint64_t>(seed);
  CARE_ASSIGN_OR_RETURN(o.damping, flags.DoubleOr("damping", 0.01));
  CARE_ASSIGN_OR_RETURN(o.heldout_windows, flags.IntOr("heldout-windows", 64));
  o.heldout_figures = flags.Bool("heldout");
  if (flags.Has("calib-range")) {
    CARE_ASSIGN_OR_RETURN(o.calib_range, ParseFraction(flags, "calib-range"));
  }
  o.eval_data = flags.StringOr("eval", "");
  CARE_ASSIGN_OR_RETURN(o.eval_seq_len, flags.IntOr("eval-seq-len", 256));
  CARE_ASSIGN_OR_RETURN(o.eval_windows, flags.IntOr("eval-windows", 32));
  if (flags.Has("eval-range")) {
    CARE_ASSIGN_OR_RETURN(o.eval_range, ParseFraction(flags, "eval-range"));
  }
  o.calib_text_field = flags.StringOr("calib-text-field", "text");
  o.eval_text_field = flags.StringOr("eval-text-field", "text");
  o.eval_prepend_bos = flags.Bool("eval-bos");
  CARE_ASSIGN_OR_RETURN(o.output_dtype,
                        convert::ParseOutputDType(flags.StringOr("dtype", "")));
  CARE_ASSIGN_OR_RETURN(int64_t threads, flags.IntOr("threads", 0));
  if (threads < 0 || threads > 4096) {
    return absl::InvalidArgumentError("--threads must be in [0, 4096]");
  }
  o.threads = static_cast<int>(threads);
  o.device = flags.StringOr("device", "cpu");
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
  if (!quiet) std::cout << convert::ReportSummary(*report);
  return 0;
}

}  // namespace

CARE_REGISTER_COMMAND(convert, "convert",
                      "convert a GQA checkpoint to CARE latent attention",
                      kUsage, ConvertMain);

}  // namespace care::cli

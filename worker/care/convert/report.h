// The conversion report (docs/conversion.md): what was converted, at which
// ranks, and how good it is. Written as care_report.json into the output
// directory and, on request, to a separate file.
#ifndef CARE_CONVERT_REPORT_H_
#define CARE_CONVERT_REPORT_H_

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "care/convert/mla_export/mla_report.h"

namespace care::convert {

struct PerplexityReport {
  double ppl = 0;
  double mean_nll = 0;
  int64_t windows = 0;
  int64_t predictions = 0;
};

// A K or V spectrum the allocation was computed from (σ of the method's
// scaled matrix, descending), sampled to a bounded number of points
// (spectrum_sample.h): sigma[i] is σ at 0-based position index[i] of the
// full spectrum of `size` values; energy[i] is Σ_{j≤index[i]} σ_j² / Σ σ².
struct SpectrumReport {
  int64_t size = 0;
  std::vector<int64_t> index;
  std::vector<double> sigma;
  std::vector<double> energy;
};

struct LayerReport {
  int64_t rank_k = 0;
  int64_t rank_v = 0;
  // ‖X(W−Ŵ)‖²/‖XW‖² on held-out calibration tokens (measured).
  double heldout_error_k = 0;
  double heldout_error_v = 0;
  // The same on the calibration tokens (measured, undamped C).
  double calib_error_k = 0;
  double calib_error_v = 0;
  // Σ_{i≤r} σ² / Σ σ² of the method's scaled spectrum.
  double retained_energy_k = 0;
  double retained_energy_v = 0;
  std::string note;                       // rank deficiency, jitter, fallbacks
  SpectrumReport spectrum_k, spectrum_v;  // empty when not recorded
  // DeepSeek-V3 layout (one joint latent: rank_k = rank_v = kv_lora_rank,
  // retained_energy_k = _v = the joint spectrum's; mla_report.h): the share
  // of key energy the rope split keeps with RoPE, and its NoPE score error
  // (with the correction; absent when the correction is off).
  std::optional<double> rope_energy, nope_score_error;
};

struct CandidateReport {
  std::string name;
  double heldout_nll = 0;
  bool chosen = false;
  std::vector<int64_t> rank_k, rank_v;
};

struct StageTiming {
  std::string stage;
  double seconds = 0;
  double flops = 0;  // useful FLOPs (flop_model.h); 0 for load and write
};

// Zero-shot multiple-choice accuracy (care/eval/multiple_choice.h).
struct TaskScore {
  double acc = 0, acc_stderr = 0;
  double acc_norm = 0, acc_norm_stderr = 0;
};

struct TaskAccuracyReport {
  std::string name, path, format;
  int64_t items = 0;
  TaskScore original, converted;  // the same requests
};

// Rolling-window perplexity of whole documents (care/eval/rolling.h).
struct RollingReport {
  int64_t documents = 0, windows = 0, predictions = 0;
  int64_t words = 0, bytes = 0;
  double token_perplexity = 0, word_perplexity = 0, byte_perplexity = 0;
  double bits_per_byte = 0;
};

struct ConversionReport {
  std::string model;
  std::string output_dir;
  std::string layout = "latent";  // output layout: latent, deepseek_v3
  std::string architecture;       // of the written checkpoint
  std::string method;
  std::string allocation;         // requested strategy
  std::string allocation_chosen;  // candidate actually used
  std::string budget;             // "kv_save=0.75" / "rank=8"
  double damping = 0;
  bool sequential = false;
  int64_t num_layers = 0;
  int64_t kv_width_before = 0;  // numbers cached per token, all layers
  int64_t kv_width_after = 0;
  int64_t budget_width = 0;  // what the budget allowed
  // Calibration
  std::string calib_data;
  int64_t calib_samples = 0, calib_seq_len = 0;
  uint64_t seed = 0;
  int64_t calib_range_begin = 0, calib_range_end = 0;
  int64_t heldout_range_begin = 0, heldout_range_end = 0;
  int64_t calib_tokens = 0, heldout_tokens = 0;
  double heldout_nll_original = 0;
  double heldout_nll_converted = 0;
  // Whether the held-out windows were run, and why: HeldoutReason
  // (pipeline.h). When not, the held-out NLLs, the per-layer held-out
  // errors and the candidates' scores are not in the JSON.
  bool heldout_run = true;
  std::string heldout_reason;
  // Evaluation (absent without evaluation data)
  std::string eval_data;
  int64_t eval_range_begin = 0, eval_range_end = 0;
  int64_t eval_seq_len = 0;
  std::optional<PerplexityReport> original, converted;
  // Task accuracy before/after (evaluation tasks; empty without them).
  std::vector<TaskAccuracyReport> tasks;
  // Rolling perplexity before/after (eval_rolling_stride > 0).
  int64_t rolling_max_length = 0, rolling_stride = 0;
  std::optional<RollingReport> rolling_original, rolling_converted;

  std::vector<LayerReport> layers;
  std::vector<CandidateReport> candidates;
  std::vector<StageTiming> timings;
  // Calibration layers restored from the work dir (ConvertOptions::work_dir)
  // instead of being run; num_layers when the whole pass was.
  int64_t resumed_layers = 0;
  // The DeepSeek-V3 layout's rope split, latent and candidates.
  std::optional<MlaExportReport> deepseek_v3;
};

nlohmann::json ReportToJson(const ConversionReport& report);

// A few lines for a terminal: budget, ranks, perplexities, timings.
std::string ReportSummary(const ConversionReport& report);

}  // namespace care::convert

#endif  // CARE_CONVERT_REPORT_H_

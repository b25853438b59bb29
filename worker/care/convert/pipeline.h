// The conversion pipeline as one library call (docs/conversion.md):
// load → calibrate (and decompose) → allocate → [sequential] → evaluate →
// write, each stage a function of stages/stages.h (where a new stage or
// output layout plugs in). The CLI (`care-worker convert`) and the worker
// service both call ConvertModel with a plain options struct; progress is
// reported per layer of each stage and cancellation is checked at every
// layer boundary.
#ifndef CARE_CONVERT_PIPELINE_H_
#define CARE_CONVERT_PIPELINE_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "care/convert/allocate.h"
#include "care/convert/factorize.h"
#include "care/convert/mla_export/options.h"
#include "care/convert/report.h"
#include "care/convert/task_accuracy.h"
#include "care/io/dtype.h"

namespace care::convert {

// [begin, end) fractions of a token stream.
struct StreamFraction {
  double begin = 0;
  double end = 1;
};

struct ConvertOptions {
  std::string model;       // directory or URI (file://, hf://)
  std::string output_dir;  // must not exist unless overwrite
  bool overwrite = false;

  Budget budget = Budget::KvSave(0.5);
  Method method = Method::kCare;
  AllocationStrategy allocation = AllocationStrategy::kUniform;
  AdjustedOptions adjusted;  // released-code factors for "adjusted"
  double damping = 0.01;     // × mean(diag C), additive
  WhiteningSolver solver = WhiteningSolver::kCholesky;
  // After allocation, re-fit every layer on the inputs produced by the
  // converted layers below it (GPTQ-style; one more calibration pass).
  bool sequential = false;

  // Calibration text/ids (.txt, .jsonl, .u16, .u32).
  std::string calib_data;
  std::string calib_text_field = "text";  // .jsonl field read
  int64_t calib_samples = 256;
  int64_t calib_seq_len = 32;
  uint64_t seed = 0;
  // Default: the whole stream, or [0, 0.9) when eval_data is the same file.
  std::optional<StreamFraction> calib_range;
  double heldout_fraction = 0.1;  // last part of the calibration range
  int64_t heldout_windows = 64;
  // The held-out windows are run only when the job needs them: `auto`
  // scores its candidates there and `sequential` reports its re-fit there.
  // Otherwise (uniform, adjusted) they are skipped unless this asks for
  // the held-out figures (original and converted held-out NLL, per-layer
  // held-out errors): the calibration pass then runs the calibration
  // windows only, up to the last layer's k/v input, and no allocation pass
  // runs. The held-out slice stays out of the sampled range either way, so
  // the windows and the factors are the same. See HeldoutNeeded.
  bool heldout_figures = false;

  // Evaluation (skipped when eval_data is empty): plain windows (P1).
  std::string eval_data;
  int64_t eval_seq_len = 256;
  int64_t eval_windows = 32;             // 0 = every full window in range
  std::string eval_text_field = "text";  // .jsonl field read
  // BOS-prefixed windows (P2, perplexity.h) with the model's BOS id; the
  // BOS position is an input only, never a target.
  bool eval_prepend_bos = false;
  // Default: the whole stream, or [0.9, 1) when it is the calibration file.
  std::optional<StreamFraction> eval_range;
  // Zero-shot multiple-choice tasks scored before and after (task_accuracy.h;
  // independent of eval_data).
  std::vector<TaskEvalSpec> eval_tasks;
  // > 0: eval_data is also scored as whole documents with rolling windows
  // of eval_seq_len inputs and this stride, BOS first (care/eval/rolling.h);
  // eval_range and eval_windows do not apply. Documents: "whole" or
  // "wikitext" (care/eval/documents.h).
  int64_t eval_rolling_stride = 0;
  std::string eval_rolling_documents = "whole";

  // dtype of the written latent factors and copied floating-point weights
  // (F32, F16 or BF16); nullopt: copies keep the source's, factors F32.
  std::optional<io::DType> output_dtype;

  // Resume state root (docs/worker.md "Resume"); "" = none. Calibration
  // results and small stage results are kept in <work_dir>/<fingerprint>/
  // (fingerprint.h) and removed after the output is written; a rerun with
  // the same fingerprint continues where the last one stopped.
  std::string work_dir;

  int threads = 0;  // 0 = all cores
  // Output layout: the CARE latent checkpoint, or a stock DeepSeek-V3 (MLA)
  // checkpoint (docs/conversion.md "DeepSeek-V3 layout") with its options.
  // With deepseek_v3 the budget gives kv_lora_rank + rope_dim per layer
  // unless mla.kv_lora_rank is set; `allocation` and `sequential` do not
  // apply (the format has one rank for all layers).
  OutputLayout output_layout = OutputLayout::kLatent;
  MlaExportOptions mla;

  // Compute device of the engine: "cpu", "cuda" or "cuda:N"
  // (care::compute::OpenBackend; docs/worker.md "Devices").
  std::string device = "cpu";

  // The worker's fenced commit (docs/worker.md "Output"): the write stage's
  // temporary directory carries `staging_tag` in its name, and
  // `before_publish` runs just before the checkpoint is renamed into place;
  // its error publishes nothing and keeps the resume state. Unset offline.
  std::string staging_tag{};
  std::function<absl::Status()> before_publish{};
};

struct ConvertProgress {
  // load, calibrate (includes decomposition), allocate, sequential (only
  // with options.sequential), evaluate, write.
  std::string stage;
  int64_t step = 0;  // layers (or candidates) done in this stage
  int64_t total = 0;
  double overall = 0;  // 0..1 over the whole conversion
  // Useful FLOPs (flop_model.h) done in this stage so far and the stage's
  // wall seconds: flops / seconds is the achieved rate.
  double flops = 0;
  double seconds = 0;
  // Calibration layers restored from the work dir instead of being run.
  int64_t resumed_layers = 0;
};
using ProgressCallback = std::function<void(const ConvertProgress&)>;
// Returns true to stop; checked at layer boundaries (CancelledError).
using CancelCheck = std::function<bool()>;

// Whether the job runs the held-out windows, and why (for the report):
// "allocation auto", "sequential", "asked", or "" when it skips them.
std::string HeldoutReason(const ConvertOptions& options);

absl::StatusOr<ConversionReport> ConvertModel(
    const ConvertOptions& options, const ProgressCallback& progress = nullptr,
    const CancelCheck& cancelled = nullptr);

}  // namespace care::convert

#endif  // CARE_CONVERT_PIPELINE_H_

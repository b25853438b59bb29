// The stages of a conversion (docs/architecture.md "Data flow"), which
// ConvertModel (pipeline.cc) runs in this order:
//
//   Load ─▶ Calibrate ─▶ Allocate ─▶ [Sequential] ─▶ ReportLayers
//        ─▶ Evaluate ─▶ EvaluateRollingPerplexity ─▶ EvaluateTasks ─▶ Write
//
// Each stage is one function in its own file, stages/<stage>.cc. It takes
// plain values (the options, the Inputs that Load opened, the previous
// stage's result), returns a plain value, reports progress and checks
// cancellation through StageProgress under its own stage name, and fills
// only its own fields of the ConversionReport (listed below) plus its entry
// in report->timings.
//
// Adding a stage (for example task-accuracy evaluation or healing):
//   1. Declare it here: its inputs, its result type, the report fields it
//      fills (new fields go in report.h and ReportToJson).
//   2. Write it in stages/<stage>.cc and list that in convert/CMakeLists.txt.
//   3. Give its progress name a share of the run in kStageShares
//      (stages/progress.cc) and call it from ConvertModel in data-flow order:
//      after the fitting stages (Allocate, Sequential) when it changes the
//      latent layers, after Evaluate when it only measures them.
// Adding an output layout (for example one another runtime loads): one
// writer in its own file next to write_checkpoint.cc, chosen inside Write
// (stages/write.cc) from a ConvertOptions field; Write keeps filling nothing
// but its timing, so the report is the same whatever the layout.
#ifndef CARE_CONVERT_STAGES_STAGES_H_
#define CARE_CONVERT_STAGES_STAGES_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "care/convert/allocate.h"
#include "care/convert/calibrate.h"
#include "care/convert/decompose_model.h"
#include "care/convert/latent_layer.h"
#include "care/convert/pipeline.h"
#include "care/convert/report.h"
#include "care/convert/resume_state.h"
#include "care/convert/stages/progress.h"
#include "care/engine/engine.h"
#include "care/engine/perplexity.h"
#include "care/io/model.h"

namespace care::convert::stage {

// What Load opens and every later stage reads.
struct Inputs {
  std::string model_dir;  // the model URI resolved to a local directory
  io::Model model;        // config + weights (read one tensor at a time)
  ModelShape shape;
  int64_t budget_width = 0;  // total latent width the budget allows
  CalibrationWindows windows;
  std::optional<engine::EvalWindows> eval;  // absent without eval_data
  engine::EngineOptions engine;             // every engine pass runs so
  FactorizeOptions factorize;
  std::unique_ptr<ResumeState> resume;  // null: nothing saved or resumed

  const ModelConfig& config() const { return model.config; }
  const io::Checkpoint& weights() const { return *model.weights; }
  int64_t num_layers() const { return model.config.num_hidden_layers; }
};

// The latent attention at the chosen ranks, with what the per-layer report
// needs from the fit.
struct Fit {
  Allocation allocation;
  std::vector<LatentLayer> layers;                 // [L]
  std::vector<LayerDecomposition> decompositions;  // [L], weights dropped
  std::vector<LayerGrams> grams;                   // [L]
  // [L] The spectra the allocation compared, sampled for the report (the
  // first pass's, also after a sequential re-fit).
  std::vector<SpectrumReport> spectra_k, spectra_v;
};

// Resolves and opens the model, checks that it converts and that the output
// directory may be written, cuts the calibration and evaluation windows and
// opens the resume state. Fills: model, output_dir, architecture, method,
// allocation, budget, damping, sequential, num_layers, kv_width_before,
// budget_width, calib_*, seed, heldout_range_*, heldout_tokens, eval_*.
absl::StatusOr<Inputs> Load(const ConvertOptions& options,
                            StageProgress& progress, ConversionReport* report);

// One pass of the original model: per-layer covariances, decomposed at once
// (or restored from the resume state). Fills: resumed_layers,
// heldout_nll_original.
absl::StatusOr<DecomposedModel> Calibrate(const Inputs& in,
                                          StageProgress& progress,
                                          ConversionReport* report);

// Chooses the ranks (options.allocation; `auto` scores each candidate on the
// held-out windows) and truncates every layer to them. Fills:
// allocation_chosen, heldout_nll_converted, candidates, kv_width_after.
absl::StatusOr<Fit> Allocate(const ConvertOptions& options, const Inputs& in,
                             DecomposedModel decomposed,
                             StageProgress& progress, ConversionReport* report);

// options.sequential: re-fits every layer at fit's ranks on the inputs the
// converted layers below it produce. Fills: heldout_nll_converted.
absl::StatusOr<Fit> Sequential(const Inputs& in, Fit fit,
                               StageProgress& progress,
                               ConversionReport* report);

// The per-layer report of the final fit. Fills: layers.
void ReportLayers(const Fit& fit, ConversionReport* report);

// Perplexity of the original and the converted model on the evaluation
// windows (nothing without them). Fills: original, converted.
absl::Status Evaluate(const Inputs& in, const std::vector<LatentLayer>& layers,
                      StageProgress& progress, ConversionReport* report);

// Zero-shot task accuracy of the original and the converted model on
// options.eval_tasks (nothing without them; task_accuracy.h). Reports
// progress under "evaluate"; its time is added to the evaluate timing.
// Fills: tasks.
absl::Status EvaluateTasks(const ConvertOptions& options, const Inputs& in,
                           const std::vector<LatentLayer>& layers,
                           StageProgress& progress, ConversionReport* report);

// options.eval_rolling_stride > 0: rolling-window perplexity of the
// evaluation file's documents, original and converted (care/eval/rolling.h).
// Progress under "evaluate"; time added to the evaluate timing. Fills:
// rolling_max_length, rolling_stride, rolling_original, rolling_converted.
absl::Status EvaluateRollingPerplexity(const ConvertOptions& options,
                                       const Inputs& in,
                                       const std::vector<LatentLayer>& layers,
                                       StageProgress& progress,
                                       ConversionReport* report);

// The tensor part of Write, already under way (StartWrite).
class StartedWrite {
 public:
  virtual ~StartedWrite() = default;
};

// Starts writing the converted checkpoint's tensors, which depend only on
// the fit, on a background thread (flushed to disk when done), so that the
// I/O overlaps the evaluation stages. `in` and `layers` must outlive the
// result; destroying it unused stops the thread and removes what it staged.
std::unique_ptr<StartedWrite> StartWrite(
    const ConvertOptions& options, const Inputs& in,
    const std::vector<LatentLayer>& layers);

// Writes the converted checkpoint, with the report so far as
// care_report.json, into options.output_dir: finishes `started` (from
// StartWrite with the same arguments), or writes the tensors itself when it
// is null. Fills: nothing (its timing, from its call to the commit, is added
// after the JSON is written).
absl::Status Write(const ConvertOptions& options, const Inputs& in,
                   const std::vector<LatentLayer>& layers,
                   StageProgress& progress, ConversionReport* report,
                   std::unique_ptr<StartedWrite> started = nullptr);

}  // namespace care::convert::stage

#endif  // CARE_CONVERT_STAGES_STAGES_H_

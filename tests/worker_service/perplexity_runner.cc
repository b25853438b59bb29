#include "worker_service/perplexity_runner.h"

#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "base/uri.h"
#include "care/data/dataset.h"
#include "care/engine/engine.h"
#include "care/engine/families.h"
#include "care/engine/perplexity.h"
#include "care/io/model.h"

namespace care::testing {

absl::StatusOr<care::v1::Report> PerplexityRunner::Run(
    const care::v1::Job& job, care::worker::ProgressSink& progress,
    const care::worker::CancelToken& cancel) {
  const care::v1::JobSpec& spec = job.spec();
  absl::Time start = absl::Now();
  care::v1::Progress p;
  p.set_stage(care::v1::STAGE_LOADING);
  progress.Report(p);

  CARE_ASSIGN_OR_RETURN(care::Uri model_uri,
                        care::ParseUri(spec.model_uri(), false));
  CARE_ASSIGN_OR_RETURN(
      care::io::Model model,
      care::io::OpenModel(model_uri.path, care::engine::Families()));
  if (spec.evaluation().dataset_uri().empty()) {
    return absl::InvalidArgumentError(
        "evaluation.dataset_uri: this runner needs an evaluation token file");
  }
  CARE_ASSIGN_OR_RETURN(care::Uri data_uri,
                        care::ParseUri(spec.evaluation().dataset_uri(), false));
  CARE_ASSIGN_OR_RETURN(std::vector<int32_t> stream,
                        care::data::ReadTokenFile(data_uri.path));
  care::engine::WindowOptions window_options;
  window_options.seq_len = spec.evaluation().window_length();
  window_options.max_windows = spec.evaluation().max_windows();
  CARE_ASSIGN_OR_RETURN(care::engine::EvalWindows windows,
                        care::engine::MakeEvalWindows(stream, window_options));
  care::engine::EngineOptions engine_options;
  engine_options.threads = threads_;
  CARE_ASSIGN_OR_RETURN(auto forward, care::engine::LayerwiseForward::Create(
                                          model.config, *model.weights,
                                          windows.inputs, engine_options));

  int64_t delay_ms = 0;
  if (auto it = spec.labels().find("test.layer-delay-ms");
      it != spec.labels().end() && !absl::SimpleAtoi(it->second, &delay_ms)) {
    return absl::InvalidArgumentError(
        absl::StrCat("label test.layer-delay-ms: expected an integer, got '",
                     it->second, "'"));
  }
  absl::Time loaded = absl::Now();
  const int64_t layers = forward->num_layers();
  p.set_stage(care::v1::STAGE_EVALUATING);
  p.set_layer_count(static_cast<int32_t>(layers));
  for (int64_t l = 0; l < layers; ++l) {
    if (cancel.cancelled()) {
      return absl::CancelledError(
          absl::StrCat("stopped before layer ", l, " of ", layers));
    }
    p.set_layer(static_cast<int32_t>(l));
    p.set_fraction(static_cast<double>(l) / layers);
    progress.Report(p);
    CARE_RETURN_IF_ERROR(forward->RunLayer());
    if (delay_ms > 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
    }
  }
  CARE_ASSIGN_OR_RETURN(care::engine::NllSum nll,
                        forward->ScoreTargets(windows.targets));
  p.set_fraction(1.0);
  progress.Report(p);

  care::v1::Report report;
  report.mutable_original()->set_mean_nll(nll.mean());
  report.mutable_original()->set_ppl(nll.ppl());
  report.mutable_original()->set_predictions(nll.count);
  auto* t = report.add_timings();
  t->set_stage(care::v1::STAGE_LOADING);
  t->set_seconds(absl::ToDoubleSeconds(loaded - start));
  t = report.add_timings();
  t->set_stage(care::v1::STAGE_EVALUATING);
  t->set_seconds(absl::ToDoubleSeconds(absl::Now() - loaded));
  return report;
}

}  // namespace care::testing

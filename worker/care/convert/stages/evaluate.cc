// The evaluate stage: perplexity of the original and of the converted model
// on the same evaluation windows, both in one pass (EvaluatePerplexityPair:
// the weights they share are loaded once). The original model's score does
// not depend on the conversion, so an earlier attempt's is reused (resume
// state, keyed by the evaluation windows) and only the converted model runs.
#include <memory>
#include <optional>
#include <string>

#include "base/status_macros.h"
#include "care/convert/fingerprint.h"
#include "care/convert/flop_model.h"
#include "care/convert/stages/stages.h"

namespace care::convert::stage {
namespace {

PerplexityReport ToReport(const engine::PerplexityResult& r) {
  return {r.ppl, r.mean_nll, r.windows, r.predictions};
}

// Hooks that report pass `pass` of the stage's two passes per layer.
engine::LayerHooks ProgressHooks(StageProgress& progress, int64_t L,
                                 int64_t pass,
                                 std::function<double(int64_t)> flops) {
  engine::LayerHooks hooks;
  hooks.on_layer_output =
      [cb = progress.Layers("evaluate", L, pass, 2, std::move(flops))](
          int64_t l, const compute::Matrix&) { return cb(l); };
  return hooks;
}

}  // namespace

absl::Status Evaluate(const Inputs& in, const std::vector<LatentLayer>& layers,
                      StageProgress& progress, ConversionReport* report) {
  StageTimer timer;
  if (in.eval) {
    const ModelConfig& config = in.config();
    const engine::EvalWindows& eval = *in.eval;
    const int64_t L = in.num_layers();
    progress.Begin("evaluate");
    const auto eval_flops =
        ForwardLayerFlops(config, eval.inputs.tokens(), eval.inputs.seq_len);
    const auto add_head = [&](const engine::PerplexityResult& r) {
      progress.AddFlops("evaluate", static_cast<double>(r.predictions) *
                                        HeadFlopsPerToken(config));
    };
    const std::string orig_key = "eval-original-" + EvalWindowsKey(eval);
    std::optional<engine::PerplexityResult> orig;
    if (in.resume) {
      if (auto saved = in.resume->LoadValues(orig_key, 4)) {
        orig = engine::PerplexityResult{static_cast<int64_t>((*saved)[0]),
                                        static_cast<int64_t>((*saved)[1]),
                                        (*saved)[2], (*saved)[3]};
      }
    }
    const auto converted_projector =
        [&](int64_t l) -> absl::StatusOr<std::unique_ptr<engine::KvProjector>> {
      return layers[l].MakeProjector();
    };
    std::optional<engine::PerplexityResult> conv;
    if (!orig) {
      // Both models in one pass: every weight but K/V is loaded once.
      engine::LayerHooks both_hooks;
      both_hooks.on_layer_output =
          [cb = progress.Layers("evaluate", L, 0, 1, [&](int64_t l) {
            return 2 * eval_flops(l);
          })](int64_t l, const compute::Matrix&) { return cb(l); };
      CARE_ASSIGN_OR_RETURN(
          engine::PerplexityPair both,
          engine::EvaluatePerplexityPair(config, in.weights(), eval, in.engine,
                                         converted_projector, both_hooks));
      orig = both.first;
      conv = both.second;
      add_head(*orig);
      SaveValuesOrLog(
          in.resume.get(), orig_key,
          {static_cast<double>(orig->windows),
           static_cast<double>(orig->predictions), orig->mean_nll, orig->ppl});
    } else {
      engine::LayerHooks converted_hooks =
          ProgressHooks(progress, L, 1, eval_flops);
      converted_hooks.make_kv_projector = converted_projector;
      CARE_ASSIGN_OR_RETURN(
          conv, engine::EvaluatePerplexity(config, in.weights(), eval,
                                           in.engine, converted_hooks));
    }
    add_head(*conv);
    report->original = ToReport(*orig);
    report->converted = ToReport(*conv);
  }
  timer.Done("evaluate", report, progress.Flops("evaluate"));
  return absl::OkStatus();
}

}  // namespace care::convert::stage

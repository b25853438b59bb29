// The rolling-perplexity part of the evaluate stage: the evaluation file's
// documents scored with rolling windows by the original and by the
// converted model (care/eval/rolling.h). Its seconds are added to the
// evaluate timing.
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "care/convert/stages/stages.h"
#include "care/eval/documents.h"
#include "care/eval/rolling.h"
#include "care/tokenizer/tokenizer.h"

namespace care::convert::stage {
namespace {

RollingReport ToReport(const eval::RollingResult& r) {
  return {r.documents,       r.windows,         r.predictions,
          r.words,           r.bytes,           r.token_perplexity,
          r.word_perplexity, r.byte_perplexity, r.bits_per_byte};
}

bool IsIdFile(const std::string& path) {
  return absl::EndsWith(path, ".u16") || absl::EndsWith(path, ".u32");
}

}  // namespace

absl::Status EvaluateRollingPerplexity(const ConvertOptions& options,
                                       const Inputs& in,
                                       const std::vector<LatentLayer>& layers,
                                       StageProgress& progress,
                                       ConversionReport* report) {
  if (options.eval_rolling_stride <= 0 || options.eval_data.empty()) {
    return absl::OkStatus();
  }
  const auto start = std::chrono::steady_clock::now();
  std::unique_ptr<tok::Tokenizer> tokenizer;
  if (absl::StatusOr<std::unique_ptr<tok::Tokenizer>> t =
          tok::LoadTokenizer(in.model_dir);
      t.ok()) {
    tokenizer = *std::move(t);
  } else if (!IsIdFile(options.eval_data)) {
    return t.status();
  }
  CARE_ASSIGN_OR_RETURN(
      eval::DocumentSplit split,
      eval::ParseDocumentSplit(options.eval_rolling_documents));
  CARE_ASSIGN_OR_RETURN(
      std::vector<eval::RollingDocument> docs,
      eval::LoadRollingDocuments(
          options.eval_data, tokenizer.get(),
          {.split = split, .text_field = options.eval_text_field}));
  eval::RollingOptions ro;
  ro.max_length = options.eval_seq_len;
  ro.stride = options.eval_rolling_stride;
  if (in.config().bos_token_id) {
    ro.prefix = static_cast<int32_t>(*in.config().bos_token_id);
  } else if (tokenizer && tokenizer->bos_id()) {
    ro.prefix = tokenizer->bos_id();
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "evaluation.rolling_stride: ", in.model_dir,
        " has no BOS token (no bos_token_id in config.json, none in its "
        "tokenizer)"));
  }
  int64_t passes = 0;
  eval::SequenceOptions so;
  so.engine = in.engine;
  so.on_pass = [&](int64_t, int64_t) {
    ++passes;
    return progress.Step("evaluate", passes, passes);
  };
  CARE_ASSIGN_OR_RETURN(
      eval::RollingResult original,
      eval::EvaluateRolling(in.config(), in.weights(), docs, ro, so));
  so.hooks.make_kv_projector =
      [&](int64_t l) -> absl::StatusOr<std::unique_ptr<engine::KvProjector>> {
    return layers[l].MakeProjector();
  };
  CARE_ASSIGN_OR_RETURN(
      eval::RollingResult converted,
      eval::EvaluateRolling(in.config(), in.weights(), docs, ro, so));
  report->rolling_max_length = ro.max_length;
  report->rolling_stride = ro.stride;
  report->rolling_original = ToReport(original);
  report->rolling_converted = ToReport(converted);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  for (StageTiming& t : report->timings) {
    if (t.stage == "evaluate") t.seconds += seconds;
  }
  return absl::OkStatus();
}

}  // namespace care::convert::stage

#include "service/pipeline_protocol.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "service/job_options.h"

namespace care::worker {

namespace {

void DecodeProgress(const nlohmann::json& p, PipelineMessage& m) {
  m.kind = PipelineMessage::kProgress;
  m.progress.set_stage(StageFromPipeline(p.value("stage", "")));
  m.progress.set_fraction(std::clamp(p.value("overall", 0.0), 0.0, 1.0));
  const int64_t total = p.value("total", int64_t{0});
  if (total > 0) {
    // step counts finished layers; the one being worked on is next.
    m.progress.set_layer(
        static_cast<int32_t>(std::min(p.value("step", int64_t{0}), total - 1)));
    m.progress.set_layer_count(static_cast<int32_t>(total));
  }
  if (p.contains("flops")) {
    m.has_flops = true;
    m.flops = p.value("flops", 0.0);
    m.seconds = p.value("seconds", 0.0);
  }
  m.resumed_layers = p.value("resumed_layers", int64_t{0});
}

}  // namespace

PipelineMessage DecodePipelineLine(const std::string& line,
                                   const care::v1::JobSpec& spec) {
  PipelineMessage m;
  nlohmann::json message = nlohmann::json::parse(line, nullptr, false);
  if (message.is_discarded() || !message.is_object()) return m;
  if (auto it = message.find("progress");
      it != message.end() && it->is_object()) {
    DecodeProgress(*it, m);
  } else if (auto commit = message.find("commit");
             commit != message.end() && commit->is_object()) {
    m.kind = PipelineMessage::kCommit;
    m.output = commit->value("output", std::string());
  } else if (auto report = message.find("report"); report != message.end()) {
    m.kind = PipelineMessage::kOutcome;
    m.outcome = ReportFromPipelineJson(*report, spec);
  } else if (auto error = message.find("error");
             error != message.end() && error->is_object()) {
    m.kind = PipelineMessage::kOutcome;
    int code =
        error->value("code", static_cast<int>(absl::StatusCode::kInternal));
    if (code <= 0 || code > 16) {
      code = static_cast<int>(absl::StatusCode::kInternal);
    }
    m.outcome = absl::Status(static_cast<absl::StatusCode>(code),
                             error->value("message", std::string("unknown")));
  }
  return m;
}

std::string CommitAnswer(bool granted, const std::string& reason) {
  nlohmann::json answer = {{"granted", granted}};
  if (!reason.empty()) answer["reason"] = reason;
  return answer.dump();
}

}  // namespace care::worker

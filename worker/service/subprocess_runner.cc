#include "service/subprocess_runner.h"

#include <signal.h>

#include <filesystem>
#include <iostream>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/status_macros.h"
#include "service/job_options.h"
#include "service/leftovers.h"
#include "service/pipeline_process.h"
#include "service/pipeline_protocol.h"

namespace care::worker {

namespace {

// A child told to stop because the lease is gone gets this long to reach a
// layer boundary; then it is killed (its work is no longer ours).
constexpr absl::Duration kLostLeaseGrace = absl::Seconds(10);

}  // namespace

absl::StatusOr<nlohmann::json> SubprocessRunner::Options(
    const care::v1::Job& job) const {
  CARE_ASSIGN_OR_RETURN(nlohmann::json options,
                        PipelineOptionsFromJob(job, threads_));
  options["device"] = device_;  // This worker's, whatever the spec allowed.
  // Resume state shared by attempts and workers: <work_dir>/<fingerprint>/.
  // Absolute: the pipeline process runs in its scratch directory.
  if (!work_dir_.empty()) {
    std::error_code ignored;
    const std::filesystem::path root =
        std::filesystem::absolute(work_dir_, ignored);
    options["work_dir"] = root.empty() ? work_dir_ : root.string();
  }
  // The output's temporary directory names this attempt, so that its
  // leftovers can be found after a crash (leftovers.h).
  options["staging_tag"] = StagingTag(job.id(), job.attempt());
  return options;
}

absl::StatusOr<care::v1::Report> SubprocessRunner::Run(
    const care::v1::Job& job, ProgressSink& progress,
    const CancelToken& cancel) {
  CARE_ASSIGN_OR_RETURN(nlohmann::json options, Options(job));
  const std::string output = options.value("output_dir", std::string());
  // Earlier attempts of this job are fenced off: their partial outputs go
  // (a later attempt's, should this one be stale, are left alone).
  RemoveStagingOfEarlierAttempts(output, job.id(), job.attempt());
  CARE_ASSIGN_OR_RETURN(std::unique_ptr<Scratch> scratch,
                        Scratch::Create(work_dir_, job.id(), job.attempt()));
  CARE_ASSIGN_OR_RETURN(
      std::unique_ptr<PipelineProcess> process,
      PipelineProcess::Spawn({pipeline_exe_, "serve", "--run-job"},
                             scratch->path()));
  const absl::Status written = process->WriteLine(options.dump());
  std::optional<absl::StatusOr<care::v1::Report>> outcome =
      Converse(*process, job, progress, cancel);
  const ProcessEnd end = process->Wait();
  // This attempt's own leftovers, whatever the outcome.
  RemoveStagingOfAttempt(output, job.id(), job.attempt());
  scratch.reset();
  return Outcome(end, std::move(outcome), written, progress);
}

std::optional<absl::StatusOr<care::v1::Report>> SubprocessRunner::Converse(
    PipelineProcess& process, const care::v1::Job& job, ProgressSink& progress,
    const CancelToken& cancel) {
  std::optional<absl::StatusOr<care::v1::Report>> outcome;
  bool stopping = false;
  absl::Time kill_at = absl::InfiniteFuture();
  int64_t resumed_logged = 0;
  while (true) {
    if (cancel.cancelled() && !stopping) {
      process.Signal(SIGTERM);  // Stops at the next layer boundary.
      stopping = true;
      if (cancel.Has(CancelToken::kLeaseLost)) {
        kill_at = absl::Now() + kLostLeaseGrace;
      }
    }
    if (absl::Now() >= kill_at) {
      process.Signal(SIGKILL);
      kill_at = absl::InfiniteFuture();
    }
    std::optional<std::vector<std::string>> lines =
        process.ReadLines(absl::Milliseconds(100));
    if (!lines) break;  // EOF: the child exited.
    for (const std::string& line : *lines) {
      PipelineMessage m = DecodePipelineLine(line, job.spec());
      switch (m.kind) {
        case PipelineMessage::kProgress:
          progress.Report(m.progress);
          if (m.has_flops) {
            progress.StageCompute(m.progress.stage(), m.flops, m.seconds);
          }
          if (m.resumed_layers > resumed_logged) {
            resumed_logged = m.resumed_layers;
            std::cerr << "care-worker: " << job.id() << " attempt "
                      << job.attempt() << ": resumed " << m.resumed_layers
                      << " calibration layers from " << work_dir_ << "\n";
          }
          break;
        case PipelineMessage::kCommit: {
          absl::Status confirmed =
              cancel.cancelled()
                  ? absl::CancelledError("the job was cancelled or released")
                  : progress.ConfirmCommit(m.output);
          (void)process.WriteLine(
              CommitAnswer(confirmed.ok(), std::string(confirmed.message())));
          break;
        }
        case PipelineMessage::kOutcome:
          outcome = std::move(m.outcome);
          break;
        case PipelineMessage::kIgnored:
          break;
      }
    }
  }
  return outcome;
}

absl::StatusOr<care::v1::Report> SubprocessRunner::Outcome(
    const ProcessEnd& end,
    std::optional<absl::StatusOr<care::v1::Report>> outcome,
    const absl::Status& written, ProgressSink& progress) const {
  if (outcome) {
    if (outcome->ok()) {
      // Per-layer results reach the job's events with the last heartbeat.
      for (const auto& layer : (*outcome)->layers()) progress.LayerDone(layer);
    }
    return *std::move(outcome);
  }
  if (!written.ok()) return written;
  if (end.signalled) {
    // Killed from outside (the kernel's OOM killer sends SIGKILL): not the
    // job's fault. Aborted is retried, on another worker first.
    return absl::AbortedError(absl::StrFormat(
        "the pipeline process (%s) was killed by %s at a peak RSS of %.1f "
        "MiB%s; an infrastructure failure, retried",
        pipeline_exe_, DescribeSignal(end.signal), end.peak_rss_kb / 1024.0,
        end.signal == SIGKILL ? " (out of memory? the kernel's OOM killer "
                                "sends SIGKILL)"
                              : ""));
  }
  return absl::InternalError(
      absl::StrCat("the pipeline process (", pipeline_exe_,
                   ") exited with status ", end.exit_code, " without a result",
                   end.exit_code == 127 ? " (could not be started)" : ""));
}

}  // namespace care::worker

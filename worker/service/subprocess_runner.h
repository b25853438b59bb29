// The production JobRunner: runs the CARE pipeline of one job in a child
// process, `care-worker serve --run-job` (docs/worker.md).
//
// Why a child process: Debian's libsentencepiece.so carries its own copy of
// protobuf-lite (3.14) and exports it. In a process that also loads
// libprotobuf.so (3.21, needed by gRPC) one of the two binds to the other's
// symbols and aborts: at startup, or at the first SentencePiece model load.
// So the gRPC side (this process) never loads SentencePiece and the pipeline
// side (care-worker) never loads libprotobuf. The child also isolates the
// service from a crash in the pipeline: it becomes an internal failure of
// that job, and the worker serves on.
//
// Protocol (pipeline_protocol.h): the options JSON (job_options.h) as the
// first line of the child's stdin; JSON lines on its stdout:
// {"progress": {stage, step, total, overall}} ..., {"commit": {output}}
// before the output is renamed into place (answered on stdin with
// {"granted": bool, "reason"} after ProgressSink::ConfirmCommit), then
// {"report": {...}} or {"error": {"code": absl code, "message": ...}}.
// Cancel: SIGTERM to the child, which stops at its next layer boundary (and
// SIGKILL 10 s later when the lease is lost). The child dies with this
// process (PR_SET_PDEATHSIG). A child killed by a signal is an
// infrastructure failure (Aborted: retried), its message naming the signal
// and the peak RSS.
#ifndef CARE_WORKER_SERVICE_SUBPROCESS_RUNNER_H_
#define CARE_WORKER_SERVICE_SUBPROCESS_RUNNER_H_

#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "service/job_runner.h"
#include "service/pipeline_process.h"

namespace care::worker {

class SubprocessRunner : public JobRunner {
 public:
  // `pipeline_exe`: the care-worker binary. `work_dir` (may be empty): each
  // job's process runs in <work_dir>/<job id>/attempt-<n> (cwd and TMPDIR),
  // removed afterwards (leftovers.h).
  SubprocessRunner(std::string pipeline_exe, int threads,
                   std::string work_dir = "")
      : pipeline_exe_(std::move(pipeline_exe)),
        threads_(threads),
        work_dir_(std::move(work_dir)) {}

  absl::StatusOr<care::v1::Report> Run(const care::v1::Job& job,
                                       ProgressSink& progress,
                                       const CancelToken& cancel) override;

  // The pipeline's compute device, "cpu" or "cuda:N" (the options' "device").
  void set_device(std::string device) { device_ = std::move(device); }

 private:
  // The child's options: the job's, plus this worker's device, work dir and
  // the attempt's staging tag.
  absl::StatusOr<nlohmann::json> Options(const care::v1::Job& job) const;
  // Reads the child's lines until EOF: progress to `progress`, commit
  // requests answered, signals on cancel. Returns the reported outcome.
  std::optional<absl::StatusOr<care::v1::Report>> Converse(
      PipelineProcess& process, const care::v1::Job& job,
      ProgressSink& progress, const CancelToken& cancel);
  // The job's result from what the child said and how it ended.
  absl::StatusOr<care::v1::Report> Outcome(
      const ProcessEnd& end,
      std::optional<absl::StatusOr<care::v1::Report>> outcome,
      const absl::Status& written, ProgressSink& progress) const;

  std::string device_ = "cpu";
  std::string pipeline_exe_;
  int threads_;
  std::string work_dir_;
};

}  // namespace care::worker

#endif  // CARE_WORKER_SERVICE_SUBPROCESS_RUNNER_H_

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
// Protocol: the options JSON (job_options.h) on the child's stdin; JSON lines
// on its stdout: {"progress": {stage, step, total, overall}} ...,
// then {"report": {...}} or {"error": {"code": absl code, "message": ...}}.
// Cancel: SIGTERM to the child, which stops at its next layer boundary. The
// child dies with this process (PR_SET_PDEATHSIG).
#ifndef CARE_WORKER_SERVICE_SUBPROCESS_RUNNER_H_
#define CARE_WORKER_SERVICE_SUBPROCESS_RUNNER_H_

#include <string>

#include "service/job_runner.h"

namespace care::worker {

class SubprocessRunner : public JobRunner {
 public:
  // `pipeline_exe`: the care-worker binary. `work_dir` (may be empty): each
  // job's process runs in <work_dir>/<job id>/attempt-<n> (cwd and TMPDIR),
  // removed afterwards.
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
  std::string device_ = "cpu";
  std::string pipeline_exe_;
  int threads_;
  std::string work_dir_;
};

}  // namespace care::worker

#endif  // CARE_WORKER_SERVICE_SUBPROCESS_RUNNER_H_

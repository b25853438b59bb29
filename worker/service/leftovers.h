// What a job attempt leaves on disk, and its removal (docs/worker.md
// "What survives what"):
// - the output's temporary directory, `.<name>.tmp-<job>-a<attempt>-XXXXXX`
//   beside the destination (io::CheckpointWriter, tagged with the attempt):
//   removed when the attempt ends (any outcome), and an earlier attempt's
//   when a later attempt of the same job starts (that one is fenced off;
//   a later attempt's is never touched);
// - the scratch directory <work_dir>/<job>/attempt-<n> (cwd and TMPDIR of the
//   pipeline process): removed when the attempt ends, and at worker start
//   when no live worker holds it (an flock on its `.owner` file).
// Resume state (<work_dir>/<fingerprint>/) is not a leftover: it is shared by
// attempts and removed by the pipeline only after a confirmed commit.
#ifndef CARE_WORKER_SERVICE_LEFTOVERS_H_
#define CARE_WORKER_SERVICE_LEFTOVERS_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace care::worker {

// "<job>-a<attempt>", the io::WriterOptions::temp_tag of an attempt.
std::string StagingTag(const std::string& job_id, int attempt);

// Remove the temporary output directories of `attempt` / of every earlier
// attempt of `job_id` beside `output_dir` (never a later one's: a stale
// attempt must not touch what the current one writes). Best effort; return
// how many.
int RemoveStagingOfAttempt(const std::string& output_dir,
                           const std::string& job_id, int attempt);
int RemoveStagingOfEarlierAttempts(const std::string& output_dir,
                                   const std::string& job_id, int attempt);

// The scratch directory of one attempt, created and flock'ed; removed (with
// its job directory when that is left empty) on destruction. Without a
// work dir, path() is empty and nothing is created.
class Scratch {
 public:
  static absl::StatusOr<std::unique_ptr<Scratch>> Create(
      const std::string& work_dir, const std::string& job_id, int attempt);
  ~Scratch();
  const std::string& path() const { return path_; }

 private:
  Scratch() = default;
  std::string path_;
  int lock_fd_ = -1;
};

// At worker start: removes scratch directories <work_dir>/job-*/attempt-*
// that no live worker holds, then job directories left empty. Returns how
// many attempt directories went.
int RemoveAbandonedScratch(const std::string& work_dir);

}  // namespace care::worker

#endif  // CARE_WORKER_SERVICE_LEFTOVERS_H_

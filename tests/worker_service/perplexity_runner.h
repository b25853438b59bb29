// A JobRunner for the protocol tests that does real work on real data: the
// engine's perplexity of the job's model on its evaluation token file,
// layer by layer, reporting progress and honouring cancellation at every
// layer boundary. It converts nothing and writes nothing (the CARE pipeline
// runner is the production one); its report carries the measured
// original perplexity, which the tests check against the fixture's
// independent reference.
//
// Timing control for the tests: the label "test.layer-delay-ms" adds that
// pause after each layer, so a cancel, a SIGTERM or a kill -9 lands mid-job.
#ifndef CARE_TESTS_WORKER_SERVICE_PERPLEXITY_RUNNER_H_
#define CARE_TESTS_WORKER_SERVICE_PERPLEXITY_RUNNER_H_

#include "service/job_runner.h"

namespace care::testing {

class PerplexityRunner : public care::worker::JobRunner {
 public:
  explicit PerplexityRunner(int threads) : threads_(threads) {}
  absl::StatusOr<care::v1::Report> Run(
      const care::v1::Job& job, care::worker::ProgressSink& progress,
      const care::worker::CancelToken& cancel) override;

 private:
  int threads_;
};

}  // namespace care::testing

#endif  // CARE_TESTS_WORKER_SERVICE_PERPLEXITY_RUNNER_H_

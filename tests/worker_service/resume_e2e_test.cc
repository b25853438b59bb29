// Issue 8 resume and worker GFLOP/s end to end: care-server, `care-worker
// serve` workers sharing one --work-dir, carectl. The worker running a
// conversion is killed (-9) after some calibration layers; the retried
// attempt on the other worker resumes from the saved layers (its report says
// how many) and its result equals an uninterrupted offline conversion. The
// surviving worker's /metrics then shows the achieved GFLOP/s and the stage
// FLOP counters.
#include <signal.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "worker_service/cluster_test_base.h"

namespace care::testing {
namespace {

class ResumeEndToEndTest : public ClusterTest {
 protected:
  std::vector<std::string> Serve() {
    return {BinaryPath("worker/cli/care-worker"), "serve", "--work-dir",
            dir_ + "/work"};
  }

  // 5000 x 32 calibration tokens: each layer takes long enough (~0.1-1 s)
  // for the test to see the pass between layers.
  std::vector<std::string> Flags(const std::string& out) {
    return {"--model", model_, "--out", out, "--kv-save", "0.5", "--calib",
            tokens_, "--calib-samples", "5000", "--calib-seq-len", "32",
            "--eval", tokens_, "--eval-seq-len", "128", "--eval-windows", "8",
            // The held-out windows run in both (evaluation.heldout_figures).
            "--heldout"};
  }

  nlohmann::json Offline() {
    const std::string out = dir_ + "/offline";
    std::vector<std::string> argv = {BinaryPath("worker/cli/care-worker"),
                                     "convert"};
    std::vector<std::string> flags = Flags(out);
    argv.insert(argv.end(), flags.begin(), flags.end());
    argv.insert(argv.end(), {"--threads", "1", "--quiet"});
    CommandResult r = RunCommand(argv, logs_, absl::Seconds(120));
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return nlohmann::json::parse(ReadFileOrEmpty(out + "/care_report.json"),
                                 nullptr, false);
  }
};

TEST_F(ResumeEndToEndTest, KilledWorkersLayersAreResumedByTheNextAttempt) {
  WorkerProcess& first = StartWorker("w1", Serve());
  const std::string out = dir_ + "/outputs/resumed";
  std::vector<std::string> submit = Flags(out);
  submit.insert(submit.begin(), {"submit", "--quiet"});
  CommandResult submitted = Carectl(submit);
  ASSERT_EQ(submitted.exit_code, 0) << submitted.err;
  const std::string id = submitted.out.substr(0, submitted.out.find('\n'));

  // Two calibration layers done (progress.layer counts finished layers; the
  // snapshot after layer 0 is written before layer 1 starts), or, on a
  // machine fast enough to be past calibration already, a later stage (the
  // whole pass is saved by then).
  care::v1::Job running = WaitFor(
      id,
      [](const care::v1::Job& j) {
        return (j.progress().stage() == care::v1::STAGE_CALIBRATING &&
                j.progress().layer() >= 2) ||
               j.progress().stage() == care::v1::STAGE_DECOMPOSING ||
               j.progress().stage() == care::v1::STAGE_EVALUATING;
      },
      absl::Seconds(60));
  ASSERT_EQ(running.worker_id(), "w1");
  ASSERT_LT(running.state(), care::v1::JOB_STATE_SUCCEEDED);
  first.process->Signal(SIGKILL);  // The pipeline child dies with it.
  ASSERT_TRUE(first.process->Wait(absl::Seconds(5)).ok());

  WorkerProcess& second = StartWorker("w2", Serve());
  care::v1::Job job = WaitFor(
      id, [](const care::v1::Job& j) { return j.state() >= 4; },
      absl::Seconds(120));
  ASSERT_EQ(job.state(), care::v1::JOB_STATE_SUCCEEDED)
      << job.failure().message();
  EXPECT_EQ(job.attempt(), 2);

  // The written report says what attempt 2 took from attempt 1's state: at
  // least the first layer (snapshotted after layer 0), at most all 5.
  nlohmann::json report = nlohmann::json::parse(
      ReadFileOrEmpty(out + "/care_report.json"), nullptr, false);
  ASSERT_TRUE(report.is_object());
  const int64_t resumed = report.value("resumed_layers", int64_t{-1});
  EXPECT_GE(resumed, 1);
  EXPECT_LE(resumed, 5);
  // The state was removed with the success; only the dead attempt's
  // scratch directory may remain.
  for (const auto& e : std::filesystem::directory_iterator(dir_ + "/work")) {
    EXPECT_EQ(e.path().filename().string().rfind("job-", 0), 0u) << e.path();
  }

  // Resuming changes nothing: same numbers as an uninterrupted run with the
  // same parameters and thread count (the restored layers and hidden states
  // are the bits attempt 1 computed).
  nlohmann::json offline = Offline();
  ASSERT_TRUE(offline.is_object());
  EXPECT_EQ(offline.value("resumed_layers", int64_t{-1}), 0);
  EXPECT_NEAR(job.report().converted().ppl(),
              offline["converted"]["ppl"].get<double>(), 1e-9);
  EXPECT_NEAR(job.report().original().ppl(),
              offline["original"]["ppl"].get<double>(), 1e-9);
  EXPECT_NEAR(report["calibration"]["heldout_nll_converted"].get<double>(),
              offline["calibration"]["heldout_nll_converted"].get<double>(),
              1e-12);

  // The surviving worker's metrics: achieved GFLOP/s and FLOPs per stage.
  // Attempt 2 ran (at least) the evaluation's forward passes.
  const std::string metrics = ScrapeMetrics(second.metrics);
  EXPECT_GT(
      SeriesValue(metrics, "care_worker_achieved_gflops{stage=\"evaluating\"}"),
      0)
      << metrics;
  EXPECT_GT(SeriesValue(metrics,
                        "care_worker_stage_flops_total{stage=\"evaluating\"}"),
            1e6)
      << metrics;
}

}  // namespace
}  // namespace care::testing

// Devices end to end (issue 11) with care-server, real `care-worker serve`
// processes and carectl: a cuda worker refuses to start without a usable
// device (and, where one is present, serves cuda jobs: that branch skips
// visibly here); with only a cpu worker, a `device: cuda` job stays QUEUED
// with a reason while an `any` job submitted after it succeeds on the cpu.
#include <filesystem>
#include <thread>

#include "gmock/gmock.h"
#include "worker_service/cluster_test_base.h"

namespace care::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

class DeviceEndToEndTest : public ClusterTest {
 protected:
  std::vector<std::string> Serve(const std::string& id,
                                 const std::string& device) {
    return {BinaryPath("worker/cli/care-worker"),
            "serve",
            "--device",
            device,
            "--server",
            server_->address(),
            "--token-file",
            server_->worker_token_file(),
            "--worker-id",
            id,
            "--lease-wait-ms",
            "500",
            "--backoff-max-ms",
            "300",
            "--threads",
            "1"};
  }

  // Starts `care-worker serve --device cuda:0` and waits until it either
  // serves (true) or exits (false, with its exit code and stderr).
  bool StartCudaWorker(std::unique_ptr<Process>* process, int* exit_code,
                       std::string* err) {
    auto started = Process::Start(Serve("gpu-1", "cuda:0"), logs_);
    EXPECT_TRUE(started.ok()) << started.status();
    if (!started.ok()) return false;
    *process = std::move(*started);
    const absl::Time deadline = absl::Now() + absl::Seconds(30);
    while (absl::Now() < deadline) {
      if ((*process)->Stdout().find("serving worker=") != std::string::npos) {
        return true;
      }
      absl::StatusOr<int> code = (*process)->Wait(absl::Milliseconds(50));
      if (code.ok()) {
        *exit_code = *code;
        *err = (*process)->Stderr();
        return false;
      }
    }
    ADD_FAILURE() << "care-worker serve --device cuda:0 neither served nor "
                     "exited within 30 s: "
                  << (*process)->Stderr();
    return false;
  }

  // A small CARE conversion of stories260K: 8 calibration windows, no
  // evaluation (seconds on one thread).
  std::string Submit(const std::string& name, const std::string& device) {
    CommandResult r = Carectl({"submit", "--quiet", "--model", model_, "--out",
                               dir_ + "/outputs/" + name, "--kv-save", "0.5",
                               "--calib", tokens_, "--calib-samples", "8",
                               "--calib-seq-len", "32", "--device", device});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return r.out.substr(0, r.out.find('\n'));
  }
};

TEST_F(DeviceEndToEndTest, CudaWorkerWithoutADeviceRefusesToStart) {
  std::unique_ptr<Process> worker;
  int code = 0;
  std::string err;
  if (StartCudaWorker(&worker, &code, &err)) {
    GTEST_SKIP() << "a CUDA device is present here (the worker started); "
                    "the refusal is checked on GPU-less machines";
  }
  EXPECT_EQ(code, 2) << err;
  // Names the flag, the device and why: the plugin paths tried, or the
  // driver's message.
  EXPECT_THAT(err, StartsWith("care-worker serve: --device cuda:0: ")) << err;
  EXPECT_THAT(err, HasSubstr("cuda")) << err;
  EXPECT_TRUE(err.find("libcare_cuda_backend.so") != std::string::npos ||
              err.find("driver") != std::string::npos ||
              err.find("device") != std::string::npos)
      << err;
  // It never reached the server: no worker is known there.
  const care::v1::Job probe = Get(Submit("probe", "cuda"));
  EXPECT_EQ(probe.queue_reason(),
            "waiting for a cuda worker: none seen in the last 1m");
}

TEST_F(DeviceEndToEndTest, CudaWorkerServesCudaJobsWhenADeviceIsPresent) {
  std::unique_ptr<Process> worker;
  int code = 0;
  std::string err;
  if (!StartCudaWorker(&worker, &code, &err)) {
    if (HasFailure()) return;
    GTEST_SKIP() << "no usable CUDA device here (care-worker serve exited "
                 << code << "): " << err;
  }
  const std::string id = Submit("on-gpu", "cuda");
  care::v1::Job job = WaitFor(
      id,
      [](const care::v1::Job& j) {
        return j.state() == care::v1::JOB_STATE_SUCCEEDED;
      },
      absl::Seconds(120));
  ASSERT_EQ(job.state(), care::v1::JOB_STATE_SUCCEEDED)
      << job.failure().message();
  ASSERT_EQ(job.attempts_size(), 1);
  EXPECT_EQ(job.attempts(0).device(), care::v1::DEVICE_CUDA);
  EXPECT_THAT(job.attempts(0).device_name(), StartsWith("cuda:0"));
  worker->Signal(SIGTERM);
  EXPECT_TRUE(worker->Wait(absl::Seconds(15)).ok());
}

TEST_F(DeviceEndToEndTest, CudaJobWaitsWhileAnAnyJobRunsOnTheCpuWorker) {
  auto started = Process::Start(Serve("cpu-1", "cpu"), logs_);
  ASSERT_TRUE(started.ok()) << started.status();
  std::unique_ptr<Process> worker = std::move(*started);

  const std::string cuda = Submit("needs-gpu", "cuda");
  const std::string any = Submit("anywhere", "any");
  CommandResult watch = Carectl({"watch", any});
  EXPECT_EQ(watch.exit_code, 0) << watch.out << watch.err;
  const care::v1::Job done = Get(any);
  ASSERT_EQ(done.state(), care::v1::JOB_STATE_SUCCEEDED)
      << done.failure().message() << "\n"
      << worker->Stderr();
  ASSERT_EQ(done.attempts_size(), 1);
  EXPECT_EQ(done.attempts(0).worker_id(), "cpu-1");
  EXPECT_EQ(done.attempts(0).device(), care::v1::DEVICE_CPU);
  EXPECT_EQ(done.attempts(0).device_name(), "cpu");
  EXPECT_TRUE(std::filesystem::exists(dir_ + "/outputs/anywhere"));

  // The older cuda job is still waiting, and says for what.
  const care::v1::Job waiting = Get(cuda);
  EXPECT_EQ(waiting.state(), care::v1::JOB_STATE_QUEUED);
  EXPECT_EQ(waiting.attempt(), 0);
  EXPECT_EQ(waiting.queue_reason(),
            "waiting for a cuda worker: none seen in the last 1m");
  CommandResult get = Carectl({"get", cuda});
  EXPECT_THAT(get.out, ::testing::ContainsRegex(
                           "\nqueued: +waiting for a cuda worker: none seen "
                           "in the last 1m\n"))
      << get.out;
  CommandResult list = Carectl({"list"});
  EXPECT_THAT(list.out, HasSubstr("DEVICE")) << list.out;
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/outputs/needs-gpu"));
  CommandResult workers = Carectl({"workers"});
  EXPECT_EQ(workers.exit_code, 0) << workers.err;
  EXPECT_THAT(workers.out,
              ::testing::ContainsRegex("\ncpu-1 +cpu +yes +[0-9-]+T"))
      << workers.out;

  // Metrics agree: one cuda job queued, one cpu worker connected.
  const std::string metrics = ScrapeMetrics(server_->metrics_address());
  EXPECT_EQ(SeriesValue(metrics, "care_jobs_queued_by_device{device=\"cuda\"}"),
            1)
      << metrics;
  EXPECT_EQ(
      SeriesValue(metrics, "care_workers_connected_by_device{device=\"cpu\"}"),
      1);
  EXPECT_EQ(
      SeriesValue(metrics, "care_workers_connected_by_device{device=\"cuda\"}"),
      0);
  worker->Signal(SIGTERM);
  EXPECT_TRUE(worker->Wait(absl::Seconds(15)).ok());
}

}  // namespace
}  // namespace care::testing

// Device routing in the store (issue 11), on a real SQLite file with a fake
// clock: which lease takes which job, the per-attempt device record, the
// queue reason, per-device counts, retry on another worker, and migrating a
// database written by the schema-1 server.
#include <gtest/gtest.h>

#include <filesystem>
#include <memory>
#include <string>

#include "server/clock.h"
#include "server/db.h"
#include "server/schema.h"
#include "server/store.h"
#include "support/fixtures.h"

namespace care::server {
namespace {

v1::JobSpec Spec(v1::Device device, int max_attempts = 3) {
  v1::JobSpec spec;
  spec.set_model_uri("/models/m");
  spec.set_output_uri("/out/x");
  spec.mutable_kv_budget()->set_kv_save_fraction(0.5);
  spec.set_method(v1::METHOD_SVD);
  spec.set_device(device);
  spec.set_max_attempts(max_attempts);
  return spec;
}

const WorkerDevice kCpu{v1::DEVICE_CPU, 0, ""};
const WorkerDevice kGpu{v1::DEVICE_CUDA, 1, "cuda:1 (NVIDIA H100 80GB HBM3)"};

class DeviceStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = care::testing::MakeTempDir("care-device-store");
    ASSERT_FALSE(dir_.empty());
  }
  void TearDown() override {
    store_.reset();
    if (!HasFailure()) std::filesystem::remove_all(dir_);
  }
  void Open() {
    store_.reset();
    StoreOptions options;
    options.path = dir_ + "/jobs.db";
    options.worker_window = absl::Seconds(60);
    options.retry_elsewhere_grace = absl::Seconds(30);
    auto store = Store::Open(options, &clock_, nullptr);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
  }
  std::string Submit(v1::Device device, int max_attempts = 3) {
    auto r = store_->Submit(Spec(device, max_attempts));
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? r->job.id() : "";
  }
  // The id of the leased job, or "" when none was handed out.
  std::string LeaseId(const std::string& worker, const WorkerDevice& device) {
    auto lease = store_->LeaseJob(worker, device);
    EXPECT_TRUE(lease.ok()) << lease.status();
    return lease.ok() && lease->has_value() ? (*lease)->job.id() : "";
  }
  v1::Job Get(const std::string& id) {
    auto job = store_->GetJob(id);
    EXPECT_TRUE(job.ok()) << job.status();
    return job.ok() ? *job : v1::Job();
  }

  std::string dir_;
  FakeClock clock_;
  std::unique_ptr<Store> store_;
};

TEST_F(DeviceStoreTest, EachWorkerTakesOnlyJobsItsDeviceSatisfies) {
  Open();
  const std::string cuda = Submit(v1::DEVICE_CUDA);
  clock_.Advance(absl::Seconds(1));
  const std::string cpu = Submit(v1::DEVICE_CPU);
  clock_.Advance(absl::Seconds(1));
  const std::string any = Submit(v1::DEVICE_ANY);
  // Oldest first, skipping what the device cannot run.
  EXPECT_EQ(LeaseId("gpu", kGpu), cuda);
  EXPECT_EQ(LeaseId("gpu", kGpu), any);
  EXPECT_EQ(LeaseId("gpu", kGpu), "");  // Never the cpu job.
  EXPECT_EQ(LeaseId("cpu", kCpu), cpu);

  const std::string cuda2 = Submit(v1::DEVICE_CUDA);
  EXPECT_EQ(LeaseId("cpu", kCpu), "");  // Never a cuda job.
  EXPECT_EQ(LeaseId("old", WorkerDevice{}), "");
  const std::string any2 = Submit(v1::DEVICE_ANY);
  EXPECT_EQ(LeaseId("old", WorkerDevice{}), any2);  // Old workers: any only.
  EXPECT_EQ(LeaseId("gpu2", kGpu), cuda2);
}

TEST_F(DeviceStoreTest, AttemptsRecordEachLeaseDevice) {
  Open();
  const std::string id = Submit(v1::DEVICE_ANY);
  ASSERT_EQ(LeaseId("gpu", kGpu), id);
  v1::Failure oom;
  oom.set_reason(v1::FAILURE_REASON_INFRASTRUCTURE);
  oom.set_message("device cuda:1: out of memory");
  auto failed = store_->Fail("gpu", id, 1, oom, /*retryable=*/true);
  ASSERT_TRUE(failed.ok()) << failed.status();
  EXPECT_TRUE(failed->requeued);
  // The failing GPU worker is passed over while another worker asks.
  EXPECT_EQ(LeaseId("gpu", kGpu), "");
  clock_.Advance(absl::Seconds(5));
  ASSERT_EQ(LeaseId("cpu", kCpu), id);

  const v1::Job job = Get(id);
  ASSERT_EQ(job.attempts_size(), 2);
  EXPECT_EQ(job.attempts(0).attempt(), 1);
  EXPECT_EQ(job.attempts(0).worker_id(), "gpu");
  EXPECT_EQ(job.attempts(0).device(), v1::DEVICE_CUDA);
  EXPECT_EQ(job.attempts(0).device_name(), "cuda:1 (NVIDIA H100 80GB HBM3)");
  EXPECT_EQ(job.attempts(1).attempt(), 2);
  EXPECT_EQ(job.attempts(1).worker_id(), "cpu");
  EXPECT_EQ(job.attempts(1).device(), v1::DEVICE_CPU);
  EXPECT_EQ(job.attempts(1).device_name(), "cpu");  // Default name.
  EXPECT_EQ(job.attempts(1).lease_time().seconds() -
                job.attempts(0).lease_time().seconds(),
            5);
  // The lease event names the device.
  auto events = store_->ListEvents(id, 0, 100);
  ASSERT_TRUE(events.ok());
  EXPECT_EQ(events->events[1].message(),
            "leased by gpu on cuda:1 (NVIDIA H100 80GB HBM3)");
}

TEST_F(DeviceStoreTest, ExpiredLeaseIsRetriedElsewhereThenByAnyone) {
  Open();
  const std::string id = Submit(v1::DEVICE_CUDA);
  ASSERT_EQ(LeaseId("gpu-a", kGpu), id);
  clock_.Advance(absl::Seconds(61));
  auto reaped = store_->ReapExpiredLeases();
  ASSERT_TRUE(reaped.ok());
  EXPECT_EQ(reaped->requeued, 1);
  EXPECT_EQ(LeaseId("gpu-a", kGpu), "");  // Within the grace: others first.
  clock_.Advance(absl::Seconds(30));
  EXPECT_EQ(LeaseId("gpu-a", kGpu), id);  // No one else came: retry here.
  EXPECT_EQ(Get(id).attempt(), 2);
}

TEST_F(DeviceStoreTest, QueueReasonNamesTheMissingDevice) {
  Open();
  const std::string cuda = Submit(v1::DEVICE_CUDA);
  const std::string any = Submit(v1::DEVICE_ANY);
  EXPECT_EQ(Get(any).queue_reason(),
            "waiting for a worker: none seen in the last 1m");
  EXPECT_EQ(LeaseId("cpu", kCpu), any);
  EXPECT_EQ(Get(cuda).queue_reason(),
            "waiting for a cuda worker: none seen in the last 1m");
  EXPECT_EQ(Get(any).queue_reason(), "");  // Not queued.
  ListQuery query;
  auto list = store_->ListJobs(query);
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->jobs.size(), 2u);
  EXPECT_EQ(list->jobs[1].queue_reason(),
            "waiting for a cuda worker: none seen in the last 1m");

  // A cuda worker busy with something else: the job just waits its turn.
  const std::string cuda_first = cuda;
  ASSERT_EQ(LeaseId("gpu", kGpu), cuda_first);
  const std::string cuda2 = Submit(v1::DEVICE_CUDA);
  EXPECT_EQ(Get(cuda2).queue_reason(), "");
  clock_.Advance(absl::Seconds(61));  // The gpu worker went silent.
  EXPECT_EQ(Get(cuda2).queue_reason(),
            "waiting for a cuda worker: none seen in the last 1m");
}

TEST_F(DeviceStoreTest, CountsByDevice) {
  Open();
  Submit(v1::DEVICE_CUDA);
  Submit(v1::DEVICE_CPU);
  Submit(v1::DEVICE_ANY);
  Submit(v1::DEVICE_ANY);
  ASSERT_NE(LeaseId("gpu", kGpu), "");  // The cuda job.
  ASSERT_NE(LeaseId("cpu", kCpu), "");  // The cpu job.
  auto counts = store_->CountStates();
  ASSERT_TRUE(counts.ok());
  EXPECT_EQ(counts->queued_by_device.at("any"), 2);
  EXPECT_EQ(counts->queued_by_device.at("cuda"), 0);
  EXPECT_EQ(counts->queued_by_device.at("cpu"), 0);
  EXPECT_EQ(counts->running_by_device.at("cuda"), 1);
  EXPECT_EQ(counts->running_by_device.at("cpu"), 1);
  EXPECT_EQ(counts->workers_by_device.at("cuda"), 1);
  EXPECT_EQ(counts->workers_by_device.at("cpu"), 1);
  // A heartbeat (no device in it) keeps the worker's device.
  auto leased = store_->ListJobs(ListQuery{});
  ASSERT_TRUE(leased.ok());
  for (const v1::Job& job : leased->jobs) {
    if (job.worker_id() == "gpu") {
      ASSERT_TRUE(
          store_->Heartbeat("gpu", job.id(), job.attempt(), nullptr, {}).ok());
    }
  }
  counts = store_->CountStates();
  ASSERT_TRUE(counts.ok());
  EXPECT_EQ(counts->workers_by_device.at("cuda"), 1);
  clock_.Advance(absl::Seconds(61));
  counts = store_->CountStates();
  ASSERT_TRUE(counts.ok());
  EXPECT_EQ(counts->workers_by_device.at("cuda"), 0);
}

TEST_F(DeviceStoreTest, ListWorkersShowsEachDeviceAndWhoIsConnected) {
  Open();
  EXPECT_EQ(LeaseId("cpu", kCpu), "");
  clock_.Advance(absl::Seconds(50));
  EXPECT_EQ(LeaseId("gpu", kGpu), "");
  clock_.Advance(absl::Seconds(20));  // cpu: 70 s ago, gpu: 20 s ago.
  auto all = store_->ListWorkers(/*connected_only=*/false);
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_EQ(all->size(), 2u);
  const v1::Worker& gpu = (*all)[0];  // Most recently seen first.
  EXPECT_EQ(gpu.worker_id(), "gpu");
  EXPECT_EQ(gpu.device(), v1::DEVICE_CUDA);
  EXPECT_EQ(gpu.device_ordinal(), 1);
  EXPECT_EQ(gpu.device_name(), "cuda:1 (NVIDIA H100 80GB HBM3)");
  EXPECT_TRUE(gpu.connected());
  const v1::Worker& cpu = (*all)[1];
  EXPECT_EQ(cpu.worker_id(), "cpu");
  EXPECT_EQ(cpu.device(), v1::DEVICE_CPU);
  EXPECT_EQ(cpu.device_name(), "cpu");
  EXPECT_FALSE(cpu.connected());
  auto connected = store_->ListWorkers(/*connected_only=*/true);
  ASSERT_TRUE(connected.ok());
  ASSERT_EQ(connected->size(), 1u);
  EXPECT_EQ((*connected)[0].worker_id(), "gpu");
  // The same id coming back on another device is recorded as such.
  EXPECT_EQ(LeaseId("cpu", kGpu), "");
  all = store_->ListWorkers(false);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ((*all)[0].worker_id(), "cpu");
  EXPECT_EQ((*all)[0].device(), v1::DEVICE_CUDA);
}

// The schema-1 SQL exactly as released (server/schema.cc, migration 1).
constexpr char kSchemaV1[] = R"sql(
CREATE TABLE jobs (
  pk INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,
  request_id TEXT UNIQUE,
  spec BLOB NOT NULL,
  state INTEGER NOT NULL,
  priority INTEGER NOT NULL,
  device INTEGER NOT NULL,
  max_attempts INTEGER NOT NULL,
  attempt INTEGER NOT NULL DEFAULT 0,
  progress BLOB,
  worker_id TEXT,
  lease_deadline_us INTEGER,
  create_us INTEGER NOT NULL,
  start_us INTEGER,
  update_us INTEGER NOT NULL,
  end_us INTEGER,
  failure BLOB,
  report BLOB,
  seq INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX jobs_queue ON jobs(state, priority DESC, create_us, id);
CREATE INDEX jobs_lease ON jobs(state, lease_deadline_us);
CREATE TABLE job_labels (
  job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
  key TEXT NOT NULL,
  value TEXT NOT NULL,
  PRIMARY KEY (job_id, key)
) WITHOUT ROWID;
CREATE INDEX job_labels_kv ON job_labels(key, value);
CREATE TABLE job_events (
  job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
  sequence INTEGER NOT NULL,
  time_us INTEGER NOT NULL,
  type INTEGER NOT NULL,
  state INTEGER NOT NULL,
  event BLOB NOT NULL,
  PRIMARY KEY (job_id, sequence)
) WITHOUT ROWID;
CREATE TABLE workers (
  worker_id TEXT PRIMARY KEY NOT NULL,
  device INTEGER NOT NULL,
  last_seen_us INTEGER NOT NULL
) WITHOUT ROWID;
PRAGMA user_version = 1;
)sql";

TEST_F(DeviceStoreTest, MigratesASchemaOneDatabase) {
  {  // A database as the schema-1 server left it: a queued cuda job.
    auto conn = Connection::Open(dir_ + "/jobs.db", false, 1000);
    ASSERT_TRUE(conn.ok()) << conn.status();
    ASSERT_TRUE((*conn)->Exec(kSchemaV1).ok());
    auto insert = (*conn)->Prepare(
        "INSERT INTO jobs (id, spec, state, priority, device, max_attempts, "
        "create_us, update_us) VALUES ('job-old', ?, 1, 0, 3, 3, 5, 5)");
    ASSERT_TRUE(insert.ok());
    insert->BindBlob(1, Spec(v1::DEVICE_CUDA).SerializeAsString());
    ASSERT_TRUE(insert->Run().ok());
    ASSERT_TRUE(
        (*conn)->Exec("INSERT INTO workers VALUES ('w-old', 2, 5)").ok());
  }
  Open();
  {
    auto conn = Connection::Open(dir_ + "/jobs.db", true, 1000);
    ASSERT_TRUE(conn.ok());
    auto version = (*conn)->Prepare("PRAGMA user_version");
    ASSERT_TRUE(version.ok());
    ASSERT_TRUE(*version->Step());
    EXPECT_EQ(version->Int(0), LatestSchemaVersion());
    EXPECT_GE(LatestSchemaVersion(), 2);  // later migrations add more
  }
  v1::Job old = Get("job-old");
  EXPECT_EQ(old.state(), v1::JOB_STATE_QUEUED);
  EXPECT_EQ(old.attempts_size(), 0);
  EXPECT_EQ(old.queue_reason(),
            "waiting for a cuda worker: none seen in the last 1m");
  EXPECT_EQ(LeaseId("cpu", kCpu), "");
  ASSERT_EQ(LeaseId("gpu", kGpu), "job-old");
  old = Get("job-old");
  ASSERT_EQ(old.attempts_size(), 1);
  EXPECT_EQ(old.attempts(0).device(), v1::DEVICE_CUDA);
  // Opening again is a no-op at the latest version.
  Open();
  EXPECT_EQ(Get("job-old").attempts_size(), 1);
}

}  // namespace
}  // namespace care::server

// Device routing through the real care-server binary (issue 11): workers
// simulated by gRPC clients advertising cpu and cuda devices, the job's
// queue reason, the per-attempt device, per-device metrics, and a schema-1
// database file migrated when the server starts on it.
#include <gtest/gtest.h>

#include <future>
#include <map>
#include <string>

#include "absl/strings/str_cat.h"
#include "api_fixture.h"
#include "server/db.h"
#include "server/schema.h"

namespace care::testing {
namespace {

class DeviceRoutingTest : public ServerApiTest {
 protected:
  v1::JobSpec SpecOn(const std::string& name, v1::Device device) {
    v1::JobSpec spec = env_.Spec(name);
    spec.set_device(device);
    return spec;
  }
  grpc::Status LeaseOn(const std::string& worker, v1::Device device,
                       int ordinal, const std::string& name, int wait_ms,
                       v1::LeaseJobResponse* resp) {
    v1::LeaseJobRequest req;
    req.set_worker_id(worker);
    req.set_device(device);
    req.set_device_ordinal(ordinal);
    req.set_device_name(name);
    req.set_wait_ms(wait_ms);
    auto stub = env_.Worker();  // One per call: safe from several threads.
    return stub->LeaseJob(ServerEnv::Ctx(kWorkerToken).get(), req, resp);
  }
  // The leased job's id, or "" when the long poll ended empty.
  std::string LeasedId(const std::string& worker, v1::Device device,
                       int wait_ms = 200) {
    v1::LeaseJobResponse resp;
    grpc::Status s = LeaseOn(
        worker, device, 0, device == v1::DEVICE_CUDA ? "cuda:0 (Test GPU)" : "",
        wait_ms, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp.has_job() ? resp.job().id() : "";
  }
};

TEST_F(DeviceRoutingTest, CudaJobsOnlyOnCudaWorkersAnyJobsOnEither) {
  StartServer();
  const Job cuda = MustSubmit(SpecOn("cuda", v1::DEVICE_CUDA));
  const Job cpu = MustSubmit(SpecOn("cpu", v1::DEVICE_CPU));
  const Job any = MustSubmit(SpecOn("any", v1::DEVICE_ANY));
  EXPECT_EQ(cuda.queue_reason(),
            "waiting for a cuda worker: none seen in the last 1m");

  // The cpu worker passes over the older cuda job.
  EXPECT_EQ(LeasedId("cpu-1", v1::DEVICE_CPU), cpu.id());
  EXPECT_EQ(LeasedId("cpu-1", v1::DEVICE_CPU), any.id());
  EXPECT_EQ(LeasedId("cpu-1", v1::DEVICE_CPU), "");
  Job waiting = Get(cuda.id());
  EXPECT_EQ(waiting.state(), v1::JOB_STATE_QUEUED);
  EXPECT_EQ(waiting.queue_reason(),
            "waiting for a cuda worker: none seen in the last 1m");

  EXPECT_EQ(LeasedId("gpu-1", v1::DEVICE_CUDA), cuda.id());
  const Job running = Get(cuda.id());
  EXPECT_EQ(running.state(), v1::JOB_STATE_RUNNING);
  EXPECT_EQ(running.queue_reason(), "");
  ASSERT_EQ(running.attempts_size(), 1);
  EXPECT_EQ(running.attempts(0).worker_id(), "gpu-1");
  EXPECT_EQ(running.attempts(0).device(), v1::DEVICE_CUDA);
  EXPECT_EQ(running.attempts(0).device_name(), "cuda:0 (Test GPU)");
  const Job on_cpu = Get(any.id());
  ASSERT_EQ(on_cpu.attempts_size(), 1);
  EXPECT_EQ(on_cpu.attempts(0).device_name(), "cpu");

  // A new cuda job is not queued for lack of a cuda worker any more.
  const Job cuda2 = MustSubmit(SpecOn("cuda2", v1::DEVICE_CUDA));
  EXPECT_EQ(cuda2.queue_reason(), "");
  EXPECT_EQ(LeasedId("cpu-1", v1::DEVICE_CPU), "");

  v1::ListWorkersRequest list_workers;
  v1::ListWorkersResponse workers;
  ASSERT_TRUE(client_
                  ->ListWorkers(ServerEnv::Ctx(kClientToken).get(),
                                list_workers, &workers)
                  .ok());
  ASSERT_EQ(workers.workers_size(), 2);
  std::map<std::string, v1::Worker> by_id;
  for (const v1::Worker& w : workers.workers()) by_id[w.worker_id()] = w;
  EXPECT_EQ(by_id["gpu-1"].device(), v1::DEVICE_CUDA);
  EXPECT_EQ(by_id["gpu-1"].device_name(), "cuda:0 (Test GPU)");
  EXPECT_TRUE(by_id["gpu-1"].connected());
  EXPECT_EQ(by_id["cpu-1"].device(), v1::DEVICE_CPU);
  EXPECT_EQ(by_id["cpu-1"].device_name(), "cpu");
  // Workers may not list workers: the client token is required.
  EXPECT_EQ(client_
                ->ListWorkers(ServerEnv::Ctx(kWorkerToken).get(), list_workers,
                              &workers)
                .error_code(),
            grpc::StatusCode::PERMISSION_DENIED);

  const std::string metrics = HttpGet(env_.metrics_address(), "/metrics");
  for (const char* line :
       {"care_leases_granted_by_device_total{device=\"cpu\"} 2",
        "care_leases_granted_by_device_total{device=\"cuda\"} 1",
        "care_jobs_queued_by_device{device=\"cuda\"} 1",
        "care_jobs_queued_by_device{device=\"any\"} 0",
        "care_jobs_running_by_device{device=\"cpu\"} 2",
        "care_jobs_running_by_device{device=\"cuda\"} 1",
        "care_workers_connected_by_device{device=\"cpu\"} 1",
        "care_workers_connected_by_device{device=\"cuda\"} 1",
        "care_leases_granted_total 3"}) {
    EXPECT_NE(metrics.find(line), std::string::npos) << line << "\n" << metrics;
  }
}

TEST_F(DeviceRoutingTest, LongPollingWorkersWakeOnlyForTheirDevice) {
  StartServer();
  auto cpu = std::async(std::launch::async, [&] {
    return LeasedId("cpu-1", v1::DEVICE_CPU, 1500);
  });
  auto gpu = std::async(std::launch::async, [&] {
    return LeasedId("gpu-1", v1::DEVICE_CUDA, 5000);
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const Job job = MustSubmit(SpecOn("gpu-only", v1::DEVICE_CUDA));
  EXPECT_EQ(gpu.get(), job.id());
  EXPECT_EQ(cpu.get(), "");
}

TEST_F(DeviceRoutingTest, RejectsAWorkerDeviceThatIsNotOne) {
  StartServer();
  v1::LeaseJobResponse resp;
  grpc::Status s = LeaseOn("w", v1::DEVICE_ANY, 0, "", 1, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("device: must be DEVICE_CPU or DEVICE_CUDA"),
            std::string::npos)
      << s.error_message();
  s = LeaseOn("w", static_cast<v1::Device>(9), 0, "", 1, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  s = LeaseOn("w", v1::DEVICE_CUDA, 1024, "", 1, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("device_ordinal: must be in [0, 1023]"),
            std::string::npos);
  s = LeaseOn("w", v1::DEVICE_CUDA, 0, std::string(257, 'x'), 1, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  // A worker naming no device (older workers) is accepted.
  s = LeaseOn("w", v1::DEVICE_UNSPECIFIED, 0, "", 1, &resp);
  EXPECT_TRUE(s.ok()) << s.error_message();
}

TEST_F(DeviceRoutingTest, StartsOnASchemaOneDatabaseAndMigratesIt) {
  {  // The tables as the schema-1 server created them, with a queued job.
    auto conn =
        care::server::Connection::Open(env_.dir() + "/jobs.db", false, 1000);
    ASSERT_TRUE(conn.ok()) << conn.status();
    ASSERT_TRUE((*conn)
                    ->Exec(R"sql(
CREATE TABLE jobs (
  pk INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,
  request_id TEXT UNIQUE, spec BLOB NOT NULL, state INTEGER NOT NULL,
  priority INTEGER NOT NULL, device INTEGER NOT NULL,
  max_attempts INTEGER NOT NULL, attempt INTEGER NOT NULL DEFAULT 0,
  progress BLOB, worker_id TEXT, lease_deadline_us INTEGER,
  create_us INTEGER NOT NULL, start_us INTEGER, update_us INTEGER NOT NULL,
  end_us INTEGER, failure BLOB, report BLOB, seq INTEGER NOT NULL DEFAULT 0);
CREATE INDEX jobs_queue ON jobs(state, priority DESC, create_us, id);
CREATE INDEX jobs_lease ON jobs(state, lease_deadline_us);
CREATE TABLE job_labels (
  job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
  key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (job_id, key))
  WITHOUT ROWID;
CREATE INDEX job_labels_kv ON job_labels(key, value);
CREATE TABLE job_events (
  job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
  sequence INTEGER NOT NULL, time_us INTEGER NOT NULL, type INTEGER NOT NULL,
  state INTEGER NOT NULL, event BLOB NOT NULL, PRIMARY KEY (job_id, sequence))
  WITHOUT ROWID;
CREATE TABLE workers (
  worker_id TEXT PRIMARY KEY NOT NULL, device INTEGER NOT NULL,
  last_seen_us INTEGER NOT NULL) WITHOUT ROWID;
PRAGMA user_version = 1;
)sql")
                    .ok());
    v1::JobSpec spec = SpecOn("old", v1::DEVICE_CUDA);
    spec.set_max_attempts(3);
    auto insert = (*conn)->Prepare(
        "INSERT INTO jobs (id, spec, state, priority, device, max_attempts, "
        "create_us, update_us) VALUES ('job-from-v1', ?, 1, 0, 3, 3, 1, 1)");
    ASSERT_TRUE(insert.ok());
    insert->BindBlob(1, spec.SerializeAsString());
    ASSERT_TRUE(insert->Run().ok());
  }
  StartServer();
  Job old = Get("job-from-v1");
  EXPECT_EQ(old.state(), v1::JOB_STATE_QUEUED);
  EXPECT_EQ(old.queue_reason(),
            "waiting for a cuda worker: none seen in the last 1m");
  EXPECT_EQ(LeasedId("cpu-1", v1::DEVICE_CPU), "");
  EXPECT_EQ(LeasedId("gpu-1", v1::DEVICE_CUDA), "job-from-v1");
  old = Get("job-from-v1");
  ASSERT_EQ(old.attempts_size(), 1);
  EXPECT_EQ(old.attempts(0).device_name(), "cuda:0 (Test GPU)");
  {
    auto conn =
        care::server::Connection::Open(env_.dir() + "/jobs.db", true, 1000);
    ASSERT_TRUE(conn.ok());
    auto version = (*conn)->Prepare("PRAGMA user_version");
    ASSERT_TRUE(version.ok());
    ASSERT_TRUE(*version->Step());
    // Migrated to the latest version (2 added devices; later ones more).
    EXPECT_EQ(version->Int(0), care::server::LatestSchemaVersion());
  }
}

}  // namespace
}  // namespace care::testing

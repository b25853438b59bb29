// The fixture of the API integration tests: a running care-server
// (server_harness.h) and helpers around the generated stubs.
#ifndef CARE_TESTS_SERVER_API_FIXTURE_H_
#define CARE_TESTS_SERVER_API_FIXTURE_H_

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "server_harness.h"

namespace care::testing {

using v1::Job;

class ServerApiTest : public ::testing::Test {
 protected:
  void StartServer(const std::vector<std::string>& extra = {}) {
    ASSERT_TRUE(env_.Start(extra));
    client_ = env_.Client();
    worker_ = env_.Worker();
  }
  grpc::Status Submit(const v1::JobSpec& spec, Job* job,
                      const std::string& token = kClientToken) {
    v1::SubmitJobRequest req;
    *req.mutable_spec() = spec;
    return client_->SubmitJob(ServerEnv::Ctx(token).get(), req, job);
  }
  Job MustSubmit(const v1::JobSpec& spec) {
    Job job;
    grpc::Status s = Submit(spec, &job);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return job;
  }
  Job Get(const std::string& id) {
    v1::GetJobRequest req;
    req.set_job_id(id);
    Job job;
    grpc::Status s =
        client_->GetJob(ServerEnv::Ctx(kClientToken).get(), req, &job);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return job;
  }
  v1::LeaseJobResponse Lease(const std::string& worker, int wait_ms) {
    v1::LeaseJobRequest req;
    req.set_worker_id(worker);
    req.set_device(v1::DEVICE_CPU);
    req.set_wait_ms(wait_ms);
    v1::LeaseJobResponse resp;
    grpc::Status s =
        worker_->LeaseJob(ServerEnv::Ctx(kWorkerToken).get(), req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp;
  }

  ServerEnv env_;
  std::unique_ptr<v1::ConversionService::Stub> client_;
  std::unique_ptr<v1::WorkerService::Stub> worker_;
};

}  // namespace care::testing

#endif  // CARE_TESTS_SERVER_API_FIXTURE_H_

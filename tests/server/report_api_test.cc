// GetJobReport and the report files of CompleteJob against the real
// care-server binary: stored as sent, sizes in Job.report, the 4 MiB limit,
// the client-only token, and the refusals.
#include <gtest/gtest.h>

#include <string>

#include "api_fixture.h"
#include "proto/api/report_limits.h"

namespace care::testing {
namespace {

v1::CompleteJobRequest Done(const std::string& job_id) {
  v1::CompleteJobRequest done;
  done.set_worker_id("w1");
  done.set_job_id(job_id);
  done.set_attempt(1);
  done.mutable_report()->set_kv_width_before(64);
  return done;
}

TEST_F(ServerApiTest, ReportFilesStoredAndFetched) {
  StartServer();
  const Job job = MustSubmit(env_.Spec("r"));
  ASSERT_EQ(Lease("w1", 5000).job().id(), job.id());

  v1::GetJobReportRequest get;
  get.set_job_id(job.id());
  v1::JobReport report;
  // Running: refused.
  EXPECT_EQ(
      client_->GetJobReport(ServerEnv::Ctx(kClientToken).get(), get, &report)
          .error_code(),
      grpc::StatusCode::FAILED_PRECONDITION);

  // Over the limit: refused, and the job stays running.
  v1::CompleteJobRequest big = Done(job.id());
  big.set_report_json("{}");
  big.set_report_html(std::string(care::api::kMaxReportFileBytes + 1, 'x'));
  v1::CompleteJobResponse resp;
  grpc::Status s =
      worker_->CompleteJob(ServerEnv::Ctx(kWorkerToken).get(), big, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("report_html"), std::string::npos)
      << s.error_message();
  EXPECT_EQ(Get(job.id()).state(), v1::JOB_STATE_RUNNING);

  v1::CompleteJobRequest done = Done(job.id());
  const std::string json = "{\"model\": \"m\", \"layers\": []}";
  const std::string html = "<!DOCTYPE html><html>\xe2\x86\x92</html>";
  done.set_report_json(json);
  done.set_report_html(html);
  ASSERT_TRUE(
      worker_->CompleteJob(ServerEnv::Ctx(kWorkerToken).get(), done, &resp)
          .ok());
  EXPECT_EQ(resp.job().report().report_json_bytes(),
            static_cast<int64_t>(json.size()));
  const Job stored = Get(job.id());
  EXPECT_EQ(stored.state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(stored.report().report_html_bytes(),
            static_cast<int64_t>(html.size()));
  EXPECT_EQ(stored.report().kv_width_before(), 64);

  ASSERT_TRUE(
      client_->GetJobReport(ServerEnv::Ctx(kClientToken).get(), get, &report)
          .ok());
  EXPECT_EQ(report.job_id(), job.id());
  EXPECT_EQ(report.attempt(), 1);
  EXPECT_EQ(report.report_json(), json);
  EXPECT_EQ(report.report_html(), html);
  get.set_json_only(true);
  ASSERT_TRUE(
      client_->GetJobReport(ServerEnv::Ctx(kClientToken).get(), get, &report)
          .ok());
  EXPECT_EQ(report.report_json(), json);
  EXPECT_TRUE(report.report_html().empty());

  // Client token only; unknown and malformed ids.
  EXPECT_NE(
      client_->GetJobReport(ServerEnv::Ctx(kWorkerToken).get(), get, &report)
          .error_code(),
      grpc::StatusCode::OK);
  get.set_job_id("job-unknown");
  EXPECT_EQ(
      client_->GetJobReport(ServerEnv::Ctx(kClientToken).get(), get, &report)
          .error_code(),
      grpc::StatusCode::NOT_FOUND);
  get.set_job_id("");
  EXPECT_EQ(
      client_->GetJobReport(ServerEnv::Ctx(kClientToken).get(), get, &report)
          .error_code(),
      grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(ServerApiTest, ReportSizesAreTheServers) {
  StartServer();
  const Job job = MustSubmit(env_.Spec("n"));
  ASSERT_EQ(Lease("w1", 5000).job().id(), job.id());
  // A worker that sends no files cannot claim a stored report.
  v1::CompleteJobRequest done = Done(job.id());
  done.mutable_report()->set_report_html_bytes(999);
  v1::CompleteJobResponse resp;
  ASSERT_TRUE(
      worker_->CompleteJob(ServerEnv::Ctx(kWorkerToken).get(), done, &resp)
          .ok());
  EXPECT_EQ(Get(job.id()).report().report_html_bytes(), 0);
  v1::GetJobReportRequest get;
  get.set_job_id(job.id());
  v1::JobReport report;
  EXPECT_EQ(
      client_->GetJobReport(ServerEnv::Ctx(kClientToken).get(), get, &report)
          .error_code(),
      grpc::StatusCode::NOT_FOUND);
}

}  // namespace
}  // namespace care::testing

// ConversionService through generated stubs against the real care-server
// binary: submit/get/list/cancel/events, idempotency, auth, every invalid
// spec class and root escapes.
#include <gtest/gtest.h>
#include <signal.h>

#include <filesystem>
#include <functional>

#include "absl/strings/str_cat.h"
#include "api_fixture.h"

namespace care::testing {
namespace {

TEST_F(ServerApiTest, SubmitGetListCancelAndEvents) {
  StartServer();
  v1::JobSpec spec = env_.Spec("a");
  spec.set_request_id("req-a");
  (*spec.mutable_labels())["team"] = "x";
  Job a = MustSubmit(spec);
  EXPECT_EQ(a.state(), v1::JOB_STATE_QUEUED);
  // Defaults are applied and stored.
  EXPECT_EQ(a.spec().method(), v1::METHOD_CARE);
  EXPECT_EQ(a.spec().max_attempts(), 3);
  EXPECT_EQ(a.spec().calibration().samples(), 256);
  EXPECT_DOUBLE_EQ(a.spec().damping(), 0.01);
  EXPECT_EQ(Get(a.id()).SerializeAsString(), a.SerializeAsString());

  // Idempotency by request_id.
  EXPECT_EQ(MustSubmit(spec).id(), a.id());
  spec.set_priority(3);
  Job dup;
  EXPECT_EQ(Submit(spec, &dup).error_code(), grpc::StatusCode::ALREADY_EXISTS);

  std::vector<std::string> ids = {a.id()};
  for (int i = 0; i < 4; ++i) {
    v1::JobSpec s = env_.Spec(absl::StrCat("j", i));
    (*s.mutable_labels())["team"] = i % 2 ? "x" : "y";
    ids.push_back(MustSubmit(s).id());
  }
  v1::CancelJobRequest cancel;
  cancel.set_job_id(ids[1]);
  Job cancelled;
  ASSERT_TRUE(
      client_->CancelJob(ServerEnv::Ctx(kClientToken).get(), cancel, &cancelled)
          .ok());
  EXPECT_EQ(cancelled.state(), v1::JOB_STATE_CANCELLED);

  // Pages of 2, newest first.
  v1::ListJobsRequest list;
  list.set_page_size(2);
  std::vector<std::string> seen;
  for (int page = 0; page < 5; ++page) {
    v1::ListJobsResponse resp;
    ASSERT_TRUE(
        client_->ListJobs(ServerEnv::Ctx(kClientToken).get(), list, &resp)
            .ok());
    EXPECT_LE(resp.jobs_size(), 2);
    for (const Job& j : resp.jobs()) seen.push_back(j.id());
    if (resp.next_page_token().empty()) break;
    list.set_page_token(resp.next_page_token());
  }
  EXPECT_EQ(seen,
            (std::vector<std::string>{ids[4], ids[3], ids[2], ids[1], ids[0]}));
  // Filters: label and state.
  v1::ListJobsRequest filtered;
  (*filtered.mutable_labels())["team"] = "x";
  filtered.add_states(v1::JOB_STATE_QUEUED);
  v1::ListJobsResponse resp;
  ASSERT_TRUE(
      client_->ListJobs(ServerEnv::Ctx(kClientToken).get(), filtered, &resp)
          .ok());
  ASSERT_EQ(resp.jobs_size(), 3);  // a, j1, j3 carry team=x.
  EXPECT_EQ(resp.jobs(0).id(), ids[4]);
  EXPECT_EQ(resp.jobs(1).id(), ids[2]);
  EXPECT_EQ(resp.jobs(2).id(), ids[0]);
  filtered.set_page_token("garbage");
  EXPECT_EQ(
      client_->ListJobs(ServerEnv::Ctx(kClientToken).get(), filtered, &resp)
          .error_code(),
      grpc::StatusCode::INVALID_ARGUMENT);

  // Events: the cancelled job has QUEUED then CANCELLED, one per page.
  v1::ListJobEventsRequest ev;
  ev.set_job_id(ids[1]);
  ev.set_page_size(1);
  v1::ListJobEventsResponse events;
  ASSERT_TRUE(
      client_->ListJobEvents(ServerEnv::Ctx(kClientToken).get(), ev, &events)
          .ok());
  ASSERT_EQ(events.events_size(), 1);
  EXPECT_EQ(events.events(0).state(), v1::JOB_STATE_QUEUED);
  EXPECT_EQ(events.next_after_sequence(), 1);
  ev.set_after_sequence(1);
  ASSERT_TRUE(
      client_->ListJobEvents(ServerEnv::Ctx(kClientToken).get(), ev, &events)
          .ok());
  ASSERT_EQ(events.events_size(), 1);
  EXPECT_EQ(events.events(0).state(), v1::JOB_STATE_CANCELLED);
  EXPECT_EQ(events.next_after_sequence(), 0);

  v1::GetJobRequest get;
  get.set_job_id("job-nope");
  Job job;
  EXPECT_EQ(client_->GetJob(ServerEnv::Ctx(kClientToken).get(), get, &job)
                .error_code(),
            grpc::StatusCode::NOT_FOUND);
  get.clear_job_id();
  EXPECT_EQ(client_->GetJob(ServerEnv::Ctx(kClientToken).get(), get, &job)
                .error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(ServerApiTest, AuthFailuresAndNoSecretsInLogs) {
  StartServer();
  Job job;
  EXPECT_EQ(Submit(env_.Spec("a"), &job, "").error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(
      Submit(env_.Spec("a"), &job, "wrong-token-wrong-token").error_code(),
      grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(Submit(env_.Spec("a"), &job, kWorkerToken).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  v1::LeaseJobRequest lease;
  lease.set_worker_id("w");
  lease.set_wait_ms(1);
  v1::LeaseJobResponse resp;
  EXPECT_EQ(
      worker_->LeaseJob(ServerEnv::Ctx("").get(), lease, &resp).error_code(),
      grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(worker_->LeaseJob(ServerEnv::Ctx(kClientToken).get(), lease, &resp)
                .error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(
      worker_->LeaseJob(ServerEnv::Ctx(kWorkerToken).get(), lease, &resp).ok());
  EXPECT_EQ(env_.Stop(SIGTERM), 0);
  const std::string log = env_.ServerLog();
  EXPECT_NE(log.find("UNAUTHENTICATED"), std::string::npos) << log;
  EXPECT_EQ(log.find(kClientToken), std::string::npos);
  EXPECT_EQ(log.find(kWorkerToken), std::string::npos);
  EXPECT_EQ(log.find("wrong-token-wrong-token"), std::string::npos);
}

TEST_F(ServerApiTest, EveryInvalidSpecClassNamesTheField) {
  StartServer();
  const std::string dir = env_.dir();
  std::filesystem::create_directory_symlink("/etc", dir + "/models/etc");
  using Mutation = std::function<void(v1::JobSpec&)>;
  const std::vector<std::pair<std::string, Mutation>> cases = {
      {"model_uri", [](auto& s) { s.clear_model_uri(); }},
      {"model_uri", [](auto& s) { s.set_model_uri("models/relative"); }},
      {"model_uri", [](auto& s) { s.set_model_uri("s3://bucket/m"); }},
      {"output_uri", [](auto& s) { s.clear_output_uri(); }},
      {"kv_budget", [](auto& s) { s.clear_kv_budget(); }},
      {"kv_budget.kv_save_fraction",
       [](auto& s) { s.mutable_kv_budget()->set_kv_save_fraction(1.0); }},
      {"kv_budget.rank_per_matrix",
       [](auto& s) { s.mutable_kv_budget()->set_rank_per_matrix(0); }},
      {"method", [](auto& s) { s.set_method(static_cast<v1::Method>(42)); }},
      {"rank_allocation",
       [](auto& s) {
         s.set_rank_allocation(static_cast<v1::RankAllocation>(42));
       }},
      {"output_dtype",
       [](auto& s) { s.set_output_dtype(static_cast<v1::OutputDtype>(42)); }},
      {"device", [](auto& s) { s.set_device(static_cast<v1::Device>(42)); }},
      {"calibration.dataset_uri",
       [](auto& s) { s.mutable_calibration()->clear_dataset_uri(); }},
      {"calibration.samples",
       [](auto& s) { s.mutable_calibration()->set_samples(-1); }},
      {"calibration.sequence_length",
       [](auto& s) { s.mutable_calibration()->set_sequence_length(1); }},
      {"calibration.text_field",
       [](auto& s) {
         s.mutable_calibration()->set_text_field(std::string(200, 'f'));
       }},
      {"evaluation.dataset_uri",
       [](auto& s) { s.mutable_evaluation()->set_window_length(64); }},
      {"evaluation.window_length",
       [dir](auto& s) {
         s.mutable_evaluation()->set_dataset_uri(dir + "/data/e.txt");
         s.mutable_evaluation()->set_window_length(1);
       }},
      {"evaluation.max_windows",
       [dir](auto& s) {
         s.mutable_evaluation()->set_dataset_uri(dir + "/data/e.txt");
         s.mutable_evaluation()->set_max_windows(-1);
       }},
      {"labels[Bad Key]",
       [](auto& s) { (*s.mutable_labels())["Bad Key"] = "v"; }},
      {"labels",
       [](auto& s) {
         for (int i = 0; i < 33; ++i) {
           s.mutable_labels()->insert({absl::StrCat("k", i), "v"});
         }
       }},
      {"request_id", [](auto& s) { s.set_request_id("has space"); }},
      {"damping", [](auto& s) { s.set_damping(2.0); }},
      {"priority", [](auto& s) { s.set_priority(5000); }},
      {"max_attempts", [](auto& s) { s.set_max_attempts(50); }},
      // Roots.
      {"model_uri", [](auto& s) { s.set_model_uri("/usr/share"); }},
      {"model_uri",
       [dir](auto& s) { s.set_model_uri(dir + "/models/../data"); }},
      {"model_uri",
       [dir](auto& s) { s.set_model_uri(dir + "/models/etc/ssl"); }},
      {"output_uri",
       [dir](auto& s) { s.set_output_uri(dir + "/models/tiny/out"); }},
      {"output_uri", [dir](auto& s) { s.set_output_uri(dir + "/out"); }},
      {"calibration.dataset_uri",
       [](auto& s) {
         s.mutable_calibration()->set_dataset_uri("/etc/passwd");
       }},
      {"evaluation.dataset_uri",
       [](auto& s) { s.mutable_evaluation()->set_dataset_uri("/etc/hosts"); }},
  };
  for (const auto& [field, mutate] : cases) {
    v1::JobSpec spec = env_.Spec("o");
    mutate(spec);
    Job job;
    grpc::Status s = Submit(spec, &job);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << field;
    EXPECT_EQ(s.error_message().rfind(field + ":", 0), 0u)
        << "expected '" << field << ":', got '" << s.error_message() << "'";
  }
  // None of them created a job; the server is still healthy.
  v1::ListJobsResponse resp;
  ASSERT_TRUE(client_
                  ->ListJobs(ServerEnv::Ctx(kClientToken).get(),
                             v1::ListJobsRequest(), &resp)
                  .ok());
  EXPECT_EQ(resp.jobs_size(), 0);
  MustSubmit(env_.Spec("fine"));
}

}  // namespace
}  // namespace care::testing

// Store unit tests: every transition, fencing and the reaper, on a real
// SQLite file with a fake clock (no sleeping).
#include "server/store.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <memory>
#include <set>
#include <string>

#include "server/clock.h"
#include "server/db.h"
#include "server/schema.h"
#include "store_fixture.h"
#include "support/fixtures.h"

namespace care::server {
namespace {

using v1::JobState;

class ServerStoreTest : public StoreFixture {
 protected:
  ServerStoreTest() : StoreFixture("care-store") {}

  v1::Job Submit(const v1::JobSpec& spec) {
    auto r = store_->Submit(spec);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? r->job : v1::Job();
  }
  Lease MustLease(const std::string& worker,
                  v1::Device device = v1::DEVICE_CPU) {
    auto lease = store_->LeaseJob(worker, device);
    EXPECT_TRUE(lease.ok()) << lease.status();
    EXPECT_TRUE(lease.ok() && lease->has_value());
    return lease.ok() && lease->has_value() ? **lease : Lease{};
  }
  std::vector<v1::JobEvent> Events(const std::string& id) {
    auto page = store_->ListEvents(id, 0, 1000);
    EXPECT_TRUE(page.ok()) << page.status();
    return page.ok() ? page->events : std::vector<v1::JobEvent>{};
  }
  JobState StateOf(const std::string& id) {
    auto job = store_->GetJob(id);
    EXPECT_TRUE(job.ok()) << job.status();
    return job.ok() ? job->state() : v1::JOB_STATE_UNSPECIFIED;
  }
};

TEST_F(ServerStoreTest, SubmitCreatesQueuedJobWithOneEvent) {
  const uint64_t generation = notifier_.generation();
  v1::Job job = Submit(TestSpec());
  EXPECT_EQ(job.id().rfind("job-", 0), 0u);
  EXPECT_EQ(job.id().size(), 30u);
  EXPECT_EQ(job.state(), v1::JOB_STATE_QUEUED);
  EXPECT_EQ(job.attempt(), 0);
  EXPECT_EQ(job.create_time().seconds(), absl::ToUnixSeconds(clock_.Now()));
  EXPECT_FALSE(job.has_start_time());
  EXPECT_GT(notifier_.generation(), generation);
  auto events = Events(job.id());
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].sequence(), 1);
  EXPECT_EQ(events[0].type(), v1::EVENT_TYPE_STATE_CHANGED);
  EXPECT_EQ(events[0].state(), v1::JOB_STATE_QUEUED);
  EXPECT_EQ(store_->GetJob("job-missing").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->ListEvents("job-missing", 0, 10).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(ServerStoreTest, SubmitIsIdempotentByRequestId) {
  v1::JobSpec spec = TestSpec();
  spec.set_request_id("req-1");
  auto first = store_->Submit(spec);
  ASSERT_TRUE(first.ok());
  EXPECT_TRUE(first->created);
  auto again = store_->Submit(spec);
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again->created);
  EXPECT_EQ(again->job.id(), first->job.id());
  spec.set_priority(7);
  EXPECT_EQ(store_->Submit(spec).status().code(),
            absl::StatusCode::kAlreadyExists);
  // No request id: every submit is a new job.
  EXPECT_NE(Submit(TestSpec()).id(), Submit(TestSpec()).id());
  auto all = store_->ListJobs(ListQuery{});
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->jobs.size(), 3u);
}

TEST_F(ServerStoreTest, ListPaginatesNewestFirstAndFilters) {
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) {
    v1::JobSpec spec = TestSpec();
    (*spec.mutable_labels())["team"] = i % 2 ? "odd" : "even";
    ids.push_back(Submit(spec).id());
    clock_.Advance(absl::Seconds(1));
  }
  ASSERT_TRUE(store_->Cancel(ids[0]).ok());
  ListQuery q;
  q.page_size = 2;
  std::vector<std::string> seen;
  for (int page = 0; page < 10; ++page) {
    auto r = store_->ListJobs(q);
    ASSERT_TRUE(r.ok()) << r.status();
    for (const auto& j : r->jobs) seen.push_back(j.id());
    if (r->next_page_token.empty()) break;
    q.page_token = r->next_page_token;
  }
  EXPECT_EQ(seen,
            (std::vector<std::string>{ids[4], ids[3], ids[2], ids[1], ids[0]}));

  ListQuery even;
  even.labels["team"] = "even";
  auto r = store_->ListJobs(even);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->jobs.size(), 3u);
  EXPECT_EQ(r->jobs[0].id(), ids[4]);
  EXPECT_TRUE(r->next_page_token.empty());

  ListQuery queued_even = even;
  queued_even.states = {v1::JOB_STATE_QUEUED};
  r = store_->ListJobs(queued_even);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->jobs.size(), 2u);  // ids[0] was cancelled.

  ListQuery cancelled;
  cancelled.states = {v1::JOB_STATE_CANCELLED};
  r = store_->ListJobs(cancelled);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->jobs.size(), 1u);
  EXPECT_EQ(r->jobs[0].id(), ids[0]);

  // A token only continues the query that produced it.
  ListQuery small;
  small.page_size = 1;
  auto first = store_->ListJobs(small);
  ASSERT_TRUE(first.ok());
  even.page_token = first->next_page_token;
  EXPECT_EQ(store_->ListJobs(even).status().code(),
            absl::StatusCode::kInvalidArgument);
  small.page_token = "not-a-token";
  EXPECT_EQ(store_->ListJobs(small).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(ServerStoreTest, LeaseTakesHighestPriorityThenOldestForTheDevice) {
  const std::string a = Submit(TestSpec(0, v1::DEVICE_ANY)).id();
  clock_.Advance(absl::Seconds(1));
  const std::string b = Submit(TestSpec(5, v1::DEVICE_CUDA)).id();
  clock_.Advance(absl::Seconds(1));
  const std::string c = Submit(TestSpec(5, v1::DEVICE_CPU)).id();
  clock_.Advance(absl::Seconds(1));
  const std::string d = Submit(TestSpec(0, v1::DEVICE_ANY)).id();

  Lease l1 = MustLease("cpu-1", v1::DEVICE_CPU);
  EXPECT_EQ(l1.job.id(), c);
  EXPECT_EQ(l1.job.state(), v1::JOB_STATE_RUNNING);
  EXPECT_EQ(l1.job.attempt(), 1);
  EXPECT_EQ(l1.job.worker_id(), "cpu-1");
  EXPECT_EQ(l1.deadline, clock_.Now() + absl::Seconds(60));
  EXPECT_TRUE(l1.job.has_start_time());
  EXPECT_EQ(MustLease("cpu-1", v1::DEVICE_CPU).job.id(), a);
  EXPECT_EQ(MustLease("cpu-2", v1::DEVICE_CPU).job.id(), d);
  auto none = store_->LeaseJob("cpu-3", v1::DEVICE_CPU);
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());  // b needs CUDA.
  // A worker that names no device only takes DEVICE_ANY jobs.
  auto unnamed = store_->LeaseJob("any-1", v1::DEVICE_UNSPECIFIED);
  ASSERT_TRUE(unnamed.ok());
  EXPECT_FALSE(unnamed->has_value());
  EXPECT_EQ(MustLease("gpu-1", v1::DEVICE_CUDA).job.id(), b);
  auto events = Events(c);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[1].state(), v1::JOB_STATE_RUNNING);
  EXPECT_EQ(events[1].attempt(), 1);
}

TEST_F(ServerStoreTest, HeartbeatRenewsLeaseAndRecordsProgressEvents) {
  const std::string id = Submit(TestSpec()).id();
  Lease lease = MustLease("w");
  clock_.Advance(absl::Seconds(30));
  v1::Progress p;
  p.set_stage(v1::STAGE_CALIBRATING);
  p.set_fraction(0.1);
  p.set_layer(0);
  p.set_layer_count(4);
  auto hb = store_->Heartbeat("w", id, 1, &p, {});
  ASSERT_TRUE(hb.ok()) << hb.status();
  EXPECT_EQ(hb->deadline, clock_.Now() + absl::Seconds(60));
  EXPECT_FALSE(hb->cancel_requested);
  // Same progress again: lease renewed, no event.
  ASSERT_TRUE(store_->Heartbeat("w", id, 1, &p, {}).ok());
  ASSERT_TRUE(store_->Heartbeat("w", id, 1, nullptr, {}).ok());
  p.set_layer(1);
  p.set_fraction(0.2);
  v1::LayerReport layer;
  layer.set_layer(0);
  layer.set_rank_k(8);
  ASSERT_TRUE(store_->Heartbeat("w", id, 1, &p, {layer}).ok());
  auto events = Events(id);
  ASSERT_EQ(events.size(), 5u);
  EXPECT_EQ(events[2].type(), v1::EVENT_TYPE_STAGE_CHANGED);
  EXPECT_EQ(events[2].progress().stage(), v1::STAGE_CALIBRATING);
  EXPECT_EQ(events[3].type(), v1::EVENT_TYPE_PROGRESS);
  EXPECT_EQ(events[3].progress().layer(), 1);
  EXPECT_EQ(events[4].type(), v1::EVENT_TYPE_LAYER_DONE);
  EXPECT_EQ(events[4].layer().rank_k(), 8);
  for (size_t i = 0; i < events.size(); ++i) {
    EXPECT_EQ(events[i].sequence(), static_cast<int64_t>(i + 1));
  }
  auto job = store_->GetJob(id);
  ASSERT_TRUE(job.ok());
  EXPECT_EQ(job->progress().layer(), 1);
  EXPECT_DOUBLE_EQ(job->progress().fraction(), 0.2);

  v1::Progress bad = p;
  bad.set_fraction(1.5);
  EXPECT_EQ(store_->Heartbeat("w", id, 1, &bad, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  // Event pages.
  auto page = store_->ListEvents(id, 0, 2);
  ASSERT_TRUE(page.ok());
  EXPECT_EQ(page->events.size(), 2u);
  EXPECT_EQ(page->next_after_sequence, 2);
  page = store_->ListEvents(id, 4, 2);
  ASSERT_TRUE(page.ok());
  EXPECT_EQ(page->events.size(), 1u);
  EXPECT_EQ(page->next_after_sequence, 0);
}

TEST_F(ServerStoreTest, CompleteStoresReportAndIsTerminal) {
  const std::string id = Submit(TestSpec()).id();
  MustLease("w");
  clock_.Advance(absl::Seconds(90));
  ASSERT_TRUE(store_->Heartbeat("w", id, 1, nullptr, {}).ok());
  v1::Report report;
  report.set_kv_width_before(100);
  report.set_kv_width_after(50);
  auto job = store_->Complete("w", id, 1, report, false);
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(job->report().kv_width_after(), 50);
  EXPECT_TRUE(job->worker_id().empty());
  EXPECT_EQ(job->end_time().seconds() - job->start_time().seconds(), 90);
  // Terminal: every later write is refused, cancel too.
  EXPECT_EQ(store_->Complete("w", id, 1, report, false).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store_->Heartbeat("w", id, 1, nullptr, {}).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store_->Cancel(id).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(Events(id).back().state(), v1::JOB_STATE_SUCCEEDED);
}

TEST_F(ServerStoreTest, StaleAttemptsAndOtherWorkersAreFenced) {
  const std::string id = Submit(TestSpec()).id();
  MustLease("w1");
  v1::Failure f;
  EXPECT_EQ(store_->Heartbeat("w1", id, 2, nullptr, {}).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store_->Heartbeat("w2", id, 1, nullptr, {}).status().code(),
            absl::StatusCode::kFailedPrecondition);
  // w1 is presumed dead: the reaper requeues, w2 takes attempt 2.
  clock_.Advance(absl::Seconds(61));
  auto reaped = store_->ReapExpiredLeases();
  ASSERT_TRUE(reaped.ok());
  EXPECT_EQ(reaped->requeued, 1);
  Lease second = MustLease("w2");
  EXPECT_EQ(second.job.attempt(), 2);
  // w1 wakes up: every write of attempt 1 is refused.
  EXPECT_EQ(store_->Heartbeat("w1", id, 1, nullptr, {}).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store_->Complete("w1", id, 1, v1::Report(), false).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store_->Fail("w1", id, 1, f, true).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(StateOf(id), v1::JOB_STATE_RUNNING);
  ASSERT_TRUE(store_->Complete("w2", id, 2, v1::Report(), false).ok());
}

TEST_F(ServerStoreTest, CancelQueuedIsImmediateAndRunningWaitsForTheWorker) {
  const std::string queued = Submit(TestSpec()).id();
  auto c = store_->Cancel(queued);
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE(c->finished);
  EXPECT_EQ(c->job.state(), v1::JOB_STATE_CANCELLED);
  EXPECT_TRUE(c->job.has_end_time());
  c = store_->Cancel(queued);  // Again: unchanged, not finished twice.
  ASSERT_TRUE(c.ok());
  EXPECT_FALSE(c->finished);
  EXPECT_EQ(Events(queued).size(), 2u);

  const std::string running = Submit(TestSpec()).id();
  MustLease("w");
  // cancelled=true without a cancel request is refused.
  EXPECT_EQ(
      store_->Complete("w", running, 1, v1::Report(), true).status().code(),
      absl::StatusCode::kFailedPrecondition);
  c = store_->Cancel(running);
  ASSERT_TRUE(c.ok());
  EXPECT_FALSE(c->finished);
  EXPECT_EQ(c->job.state(), v1::JOB_STATE_CANCELLING);
  auto hb = store_->Heartbeat("w", running, 1, nullptr, {});
  ASSERT_TRUE(hb.ok());
  EXPECT_TRUE(hb->cancel_requested);
  auto done = store_->Complete("w", running, 1, v1::Report(), true);
  ASSERT_TRUE(done.ok()) << done.status();
  EXPECT_EQ(done->state(), v1::JOB_STATE_CANCELLED);
  EXPECT_FALSE(done->has_report());
}

TEST_F(ServerStoreTest, FailRetriesWhileAttemptsRemain) {
  const std::string id = Submit(TestSpec(0, v1::DEVICE_ANY, 2)).id();
  MustLease("w");
  v1::Failure f;
  f.set_reason(v1::FAILURE_REASON_INFRASTRUCTURE);
  f.set_message("disk full");
  auto r = store_->Fail("w", id, 1, f, true);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->requeued);
  EXPECT_EQ(r->job.state(), v1::JOB_STATE_QUEUED);
  EXPECT_FALSE(r->job.has_failure());
  // The failing worker is passed over for the grace period (another worker
  // would get the job), then takes it itself.
  auto again = store_->LeaseJob("w", v1::DEVICE_CPU);
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again->has_value());
  clock_.Advance(absl::Seconds(30));
  EXPECT_EQ(MustLease("w").job.attempt(), 2);
  r = store_->Fail("w", id, 2, f, true);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->requeued);
  EXPECT_EQ(r->job.state(), v1::JOB_STATE_FAILED);
  EXPECT_EQ(r->job.failure().reason(), v1::FAILURE_REASON_INFRASTRUCTURE);
  EXPECT_EQ(r->job.failure().message(), "disk full (attempt 2 of 2)");

  // User-input failures are final on the first attempt.
  const std::string bad = Submit(TestSpec()).id();
  MustLease("w");
  f.set_reason(v1::FAILURE_REASON_USER_INPUT);
  f.set_message("config.json: missing");
  r = store_->Fail("w", bad, 1, f, false);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->job.state(), v1::JOB_STATE_FAILED);
  EXPECT_EQ(r->job.failure().reason(), v1::FAILURE_REASON_USER_INPUT);

  // A cancel request wins over a retry.
  const std::string cancelling = Submit(TestSpec()).id();
  MustLease("w");
  ASSERT_TRUE(store_->Cancel(cancelling).ok());
  f.set_reason(v1::FAILURE_REASON_INFRASTRUCTURE);
  r = store_->Fail("w", cancelling, 1, f, true);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->job.state(), v1::JOB_STATE_FAILED);
}

TEST_F(ServerStoreTest, ReaperRequeuesThenFailsAfterMaxAttempts) {
  const std::string id = Submit(TestSpec(0, v1::DEVICE_ANY, 2)).id();
  MustLease("w1");
  clock_.Advance(absl::Seconds(59));
  auto r = store_->ReapExpiredLeases();
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->expired, 0);
  clock_.Advance(absl::Seconds(2));
  r = store_->ReapExpiredLeases();
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->expired, 1);
  EXPECT_EQ(r->requeued, 1);
  EXPECT_TRUE(r->finished.empty());
  auto events = Events(id);
  EXPECT_EQ(events.back().type(), v1::EVENT_TYPE_LEASE_EXPIRED);
  EXPECT_EQ(events.back().state(), v1::JOB_STATE_QUEUED);
  EXPECT_EQ(events.back().attempt(), 1);
  EXPECT_EQ(StateOf(id), v1::JOB_STATE_QUEUED);

  EXPECT_EQ(MustLease("w2").job.attempt(), 2);
  clock_.Advance(absl::Seconds(61));
  r = store_->ReapExpiredLeases();
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->expired, 1);
  EXPECT_EQ(r->requeued, 0);
  ASSERT_EQ(r->finished.size(), 1u);
  EXPECT_EQ(r->finished[0].state(), v1::JOB_STATE_FAILED);
  EXPECT_EQ(r->finished[0].failure().reason(),
            v1::FAILURE_REASON_INFRASTRUCTURE);
  EXPECT_TRUE(r->finished[0].has_end_time());

  // An expired CANCELLING lease ends CANCELLED.
  const std::string c = Submit(TestSpec()).id();
  MustLease("w3");
  ASSERT_TRUE(store_->Cancel(c).ok());
  clock_.Advance(absl::Seconds(61));
  r = store_->ReapExpiredLeases();
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->finished.size(), 1u);
  EXPECT_EQ(r->finished[0].state(), v1::JOB_STATE_CANCELLED);
}

TEST_F(ServerStoreTest, CountStatesSeesQueueRunningAndRecentWorkers) {
  Submit(TestSpec());
  Submit(TestSpec());
  Submit(TestSpec());
  MustLease("w1");
  clock_.Advance(absl::Seconds(30));
  MustLease("w2");
  auto counts = store_->CountStates(absl::Seconds(20));
  ASSERT_TRUE(counts.ok());
  EXPECT_EQ(counts->queued, 1);
  EXPECT_EQ(counts->running, 2);
  EXPECT_EQ(counts->workers_seen, 1);  // w1 was last seen 30 s ago.
}

TEST_F(ServerStoreTest, JobsSurviveReopenAndSchemaIsCurrent) {
  v1::JobSpec spec = TestSpec();
  spec.set_request_id("durable");
  const std::string id = Submit(spec).id();
  MustLease("w");
  Reopen();
  auto job = store_->GetJob(id);
  ASSERT_TRUE(job.ok());
  EXPECT_EQ(job->state(), v1::JOB_STATE_RUNNING);
  EXPECT_EQ(Events(id).size(), 2u);
  auto again = store_->Submit(spec);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->job.id(), id);

  auto conn = Connection::Open(dir_ + "/jobs.db", true, 1000);
  ASSERT_TRUE(conn.ok());
  auto stmt = (*conn)->Prepare("PRAGMA user_version");
  ASSERT_TRUE(stmt.ok());
  ASSERT_TRUE(*stmt->Step());
  EXPECT_EQ(stmt->Int(0), LatestSchemaVersion());
  auto mode = (*conn)->Prepare("PRAGMA journal_mode");
  ASSERT_TRUE(mode.ok());
  ASSERT_TRUE(*mode->Step());
  EXPECT_EQ(mode->Text(0), "wal");
}

TEST_F(ServerStoreTest, RefusesADatabaseFromTheFuture) {
  store_.reset();
  {
    auto conn = Connection::Open(dir_ + "/jobs.db", false, 1000);
    ASSERT_TRUE(conn.ok());
    ASSERT_TRUE((*conn)->Exec("PRAGMA user_version = 999").ok());
  }
  StoreOptions options;
  options.path = dir_ + "/jobs.db";
  auto store = Store::Open(options, &clock_, nullptr);
  EXPECT_EQ(store.status().code(), absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace care::server

// The stored full report (job_reports, schema migration 3) on a real SQLite
// file: written with CompleteJob in the same transaction, fenced like it,
// read back only for a succeeded job; and migration of a version-2 file.
#include <gtest/gtest.h>

#include <filesystem>
#include <memory>
#include <string>

#include "server/clock.h"
#include "server/db.h"
#include "server/schema.h"
#include "server/store.h"
#include "store_fixture.h"
#include "support/fixtures.h"

namespace care::server {
namespace {

class ReportStoreTest : public StoreFixture {
 protected:
  ReportStoreTest() : StoreFixture("care-report-store") {}

  // A submitted job leased by `worker` (attempt 1).
  std::string Running(const std::string& worker) {
    auto submitted = store_->Submit(TestSpec());
    EXPECT_TRUE(submitted.ok()) << submitted.status();
    auto lease = store_->LeaseJob(worker, v1::DEVICE_CPU);
    EXPECT_TRUE(lease.ok() && lease->has_value());
    return submitted.ok() ? submitted->job.id() : "";
  }
};

TEST_F(ReportStoreTest, StoredWithCompleteAndReadBack) {
  const std::string id = Running("w");
  // Not yet succeeded: refused, whatever is stored.
  EXPECT_EQ(store_->GetJobReport(id, false).status().code(),
            absl::StatusCode::kFailedPrecondition);
  // Binary-safe: NUL bytes and non-UTF-8 survive.
  const JobReportFiles files{std::string("{\"a\":1}\0x", 9),
                             "<html>\xff</html>", 1};
  ASSERT_TRUE(store_->Complete("w", id, 1, v1::Report(), false, &files).ok());
  auto got = store_->GetJobReport(id, false);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->json, files.json);
  EXPECT_EQ(got->html, files.html);
  EXPECT_EQ(got->attempt, 1);
  auto json_only = store_->GetJobReport(id, true);
  ASSERT_TRUE(json_only.ok()) << json_only.status();
  EXPECT_EQ(json_only->json, files.json);
  EXPECT_TRUE(json_only->html.empty());
  // Durable: a reopened file still has it.
  Reopen();
  got = store_->GetJobReport(id, false);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->html, files.html);
}

TEST_F(ReportStoreTest, MissingUnknownAndCancelled) {
  EXPECT_EQ(store_->GetJobReport("job-nope", false).status().code(),
            absl::StatusCode::kNotFound);
  // Succeeded without files (an older worker): NOT_FOUND, naming the job.
  const std::string plain = Running("w");
  ASSERT_TRUE(store_->Complete("w", plain, 1, v1::Report(), false).ok());
  const absl::Status none = store_->GetJobReport(plain, false).status();
  EXPECT_EQ(none.code(), absl::StatusCode::kNotFound);
  EXPECT_NE(none.message().find(plain), std::string::npos) << none;
  // Cancelled: files are ignored, the job never has a report.
  const std::string cancelled = Running("w");
  ASSERT_TRUE(store_->Cancel(cancelled).ok());
  const JobReportFiles files{"{}", "<html></html>", 1};
  ASSERT_TRUE(
      store_->Complete("w", cancelled, 1, v1::Report(), true, &files).ok());
  EXPECT_EQ(store_->GetJobReport(cancelled, false).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(ReportStoreTest, FencedLikeComplete) {
  const std::string id = Running("w1");
  const JobReportFiles stale{"{\"stale\":true}", "stale", 1};
  // Another worker's write is rejected and stores nothing.
  EXPECT_EQ(store_->Complete("w2", id, 1, v1::Report(), false, &stale)
                .status()
                .code(),
            absl::StatusCode::kFailedPrecondition);
  const JobReportFiles real{"{\"real\":true}", "real", 1};
  ASSERT_TRUE(store_->Complete("w1", id, 1, v1::Report(), false, &real).ok());
  // A late duplicate cannot replace it.
  EXPECT_FALSE(store_->Complete("w1", id, 1, v1::Report(), false, &stale).ok());
  auto got = store_->GetJobReport(id, false);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->json, real.json);
}

TEST_F(ReportStoreTest, MigratesAVersion2File) {
  const std::string id = Running("w");
  ASSERT_TRUE(store_->Complete("w", id, 1, v1::Report(), false).ok());
  store_.reset();
  {
    // Back to what a version-2 server left: no job_reports table.
    auto conn = Connection::Open(dir_ + "/jobs.db", /*read_only=*/false, 5000);
    ASSERT_TRUE(conn.ok()) << conn.status();
    ASSERT_TRUE((*conn)
                    ->Exec("DROP TABLE job_reports; "
                           "PRAGMA user_version = 2;")
                    .ok());
  }
  Reopen();
  // The job from before the upgrade has no report; a new one does.
  EXPECT_EQ(store_->GetJobReport(id, false).status().code(),
            absl::StatusCode::kNotFound);
  const std::string next = Running("w");
  const JobReportFiles files{"{}", "<p>", 1};
  ASSERT_TRUE(store_->Complete("w", next, 1, v1::Report(), false, &files).ok());
  EXPECT_TRUE(store_->GetJobReport(next, false).ok());
}

}  // namespace
}  // namespace care::server

// Helpers shared by the store's translation units (store.cc: submit, reads,
// cancel; store_lease.cc: the worker side). Not part of the public API.
#ifndef CARE_SERVER_STORE_INTERNAL_H_
#define CARE_SERVER_STORE_INTERNAL_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "care/v1/job.pb.h"
#include "server/db.h"
#include "server/store.h"

namespace care::server::internal {

// Column list matching ReadJobRow's indices.
inline constexpr char kJobColumns[] =
    "id, spec, state, attempt, progress, worker_id, lease_deadline_us, "
    "create_us, start_us, update_us, end_us, failure, report, seq, "
    "max_attempts, attempts";
// Number of columns in kJobColumns (the index of a column appended to it).
inline constexpr int kJobColumnCount = 16;

struct JobRow {
  v1::Job job;
  int64_t lease_deadline_us = 0;
  int max_attempts = 0;
};

int64_t ToMicros(absl::Time t);
absl::Time FromMicros(int64_t us);

absl::StatusOr<JobRow> ReadJobRow(const Statement& stmt);
// NOT_FOUND naming the id when absent.
absl::StatusOr<JobRow> LoadJob(Connection& conn, absl::string_view job_id);

struct EventInit {
  v1::EventType type = v1::EVENT_TYPE_UNSPECIFIED;
  v1::JobState state = v1::JOB_STATE_UNSPECIFIED;  // State after the event.
  int attempt = 0;
  std::string message;
  const v1::Progress* progress = nullptr;
  const v1::LayerReport* layer = nullptr;
};

// Bumps jobs.seq and inserts the event with that sequence; call inside the
// transaction that made the change.
absl::Status AppendEvent(Connection& conn, absl::string_view job_id,
                         const EventInit& init, int64_t now_us);

// Internal error unless the last statement changed exactly one row: a
// conditional transition that matched nothing means the state moved under us.
absl::Status ExpectOneChange(Connection& conn, absl::string_view what);

std::string StateName(v1::JobState state);

// Inserts or replaces the job's stored report (store_report.cc); call inside
// the transaction that completes the job.
absl::Status PutJobReport(Connection& conn, absl::string_view job_id,
                          const JobReportFiles& files, int64_t now_us);

}  // namespace care::server::internal

#endif  // CARE_SERVER_STORE_INTERNAL_H_

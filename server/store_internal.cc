#include "server/store_internal.h"

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace care::server::internal {
namespace {

google::protobuf::Timestamp ToTimestamp(int64_t us) {
  google::protobuf::Timestamp ts;
  ts.set_seconds(us / 1000000);
  ts.set_nanos(static_cast<int32_t>((us % 1000000) * 1000));
  return ts;
}

// `mutable_field` is only called for a non-NULL column, so an absent
// message stays absent (has_report() false).
template <typename MutableField>
absl::Status ParseColumn(const Statement& stmt, int column,
                         absl::string_view what, const std::string& id,
                         MutableField mutable_field) {
  if (stmt.IsNull(column)) return absl::OkStatus();
  if (!mutable_field()->ParseFromString(stmt.Blob(column))) {
    return absl::DataLossError(
        absl::StrCat("stored ", what, " of ", id, " does not parse"));
  }
  return absl::OkStatus();
}

}  // namespace

int64_t ToMicros(absl::Time t) { return absl::ToUnixMicros(t); }
absl::Time FromMicros(int64_t us) { return absl::FromUnixMicros(us); }

std::string StateName(v1::JobState state) { return v1::JobState_Name(state); }

absl::StatusOr<JobRow> ReadJobRow(const Statement& stmt) {
  JobRow row;
  v1::Job& job = row.job;
  job.set_id(stmt.Text(0));
  CARE_RETURN_IF_ERROR(ParseColumn(stmt, 1, "spec", job.id(),
                                   [&] { return job.mutable_spec(); }));
  job.set_state(static_cast<v1::JobState>(stmt.Int(2)));
  job.set_attempt(static_cast<int32_t>(stmt.Int(3)));
  CARE_RETURN_IF_ERROR(ParseColumn(stmt, 4, "progress", job.id(),
                                   [&] { return job.mutable_progress(); }));
  if (job.state() == v1::JOB_STATE_RUNNING ||
      job.state() == v1::JOB_STATE_CANCELLING) {
    job.set_worker_id(stmt.Text(5));
  }
  row.lease_deadline_us = stmt.IsNull(6) ? 0 : stmt.Int(6);
  *job.mutable_create_time() = ToTimestamp(stmt.Int(7));
  if (!stmt.IsNull(8)) *job.mutable_start_time() = ToTimestamp(stmt.Int(8));
  *job.mutable_update_time() = ToTimestamp(stmt.Int(9));
  if (!stmt.IsNull(10)) *job.mutable_end_time() = ToTimestamp(stmt.Int(10));
  CARE_RETURN_IF_ERROR(ParseColumn(stmt, 11, "failure", job.id(),
                                   [&] { return job.mutable_failure(); }));
  CARE_RETURN_IF_ERROR(ParseColumn(stmt, 12, "report", job.id(),
                                   [&] { return job.mutable_report(); }));
  row.max_attempts = static_cast<int>(stmt.Int(14));
  // A Job carrying only `attempts`: parsing merges them into `job`.
  if (!stmt.IsNull(15) && !job.MergeFromString(stmt.Blob(15))) {
    return absl::DataLossError(
        absl::StrCat("stored attempts of ", job.id(), " do not parse"));
  }
  return row;
}

absl::StatusOr<JobRow> LoadJob(Connection& conn, absl::string_view job_id) {
  CARE_ASSIGN_OR_RETURN(Statement stmt,
                        conn.Prepare(absl::StrCat("SELECT ", kJobColumns,
                                                  " FROM jobs WHERE id = ?")));
  stmt.Bind(1, job_id);
  CARE_ASSIGN_OR_RETURN(bool found, stmt.Step());
  if (!found) return absl::NotFoundError(absl::StrCat("job ", job_id));
  return ReadJobRow(stmt);
}

absl::Status AppendEvent(Connection& conn, absl::string_view job_id,
                         const EventInit& init, int64_t now_us) {
  CARE_ASSIGN_OR_RETURN(
      Statement bump,
      conn.Prepare("UPDATE jobs SET seq = seq + 1 WHERE id = ? RETURNING seq"));
  bump.Bind(1, job_id);
  CARE_ASSIGN_OR_RETURN(bool row, bump.Step());
  if (!row) {
    return absl::InternalError(absl::StrCat("event for missing job ", job_id));
  }
  const int64_t sequence = bump.Int(0);
  CARE_RETURN_IF_ERROR(bump.Run());

  v1::JobEvent event;
  event.set_job_id(std::string(job_id));
  event.set_sequence(sequence);
  *event.mutable_time() = ToTimestamp(now_us);
  event.set_type(init.type);
  event.set_state(init.state);
  event.set_attempt(init.attempt);
  event.set_message(init.message);
  if (init.progress != nullptr) *event.mutable_progress() = *init.progress;
  if (init.layer != nullptr) *event.mutable_layer() = *init.layer;

  CARE_ASSIGN_OR_RETURN(
      Statement insert,
      conn.Prepare("INSERT INTO job_events (job_id, sequence, time_us, type, "
                   "state, event) VALUES (?, ?, ?, ?, ?, ?)"));
  insert.Bind(1, job_id)
      .Bind(2, sequence)
      .Bind(3, now_us)
      .Bind(4, int64_t{init.type})
      .Bind(5, int64_t{init.state})
      .BindBlob(6, event.SerializeAsString());
  return insert.Run();
}

absl::Status ExpectOneChange(Connection& conn, absl::string_view what) {
  const int changes = conn.Changes();
  if (changes != 1) {
    return absl::InternalError(
        absl::StrCat(what, ": expected exactly one row to change, got ",
                     changes, " (the job moved concurrently)"));
  }
  return absl::OkStatus();
}

}  // namespace care::server::internal

// The full report of a succeeded job (job_reports, schema migration 3):
// written inside Store::Complete's transaction, read by GetJobReport.
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "server/store.h"
#include "server/store_internal.h"

namespace care::server {
namespace {

// SUCCEEDED is terminal and its report was written in the same transaction,
// so the two reads need no transaction of their own.
absl::StatusOr<JobReportFiles> ReadJobReport(Connection& db,
                                             absl::string_view job_id,
                                             bool json_only) {
  CARE_ASSIGN_OR_RETURN(internal::JobRow row, internal::LoadJob(db, job_id));
  if (row.job.state() != v1::JOB_STATE_SUCCEEDED) {
    return absl::FailedPreconditionError(absl::StrCat(
        "job ", job_id, " is ", internal::StateName(row.job.state()),
        "; its report is stored when it succeeds"));
  }
  CARE_ASSIGN_OR_RETURN(
      Statement get,
      db.Prepare(json_only ? "SELECT attempt, json, x'' FROM job_reports "
                             "WHERE job_id = ?"
                           : "SELECT attempt, json, html FROM job_reports "
                             "WHERE job_id = ?"));
  get.Bind(1, job_id);
  CARE_ASSIGN_OR_RETURN(bool found, get.Step());
  if (!found) {
    return absl::NotFoundError(absl::StrCat(
        "job ", job_id,
        " has no stored report (its worker sent none); care_report.json and "
        "care_report.html are in its output directory"));
  }
  JobReportFiles files;
  files.attempt = static_cast<int>(get.Int(0));
  files.json = get.Blob(1);
  files.html = get.Blob(2);
  return files;
}

}  // namespace

absl::Status internal::PutJobReport(Connection& conn, absl::string_view job_id,
                                    const JobReportFiles& files,
                                    int64_t now_us) {
  CARE_ASSIGN_OR_RETURN(Statement put,
                        conn.Prepare("INSERT OR REPLACE INTO job_reports "
                                     "(job_id, attempt, json, html, create_us) "
                                     "VALUES (?, ?, ?, ?, ?)"));
  put.Bind(1, job_id)
      .Bind(2, int64_t{files.attempt})
      .BindBlob(3, files.json)
      .BindBlob(4, files.html)
      .Bind(5, now_us);
  return put.Run();
}

absl::StatusOr<JobReportFiles> Store::GetJobReport(absl::string_view job_id,
                                                   bool json_only) {
  CARE_ASSIGN_OR_RETURN(std::unique_ptr<Connection> conn, AcquireReader());
  absl::StatusOr<JobReportFiles> result =
      ReadJobReport(*conn, job_id, json_only);
  ReleaseReader(std::move(conn));
  return result;
}

}  // namespace care::server

#include "server/schema.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace care::server {
namespace {

// Timestamps are microseconds since the Unix epoch; enums are the proto
// numbers; spec/progress/failure/report/events are serialized protos so the
// API can grow without a migration. `seq` is the last event's sequence.
// `pk` (the rowid) orders jobs by insertion, is never reused (AUTOINCREMENT)
// and survives VACUUM, so list page tokens can name it.
const std::vector<const char*>& Migrations() {
  static const std::vector<const char*> kMigrations = {
      // 1: jobs, labels, events, workers.
      R"sql(
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
)sql",
      // 2: device routing (issue 11). `lease_device` is the device kind of
      // the worker holding the current or last lease; `attempts` is a
      // serialized care.v1.Job carrying only `attempts`, appended to by
      // concatenation (protobuf merges repeated fields), one per lease.
      // `avoid_worker` failed the last attempt (or let its lease expire):
      // other workers get the job first until `avoid_until_us`. Workers
      // record the ordinal and name they advertise.
      R"sql(
ALTER TABLE jobs ADD COLUMN lease_device INTEGER;
ALTER TABLE jobs ADD COLUMN attempts BLOB;
ALTER TABLE jobs ADD COLUMN avoid_worker TEXT;
ALTER TABLE jobs ADD COLUMN avoid_until_us INTEGER;
ALTER TABLE workers ADD COLUMN device_ordinal INTEGER NOT NULL DEFAULT 0;
ALTER TABLE workers ADD COLUMN device_name TEXT NOT NULL DEFAULT '';
CREATE INDEX workers_seen ON workers(device, last_seen_us);
)sql",
      // 3: the full report of a succeeded job (issue 20), as its worker
      // sent it with CompleteJob: care_report.json and care_report.html.
      // A separate table keeps the jobs rows small for listing.
      R"sql(
CREATE TABLE job_reports (
  job_id TEXT PRIMARY KEY NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
  attempt INTEGER NOT NULL,
  json BLOB NOT NULL,
  html BLOB NOT NULL,
  create_us INTEGER NOT NULL
);
)sql",
  };
  return kMigrations;
}

absl::StatusOr<int> UserVersion(Connection& conn) {
  CARE_ASSIGN_OR_RETURN(Statement stmt, conn.Prepare("PRAGMA user_version"));
  CARE_ASSIGN_OR_RETURN(bool row, stmt.Step());
  if (!row) return absl::InternalError("PRAGMA user_version returned no row");
  return static_cast<int>(stmt.Int(0));
}

}  // namespace

int LatestSchemaVersion() { return static_cast<int>(Migrations().size()); }

absl::Status ConfigureConnection(Connection& conn) {
  return conn.Exec("PRAGMA foreign_keys = ON;");
}

absl::Status MigrateSchema(Connection& conn) {
  // WAL: readers never block the writer; FULL: an acknowledged commit is
  // fsynced to the WAL, so it survives power loss.
  {
    CARE_ASSIGN_OR_RETURN(Statement wal,
                          conn.Prepare("PRAGMA journal_mode=WAL"));
    CARE_ASSIGN_OR_RETURN(bool row, wal.Step());
    const std::string mode = row ? wal.Text(0) : std::string();
    if (mode != "wal") {
      return absl::FailedPreconditionError(
          absl::StrCat("database cannot use WAL journal mode (got '", mode,
                       "'); is it on a network file system?"));
    }
  }
  CARE_RETURN_IF_ERROR(conn.Exec("PRAGMA synchronous = FULL;"));
  CARE_RETURN_IF_ERROR(ConfigureConnection(conn));

  CARE_ASSIGN_OR_RETURN(int version, UserVersion(conn));
  const int latest = LatestSchemaVersion();
  if (version > latest) {
    return absl::FailedPreconditionError(
        absl::StrCat("database schema version ", version,
                     " is newer than this care-server understands (", latest,
                     "); upgrade the server"));
  }
  for (int v = version; v < latest; ++v) {
    CARE_ASSIGN_OR_RETURN(Transaction tx, Transaction::BeginImmediate(&conn));
    CARE_RETURN_IF_ERROR(conn.Exec(Migrations()[v]));
    CARE_RETURN_IF_ERROR(
        conn.Exec(absl::StrCat("PRAGMA user_version = ", v + 1, ";")));
    CARE_RETURN_IF_ERROR(tx.Commit());
  }
  return absl::OkStatus();
}

}  // namespace care::server

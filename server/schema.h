// The job database schema and its migrations, versioned by PRAGMA
// user_version. Migrations only ever append: version N's SQL never changes
// once released, so any older file can be brought forward.
#ifndef CARE_SERVER_SCHEMA_H_
#define CARE_SERVER_SCHEMA_H_

#include "absl/status/status.h"
#include "server/db.h"

namespace care::server {

// The version a fully migrated database reports.
int LatestSchemaVersion();

// Sets the connection pragmas (WAL, synchronous=FULL, foreign keys) and
// applies every migration above the file's user_version, each in its own
// transaction. Fails on a file newer than this binary understands.
absl::Status MigrateSchema(Connection& conn);

// Pragmas for every connection (readers included): foreign keys on.
absl::Status ConfigureConnection(Connection& conn);

}  // namespace care::server

#endif  // CARE_SERVER_SCHEMA_H_

// A thin RAII layer over the SQLite C API: one connection, prepared
// statements with typed binds and reads, and transactions that roll back
// unless committed. Every error carries SQLite's message and the SQL at fault.
#ifndef CARE_SERVER_DB_H_
#define CARE_SERVER_DB_H_

#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace care::server {

class Statement;

class Connection {
 public:
  // Opens (creating when `create`) the database file read-write, or read-only.
  static absl::StatusOr<std::unique_ptr<Connection>> Open(
      const std::string& path, bool read_only, int busy_timeout_ms);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Runs one or more statements without results.
  absl::Status Exec(absl::string_view sql);
  absl::StatusOr<Statement> Prepare(absl::string_view sql);
  // Rows changed by the last INSERT/UPDATE/DELETE.
  int Changes() const;
  sqlite3* raw() { return db_; }

  absl::Status Error(absl::string_view what) const;

 private:
  explicit Connection(sqlite3* db) : db_(db) {}
  sqlite3* db_;
};

class Statement {
 public:
  Statement(Statement&& other) noexcept;
  Statement& operator=(Statement&&) = delete;
  ~Statement();

  // 1-based parameter index, as in SQLite.
  Statement& Bind(int index, int64_t value);
  Statement& Bind(int index, absl::string_view text);
  Statement& BindBlob(int index, absl::string_view bytes);
  Statement& BindNull(int index);

  // Steps once: true when a row is available, false when done.
  absl::StatusOr<bool> Step();
  // Steps to completion of a statement without results.
  absl::Status Run();

  int64_t Int(int column) const;
  std::string Text(int column) const;
  std::string Blob(int column) const;
  bool IsNull(int column) const;

 private:
  friend class Connection;
  Statement(Connection* conn, sqlite3_stmt* stmt) : conn_(conn), stmt_(stmt) {}
  Connection* conn_;
  sqlite3_stmt* stmt_;
  absl::Status bind_error_;
};

// BEGIN IMMEDIATE on construction (takes the write lock up front, so a
// read-then-write cannot be invalidated), ROLLBACK unless Commit() ran.
class Transaction {
 public:
  static absl::StatusOr<Transaction> BeginImmediate(Connection* conn);
  // Deferred read transaction: one consistent snapshot for several SELECTs.
  static absl::StatusOr<Transaction> BeginRead(Connection* conn);
  Transaction(Transaction&& other) noexcept
      : conn_(other.conn_), done_(other.done_) {
    other.done_ = true;
  }
  ~Transaction();
  absl::Status Commit();

 private:
  explicit Transaction(Connection* conn) : conn_(conn) {}
  Connection* conn_;
  bool done_ = false;
};

}  // namespace care::server

#endif  // CARE_SERVER_DB_H_

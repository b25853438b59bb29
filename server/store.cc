#include "server/store.h"

#include <google/protobuf/util/message_differencer.h>

#include <limits>
#include <random>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "base/status_macros.h"
#include "server/schema.h"
#include "server/store_internal.h"

namespace care::server {

using internal::AppendEvent;
using internal::EventInit;
using internal::ExpectOneChange;
using internal::JobRow;
using internal::LoadJob;
using internal::StateName;
using internal::ToMicros;

std::string DeviceLabel(v1::Device device) {
  absl::string_view word = api::WordOf(api::kDeviceWords, device);
  return std::string(word.empty() ? "unspecified" : word);
}

std::string DefaultDeviceName(v1::Device kind, int ordinal) {
  if (kind == v1::DEVICE_CUDA) return absl::StrCat("cuda:", ordinal);
  return DeviceLabel(kind);
}

namespace {

// "job-" + 26 Crockford base32 digits: 48 bits of milliseconds (so ids sort
// roughly by creation) and 80 random bits.
std::string NewJobId(absl::Time now) {
  static constexpr char kAlphabet[] = "0123456789abcdefghjkmnpqrstvwxyz";
  thread_local std::mt19937_64 rng{std::random_device{}()};
  const uint64_t ms = static_cast<uint64_t>(absl::ToUnixMillis(now));
  const uint64_t hi = rng(), lo = rng();
  std::string id = "job-";
  for (int i = 9; i >= 0; --i) id.push_back(kAlphabet[(ms >> (5 * i)) & 31]);
  // 16 digits from 80 random bits: 64 from `hi`, 16 from `lo`.
  for (int i = 0; i < 12; ++i) id.push_back(kAlphabet[(hi >> (5 * i)) & 31]);
  const uint64_t rest = (hi >> 60) | ((lo & 0xffff) << 4);
  for (int i = 0; i < 4; ++i) id.push_back(kAlphabet[(rest >> (5 * i)) & 31]);
  return id;
}

// FNV-1a of the query's filters: a page token only continues the query that
// produced it.
uint64_t FilterHash(const ListQuery& q) {
  std::string canon;
  for (v1::JobState s : q.states) absl::StrAppend(&canon, "s", s, ";");
  for (const auto& [k, v] : q.labels) {
    absl::StrAppend(&canon, "l", k.size(), ":", k, v.size(), ":", v, ";");
  }
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : canon) h = (h ^ c) * 1099511628211ull;
  return h;
}

std::string EncodePageToken(int64_t rowid, uint64_t hash) {
  return absl::WebSafeBase64Escape(absl::StrCat("v1:", rowid, ":", hash));
}

absl::StatusOr<int64_t> DecodePageToken(const std::string& token,
                                        uint64_t hash) {
  std::string raw;
  std::vector<std::string> parts;
  if (absl::WebSafeBase64Unescape(token, &raw)) {
    parts = absl::StrSplit(raw, ':');
  }
  int64_t rowid = 0;
  uint64_t token_hash = 0;
  if (parts.size() != 3 || parts[0] != "v1" ||
      !absl::SimpleAtoi(parts[1], &rowid) ||
      !absl::SimpleAtoi(parts[2], &token_hash)) {
    return absl::InvalidArgumentError("page_token: malformed");
  }
  if (token_hash != hash) {
    return absl::InvalidArgumentError(
        "page_token: belongs to a query with other filters");
  }
  return rowid;
}

}  // namespace

// Returns its connection to the pool on destruction.
class Store::ReaderLease {
 public:
  ReaderLease(Store* store, std::unique_ptr<Connection> conn)
      : store_(store), conn_(std::move(conn)) {}
  ~ReaderLease() { store_->ReleaseReader(std::move(conn_)); }
  Connection& operator*() { return *conn_; }

 private:
  Store* store_;
  std::unique_ptr<Connection> conn_;
};

absl::StatusOr<std::unique_ptr<Store>> Store::Open(StoreOptions options,
                                                   const Clock* clock,
                                                   ChangeNotifier* notifier) {
  if (options.path.empty()) return absl::InvalidArgumentError("--db: required");
  CARE_ASSIGN_OR_RETURN(std::unique_ptr<Connection> writer,
                        Connection::Open(options.path, /*read_only=*/false,
                                         options.busy_timeout_ms));
  CARE_RETURN_IF_ERROR(MigrateSchema(*writer));
  return std::unique_ptr<Store>(
      new Store(std::move(options), clock, notifier, std::move(writer)));
}

Store::Store(StoreOptions options, const Clock* clock, ChangeNotifier* notifier,
             std::unique_ptr<Connection> writer)
    : options_(std::move(options)),
      clock_(clock),
      notifier_(notifier),
      writer_(std::move(writer)) {}

Store::~Store() {
  std::lock_guard<std::mutex> lock(readers_mu_);
  idle_readers_.clear();
}

absl::StatusOr<std::unique_ptr<Connection>> Store::AcquireReader() {
  {
    std::lock_guard<std::mutex> lock(readers_mu_);
    if (!idle_readers_.empty()) {
      auto conn = std::move(idle_readers_.back());
      idle_readers_.pop_back();
      return conn;
    }
  }
  CARE_ASSIGN_OR_RETURN(std::unique_ptr<Connection> conn,
                        Connection::Open(options_.path, /*read_only=*/true,
                                         options_.busy_timeout_ms));
  CARE_RETURN_IF_ERROR(ConfigureConnection(*conn));
  return conn;
}

void Store::ReleaseReader(std::unique_ptr<Connection> conn) {
  std::lock_guard<std::mutex> lock(readers_mu_);
  if (static_cast<int>(idle_readers_.size()) < options_.max_idle_readers) {
    idle_readers_.push_back(std::move(conn));
  }
}

void Store::Notify() {
  if (notifier_ != nullptr) notifier_->Notify();
}

absl::StatusOr<SubmitResult> Store::Submit(const v1::JobSpec& spec) {
  std::lock_guard<std::mutex> lock(writer_mu_);
  Connection& db = *writer_;
  const int64_t now = ToMicros(clock_->Now());
  CARE_ASSIGN_OR_RETURN(Transaction tx, Transaction::BeginImmediate(&db));
  if (!spec.request_id().empty()) {
    CARE_ASSIGN_OR_RETURN(
        Statement find,
        db.Prepare("SELECT id, spec FROM jobs WHERE request_id = ?"));
    find.Bind(1, spec.request_id());
    CARE_ASSIGN_OR_RETURN(bool found, find.Step());
    if (found) {
      const std::string id = find.Text(0);
      v1::JobSpec existing;
      if (!existing.ParseFromString(find.Blob(1))) {
        return absl::DataLossError(
            absl::StrCat("stored spec of ", id, " does not parse"));
      }
      if (!google::protobuf::util::MessageDifferencer::Equals(existing, spec)) {
        return absl::AlreadyExistsError(absl::StrCat(
            "request_id '", spec.request_id(), "' was already used by ", id,
            " with a different spec"));
      }
      CARE_ASSIGN_OR_RETURN(JobRow row, LoadJob(db, id));
      CARE_RETURN_IF_ERROR(AnnotateQueued(db, {&row.job}));
      return SubmitResult{std::move(row.job), false};
    }
  }
  const std::string id = NewJobId(clock_->Now());
  CARE_ASSIGN_OR_RETURN(
      Statement insert,
      db.Prepare("INSERT INTO jobs (id, request_id, spec, state, priority, "
                 "device, max_attempts, create_us, update_us) "
                 "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"));
  insert.Bind(1, id);
  if (spec.request_id().empty()) {
    insert.BindNull(2);
  } else {
    insert.Bind(2, spec.request_id());
  }
  insert.BindBlob(3, spec.SerializeAsString())
      .Bind(4, int64_t{v1::JOB_STATE_QUEUED})
      .Bind(5, int64_t{spec.priority()})
      .Bind(6, int64_t{spec.device()})
      .Bind(7, int64_t{spec.max_attempts()})
      .Bind(8, now)
      .Bind(9, now);
  CARE_RETURN_IF_ERROR(insert.Run());
  CARE_RETURN_IF_ERROR(ExpectOneChange(db, "insert job"));
  for (const auto& [key, value] : spec.labels()) {
    CARE_ASSIGN_OR_RETURN(
        Statement label,
        db.Prepare(
            "INSERT INTO job_labels (job_id, key, value) VALUES (?, ?, ?)"));
    label.Bind(1, id).Bind(2, key).Bind(3, value);
    CARE_RETURN_IF_ERROR(label.Run());
  }
  EventInit event;
  event.type = v1::EVENT_TYPE_STATE_CHANGED;
  event.state = v1::JOB_STATE_QUEUED;
  event.message = "submitted";
  CARE_RETURN_IF_ERROR(AppendEvent(db, id, event, now));
  CARE_ASSIGN_OR_RETURN(JobRow row, LoadJob(db, id));
  CARE_RETURN_IF_ERROR(AnnotateQueued(db, {&row.job}));
  CARE_RETURN_IF_ERROR(tx.Commit());
  Notify();
  return SubmitResult{std::move(row.job), true};
}

absl::StatusOr<v1::Job> Store::GetJob(absl::string_view job_id) {
  CARE_ASSIGN_OR_RETURN(std::unique_ptr<Connection> conn, AcquireReader());
  ReaderLease db(this, std::move(conn));
  CARE_ASSIGN_OR_RETURN(JobRow row, LoadJob(*db, job_id));
  CARE_RETURN_IF_ERROR(AnnotateQueued(*db, {&row.job}));
  return std::move(row.job);
}

absl::StatusOr<ListResult> Store::ListJobs(const ListQuery& query) {
  const uint64_t hash = FilterHash(query);
  std::optional<int64_t> before;
  if (!query.page_token.empty()) {
    CARE_ASSIGN_OR_RETURN(before, DecodePageToken(query.page_token, hash));
  }
  std::string sql = absl::StrCat("SELECT ", internal::kJobColumns,
                                 ", rowid FROM jobs WHERE 1");
  if (before) absl::StrAppend(&sql, " AND rowid < ?");
  if (!query.states.empty()) {
    absl::StrAppend(&sql, " AND state IN (");
    for (size_t i = 0; i < query.states.size(); ++i) {
      absl::StrAppend(&sql, i ? ", ?" : "?");
    }
    absl::StrAppend(&sql, ")");
  }
  for (size_t i = 0; i < query.labels.size(); ++i) {
    absl::StrAppend(&sql,
                    " AND EXISTS (SELECT 1 FROM job_labels l WHERE "
                    "l.job_id = jobs.id AND l.key = ? AND l.value = ?)");
  }
  absl::StrAppend(&sql, " ORDER BY rowid DESC LIMIT ?");

  CARE_ASSIGN_OR_RETURN(std::unique_ptr<Connection> conn, AcquireReader());
  ReaderLease db(this, std::move(conn));
  CARE_ASSIGN_OR_RETURN(Statement stmt, (*db).Prepare(sql));
  int index = 1;
  if (before) stmt.Bind(index++, *before);
  for (v1::JobState s : query.states) stmt.Bind(index++, int64_t{s});
  for (const auto& [key, value] : query.labels) {
    stmt.Bind(index++, key);
    stmt.Bind(index++, value);
  }
  stmt.Bind(index, int64_t{query.page_size} + 1);
  ListResult result;
  int64_t last_rowid = 0;
  while (true) {
    CARE_ASSIGN_OR_RETURN(bool row, stmt.Step());
    if (!row) break;
    if (static_cast<int>(result.jobs.size()) == query.page_size) {
      result.next_page_token = EncodePageToken(last_rowid, hash);
      break;
    }
    CARE_ASSIGN_OR_RETURN(JobRow job, internal::ReadJobRow(stmt));
    result.jobs.push_back(std::move(job.job));
    last_rowid = stmt.Int(internal::kJobColumnCount);
  }
  std::vector<v1::Job*> jobs;
  for (v1::Job& job : result.jobs) jobs.push_back(&job);
  CARE_RETURN_IF_ERROR(AnnotateQueued(*db, jobs));
  return result;
}

absl::StatusOr<EventPage> Store::ListEvents(absl::string_view job_id,
                                            int64_t after_sequence, int limit) {
  CARE_ASSIGN_OR_RETURN(std::unique_ptr<Connection> conn, AcquireReader());
  ReaderLease db(this, std::move(conn));
  // One snapshot: the job's existence and its events agree.
  CARE_ASSIGN_OR_RETURN(Transaction tx, Transaction::BeginRead(&*db));
  CARE_ASSIGN_OR_RETURN(Statement exists,
                        (*db).Prepare("SELECT 1 FROM jobs WHERE id = ?"));
  exists.Bind(1, job_id);
  CARE_ASSIGN_OR_RETURN(bool found, exists.Step());
  if (!found) return absl::NotFoundError(absl::StrCat("job ", job_id));
  CARE_ASSIGN_OR_RETURN(
      Statement stmt,
      (*db).Prepare("SELECT event FROM job_events WHERE job_id = ? AND "
                    "sequence > ? ORDER BY sequence LIMIT ?"));
  stmt.Bind(1, job_id).Bind(2, after_sequence).Bind(3, int64_t{limit} + 1);
  EventPage page;
  while (true) {
    CARE_ASSIGN_OR_RETURN(bool row, stmt.Step());
    if (!row) break;
    if (static_cast<int>(page.events.size()) == limit) {
      page.next_after_sequence = page.events.back().sequence();
      break;
    }
    v1::JobEvent event;
    if (!event.ParseFromString(stmt.Blob(0))) {
      return absl::DataLossError(
          absl::StrCat("stored event of ", job_id, " does not parse"));
    }
    page.events.push_back(std::move(event));
  }
  return page;
}

absl::StatusOr<CancelResult> Store::Cancel(absl::string_view job_id) {
  std::lock_guard<std::mutex> lock(writer_mu_);
  Connection& db = *writer_;
  const int64_t now = ToMicros(clock_->Now());
  CARE_ASSIGN_OR_RETURN(Transaction tx, Transaction::BeginImmediate(&db));
  CARE_ASSIGN_OR_RETURN(JobRow row, LoadJob(db, job_id));
  const v1::JobState state = row.job.state();
  EventInit event;
  event.type = v1::EVENT_TYPE_STATE_CHANGED;
  event.attempt = row.job.attempt();
  const char* sql = nullptr;
  if (state == v1::JOB_STATE_QUEUED) {
    sql =
        "UPDATE jobs SET state = ?, update_us = ?, end_us = ?2 "
        "WHERE id = ? AND state = ? AND attempt = ?";
    event.state = v1::JOB_STATE_CANCELLED;
    event.message = "cancelled while queued";
  } else if (state == v1::JOB_STATE_RUNNING) {
    sql =
        "UPDATE jobs SET state = ?, update_us = ? "
        "WHERE id = ? AND state = ? AND attempt = ?";
    event.state = v1::JOB_STATE_CANCELLING;
    event.message = "cancel requested; waiting for the worker to stop";
  } else if (state == v1::JOB_STATE_CANCELLING ||
             state == v1::JOB_STATE_CANCELLED) {
    return CancelResult{std::move(row.job), false};
  } else {
    return absl::FailedPreconditionError(absl::StrCat(
        "job ", job_id, " is already ", StateName(state), "; cannot cancel"));
  }
  CARE_ASSIGN_OR_RETURN(Statement update, db.Prepare(sql));
  update.Bind(1, int64_t{event.state})
      .Bind(2, now)
      .Bind(3, job_id)
      .Bind(4, int64_t{state})
      .Bind(5, int64_t{row.job.attempt()});
  CARE_RETURN_IF_ERROR(update.Run());
  CARE_RETURN_IF_ERROR(ExpectOneChange(db, "cancel"));
  CARE_RETURN_IF_ERROR(AppendEvent(db, job_id, event, now));
  CARE_ASSIGN_OR_RETURN(JobRow after, LoadJob(db, job_id));
  CARE_RETURN_IF_ERROR(tx.Commit());
  Notify();
  return CancelResult{std::move(after.job),
                      event.state == v1::JOB_STATE_CANCELLED};
}

absl::StatusOr<StateCounts> Store::CountStates(absl::Duration worker_window) {
  CARE_ASSIGN_OR_RETURN(std::unique_ptr<Connection> conn, AcquireReader());
  ReaderLease db(this, std::move(conn));
  CARE_ASSIGN_OR_RETURN(
      Statement stmt,
      (*db).Prepare("SELECT (SELECT count(*) FROM jobs WHERE state = ?), "
                    "(SELECT count(*) FROM jobs WHERE state IN (?, ?)), "
                    "(SELECT count(*) FROM workers WHERE last_seen_us >= ?)"));
  stmt.Bind(1, int64_t{v1::JOB_STATE_QUEUED})
      .Bind(2, int64_t{v1::JOB_STATE_RUNNING})
      .Bind(3, int64_t{v1::JOB_STATE_CANCELLING})
      .Bind(4, ToMicros(clock_->Now() - worker_window));
  CARE_ASSIGN_OR_RETURN(bool row, stmt.Step());
  if (!row) return absl::InternalError("count query returned no row");
  StateCounts counts{stmt.Int(0), stmt.Int(1), stmt.Int(2)};
  // Every known label present (0 included), so a gauge drops back to 0.
  for (v1::Device d : {v1::DEVICE_ANY, v1::DEVICE_CPU, v1::DEVICE_CUDA}) {
    counts.queued_by_device[DeviceLabel(d)] = 0;
    if (d == v1::DEVICE_ANY) continue;
    counts.running_by_device[DeviceLabel(d)] = 0;
    counts.workers_by_device[DeviceLabel(d)] = 0;
  }
  CARE_ASSIGN_OR_RETURN(
      Statement by_device,
      (*db).Prepare(
          "SELECT 0, device, count(*) FROM jobs WHERE state = ? GROUP BY "
          "device UNION ALL SELECT 1, lease_device, count(*) FROM jobs WHERE "
          "state IN (?, ?) GROUP BY lease_device UNION ALL SELECT 2, device, "
          "count(*) FROM workers WHERE last_seen_us >= ? GROUP BY device"));
  by_device.Bind(1, int64_t{v1::JOB_STATE_QUEUED})
      .Bind(2, int64_t{v1::JOB_STATE_RUNNING})
      .Bind(3, int64_t{v1::JOB_STATE_CANCELLING})
      .Bind(4, ToMicros(clock_->Now() - worker_window));
  while (true) {
    CARE_ASSIGN_OR_RETURN(bool more, by_device.Step());
    if (!more) break;
    const v1::Device device = by_device.IsNull(1)
                                  ? v1::DEVICE_UNSPECIFIED
                                  : static_cast<v1::Device>(by_device.Int(1));
    std::map<std::string, int64_t>* target[] = {&counts.queued_by_device,
                                                &counts.running_by_device,
                                                &counts.workers_by_device};
    (*target[by_device.Int(0)])[DeviceLabel(device)] += by_device.Int(2);
  }
  return counts;
}

absl::StatusOr<std::vector<v1::Worker>> Store::ListWorkers(
    bool connected_only) {
  CARE_ASSIGN_OR_RETURN(std::unique_ptr<Connection> conn, AcquireReader());
  ReaderLease db(this, std::move(conn));
  const int64_t since = ToMicros(clock_->Now() - options_.worker_window);
  CARE_ASSIGN_OR_RETURN(
      Statement stmt,
      (*db).Prepare("SELECT worker_id, device, device_ordinal, device_name, "
                    "last_seen_us FROM workers WHERE last_seen_us >= ? "
                    "ORDER BY last_seen_us DESC, worker_id LIMIT 1000"));
  stmt.Bind(1, connected_only ? since : std::numeric_limits<int64_t>::min());
  std::vector<v1::Worker> workers;
  while (true) {
    CARE_ASSIGN_OR_RETURN(bool row, stmt.Step());
    if (!row) break;
    v1::Worker& w = workers.emplace_back();
    w.set_worker_id(stmt.Text(0));
    const int64_t device = stmt.Int(1);
    w.set_device(v1::Device_IsValid(static_cast<int>(device))
                     ? static_cast<v1::Device>(device)
                     : v1::DEVICE_UNSPECIFIED);
    w.set_device_ordinal(static_cast<int32_t>(stmt.Int(2)));
    w.set_device_name(stmt.Text(3));
    const int64_t seen = stmt.Int(4);
    w.mutable_last_seen_time()->set_seconds(seen / 1000000);
    w.mutable_last_seen_time()->set_nanos(static_cast<int32_t>(seen % 1000000) *
                                          1000);
    w.set_connected(seen >= since);
  }
  return workers;
}

absl::Status Store::AnnotateQueued(Connection& db,
                                   const std::vector<v1::Job*>& jobs) {
  bool any_queued = false;
  for (const v1::Job* job : jobs) {
    any_queued |= job->state() == v1::JOB_STATE_QUEUED;
  }
  if (!any_queued) return absl::OkStatus();
  CARE_ASSIGN_OR_RETURN(
      Statement stmt,
      db.Prepare("SELECT device, count(*) FROM workers WHERE last_seen_us >= "
                 "? GROUP BY device"));
  stmt.Bind(1, ToMicros(clock_->Now() - options_.worker_window));
  std::map<int64_t, int64_t> seen;
  int64_t total = 0;
  while (true) {
    CARE_ASSIGN_OR_RETURN(bool row, stmt.Step());
    if (!row) break;
    seen[stmt.Int(0)] = stmt.Int(1);
    total += stmt.Int(1);
  }
  const std::string window = absl::FormatDuration(options_.worker_window);
  for (v1::Job* job : jobs) {
    if (job->state() != v1::JOB_STATE_QUEUED) continue;
    const v1::Device need = job->spec().device();
    if (need == v1::DEVICE_CPU || need == v1::DEVICE_CUDA) {
      if (seen[int64_t{need}] == 0) {
        job->set_queue_reason(absl::StrCat("waiting for a ", DeviceLabel(need),
                                           " worker: none seen in the "
                                           "last ",
                                           window));
      }
    } else if (total == 0) {
      job->set_queue_reason(
          absl::StrCat("waiting for a worker: none seen in the last ", window));
    }
  }
  return absl::OkStatus();
}

}  // namespace care::server

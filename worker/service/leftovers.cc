#include "service/leftovers.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace care::worker {

namespace fs = std::filesystem;

namespace {

constexpr char kOwnerFile[] = ".owner";

// Removes the entries of `output_dir`'s parent named
// .<output name>.tmp-<job>-a<N>-XXXXXX for which keep(N) is false.
template <typename Keep>
int RemoveStaging(const std::string& output_dir, const std::string& job_id,
                  Keep keep) {
  if (output_dir.empty() || job_id.empty()) return 0;
  fs::path dest(output_dir);
  if (!dest.has_filename()) dest = dest.parent_path();
  const std::string prefix =
      absl::StrCat(".", dest.filename().string(), ".tmp-", job_id, "-a");
  std::error_code error;
  int removed = 0;
  for (const auto& entry : fs::directory_iterator(dest.parent_path(), error)) {
    const std::string name = entry.path().filename().string();
    if (!absl::StartsWith(name, prefix)) continue;
    const std::string rest = name.substr(prefix.size());
    const size_t dash = rest.find('-');
    int attempt = 0;
    if (dash == std::string::npos ||
        !absl::SimpleAtoi(rest.substr(0, dash), &attempt) || keep(attempt)) {
      continue;
    }
    std::error_code ignored;
    if (fs::remove_all(entry.path(), ignored) > 0) ++removed;
  }
  return removed;
}

// Non-blocking exclusive flock of <dir>/.owner: true when nobody holds it;
// the lock is dropped again at once. Without the file (a crash before it
// was made, or a worker that is just making it), a minute-old directory.
bool Unowned(const fs::path& dir) {
  const std::string owner = (dir / kOwnerFile).string();
  const int fd = open(owner.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const bool missing = errno == ENOENT;
    std::error_code error;
    const auto modified = fs::last_write_time(dir, error);
    return missing && !error &&
           fs::file_time_type::clock::now() - modified >
               std::chrono::minutes(1);
  }
  const bool free = flock(fd, LOCK_EX | LOCK_NB) == 0;
  close(fd);
  return free;
}

}  // namespace

std::string StagingTag(const std::string& job_id, int attempt) {
  return absl::StrCat(job_id, "-a", attempt);
}

int RemoveStagingOfAttempt(const std::string& output_dir,
                           const std::string& job_id, int attempt) {
  return RemoveStaging(output_dir, job_id,
                       [attempt](int n) { return n != attempt; });
}

int RemoveStagingOfEarlierAttempts(const std::string& output_dir,
                                   const std::string& job_id, int attempt) {
  return RemoveStaging(output_dir, job_id,
                       [attempt](int n) { return n >= attempt; });
}

absl::StatusOr<std::unique_ptr<Scratch>> Scratch::Create(
    const std::string& work_dir, const std::string& job_id, int attempt) {
  std::unique_ptr<Scratch> s(new Scratch());
  if (work_dir.empty()) return s;
  s->path_ = absl::StrCat(work_dir, "/", job_id, "/attempt-", attempt);
  std::error_code error;
  fs::create_directories(s->path_, error);
  if (error) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "--work-dir: cannot create ", s->path_, ": ", error.message()));
  }
  // Held while the attempt runs: a worker starting meanwhile leaves it be.
  const std::string owner = absl::StrCat(s->path_, "/", kOwnerFile);
  s->lock_fd_ = open(owner.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (s->lock_fd_ < 0 || flock(s->lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "--work-dir: cannot lock ", owner, ": ", std::strerror(errno)));
  }
  return s;
}

Scratch::~Scratch() {
  if (path_.empty()) return;
  std::error_code ignored;  // Best effort: scratch space only.
  fs::remove_all(path_, ignored);
  fs::remove(fs::path(path_).parent_path(), ignored);  // Only when empty.
  if (lock_fd_ >= 0) close(lock_fd_);
}

int RemoveAbandonedScratch(const std::string& work_dir) {
  if (work_dir.empty()) return 0;
  int removed = 0;
  std::error_code error;
  for (const auto& job : fs::directory_iterator(work_dir, error)) {
    // Job directories only; <fingerprint>/ resume state is not scratch.
    if (!absl::StartsWith(job.path().filename().string(), "job-") ||
        !job.is_directory()) {
      continue;
    }
    std::error_code inner;
    for (const auto& attempt : fs::directory_iterator(job.path(), inner)) {
      if (!absl::StartsWith(attempt.path().filename().string(), "attempt-") ||
          !Unowned(attempt.path())) {
        continue;
      }
      std::error_code ignored;
      if (fs::remove_all(attempt.path(), ignored) > 0) ++removed;
    }
    std::error_code ignored;
    fs::remove(job.path(), ignored);  // Only when empty.
  }
  return removed;
}

}  // namespace care::worker

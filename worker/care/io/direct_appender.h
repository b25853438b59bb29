// Appends a byte stream to a new file through an aligned staging buffer,
// written with O_DIRECT where the filesystem allows it. A checkpoint's
// tensors are written once and not read back by the writer: through the
// page cache each gigabyte cost 0.5–2.3 s of kernel time on the 2-core VM
// (allocating and filling cache pages, then writing them back), direct from
// the buffer ~0 (docs/performance.md, "Against PyTorch"). Filesystems
// without O_DIRECT (tmpfs, some FUSE) get the same writes, buffered.
#ifndef CARE_IO_DIRECT_APPENDER_H_
#define CARE_IO_DIRECT_APPENDER_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "care/io/file_util.h"

namespace care::io {

class DirectAppender {
 public:
  // Creates (or truncates) `path` and appends from byte `start` on; bytes
  // before `start` are left for the caller (they read as zeros until it
  // writes them through another descriptor after Close()).
  static absl::StatusOr<std::unique_ptr<DirectAppender>> Create(
      const std::string& path, uint64_t start);
  // Closes the file without flushing (an abandoned file).
  ~DirectAppender();
  DirectAppender(const DirectAppender&) = delete;
  DirectAppender& operator=(const DirectAppender&) = delete;

  absl::Status Append(const void* data, size_t size);
  // Appends [from.offset, from.offset + size) of the file `from.fd`, read
  // with pread straight into the staging buffer (no page-table faults on a
  // mapping; DataLoss naming from.path when it ends early).
  absl::Status AppendFrom(const FileRange& from, uint64_t size);
  // Writes everything appended so far into the file (its length is then
  // start + appended bytes) and fdatasyncs it.
  absl::Status Sync();
  // Writes everything appended so far and closes the file.
  absl::Status Close();

  // Bytes appended so far (excluding `start`).
  uint64_t appended() const { return end_ - start_; }
  // Whether the writes bypass the page cache (false after a fallback).
  bool direct() const { return direct_; }

 private:
  DirectAppender(std::string path, int fd, bool direct, uint64_t start);
  // Writes the staged whole blocks; with `tail`, also the partial last
  // block (zero-padded under O_DIRECT, then the file truncated to end_),
  // which stays staged so later appends complete it.
  absl::Status Flush(bool tail);
  absl::Status WriteAt(const char* p, size_t n, uint64_t offset);
  absl::Status Fail(absl::Status s);

  std::string path_;
  int fd_ = -1;
  bool direct_ = false;
  uint64_t start_ = 0;
  // The buffer holds file bytes [base_, base_ + used_); base_ is
  // block-aligned, so whole blocks write at aligned offsets.
  uint64_t base_ = 0;
  uint64_t end_ = 0;  // base_ + used_: the logical end of the file.
  size_t used_ = 0;
  char* buf_ = nullptr;
  absl::Status failed_;  // The first error: later calls return it.
};

}  // namespace care::io

#endif  // CARE_IO_DIRECT_APPENDER_H_

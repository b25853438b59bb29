#include "care/io/direct_appender.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace care::io {
namespace {

// O_DIRECT needs block-aligned memory, offsets and lengths; 4 KiB covers
// 512-byte and 4 KiB logical blocks.
constexpr uint64_t kBlock = 4096;
// Large enough that each write moves megabytes, small enough to stay in L2/L3
// as it is filled.
constexpr size_t kBufferBytes = size_t{8} << 20;

}  // namespace

absl::StatusOr<std::unique_ptr<DirectAppender>> DirectAppender::Create(
    const std::string& path, uint64_t start) {
  constexpr int kFlags = O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC;
  bool direct = true;
  int fd = ::open(path.c_str(), kFlags | O_DIRECT, 0644);
  if (fd < 0 && errno == EINVAL) {  // no O_DIRECT here (tmpfs)
    direct = false;
    fd = ::open(path.c_str(), kFlags, 0644);
  }
  if (fd < 0) return ErrnoStatus(errno, "cannot create", path);
  auto a = std::unique_ptr<DirectAppender>(
      new DirectAppender(path, fd, direct, start));
  if (a->buf_ == nullptr) {
    return absl::ResourceExhaustedError(
        absl::StrCat("out of memory for the write buffer of ", path));
  }
  return a;
}

DirectAppender::DirectAppender(std::string path, int fd, bool direct,
                               uint64_t start)
    : path_(std::move(path)),
      fd_(fd),
      direct_(direct),
      start_(start),
      base_(start / kBlock * kBlock),
      end_(start),
      used_(start - base_),
      buf_(static_cast<char*>(std::aligned_alloc(kBlock, kBufferBytes))) {
  if (buf_ != nullptr) std::memset(buf_, 0, used_);  // [base_, start): zeros
}

DirectAppender::~DirectAppender() {
  if (fd_ >= 0) ::close(fd_);
  std::free(buf_);
}

absl::Status DirectAppender::Fail(absl::Status s) {
  if (failed_.ok()) failed_ = s;
  return s;
}

absl::Status DirectAppender::Append(const void* data, size_t size) {
  CARE_RETURN_IF_ERROR(failed_);
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    const size_t n = std::min(size, kBufferBytes - used_);
    std::memcpy(buf_ + used_, p, n);
    used_ += n;
    end_ += n;
    p += n;
    size -= n;
    if (used_ == kBufferBytes) CARE_RETURN_IF_ERROR(Flush(/*tail=*/false));
  }
  return absl::OkStatus();
}

absl::Status DirectAppender::AppendFrom(const FileRange& from, uint64_t size) {
  CARE_RETURN_IF_ERROR(failed_);
  uint64_t offset = from.offset;
  while (size > 0) {
    const size_t want =
        static_cast<size_t>(std::min<uint64_t>(size, kBufferBytes - used_));
    const ssize_t n =
        ::pread(from.fd, buf_ + used_, want, static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Fail(ErrnoStatus(errno, "cannot read", from.path));
    }
    if (n == 0) {
      return Fail(absl::DataLossError(
          absl::StrCat(from.path, " ended at byte ", offset, ", before the ",
                       size, " bytes still to copy into ", path_)));
    }
    used_ += static_cast<size_t>(n);
    end_ += static_cast<uint64_t>(n);
    offset += static_cast<uint64_t>(n);
    size -= static_cast<uint64_t>(n);
    if (used_ == kBufferBytes) CARE_RETURN_IF_ERROR(Flush(/*tail=*/false));
  }
  return absl::OkStatus();
}

absl::Status DirectAppender::WriteAt(const char* p, size_t n, uint64_t offset) {
  while (n > 0) {
    const ssize_t w = ::pwrite(fd_, p, n, static_cast<off_t>(offset));
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno == EINVAL && direct_) {
        // Opened with O_DIRECT but the filesystem (or an unaligned short
        // write's remainder) refuses it: continue buffered.
        const int flags = ::fcntl(fd_, F_GETFL);
        if (flags >= 0 && ::fcntl(fd_, F_SETFL, flags & ~O_DIRECT) == 0) {
          direct_ = false;
          continue;
        }
      }
      return ErrnoStatus(errno, "cannot write", path_);
    }
    p += w;
    n -= static_cast<size_t>(w);
    offset += static_cast<uint64_t>(w);
  }
  return absl::OkStatus();
}

absl::Status DirectAppender::Flush(bool tail) {
  const size_t whole = used_ / kBlock * kBlock;
  if (whole > 0) {
    absl::Status s = WriteAt(buf_, whole, base_);
    if (!s.ok()) return Fail(s);
    std::memmove(buf_, buf_ + whole, used_ - whole);
    base_ += whole;
    used_ -= whole;
  }
  if (!tail) return absl::OkStatus();
  if (used_ > 0) {
    // Under O_DIRECT the partial block goes out zero-padded to a whole one
    // and the file is cut back to its logical end below.
    const size_t n = direct_ ? kBlock : used_;
    std::memset(buf_ + used_, 0, n - used_);
    absl::Status s = WriteAt(buf_, n, base_);
    if (!s.ok()) return Fail(s);
  }
  if (::ftruncate(fd_, static_cast<off_t>(end_)) != 0) {
    return Fail(ErrnoStatus(errno, "cannot set the length of", path_));
  }
  return absl::OkStatus();
}

absl::Status DirectAppender::Sync() {
  CARE_RETURN_IF_ERROR(failed_);
  CARE_RETURN_IF_ERROR(Flush(/*tail=*/true));
  if (::fdatasync(fd_) != 0) {
    return Fail(ErrnoStatus(errno, "cannot sync", path_));
  }
  return absl::OkStatus();
}

absl::Status DirectAppender::Close() {
  CARE_RETURN_IF_ERROR(failed_);
  if (fd_ < 0) return absl::OkStatus();
  CARE_RETURN_IF_ERROR(Flush(/*tail=*/true));
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) return Fail(ErrnoStatus(errno, "cannot close", path_));
  return absl::OkStatus();
}

}  // namespace care::io

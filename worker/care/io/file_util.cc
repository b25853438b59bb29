#include "care/io/file_util.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <system_error>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace care::io {

absl::Status WriteAll(int fd, const void* data, size_t size,
                      absl::string_view path) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    ssize_t n = ::write(fd, p, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, "cannot write", path);
    }
    p += n;
    size -= static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

absl::Status WriteFileSynced(const std::string& path,
                             absl::string_view contents) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoStatus(errno, "cannot create", path);
  absl::Status s = WriteAll(fd, contents.data(), contents.size(), path);
  if (s.ok() && ::fsync(fd) != 0) s = ErrnoStatus(errno, "cannot fsync", path);
  if (::close(fd) != 0 && s.ok()) s = ErrnoStatus(errno, "cannot close", path);
  return s;
}

absl::Status CommitFile(int fd, const std::string& tmp,
                        const std::string& path) {
  absl::Status s;
  if (::fsync(fd) != 0) s = ErrnoStatus(errno, "cannot fsync", tmp);
  if (::close(fd) != 0 && s.ok()) s = ErrnoStatus(errno, "cannot close", tmp);
  if (s.ok() && ::rename(tmp.c_str(), path.c_str()) != 0) {
    s = ErrnoStatus(errno, "cannot rename into", path);
  }
  if (!s.ok()) {
    ::unlink(tmp.c_str());
    return s;
  }
  return FsyncPath(ParentDir(path));
}

absl::Status AtomicWrite(const std::string& path, absl::string_view contents) {
  static std::atomic<uint64_t> counter{0};
  const std::string tmp =
      absl::StrCat(path, ".tmp.", ::getpid(), ".", counter++);
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoStatus(errno, "cannot create", tmp);
  absl::Status s = WriteAll(fd, contents.data(), contents.size(), tmp);
  if (!s.ok()) {
    ::close(fd);
    ::unlink(tmp.c_str());
    return s;
  }
  return CommitFile(fd, tmp, path);
}

absl::Status CopyFdRange(int from_fd, int to_fd, uint64_t size,
                         absl::string_view from_path, absl::string_view to_path,
                         uint64_t from_offset) {
  off_t in_off = static_cast<off_t>(from_offset);
  size += from_offset;  // The loop runs until in_off reaches the end.
  bool kernel_copy = true;
  std::vector<char> buf;
  while (static_cast<uint64_t>(in_off) < size) {
    const size_t want =
        static_cast<size_t>(std::min<uint64_t>(size - in_off, 1u << 30));
    if (kernel_copy) {
      ssize_t n = ::copy_file_range(from_fd, &in_off, to_fd, nullptr, want, 0);
      if (n > 0) continue;
      if (n == 0) {
        return absl::DataLossError(
            absl::StrCat(from_path, " ended before ", size, " bytes"));
      }
      if (errno == EINTR) continue;
      if (errno != EXDEV && errno != EINVAL && errno != ENOSYS &&
          errno != EOPNOTSUPP) {
        return ErrnoStatus(errno, "cannot copy into", to_path);
      }
      kernel_copy = false;  // Fall back to read/write.
      buf.resize(8 << 20);
    }
    ssize_t n =
        ::pread(from_fd, buf.data(), std::min(want, buf.size()), in_off);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, "cannot read", from_path);
    }
    if (n == 0) {
      return absl::DataLossError(
          absl::StrCat(from_path, " ended before ", size, " bytes"));
    }
    CARE_RETURN_IF_ERROR(
        WriteAll(to_fd, buf.data(), static_cast<size_t>(n), to_path));
    in_off += n;
  }
  return absl::OkStatus();
}

absl::Status CopyFileSynced(const std::string& from, const std::string& to) {
  int in = ::open(from.c_str(), O_RDONLY | O_CLOEXEC);
  if (in < 0) return ErrnoStatus(errno, "cannot open", from);
  struct stat st;
  if (::fstat(in, &st) != 0) {
    int err = errno;
    ::close(in);
    return ErrnoStatus(err, "cannot stat", from);
  }
  int out = ::open(to.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (out < 0) {
    int err = errno;
    ::close(in);
    return ErrnoStatus(err, "cannot create", to);
  }
  absl::Status s =
      CopyFdRange(in, out, static_cast<uint64_t>(st.st_size), from, to);
  if (s.ok() && ::fsync(out) != 0) s = ErrnoStatus(errno, "cannot fsync", to);
  if (::close(out) != 0 && s.ok()) s = ErrnoStatus(errno, "cannot close", to);
  ::close(in);
  return s;
}

absl::Status FsyncPath(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(errno, "cannot open", path);
  absl::Status s;
  if (::fsync(fd) != 0 && errno != EINVAL) {
    s = ErrnoStatus(errno, "cannot fsync", path);
  }
  ::close(fd);
  return s;
}

bool PathExists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

bool IsDirectory(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

bool IsRegularFile(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

absl::Status MakeDirs(const std::string& path) {
  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  if (ec) return ErrnoStatus(ec.value(), "cannot create directory", path);
  return absl::OkStatus();
}

void RemoveTree(const std::string& path) {
  std::error_code ec;
  std::filesystem::remove_all(path, ec);
}

std::string ParentDir(const std::string& path) {
  std::string p = path;
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  size_t slash = p.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return p.substr(0, slash);
}

std::string BaseName(const std::string& path) {
  std::string p = path;
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  size_t slash = p.rfind('/');
  return slash == std::string::npos ? p : p.substr(slash + 1);
}

}  // namespace care::io

// POSIX file helpers with absl::Status errors that name the path and map
// errno to canonical codes (ENOSPC -> ResourceExhausted "disk full", ...).
#ifndef CARE_IO_FILE_UTIL_H_
#define CARE_IO_FILE_UTIL_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "base/file.h"

namespace care::io {

// care/util/file.h: "<what> <path>: <strerror>" with the code errno
// implies, and the whole-file reader.
using ::care::ErrnoStatus;
using ::care::ReadFileToString;

// Where bytes also lie in an open file: [offset, offset + size) of `fd`,
// named `path` in errors. fd < 0: nowhere (copy from memory).
struct FileRange {
  int fd = -1;
  uint64_t offset = 0;
  absl::string_view path;
};

// Writes every byte (retrying short writes and EINTR).
absl::Status WriteAll(int fd, const void* data, size_t size,
                      absl::string_view path);
// Creates/truncates `path` with `contents` and fsyncs it.
absl::Status WriteFileSynced(const std::string& path,
                             absl::string_view contents);
// The end of every write-a-temporary-then-rename (LevelDB's pattern): fsync
// `fd` (open for writing at `tmp`), close it, rename `tmp` to `path`, fsync
// the directory of `path`. `fd` is closed in every case and `tmp` removed
// on failure, so readers see the old file or the whole new one.
absl::Status CommitFile(int fd, const std::string& tmp,
                        const std::string& path);
// Writes `contents` to a fresh temporary beside `path` and CommitFile()s it.
absl::Status AtomicWrite(const std::string& path, absl::string_view contents);
// Copies a regular file (in-kernel when possible) and fsyncs the copy.
absl::Status CopyFileSynced(const std::string& from, const std::string& to);
// Appends bytes [from_offset, from_offset + size) of `from_fd` to `to_fd`
// at its current offset.
absl::Status CopyFdRange(int from_fd, int to_fd, uint64_t size,
                         absl::string_view from_path, absl::string_view to_path,
                         uint64_t from_offset = 0);
// fsync of a file or directory by path.
absl::Status FsyncPath(const std::string& path);
bool PathExists(const std::string& path);
bool IsDirectory(const std::string& path);
bool IsRegularFile(const std::string& path);
// Creates `path` and missing parents (mode 0755).
absl::Status MakeDirs(const std::string& path);
// Removes a file or a directory tree; missing paths are fine.
void RemoveTree(const std::string& path);
// Parent directory of an absolute or relative path ("." when none).
std::string ParentDir(const std::string& path);
std::string BaseName(const std::string& path);

}  // namespace care::io

#endif  // CARE_IO_FILE_UTIL_H_

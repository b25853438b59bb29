// The file helpers every layer needs (the server and carectl included):
// errno as an absl::Status naming the path, and reading a whole file.
// io/file_util.h adds the write side (AtomicWrite, CommitFile, ...).
#ifndef CARE_BASE_FILE_H_
#define CARE_BASE_FILE_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace care {

// "<what> <path>: <strerror>" with the code errno implies (ENOENT ->
// NotFound, EACCES -> PermissionDenied, ENOSPC -> ResourceExhausted "disk
// full", EEXIST -> AlreadyExists, else Internal).
absl::Status ErrnoStatus(int err, absl::string_view what,
                         absl::string_view path);

// The whole file; errors name the path ("cannot open <path>: ...").
absl::StatusOr<std::string> ReadFileToString(const std::string& path);

}  // namespace care

#endif  // CARE_BASE_FILE_H_

// Bearer-token files and values, read the same way by care-server, carectl
// and care-worker: one token per line, blank lines and lines starting with
// '#' skipped, surrounding whitespace trimmed. A token is 1 to kMaxTokenBytes
// printable non-space ASCII bytes (it travels in an HTTP/2 header, where a
// control character would abort gRPC's metadata validation). Errors name
// the file and line, never the token.
#ifndef CARE_API_TOKEN_FILE_H_
#define CARE_API_TOKEN_FILE_H_

#include <cstddef>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace care::api {

// Well under gRPC's 8 KiB default limit on a request's metadata.
inline constexpr size_t kMaxTokenBytes = 4096;

// OK when `token` can be sent as "authorization: Bearer <token>" and is at
// least `min_bytes` long. `source` ("--token", "token file F line 3") starts
// the message; the token itself is never part of it.
absl::Status CheckToken(absl::string_view token, absl::string_view source,
                        size_t min_bytes = 1);

// Every token of a token file (at least one).
absl::StatusOr<std::vector<std::string>> ReadTokenFile(const std::string& path,
                                                       size_t min_bytes = 1);

// A file that must hold exactly one token (a client's or a worker's).
absl::StatusOr<std::string> ReadSingleTokenFile(const std::string& path);

}  // namespace care::api

#endif  // CARE_API_TOKEN_FILE_H_

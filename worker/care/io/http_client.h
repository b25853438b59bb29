// Minimal HTTP(S) GET over libcurl for the hub client: a response into
// memory, or a body appended to a file with Range-based resume. Redirects
// are followed (the hub redirects LFS files to a CDN); the bearer token is
// only sent to the original host (libcurl drops it across hosts).
#ifndef CARE_IO_HTTP_CLIENT_H_
#define CARE_IO_HTTP_CLIENT_H_

#include <cstdint>
#include <map>
#include <string>

#include "absl/status/statusor.h"

namespace care::io {

struct HttpOptions {
  std::string bearer_token;  // Sent as "Authorization: Bearer ..." if set.
  long connect_timeout_s = 20;
  // Abort a transfer slower than 1 KB/s for this long (a stalled server).
  long low_speed_time_s = 60;
};

struct HttpResult {
  // False when the transfer failed below HTTP (connection refused or
  // dropped, timeout, DNS); `transport_error` says how.
  bool transport_ok = true;
  std::string transport_error;
  long status = 0;
  std::map<std::string, std::string> headers;  // Lowercase names, last wins.
  std::string body;  // Whole body (HttpGet), or an error body (HttpDownload).
};

// GET `url`, body into memory (at most 64 MiB).
HttpResult HttpGet(const std::string& url, const HttpOptions& options);

// GET `url` into the open file `fd` (at `path`, for messages), resuming at
// `offset` with "Range: bytes=offset-". A 206 reply appends at `offset`; a
// 200 reply rewrites the file from the start. Non-2xx bodies go to
// result.body and leave the file as it was. A failed local write (ENOSPC:
// ResourceExhausted "disk full") is returned as the error status.
absl::StatusOr<HttpResult> HttpDownload(const std::string& url,
                                        const HttpOptions& options, int fd,
                                        uint64_t offset,
                                        const std::string& path);

// Percent-encodes everything but unreserved characters (RFC 3986).
std::string UrlEncode(const std::string& s);

}  // namespace care::io

#endif  // CARE_IO_HTTP_CLIENT_H_

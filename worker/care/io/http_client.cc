#include "care/io/http_client.h"

#include <curl/curl.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <mutex>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "care/io/file_util.h"

namespace care::io {
namespace {

constexpr size_t kMaxBody = 64 << 20;

void GlobalInit() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct Transfer {
  CURL* curl = nullptr;
  HttpResult result;
  // Download mode.
  int fd = -1;
  uint64_t offset = 0;
  const std::string* path = nullptr;
  bool started = false;
  bool to_file = false;
  absl::Status write_status;
};

size_t OnHeader(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  absl::string_view line(data, size * n);
  // A new status line (after a redirect) starts a new header set.
  if (absl::StartsWith(line, "HTTP/")) {
    t->result.headers.clear();
    return size * n;
  }
  size_t colon = line.find(':');
  if (colon != absl::string_view::npos) {
    std::string name = absl::AsciiStrToLower(line.substr(0, colon));
    absl::string_view value =
        absl::StripAsciiWhitespace(line.substr(colon + 1));
    t->result.headers[name] = std::string(value);
  }
  return size * n;
}

size_t OnBody(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const size_t len = size * n;
  long status = 0;
  curl_easy_getinfo(t->curl, CURLINFO_RESPONSE_CODE, &status);
  if (!t->to_file || (status != 200 && status != 206)) {
    if (t->result.body.size() + len > kMaxBody) return 0;
    t->result.body.append(data, len);
    return len;
  }
  if (!t->started) {
    t->started = true;
    // 206 continues the partial file; 200 means the server sent it whole.
    const uint64_t at = status == 206 ? t->offset : 0;
    if (status == 200 && t->offset > 0 && ::ftruncate(t->fd, 0) != 0) {
      t->write_status = ErrnoStatus(errno, "cannot truncate", *t->path);
      return 0;
    }
    if (::lseek(t->fd, static_cast<off_t>(at), SEEK_SET) < 0 && at > 0) {
      t->write_status = ErrnoStatus(errno, "cannot seek in", *t->path);
      return 0;
    }
  }
  absl::Status s = WriteAll(t->fd, data, len, *t->path);
  if (!s.ok()) {
    t->write_status = s;
    return 0;  // Makes curl abort with CURLE_WRITE_ERROR.
  }
  return len;
}

HttpResult Perform(const std::string& url, const HttpOptions& options,
                   Transfer& t, uint64_t range_from) {
  GlobalInit();
  t.curl = curl_easy_init();
  if (t.curl == nullptr) {
    t.result.transport_ok = false;
    t.result.transport_error = "curl_easy_init failed";
    return t.result;
  }
  char errbuf[CURL_ERROR_SIZE] = {0};
  curl_slist* headers = nullptr;
  std::string auth;
  if (!options.bearer_token.empty()) {
    auth = absl::StrCat("Authorization: Bearer ", options.bearer_token);
    headers = curl_slist_append(headers, auth.c_str());
  }
  headers = curl_slist_append(headers, "User-Agent: care-mla/0.1");
  std::string range;
  if (range_from > 0) range = absl::StrCat(range_from, "-");
  curl_easy_setopt(t.curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(t.curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(t.curl, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(t.curl, CURLOPT_MAXREDIRS, 10L);
  curl_easy_setopt(t.curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(t.curl, CURLOPT_CONNECTTIMEOUT, options.connect_timeout_s);
  curl_easy_setopt(t.curl, CURLOPT_LOW_SPEED_LIMIT, 1024L);
  curl_easy_setopt(t.curl, CURLOPT_LOW_SPEED_TIME, options.low_speed_time_s);
  curl_easy_setopt(t.curl, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(t.curl, CURLOPT_HEADERFUNCTION, &OnHeader);
  curl_easy_setopt(t.curl, CURLOPT_HEADERDATA, &t);
  curl_easy_setopt(t.curl, CURLOPT_WRITEFUNCTION, &OnBody);
  curl_easy_setopt(t.curl, CURLOPT_WRITEDATA, &t);
  if (!range.empty()) curl_easy_setopt(t.curl, CURLOPT_RANGE, range.c_str());
  CURLcode rc = curl_easy_perform(t.curl);
  curl_easy_getinfo(t.curl, CURLINFO_RESPONSE_CODE, &t.result.status);
  if (rc != CURLE_OK) {
    t.result.transport_ok = false;
    t.result.transport_error =
        errbuf[0] != '\0' ? std::string(errbuf) : curl_easy_strerror(rc);
  }
  curl_slist_free_all(headers);
  curl_easy_cleanup(t.curl);
  t.curl = nullptr;
  return t.result;
}

}  // namespace

HttpResult HttpGet(const std::string& url, const HttpOptions& options) {
  Transfer t;
  return Perform(url, options, t, 0);
}

absl::StatusOr<HttpResult> HttpDownload(const std::string& url,
                                        const HttpOptions& options, int fd,
                                        uint64_t offset,
                                        const std::string& path) {
  Transfer t;
  t.to_file = true;
  t.fd = fd;
  t.offset = offset;
  t.path = &path;
  HttpResult r = Perform(url, options, t, offset);
  if (!t.write_status.ok()) return t.write_status;
  return r;
}

std::string UrlEncode(const std::string& s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

}  // namespace care::io

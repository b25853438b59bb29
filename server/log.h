// Structured logs: one line per record on stderr,
//   ts=2026-01-01T00:00:00.000Z level=info msg="job submitted" job=job-...
// Values with spaces, quotes or '=' are quoted with escapes. Callers never
// pass secrets (tokens, key material) as fields.
#ifndef CARE_SERVER_LOG_H_
#define CARE_SERVER_LOG_H_

#include <initializer_list>
#include <string>
#include <utility>

#include "absl/strings/string_view.h"

namespace care::server {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

using LogField = std::pair<absl::string_view, std::string>;

// Records below `level` are dropped. Default kInfo.
void SetLogLevel(LogLevel level);
// "debug", "info", "warn", "error"; false when unknown.
bool ParseLogLevel(absl::string_view name, LogLevel* level);

void Log(LogLevel level, absl::string_view message,
         std::initializer_list<LogField> fields = {});

// The formatted line without the trailing newline (exposed for tests).
std::string FormatLogLine(LogLevel level, absl::string_view message,
                          std::initializer_list<LogField> fields);

}  // namespace care::server

#endif  // CARE_SERVER_LOG_H_

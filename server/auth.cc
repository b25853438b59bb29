#include "server/auth.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "proto/api/token_file.h"

namespace care::server {

bool ConstantTimeEquals(absl::string_view a, absl::string_view b) {
  const size_t n = a.size() > b.size() ? a.size() : b.size();
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < n; ++i) {
    const unsigned char x = i < a.size() ? a[i] : 0;
    const unsigned char y = i < b.size() ? b[i] : 0;
    diff |= x ^ y;
  }
  return diff == 0;
}

absl::StatusOr<std::vector<std::string>> TokenAuth::ReadTokenFile(
    const std::string& path) {
  // The same rules as carectl and care-worker (api/token_file.h).
  return care::api::ReadTokenFile(path, kMinTokenBytes);
}

absl::StatusOr<TokenAuth> TokenAuth::Load(const std::string& client_file,
                                          const std::string& worker_file) {
  TokenAuth auth;
  if (client_file.empty() || worker_file.empty()) {
    return absl::InvalidArgumentError(
        "--client-token-file and --worker-token-file are both required "
        "(or pass --insecure-no-auth for a loopback-only development server)");
  }
  CARE_ASSIGN_OR_RETURN(auth.client_tokens_, ReadTokenFile(client_file));
  CARE_ASSIGN_OR_RETURN(auth.worker_tokens_, ReadTokenFile(worker_file));
  return auth;
}

TokenAuth TokenAuth::Disabled() {
  TokenAuth auth;
  auth.enabled_ = false;
  return auth;
}

absl::Status TokenAuth::Check(std::optional<absl::string_view> authorization,
                              Role needed) const {
  if (!enabled_) return absl::OkStatus();
  if (!authorization.has_value()) {
    return absl::UnauthenticatedError(
        "missing 'authorization: Bearer <token>' metadata");
  }
  absl::string_view value = *authorization;
  constexpr absl::string_view kBearer = "Bearer ";
  if (!absl::StartsWithIgnoreCase(value, kBearer)) {
    return absl::UnauthenticatedError(
        "authorization metadata must be 'Bearer <token>'");
  }
  value.remove_prefix(kBearer.size());
  // Check both lists fully so timing does not tell which kind matched.
  bool client = false, worker = false;
  for (const std::string& t : client_tokens_) {
    client |= ConstantTimeEquals(value, t);
  }
  for (const std::string& t : worker_tokens_) {
    worker |= ConstantTimeEquals(value, t);
  }
  const bool ok = needed == Role::kClient ? client : worker;
  if (ok) return absl::OkStatus();
  if (client || worker) {
    return absl::PermissionDeniedError(
        needed == Role::kClient ? "a worker token cannot call ConversionService"
                                : "a client token cannot call WorkerService");
  }
  return absl::UnauthenticatedError("unknown bearer token");
}

}  // namespace care::server

// Bearer-token authentication of the two services. Clients present a token
// from --client-token-file (ConversionService), workers one from
// --worker-token-file (WorkerService), as "authorization: Bearer <token>".
// A missing or unknown token is UNAUTHENTICATED; a known token of the other
// kind is PERMISSION_DENIED. Tokens are compared in constant time against
// every configured token, and never logged or echoed in an error.
#ifndef CARE_SERVER_AUTH_H_
#define CARE_SERVER_AUTH_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace care::server {

enum class Role { kClient, kWorker };

class TokenAuth {
 public:
  // Token files: one token per line; blank lines and lines starting with '#'
  // are skipped; each token needs at least kMinTokenBytes printable bytes.
  static constexpr size_t kMinTokenBytes = 16;
  static absl::StatusOr<TokenAuth> Load(const std::string& client_token_file,
                                        const std::string& worker_token_file);
  // --insecure-no-auth: every call is allowed.
  static TokenAuth Disabled();
  static absl::StatusOr<std::vector<std::string>> ReadTokenFile(
      const std::string& path);

  // `authorization` is the metadata value, absent when the caller sent none.
  absl::Status Check(std::optional<absl::string_view> authorization,
                     Role needed) const;
  bool enabled() const { return enabled_; }

 private:
  bool enabled_ = true;
  std::vector<std::string> client_tokens_;
  std::vector<std::string> worker_tokens_;
};

// Compares without an early exit, so timing reveals neither the position of
// the first difference nor (beyond the loop over the longer) the length.
bool ConstantTimeEquals(absl::string_view a, absl::string_view b);

}  // namespace care::server

#endif  // CARE_SERVER_AUTH_H_

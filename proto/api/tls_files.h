// PEM files of the TLS flags, checked before gRPC sees them: gRPC reports a
// garbage CA file as "empty address list" and a key that does not match its
// certificate as a failure to bind. These say what is wrong, naming the
// flag and file (never key material).
#ifndef CARE_API_TLS_FILES_H_
#define CARE_API_TLS_FILES_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace care::api {

// The PEM text of `path`, which must hold at least one X.509 certificate
// and nothing unparsable between them. `flag`: "--tls-ca".
absl::StatusOr<std::string> ReadCaCertificates(const std::string& path,
                                               absl::string_view flag);

struct KeyPair {
  std::string cert_pem;
  std::string key_pem;
};

// --tls-cert and --tls-key: a certificate (chain), a private key, and the
// key belonging to the (first) certificate.
absl::StatusOr<KeyPair> ReadKeyPair(const std::string& cert_path,
                                    const std::string& key_path);

}  // namespace care::api

#endif  // CARE_API_TLS_FILES_H_

// SHA-256 (OpenSSL) for verifying downloaded files against the hub's LFS
// checksums.
#ifndef CARE_IO_SHA256_H_
#define CARE_IO_SHA256_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace care::io {

class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void Update(absl::string_view data);
  // Lowercase hex digest; the object is reset afterwards.
  std::string HexDigest();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

std::string Sha256Hex(absl::string_view data);
// Hashes a file in 8 MiB reads.
absl::StatusOr<std::string> Sha256File(const std::string& path);

}  // namespace care::io

#endif  // CARE_IO_SHA256_H_

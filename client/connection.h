// How carectl reaches care-server: address, bearer token and TLS from flags
// or the environment, and error messages that name what was used (the
// address when unreachable, the token's source when rejected; never the
// token itself).
#ifndef CARE_CLIENT_CONNECTION_H_
#define CARE_CLIENT_CONNECTION_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <set>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "base/flags.h"
#include "care/v1/conversion_service.grpc.pb.h"

namespace care::client {

inline constexpr char kDefaultServer[] = "127.0.0.1:50051";

struct ConnectionOptions {
  std::string server;         // host:port
  std::string server_source;  // "--server", "$CARE_SERVER" or "default".
  std::string token;          // Empty: no authorization metadata.
  std::string token_source;   // "--token", "--token-file F", "$CARE_TOKEN"...
  bool tls = false;
  std::string tls_ca_file;      // PEM roots; empty = system roots.
  std::string tls_server_name;  // Overrides the name checked in the cert.
  absl::Duration timeout = absl::Seconds(30);  // Per unary RPC.
};

// Flags every command accepts (--server, --token, --token-file, --tls,
// --tls-ca, --tls-server-name, --timeout, --output).
const std::set<std::string>& ConnectionFlagNames();
const std::set<std::string>& ConnectionBoolFlagNames();

// Precedence: flag, then environment (CARE_SERVER, CARE_TOKEN,
// CARE_TOKEN_FILE), then default. Reads the token file (trailing whitespace
// trimmed); errors name the file.
absl::StatusOr<ConnectionOptions> ConnectionOptionsFromFlags(
    const Flags& flags);

class Connection {
 public:
  static absl::StatusOr<std::unique_ptr<Connection>> Open(
      const ConnectionOptions& options);

  // A context carrying the bearer token; unary calls get the deadline.
  std::unique_ptr<grpc::ClientContext> NewContext(bool streaming) const;

  care::v1::ConversionService::Stub& stub() { return *stub_; }
  const std::shared_ptr<grpc::Channel>& channel() const { return channel_; }
  const ConnectionOptions& options() const { return options_; }

  // A fresh channel and stub: one in transient failure keeps failing calls
  // with its last error until its own reconnect backoff (seconds) ends.
  void ReconnectIfFailing();

  // One line for stderr: "carectl: <what>: ..." explaining the failure.
  std::string Describe(absl::string_view what,
                       const grpc::Status& status) const;

 private:
  explicit Connection(const ConnectionOptions& options) : options_(options) {}
  void CreateChannel();
  ConnectionOptions options_;
  std::shared_ptr<grpc::ChannelCredentials> credentials_;
  grpc::ChannelArguments args_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<care::v1::ConversionService::Stub> stub_;
};

// kExitUsage for connection, authentication and invalid-argument errors,
// kExitFailed for everything else the server answered.
int ExitCodeFor(const grpc::Status& status);

}  // namespace care::client

#endif  // CARE_CLIENT_CONNECTION_H_

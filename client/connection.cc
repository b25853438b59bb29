#include "client/connection.h"

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "client/cli.h"
#include "proto/api/tls_files.h"
#include "proto/api/token_file.h"

namespace care::client {

namespace {

std::string Env(const char* name) {
  const char* value = std::getenv(name);
  return value ? std::string(value) : std::string();
}

}  // namespace

const std::set<std::string>& ConnectionFlagNames() {
  static const auto* names = new std::set<std::string>{
      "server", "token",           "token-file", "tls",
      "tls-ca", "tls-server-name", "timeout",    "output"};
  return *names;
}

const std::set<std::string>& ConnectionBoolFlagNames() {
  static const auto* names = new std::set<std::string>{"tls"};
  return *names;
}

absl::StatusOr<ConnectionOptions> ConnectionOptionsFromFlags(
    const Flags& flags) {
  ConnectionOptions options;
  if (auto server = flags.String("server")) {
    options.server = *server;
    options.server_source = "--server";
  } else if (std::string env = Env("CARE_SERVER"); !env.empty()) {
    options.server = env;
    options.server_source = "$CARE_SERVER";
  } else {
    options.server = kDefaultServer;
    options.server_source = "default";
  }
  if (options.server.empty()) {
    return absl::InvalidArgumentError("flag --server: empty address");
  }

  std::string token_file;
  if (auto token = flags.String("token")) {
    options.token = *token;
    options.token_source = "--token";
  } else if (auto file = flags.String("token-file")) {
    token_file = *file;
    options.token_source = absl::StrCat("--token-file ", *file);
  } else if (std::string env = Env("CARE_TOKEN"); !env.empty()) {
    options.token = env;
    options.token_source = "$CARE_TOKEN";
  } else if (std::string env_file = Env("CARE_TOKEN_FILE"); !env_file.empty()) {
    token_file = env_file;
    options.token_source = absl::StrCat("$CARE_TOKEN_FILE ", env_file);
  }
  if (!token_file.empty()) {
    // Read like the server's token files: comments, blank lines, one token.
    auto token = care::api::ReadSingleTokenFile(token_file);
    if (!token.ok()) return token.status();
    options.token = *std::move(token);
  } else if (!options.token.empty()) {
    // A control character would abort gRPC's metadata check (and print the
    // header, i.e. the token): refuse it here, without echoing it.
    if (absl::Status valid =
            care::api::CheckToken(options.token, options.token_source);
        !valid.ok()) {
      return valid;
    }
  }

  options.tls_ca_file = flags.StringOr("tls-ca", "");
  options.tls_server_name = flags.StringOr("tls-server-name", "");
  options.tls = flags.Bool("tls") || !options.tls_ca_file.empty();

  auto timeout = flags.DoubleOr("timeout", 30.0);
  if (!timeout.ok()) return timeout.status();
  if (!(*timeout > 0) || *timeout > 86400) {
    return absl::InvalidArgumentError(absl::StrCat(
        "flag --timeout: must be in (0, 86400] seconds, got ", *timeout));
  }
  options.timeout = absl::Seconds(*timeout);
  return options;
}

absl::StatusOr<std::unique_ptr<Connection>> Connection::Open(
    const ConnectionOptions& options) {
  std::unique_ptr<Connection> connection(new Connection(options));
  grpc::ChannelArguments& args = connection->args_;
  // Watch streams and large lists: match the server's message limit.
  args.SetMaxReceiveMessageSize(64 << 20);
  // Own subchannels, so ReconnectIfFailing really starts afresh.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  if (options.tls) {
    grpc::SslCredentialsOptions ssl;
    if (!options.tls_ca_file.empty()) {
      auto pem = care::api::ReadCaCertificates(options.tls_ca_file, "--tls-ca");
      if (!pem.ok()) return pem.status();
      ssl.pem_root_certs = *pem;
    }
    connection->credentials_ = grpc::SslCredentials(ssl);
    if (!options.tls_server_name.empty()) {
      args.SetSslTargetNameOverride(options.tls_server_name);
    }
  } else {
    connection->credentials_ = grpc::InsecureChannelCredentials();
  }
  connection->CreateChannel();
  return connection;
}

void Connection::CreateChannel() {
  channel_ = grpc::CreateCustomChannel(options_.server, credentials_, args_);
  stub_ = care::v1::ConversionService::NewStub(channel_);
}

void Connection::ReconnectIfFailing() {
  if (channel_->GetState(false) == GRPC_CHANNEL_TRANSIENT_FAILURE) {
    CreateChannel();
  }
}

std::unique_ptr<grpc::ClientContext> Connection::NewContext(
    bool streaming) const {
  auto context = std::make_unique<grpc::ClientContext>();
  if (!options_.token.empty()) {
    context->AddMetadata("authorization",
                         absl::StrCat("Bearer ", options_.token));
  }
  if (!streaming) {
    context->set_deadline(absl::ToChronoTime(absl::Now() + options_.timeout));
  }
  return context;
}

std::string Connection::Describe(absl::string_view what,
                                 const grpc::Status& status) const {
  std::string line = absl::StrCat("carectl: ", what, ": ");
  switch (status.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:
      absl::StrAppend(&line, "cannot reach care-server at ", options_.server,
                      " (", options_.server_source, "; ",
                      options_.tls ? "TLS" : "plaintext",
                      "): ", status.error_message());
      break;
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      absl::StrAppend(&line, "no answer from care-server at ", options_.server,
                      " within ", absl::FormatDuration(options_.timeout),
                      " (--timeout): ", status.error_message());
      break;
    case grpc::StatusCode::UNAUTHENTICATED:
      absl::StrAppend(
          &line, "care-server at ", options_.server, " rejected ",
          options_.token.empty()
              ? std::string("the request: no token was given (use "
                            "--token-file, --token or $CARE_TOKEN)")
              : absl::StrCat("the token from ", options_.token_source),
          ": ", status.error_message());
      break;
    case grpc::StatusCode::PERMISSION_DENIED:
      absl::StrAppend(
          &line, "the token from ",
          options_.token_source.empty() ? "(none)" : options_.token_source,
          " may not call this (a worker token?): ", status.error_message());
      break;
    default:
      absl::StrAppend(&line, status.error_message(), " [",
                      absl::StatusCodeToString(
                          static_cast<absl::StatusCode>(status.error_code())),
                      "]");
  }
  return line;
}

int ExitCodeFor(const grpc::Status& status) {
  switch (status.error_code()) {
    case grpc::StatusCode::OK:
      return kExitOk;
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::DEADLINE_EXCEEDED:
    case grpc::StatusCode::UNAUTHENTICATED:
    case grpc::StatusCode::PERMISSION_DENIED:
    case grpc::StatusCode::INVALID_ARGUMENT:
      return kExitUsage;
    default:
      return kExitFailed;
  }
}

}  // namespace care::client

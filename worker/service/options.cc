#include "service/options.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "proto/api/tls_files.h"
#include "proto/api/token_file.h"

namespace care::worker {

namespace {

absl::StatusOr<int64_t> IntInRange(const Flags& flags, const char* name,
                                   int64_t fallback, int64_t lo, int64_t hi) {
  CARE_ASSIGN_OR_RETURN(int64_t value, flags.IntOr(name, fallback));
  if (value < lo || value > hi) {
    return absl::InvalidArgumentError(absl::StrCat(
        "flag --", name, ": must be in [", lo, ", ", hi, "], got ", value));
  }
  return value;
}

}  // namespace

absl::StatusOr<ParsedDevice> ParseWorkerDevice(absl::string_view text) {
  ParsedDevice d;
  if (text == "cpu") return d;
  d.kind = care::v1::DEVICE_CUDA;
  if (text == "cuda") return d;
  int ordinal = -1;
  if (absl::StartsWith(text, "cuda:") &&
      absl::SimpleAtoi(text.substr(5), &ordinal) && ordinal >= 0 &&
      ordinal <= 1023 && absl::StrCat("cuda:", ordinal) == text) {
    d.ordinal = ordinal;
    return d;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("flag --device: expected cpu, cuda or cuda:N (N in [0, "
                   "1023]), got '",
                   text, "'"));
}

std::string ServiceOptions::DeviceString() const {
  return device == care::v1::DEVICE_CUDA ? absl::StrCat("cuda:", device_ordinal)
                                         : std::string("cpu");
}

const std::set<std::string>& ServiceFlagNames() {
  static const auto* names = new std::set<std::string>{
      "server",         "token-file",   "tls-ca",        "worker-id",
      "device",         "device-name",  "work-dir",      "threads",
      "metrics-listen", "heartbeat-ms", "lease-wait-ms", "max-jobs",
      "backoff-max-ms"};
  return *names;
}

const std::set<std::string>& ServiceBoolFlagNames() {
  static const auto* names = new std::set<std::string>{"tls"};
  return *names;
}

absl::StatusOr<ServiceOptions> ServiceOptionsFromFlags(const Flags& flags) {
  ServiceOptions o;
  CARE_ASSIGN_OR_RETURN(o.server, flags.Required("server"));
  CARE_ASSIGN_OR_RETURN(o.token_file, flags.Required("token-file"));
  // Read like the server's token files: comments, blank lines, one token.
  CARE_ASSIGN_OR_RETURN(o.token, care::api::ReadSingleTokenFile(o.token_file));
  o.tls_ca_file = flags.StringOr("tls-ca", "");
  o.tls = flags.Bool("tls") || !o.tls_ca_file.empty();
  char host[256] = {};
  gethostname(host, sizeof(host) - 1);
  o.worker_id = flags.StringOr("worker-id", absl::StrCat(host, ":", getpid()));
  if (o.worker_id.empty() || o.worker_id.size() > 256) {
    return absl::InvalidArgumentError(
        "flag --worker-id: must be 1 to 256 bytes");
  }
  CARE_ASSIGN_OR_RETURN(ParsedDevice device,
                        ParseWorkerDevice(flags.StringOr("device", "cpu")));
  o.device = device.kind;
  o.device_ordinal = device.ordinal;
  o.device_name = flags.StringOr("device-name", o.DeviceString());
  if (o.device_name.empty() || o.device_name.size() > 256) {
    return absl::InvalidArgumentError(
        "flag --device-name: must be 1 to 256 bytes");
  }
  o.work_dir = flags.StringOr("work-dir", "");
  if (!o.work_dir.empty()) {
    std::error_code error;
    std::filesystem::create_directories(o.work_dir, error);
    if (error || access(o.work_dir.c_str(), W_OK) != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "flag --work-dir: '", o.work_dir, "' is not a writable directory",
          error ? ": " + error.message() : std::string()));
    }
  }
  CARE_ASSIGN_OR_RETURN(int64_t threads,
                        IntInRange(flags, "threads", 0, 0, 4096));
  o.threads = static_cast<int>(threads);
  o.metrics_listen = flags.StringOr("metrics-listen", "");
  CARE_ASSIGN_OR_RETURN(int64_t heartbeat_ms,
                        IntInRange(flags, "heartbeat-ms", 5000, 50, 600000));
  o.heartbeat_interval = absl::Milliseconds(heartbeat_ms);
  o.min_heartbeat_spacing =
      std::min(o.min_heartbeat_spacing, o.heartbeat_interval);
  CARE_ASSIGN_OR_RETURN(int64_t wait_ms,
                        IntInRange(flags, "lease-wait-ms", 20000, 0, 60000));
  o.lease_wait_ms = static_cast<int>(wait_ms);
  CARE_ASSIGN_OR_RETURN(int64_t backoff_ms, IntInRange(flags, "backoff-max-ms",
                                                       30000, 10, 3600000));
  o.backoff_max = absl::Milliseconds(backoff_ms);
  o.backoff_initial = std::min(o.backoff_initial, o.backoff_max);
  CARE_ASSIGN_OR_RETURN(int64_t max_jobs,
                        IntInRange(flags, "max-jobs", 0, 0, 1 << 30));
  o.max_jobs = static_cast<int>(max_jobs);
  return o;
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> CreateServerChannel(
    const ServiceOptions& options) {
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  if (options.tls) {
    grpc::SslCredentialsOptions ssl;
    if (!options.tls_ca_file.empty()) {
      CARE_ASSIGN_OR_RETURN(
          ssl.pem_root_certs,
          care::api::ReadCaCertificates(options.tls_ca_file, "--tls-ca"));
    }
    credentials = grpc::SslCredentials(ssl);
  } else {
    credentials = grpc::InsecureChannelCredentials();
  }
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  args.SetMaxSendMessageSize(64 << 20);
  // gRPC's own reconnect backoff (up to 120 s by default) would otherwise
  // outlast ours after a server restart. The minimum is also gRPC's connect
  // timeout, so it stays generous.
  const int max_ms =
      static_cast<int>(absl::ToInt64Milliseconds(options.backoff_max));
  // Own subchannels, so a fresh channel does not inherit a failed one's.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, std::min(200, max_ms));
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, std::min(1000, max_ms));
  return grpc::CreateCustomChannel(options.server, credentials, args);
}

}  // namespace care::worker

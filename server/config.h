// care-server's configuration: command-line flags, optionally preceded by a
// config file (--config FILE: one "name = value" per line, names as the
// flags without "--", '#' comments). The command line wins over the file;
// defaults are documented in docs/server.md and in Usage().
#ifndef CARE_SERVER_CONFIG_H_
#define CARE_SERVER_CONFIG_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/log.h"
#include "server/roots.h"

namespace care::server {

// Sync-server threads (every waiting LeaseJob/WatchJob holds one); open
// watches may take at most half of them.
inline constexpr int kMaxServerThreads = 512;
inline constexpr int kMaxWatches = kMaxServerThreads / 2;

struct ServerConfig {
  std::string listen = "127.0.0.1:50051";
  std::string metrics_listen = "127.0.0.1:9464";
  std::string db = "care-jobs.db";
  std::string client_token_file;
  std::string worker_token_file;
  bool insecure_no_auth = false;
  RootsConfig roots;
  std::string tls_cert;
  std::string tls_key;
  absl::Duration lease_duration = absl::Seconds(60);
  absl::Duration reaper_interval = absl::Seconds(1);
  absl::Duration max_lease_wait = absl::Seconds(30);
  absl::Duration poll_interval = absl::Seconds(1);
  absl::Duration worker_window = absl::Seconds(60);
  absl::Duration drain = absl::Seconds(10);
  int max_message_bytes = 16 << 20;
  int busy_timeout_ms = 5000;
  // Open WatchJob streams (each holds a server thread), in total and per
  // bearer token: clients cannot take the threads worker RPCs need.
  int max_watches = 256;
  int max_watches_per_token = 32;
  LogLevel log_level = LogLevel::kInfo;
  bool help = false;
};

// `args` excludes argv[0]. Errors name the flag (or config file line).
absl::StatusOr<ServerConfig> ParseServerConfig(
    const std::vector<std::string>& args);

std::string Usage();

// True when the host of a host:port address is a literal loopback address
// (127.0.0.0/8, ::1), or "localhost" resolving to loopback addresses only.
// Any other name is false, whatever it resolves to.
bool IsLoopbackAddress(const std::string& address);

}  // namespace care::server

#endif  // CARE_SERVER_CONFIG_H_

#include "server/config.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <map>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "base/annotate.h"
#include "base/file.h"
#include "base/flags.h"
#include "base/status_macros.h"

namespace care::server {
namespace {

const std::set<std::string>& BooleanFlags() {
  static const auto* f =
      new std::set<std::string>{"insecure-no-auth", "no-hub-models", "help"};
  return *f;
}

const std::set<std::string>& KnownFlags() {
  static const auto* f = new std::set<std::string>{"config",
                                                   "listen",
                                                   "metrics-listen",
                                                   "db",
                                                   "client-token-file",
                                                   "worker-token-file",
                                                   "insecure-no-auth",
                                                   "no-hub-models",
                                                   "tls-cert",
                                                   "tls-key",
                                                   "lease-seconds",
                                                   "reaper-interval-ms",
                                                   "max-wait-ms",
                                                   "poll-interval-ms",
                                                   "max-watches",
                                                   "max-watches-per-token",
                                                   "worker-seen-seconds",
                                                   "drain-seconds",
                                                   "max-message-bytes",
                                                   "busy-timeout-ms",
                                                   "log-level",
                                                   "help"};
  return *f;
}

constexpr const char* kRootFlags[] = {"model-root", "data-root", "output-root"};

// Takes every occurrence of the repeatable root flags out of `args`.
std::map<std::string, std::vector<std::string>> ExtractRoots(
    std::vector<std::string>& args) {
  std::map<std::string, std::vector<std::string>> roots;
  std::vector<std::string> rest;
  for (size_t i = 0; i < args.size(); ++i) {
    bool taken = false;
    for (const char* name : kRootFlags) {
      const std::string flag = absl::StrCat("--", name);
      std::string value;
      if (args[i] == flag && i + 1 < args.size()) {
        value = args[++i];
      } else if (absl::StartsWith(args[i], flag + "=")) {
        value = args[i].substr(flag.size() + 1);
      } else {
        continue;
      }
      for (absl::string_view part : absl::StrSplit(value, ',')) {
        std::string root(absl::StripAsciiWhitespace(part));
        if (!root.empty()) roots[name].push_back(root);
      }
      taken = true;
      break;
    }
    if (!taken) rest.push_back(args[i]);
  }
  args = std::move(rest);
  return roots;
}

absl::StatusOr<std::vector<std::string>> ReadConfigFile(
    const std::string& path) {
  absl::StatusOr<std::string> file = care::ReadFileToString(path);
  if (!file.ok()) {
    return absl::InvalidArgumentError(
        care::Annotate(file.status(), "--config").message());
  }
  std::vector<std::string> args;
  int number = 0;
  for (absl::string_view line : absl::StrSplit(*file, '\n')) {
    ++number;
    std::string text(absl::StripAsciiWhitespace(line));
    if (text.empty() || text[0] == '#') continue;
    size_t sep = text.find_first_of("= \t");
    std::string name(absl::StripAsciiWhitespace(text.substr(0, sep)));
    std::string value;
    if (sep != std::string::npos) {
      value = std::string(absl::StripAsciiWhitespace(text.substr(sep + 1)));
      if (!value.empty() && value[0] == '=') {
        value = std::string(absl::StripAsciiWhitespace(value.substr(1)));
      }
    }
    if (name.empty() || name == "config") {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ":", number, ": expected 'name = value'"));
    }
    args.push_back(absl::StrCat("--", name, "=", value));
  }
  return args;
}

bool BoolValue(const Flags& flags, absl::string_view name) {
  std::optional<std::string> v = flags.String(name);
  return v.has_value() && *v != "false" && *v != "0";
}

absl::StatusOr<absl::Duration> PositiveDuration(const Flags& flags,
                                                absl::string_view name,
                                                absl::Duration unit,
                                                absl::Duration fallback) {
  CARE_ASSIGN_OR_RETURN(int64_t n, flags.IntOr(name, fallback / unit));
  if (n <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("flag --", name, " must be > 0, got ", n));
  }
  return n * unit;
}

}  // namespace

bool IsLoopbackAddress(const std::string& address) {
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos) return false;
  std::string host = address.substr(0, colon);
  if (absl::StartsWith(host, "[") && absl::EndsWith(host, "]")) {
    host = host.substr(1, host.size() - 2);
  }
  // A literal address is judged as it is; a name by every address it
  // resolves to (127.attacker.example is a name, not 127.0.0.0/8).
  in_addr v4{};
  in6_addr v6{};
  if (inet_pton(AF_INET, host.c_str(), &v4) == 1) {
    return (ntohl(v4.s_addr) >> 24) == 127;
  }
  if (inet_pton(AF_INET6, host.c_str(), &v6) == 1) {
    return IN6_IS_ADDR_LOOPBACK(&v6);
  }
  if (host != "localhost") return false;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (getaddrinfo(host.c_str(), nullptr, &hints, &found) != 0) return false;
  bool all_loopback = found != nullptr;
  for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
    if (a->ai_family == AF_INET) {
      const auto* in = reinterpret_cast<const sockaddr_in*>(a->ai_addr);
      all_loopback &= (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    } else if (a->ai_family == AF_INET6) {
      const auto* in6 = reinterpret_cast<const sockaddr_in6*>(a->ai_addr);
      all_loopback &= IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr) != 0;
    } else {
      all_loopback = false;
    }
  }
  freeaddrinfo(found);
  return all_loopback;
}

absl::StatusOr<ServerConfig> ParseServerConfig(
    const std::vector<std::string>& argv) {
  std::vector<std::string> cli = argv;
  auto cli_roots = ExtractRoots(cli);
  CARE_ASSIGN_OR_RETURN(Flags first, Flags::Parse(cli, BooleanFlags()));
  std::vector<std::string> file_args;
  if (auto path = first.String("config")) {
    CARE_ASSIGN_OR_RETURN(file_args, ReadConfigFile(*path));
  }
  auto file_roots = ExtractRoots(file_args);
  std::vector<std::string> all = file_args;
  all.insert(all.end(), cli.begin(), cli.end());
  CARE_ASSIGN_OR_RETURN(Flags flags, Flags::Parse(all, BooleanFlags()));
  CARE_RETURN_IF_ERROR(flags.CheckKnown(KnownFlags()));
  if (!flags.positionals().empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("unexpected argument '", flags.positionals()[0], "'"));
  }

  ServerConfig c;
  c.help = BoolValue(flags, "help");
  c.listen = flags.StringOr("listen", c.listen);
  c.metrics_listen = flags.StringOr("metrics-listen", c.metrics_listen);
  c.db = flags.StringOr("db", c.db);
  c.client_token_file = flags.StringOr("client-token-file", "");
  c.worker_token_file = flags.StringOr("worker-token-file", "");
  c.insecure_no_auth = BoolValue(flags, "insecure-no-auth");
  c.roots.allow_hub_models = !BoolValue(flags, "no-hub-models");
  // The command line's roots replace the file's, kind by kind.
  for (const char* name : kRootFlags) {
    const auto& source = cli_roots.count(name) ? cli_roots : file_roots;
    auto it = source.find(name);
    if (it == source.end()) continue;
    std::vector<std::string>& dest =
        std::string(name) == "model-root"  ? c.roots.model_roots
        : std::string(name) == "data-root" ? c.roots.data_roots
                                           : c.roots.output_roots;
    dest = it->second;
  }
  c.tls_cert = flags.StringOr("tls-cert", "");
  c.tls_key = flags.StringOr("tls-key", "");
  if (c.tls_cert.empty() != c.tls_key.empty()) {
    return absl::InvalidArgumentError(
        "--tls-cert and --tls-key must be given together");
  }
  CARE_ASSIGN_OR_RETURN(c.lease_duration,
                        PositiveDuration(flags, "lease-seconds",
                                         absl::Seconds(1), c.lease_duration));
  CARE_ASSIGN_OR_RETURN(
      c.reaper_interval,
      PositiveDuration(flags, "reaper-interval-ms", absl::Milliseconds(1),
                       c.reaper_interval));
  CARE_ASSIGN_OR_RETURN(
      c.max_lease_wait,
      PositiveDuration(flags, "max-wait-ms", absl::Milliseconds(1),
                       c.max_lease_wait));
  CARE_ASSIGN_OR_RETURN(
      c.poll_interval,
      PositiveDuration(flags, "poll-interval-ms", absl::Milliseconds(1),
                       c.poll_interval));
  CARE_ASSIGN_OR_RETURN(c.worker_window,
                        PositiveDuration(flags, "worker-seen-seconds",
                                         absl::Seconds(1), c.worker_window));
  CARE_ASSIGN_OR_RETURN(c.drain, PositiveDuration(flags, "drain-seconds",
                                                  absl::Seconds(1), c.drain));
  CARE_ASSIGN_OR_RETURN(int64_t max_bytes,
                        flags.IntOr("max-message-bytes", c.max_message_bytes));
  if (max_bytes < 1024 || max_bytes > (1 << 30)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "flag --max-message-bytes must be in [1024, 1073741824], got ",
        max_bytes));
  }
  c.max_message_bytes = static_cast<int>(max_bytes);
  CARE_ASSIGN_OR_RETURN(int64_t busy,
                        flags.IntOr("busy-timeout-ms", c.busy_timeout_ms));
  if (busy < 0 || busy > 600000) {
    return absl::InvalidArgumentError(
        "flag --busy-timeout-ms must be in [0, 600000]");
  }
  c.busy_timeout_ms = static_cast<int>(busy);
  // Open watches hold server threads: at most half of them, so worker RPCs
  // always find one (watch_limiter.h).
  CARE_ASSIGN_OR_RETURN(int64_t watches,
                        flags.IntOr("max-watches", c.max_watches));
  if (watches < 1 || watches > kMaxWatches) {
    return absl::InvalidArgumentError(absl::StrCat(
        "flag --max-watches must be in [1, ", kMaxWatches, "], got ", watches));
  }
  c.max_watches = static_cast<int>(watches);
  CARE_ASSIGN_OR_RETURN(
      int64_t per_token,
      flags.IntOr("max-watches-per-token", c.max_watches_per_token));
  if (per_token < 1 || per_token > c.max_watches) {
    return absl::InvalidArgumentError(absl::StrCat(
        "flag --max-watches-per-token must be in [1, --max-watches], got ",
        per_token));
  }
  c.max_watches_per_token = static_cast<int>(per_token);
  const std::string level = flags.StringOr("log-level", "info");
  if (!ParseLogLevel(level, &c.log_level)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "flag --log-level must be debug, info, warn or error, got '", level,
        "'"));
  }
  if (c.help) return c;
  if (c.insecure_no_auth) {
    if (!IsLoopbackAddress(c.listen)) {
      return absl::InvalidArgumentError(
          "--insecure-no-auth only allows a loopback --listen address");
    }
  } else if (c.client_token_file.empty() || c.worker_token_file.empty()) {
    return absl::InvalidArgumentError(
        "--client-token-file and --worker-token-file are required (or "
        "--insecure-no-auth with a loopback --listen address)");
  }
  return c;
}

std::string Usage() {
  return R"(usage: care-server [flags]
  --config FILE              flags as "name = value" lines (command line wins)
  --listen HOST:PORT         gRPC address (default 127.0.0.1:50051; port 0 = any)
  --metrics-listen HOST:PORT Prometheus /metrics (default 127.0.0.1:9464)
  --db FILE                  SQLite database (default care-jobs.db)
  --client-token-file FILE   bearer tokens for ConversionService, one a line
  --worker-token-file FILE   bearer tokens for WorkerService, one a line
  --insecure-no-auth         no tokens; only with a loopback --listen
  --model-root DIR           allowed model directories (repeatable, or a,b)
  --data-root DIR            allowed dataset directories (repeatable, or a,b)
  --output-root DIR          allowed output parents (repeatable, or a,b)
  --no-hub-models            reject hf:// model URIs
  --tls-cert FILE --tls-key FILE   serve TLS (PEM)
  --lease-seconds N          lease length, renewed by each heartbeat (60)
  --reaper-interval-ms N     expired-lease scan period (1000)
  --max-wait-ms N            longest LeaseJob long poll (30000)
  --poll-interval-ms N       re-check period of waiting RPCs (1000)
  --worker-seen-seconds N    window of care_workers_connected (60)
  --drain-seconds N          in-flight RPC grace on SIGTERM/SIGINT (10)
  --max-message-bytes N      gRPC message limit both ways (16777216)
  --busy-timeout-ms N        SQLite busy timeout (5000)
  --max-watches N            open WatchJob streams, all clients (256, at most 256)
  --max-watches-per-token N  open WatchJob streams per token (32)
  --log-level LEVEL          debug, info, warn, error (info)
)";
}

}  // namespace care::server

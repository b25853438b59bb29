#include "server/server.h"

#include <fcntl.h>
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/resource_quota.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_builder.h>
#include <sys/file.h>
#include <unistd.h>

#include <exception>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "proto/api/tls_files.h"
#include "server/edge_interceptor.h"
#include "server/log.h"

namespace care::server {
namespace {

std::string HostOf(const std::string& address) {
  return address.substr(0, address.rfind(':'));
}

}  // namespace

absl::StatusOr<std::unique_ptr<CareServer>> CareServer::Start(
    const ServerConfig& config) {
  std::unique_ptr<CareServer> s(new CareServer());
  s->config_ = config;
  SetLogLevel(config.log_level);

  if (config.insecure_no_auth) {
    s->auth_ = std::make_unique<TokenAuth>(TokenAuth::Disabled());
    Log(LogLevel::kWarn, "authentication disabled (--insecure-no-auth)");
  } else {
    CARE_ASSIGN_OR_RETURN(
        TokenAuth auth,
        TokenAuth::Load(config.client_token_file, config.worker_token_file));
    s->auth_ = std::make_unique<TokenAuth>(std::move(auth));
  }
  CARE_ASSIGN_OR_RETURN(UriRoots roots, UriRoots::Create(config.roots));
  s->roots_ = std::make_unique<UriRoots>(std::move(roots));

  // One process per database: the store's single-writer design (and the
  // reaper) assume no other server writes the same file.
  const std::string lock_path = config.db + ".lock";
  s->lock_fd_ = open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (s->lock_fd_ < 0) {
    return absl::UnavailableError(
        absl::StrCat("--db: cannot create lock file ", lock_path));
  }
  if (flock(s->lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("--db: another care-server is using ", config.db, " (",
                     lock_path, " is locked)"));
  }

  StoreOptions store_options;
  store_options.path = config.db;
  store_options.busy_timeout_ms = config.busy_timeout_ms;
  store_options.lease_duration = config.lease_duration;
  store_options.worker_window = config.worker_window;
  CARE_ASSIGN_OR_RETURN(s->store_,
                        Store::Open(store_options, &s->clock_, &s->notifier_));

  Store* store = s->store_.get();
  const absl::Duration window = config.worker_window;
  s->metrics_ = std::make_unique<Metrics>(
      [store, window] { return store->CountStates(window); });
  try {
    s->exposer_ = std::make_unique<prometheus::Exposer>(config.metrics_listen);
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("--metrics-listen: cannot bind ",
                                               config.metrics_listen, ": ",
                                               e.what()));
  }
  s->exposer_->RegisterCollectable(s->metrics_->registry());
  s->exposer_->RegisterCollectable(s->metrics_->gauges());
  const std::vector<int> metrics_ports = s->exposer_->GetListeningPorts();
  if (metrics_ports.empty()) {
    return absl::UnavailableError(absl::StrCat(
        "--metrics-listen: nothing bound at ", config.metrics_listen));
  }
  s->metrics_address_ =
      absl::StrCat(HostOf(config.metrics_listen), ":", metrics_ports[0]);

  ServiceDeps deps{store,           s->auth_.get(),
                   s->roots_.get(), s->metrics_.get(),
                   &s->notifier_,   &s->gate_};
  deps.max_lease_wait = config.max_lease_wait;
  deps.poll_interval = config.poll_interval;
  s->watches_ = std::make_unique<WatchLimiter>(config.max_watches_per_token,
                                               config.max_watches);
  deps.watches = s->watches_.get();
  s->conversion_ = std::make_unique<ConversionServiceImpl>(deps);
  s->worker_ = std::make_unique<WorkerServiceImpl>(deps);

  std::shared_ptr<grpc::ServerCredentials> creds;
  if (!config.tls_cert.empty()) {
    grpc::SslServerCredentialsOptions ssl;
    // Checked here: gRPC would only fail to bind, without saying why.
    CARE_ASSIGN_OR_RETURN(
        care::api::KeyPair pair,
        care::api::ReadKeyPair(config.tls_cert, config.tls_key));
    ssl.pem_key_cert_pairs.push_back({pair.key_pem, pair.cert_pem});
    creds = grpc::SslServerCredentials(ssl);
  } else {
    creds = grpc::InsecureServerCredentials();
    if (!IsLoopbackAddress(config.listen)) {
      Log(LogLevel::kWarn,
          "serving plaintext gRPC on a non-loopback address; bearer tokens "
          "cross the network in the clear (set --tls-cert/--tls-key)",
          {{"listen", config.listen}});
    }
  }

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int port = 0;
  // gRPC sets SO_REUSEPORT by default: a second server on the same port
  // would silently share its traffic. Binding must fail instead.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.AddListeningPort(config.listen, creds, &port);
  builder.SetMaxReceiveMessageSize(config.max_message_bytes);
  builder.SetMaxSendMessageSize(config.max_message_bytes);
  grpc::ResourceQuota quota("care-server");
  quota.SetMaxThreads(kMaxServerThreads);
  builder.SetResourceQuota(quota);
  // Counts and logs what gRPC refuses before a handler runs.
  std::vector<
      std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
      interceptors;
  interceptors.push_back(
      std::make_unique<EdgeInterceptorFactory>(s->metrics_.get()));
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
  builder.RegisterService(s->conversion_.get());
  builder.RegisterService(s->worker_.get());
  s->server_ = builder.BuildAndStart();
  if (s->server_ == nullptr || port == 0) {
    return absl::UnavailableError(
        absl::StrCat("--listen: cannot bind ", config.listen));
  }
  s->grpc_address_ = absl::StrCat(HostOf(config.listen), ":", port);

  // Grace of one lease period: leases that ran out while the server was
  // down are not expired before their workers could reconnect and renew.
  s->reaper_ = std::make_unique<Reaper>(
      store, s->metrics_.get(), config.reaper_interval, config.lease_duration);
  s->reaper_->Start();
  s->shut_down_ = false;
  Log(LogLevel::kInfo, "started",
      {{"grpc", s->grpc_address_},
       {"metrics", s->metrics_address_},
       {"db", config.db},
       {"tls", config.tls_cert.empty() ? "off" : "on"},
       {"auth", config.insecure_no_auth ? "off" : "bearer"},
       {"lease_seconds",
        absl::StrCat(absl::ToInt64Seconds(config.lease_duration))}});
  return s;
}

CareServer::~CareServer() {
  Shutdown();
  if (lock_fd_ >= 0) close(lock_fd_);  // Releases the database lock.
}

void CareServer::Shutdown() {
  if (shut_down_) return;
  shut_down_ = true;
  Log(LogLevel::kInfo, "draining",
      {{"deadline_seconds",
        absl::StrCat(absl::ToInt64Seconds(config_.drain))}});
  // New RPCs are refused with UNAVAILABLE and health turns NOT_SERVING;
  // waiting long polls and watches return at once; other in-flight RPCs get
  // until the drain deadline. Then gRPC stops, cancelling what is left and
  // closing connections (its own Shutdown(deadline) would also wait that
  // long for idle client connections to go away).
  gate_.draining = true;
  notifier_.Shutdown();
  if (server_) {
    if (auto* health = server_->GetHealthCheckService()) {
      health->SetServingStatus(false);
    }
    const absl::Time deadline = absl::Now() + config_.drain;
    while (gate_.in_flight.load() > 0 && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(5));
    }
    if (gate_.in_flight.load() > 0) {
      Log(LogLevel::kWarn, "drain deadline passed; cancelling RPCs",
          {{"in_flight", absl::StrCat(gate_.in_flight.load())}});
    }
    server_->Shutdown(absl::ToChronoTime(absl::Now()));
    server_->Wait();
  }
  Log(LogLevel::kDebug, "grpc stopped");
  if (reaper_) reaper_->Stop();
  Log(LogLevel::kDebug, "reaper stopped");
  exposer_.reset();
  Log(LogLevel::kDebug, "metrics stopped");
  server_.reset();
  store_.reset();  // Closes the connections; the last close checkpoints WAL.
  Log(LogLevel::kInfo, "stopped");
}

}  // namespace care::server

// care-server assembled: store, auth, roots, metrics exposer, the two gRPC
// services with health and reflection, and the reaper. Start() binds every
// port; Shutdown() drains in order (stop accepting and wake waiting RPCs,
// finish in-flight ones within the drain deadline, stop the reaper, close
// the database).
#ifndef CARE_SERVER_SERVER_H_
#define CARE_SERVER_SERVER_H_

#include <grpcpp/server.h>
#include <prometheus/exposer.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "server/auth.h"
#include "server/clock.h"
#include "server/config.h"
#include "server/conversion_service.h"
#include "server/metrics.h"
#include "server/notifier.h"
#include "server/reaper.h"
#include "server/roots.h"
#include "server/store.h"
#include "server/worker_service.h"

namespace care::server {

class CareServer {
 public:
  static absl::StatusOr<std::unique_ptr<CareServer>> Start(
      const ServerConfig& config);
  ~CareServer();

  // "host:port" with the port actually bound (port 0 resolved).
  const std::string& grpc_address() const { return grpc_address_; }
  const std::string& metrics_address() const { return metrics_address_; }

  // Idempotent; also run by the destructor.
  void Shutdown();

 private:
  CareServer() = default;

  ServerConfig config_;
  SystemClock clock_;
  ChangeNotifier notifier_;
  RpcGate gate_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<TokenAuth> auth_;
  std::unique_ptr<UriRoots> roots_;
  std::unique_ptr<Metrics> metrics_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  std::unique_ptr<WatchLimiter> watches_;
  std::unique_ptr<ConversionServiceImpl> conversion_;
  std::unique_ptr<WorkerServiceImpl> worker_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<Reaper> reaper_;
  std::string grpc_address_;
  std::string metrics_address_;
  int lock_fd_ = -1;       // flock()ed "<db>.lock", held for the lifetime.
  bool shut_down_ = true;  // Until Start() completes.
};

}  // namespace care::server

#endif  // CARE_SERVER_SERVER_H_

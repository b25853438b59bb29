// What both gRPC services share: their dependencies, and the one wrapper
// every handler runs in (authenticate, time, count, log, convert the
// absl::Status to grpc::Status exactly once via care::api::ToGrpcStatus).
#ifndef CARE_SERVER_SERVICE_COMMON_H_
#define CARE_SERVER_SERVICE_COMMON_H_

#include <grpcpp/server_context.h>

#include <atomic>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "proto/api/status_convert.h"
#include "server/auth.h"
#include "server/edge_interceptor.h"
#include "server/log.h"
#include "server/metrics.h"
#include "server/notifier.h"
#include "server/roots.h"
#include "server/store.h"
#include "server/watch_limiter.h"

namespace care::server {

// Lets the drain stop new RPCs at the service edge (UNAVAILABLE, which
// clients retry) and wait for the in-flight ones to finish.
struct RpcGate {
  std::atomic<int> in_flight{0};
  std::atomic<bool> draining{false};
};

struct ServiceDeps {
  Store* store;
  const TokenAuth* auth;
  const UriRoots* roots;
  Metrics* metrics;
  ChangeNotifier* notifier;
  RpcGate* gate;
  // Upper bound on a LeaseJob long poll, whatever the worker asks for.
  absl::Duration max_lease_wait = absl::Seconds(30);
  // Longest sleep of a waiting WatchJob or LeaseJob between database checks
  // when no change notification arrives (a safety net, not the mechanism).
  absl::Duration poll_interval = absl::Seconds(1);
  // Caps on open WatchJob streams (never null in the server).
  WatchLimiter* watches = nullptr;
};

inline std::optional<absl::string_view> AuthorizationHeader(
    const grpc::ServerContext& ctx) {
  const auto& md = ctx.client_metadata();
  auto it = md.find("authorization");
  if (it == md.end()) return std::nullopt;
  return absl::string_view(it->second.data(), it->second.size());
}

// Runs `body` (returning absl::Status) as the handler of `method`.
template <typename Body>
grpc::Status RunRpc(const ServiceDeps& deps, absl::string_view method,
                    Role role, grpc::ServerContext* ctx, Body&& body) {
  const absl::Time start = absl::Now();
  MarkHandlerRan(ctx);  // Counted and logged here, not by the interceptor.
  deps.gate->in_flight.fetch_add(1);
  absl::Status status = deps.auth->Check(AuthorizationHeader(*ctx), role);
  if (status.ok() && deps.gate->draining.load()) {
    status = absl::UnavailableError("server shutting down; retry");
  }
  if (status.ok()) status = body();
  deps.gate->in_flight.fetch_sub(1);
  deps.metrics->Rpc(method, status.code(),
                    absl::ToDoubleSeconds(absl::Now() - start));
  if (!status.ok()) {
    const bool server_fault = status.code() == absl::StatusCode::kInternal ||
                              status.code() == absl::StatusCode::kDataLoss ||
                              status.code() == absl::StatusCode::kUnknown;
    Log(server_fault ? LogLevel::kError : LogLevel::kInfo, "rpc failed",
        {{"method", std::string(method)},
         {"code", absl::StatusCodeToString(status.code())},
         {"error", std::string(status.message())},
         {"peer", ctx->peer()}});
  }
  return care::api::ToGrpcStatus(status);
}

google::protobuf::Timestamp ToTimestamp(absl::Time t);

}  // namespace care::server

#endif  // CARE_SERVER_SERVICE_COMMON_H_

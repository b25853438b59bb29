// What gRPC answers before a handler runs never reaches RunRpc
// (service_common.h): a request that cannot be parsed (e.g. a string field
// holding invalid UTF-8, which proto3 refuses) and the sync server's
// "threadpool exhausted" refusal. This interceptor sees both: it logs and
// counts them (care_rpc_rejected_total, reason "unparsable_request" /
// "threads_exhausted"), and turns the parse failure's bare INTERNAL into
// INVALID_ARGUMENT saying what was wrong.
#ifndef CARE_SERVER_EDGE_INTERCEPTOR_H_
#define CARE_SERVER_EDGE_INTERCEPTOR_H_

#include <grpcpp/support/server_interceptor.h>

#include "server/metrics.h"

namespace care::server {

class EdgeInterceptorFactory
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit EdgeInterceptorFactory(Metrics* metrics) : metrics_(metrics) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override;

 private:
  Metrics* metrics_;
};

// Called by RunRpc on the handler's thread: this call reached its handler.
void MarkHandlerRan(const grpc::ServerContextBase* ctx);

}  // namespace care::server

#endif  // CARE_SERVER_EDGE_INTERCEPTOR_H_

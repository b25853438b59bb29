#include "server/edge_interceptor.h"

#include <grpcpp/server_context.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "server/log.h"

namespace care::server {

namespace {

using grpc::experimental::InterceptionHookPoints;

// The sync server runs a call's hooks and its handler on one thread; the
// handler marks its context here, and the interceptor compares.
thread_local const grpc::ServerContextBase* tl_handled = nullptr;

class EdgeInterceptor : public grpc::experimental::Interceptor {
 public:
  EdgeInterceptor(grpc::experimental::ServerRpcInfo* info, Metrics* metrics)
      : info_(info), metrics_(metrics) {}

  void Intercept(
      grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            InterceptionHookPoints::POST_RECV_MESSAGE) &&
        methods->GetRecvMessage() == nullptr) {
      unparsable_ = true;
    }
    if (methods->QueryInterceptionHookPoint(
            InterceptionHookPoints::PRE_SEND_STATUS)) {
      OnStatus(methods);
    }
    methods->Proceed();
  }

 private:
  void OnStatus(grpc::experimental::InterceptorBatchMethods* methods) {
    const bool handled = tl_handled == info_->server_context();
    tl_handled = nullptr;
    if (handled) return;  // RunRpc counted and logged it.
    const grpc::Status status = methods->GetSendStatus();
    const std::string method = MethodName();
    if (unparsable_ && status.error_code() == grpc::StatusCode::INTERNAL) {
      metrics_->RpcRejected(method, "unparsable_request");
      Log(LogLevel::kWarn, "rpc failed",
          {{"method", method},
           {"code", "INVALID_ARGUMENT"},
           {"error", "request could not be parsed"},
           {"peer", info_->server_context()->peer()}});
      methods->ModifySendStatus(grpc::Status(
          grpc::StatusCode::INVALID_ARGUMENT,
          absl::StrCat("the ", method,
                       " request could not be parsed: a string field holds "
                       "invalid UTF-8, or the message is malformed")));
    } else if (status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) {
      metrics_->RpcRejected(method, "threads_exhausted");
      Log(LogLevel::kError, "rpc refused: no server thread free",
          {{"method", method},
           {"error", status.error_message()},
           {"peer", info_->server_context()->peer()}});
    }
  }

  // "/care.v1.WorkerService/Heartbeat" -> "Heartbeat".
  std::string MethodName() const {
    std::string full = info_->method() != nullptr ? info_->method() : "";
    const size_t slash = full.rfind('/');
    return slash == std::string::npos ? full : full.substr(slash + 1);
  }

  grpc::experimental::ServerRpcInfo* info_;
  Metrics* metrics_;
  bool unparsable_ = false;
};

}  // namespace

grpc::experimental::Interceptor*
EdgeInterceptorFactory::CreateServerInterceptor(
    grpc::experimental::ServerRpcInfo* info) {
  return new EdgeInterceptor(info, metrics_);
}

void MarkHandlerRan(const grpc::ServerContextBase* ctx) { tl_handled = ctx; }

}  // namespace care::server

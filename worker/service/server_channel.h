// The worker's channel to care-server, shared by the lease loop, the
// heartbeat thread and the final writes. A gRPC channel in transient
// failure keeps failing calls fast with its last error until its own
// reconnect backoff ends (seconds after the server is back); every caller
// that sees a transient error asks for a fresh one instead.
#ifndef CARE_WORKER_SERVICE_SERVER_CHANNEL_H_
#define CARE_WORKER_SERVICE_SERVER_CHANNEL_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <mutex>

#include "care/v1/worker_service.grpc.pb.h"
#include "service/options.h"

namespace care::worker {

class ServerChannel {
 public:
  ServerChannel(const ServiceOptions& options,
                std::shared_ptr<grpc::Channel> channel);

  // The current stub; callers keep the pointer for one call.
  std::shared_ptr<care::v1::WorkerService::Stub> stub();
  // Replaces a channel in TRANSIENT_FAILURE by a fresh one.
  void ReconnectIfFailing();

 private:
  const ServiceOptions& options_;
  std::mutex mu_;
  std::shared_ptr<grpc::Channel> channel_;
  std::shared_ptr<care::v1::WorkerService::Stub> stub_;
};

// UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED: the server is away or
// busy; the call may be retried.
bool TransientRpcError(const grpc::Status& status);

}  // namespace care::worker

#endif  // CARE_WORKER_SERVICE_SERVER_CHANNEL_H_

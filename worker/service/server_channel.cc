#include "service/server_channel.h"

namespace care::worker {

ServerChannel::ServerChannel(const ServiceOptions& options,
                             std::shared_ptr<grpc::Channel> channel)
    : options_(options),
      channel_(std::move(channel)),
      stub_(care::v1::WorkerService::NewStub(channel_)) {}

std::shared_ptr<care::v1::WorkerService::Stub> ServerChannel::stub() {
  std::lock_guard<std::mutex> lock(mu_);
  return stub_;
}

void ServerChannel::ReconnectIfFailing() {
  std::lock_guard<std::mutex> lock(mu_);
  if (channel_->GetState(false) != GRPC_CHANNEL_TRANSIENT_FAILURE) return;
  if (auto fresh = CreateServerChannel(options_); fresh.ok()) {
    channel_ = *fresh;
    stub_ = care::v1::WorkerService::NewStub(channel_);
  }
}

bool TransientRpcError(const grpc::Status& status) {
  return status.error_code() == grpc::StatusCode::UNAVAILABLE ||
         status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED ||
         status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED;
}

}  // namespace care::worker

// care.v1.WorkerService: leases (long poll), heartbeats, completion and
// failure, fenced by (job, attempt, worker) in the Store.
#ifndef CARE_SERVER_WORKER_SERVICE_H_
#define CARE_SERVER_WORKER_SERVICE_H_

#include "care/v1/worker_service.grpc.pb.h"
#include "server/service_common.h"

namespace care::server {

class WorkerServiceImpl final : public v1::WorkerService::Service {
 public:
  explicit WorkerServiceImpl(ServiceDeps deps) : deps_(deps) {}

  grpc::Status LeaseJob(grpc::ServerContext* ctx,
                        const v1::LeaseJobRequest* req,
                        v1::LeaseJobResponse* resp) override;
  grpc::Status Heartbeat(grpc::ServerContext* ctx,
                         const v1::HeartbeatRequest* req,
                         v1::HeartbeatResponse* resp) override;
  grpc::Status CommitOutput(grpc::ServerContext* ctx,
                            const v1::CommitOutputRequest* req,
                            v1::CommitOutputResponse* resp) override;
  grpc::Status CompleteJob(grpc::ServerContext* ctx,
                           const v1::CompleteJobRequest* req,
                           v1::CompleteJobResponse* resp) override;
  grpc::Status FailJob(grpc::ServerContext* ctx, const v1::FailJobRequest* req,
                       v1::FailJobResponse* resp) override;

 private:
  absl::Status Lease(grpc::ServerContext* ctx, const v1::LeaseJobRequest& req,
                     v1::LeaseJobResponse* resp);
  ServiceDeps deps_;
};

}  // namespace care::server

#endif  // CARE_SERVER_WORKER_SERVICE_H_

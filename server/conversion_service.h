// care.v1.ConversionService: the public API (submit, get, list, cancel,
// watch, events), synchronous gRPC handlers over the Store.
#ifndef CARE_SERVER_CONVERSION_SERVICE_H_
#define CARE_SERVER_CONVERSION_SERVICE_H_

#include "care/v1/conversion_service.grpc.pb.h"
#include "server/service_common.h"

namespace care::server {

class ConversionServiceImpl final : public v1::ConversionService::Service {
 public:
  explicit ConversionServiceImpl(ServiceDeps deps) : deps_(deps) {}

  grpc::Status SubmitJob(grpc::ServerContext* ctx,
                         const v1::SubmitJobRequest* req,
                         v1::Job* resp) override;
  grpc::Status GetJob(grpc::ServerContext* ctx, const v1::GetJobRequest* req,
                      v1::Job* resp) override;
  grpc::Status ListJobs(grpc::ServerContext* ctx,
                        const v1::ListJobsRequest* req,
                        v1::ListJobsResponse* resp) override;
  grpc::Status CancelJob(grpc::ServerContext* ctx,
                         const v1::CancelJobRequest* req,
                         v1::Job* resp) override;
  grpc::Status WatchJob(grpc::ServerContext* ctx,
                        const v1::WatchJobRequest* req,
                        grpc::ServerWriter<v1::JobEvent>* writer) override;
  grpc::Status ListJobEvents(grpc::ServerContext* ctx,
                             const v1::ListJobEventsRequest* req,
                             v1::ListJobEventsResponse* resp) override;
  grpc::Status ListWorkers(grpc::ServerContext* ctx,
                           const v1::ListWorkersRequest* req,
                           v1::ListWorkersResponse* resp) override;
  grpc::Status GetJobReport(grpc::ServerContext* ctx,
                            const v1::GetJobReportRequest* req,
                            v1::JobReport* resp) override;

 private:
  absl::Status Watch(grpc::ServerContext* ctx, const v1::WatchJobRequest& req,
                     grpc::ServerWriter<v1::JobEvent>* writer);
  ServiceDeps deps_;
};

}  // namespace care::server

#endif  // CARE_SERVER_CONVERSION_SERVICE_H_

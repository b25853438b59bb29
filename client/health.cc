// carectl health: grpc.health.v1.Health/Check, for Docker healthchecks and
// readiness probes. 0 SERVING, 1 answered but not serving, 3 unreachable.
#include <iostream>

#include "client/cli.h"
#include "client/command_support.h"
#include "grpc/health/v1/health.grpc.pb.h"

namespace care::client {

int RunHealth(const std::vector<std::string>& args) {
  auto setup = SetupCommand(args, {"service"}, {});
  if (!setup.ok()) return UsageError("health", setup.status());
  Connection& connection = *setup->connection;
  auto stub = grpc::health::v1::Health::NewStub(connection.channel());
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(setup->flags.StringOr("service", ""));
  grpc::health::v1::HealthCheckResponse response;
  auto context = connection.NewContext(/*streaming=*/false);
  grpc::Status status = stub->Check(context.get(), request, &response);
  if (!status.ok()) {
    std::cerr << connection.Describe("health", status) << "\n";
    return status.error_code() == grpc::StatusCode::NOT_FOUND
               ? kExitFailed  // The server does not know that service.
               : kExitUsage;
  }
  if (setup->output == OutputFormat::kJson) {
    std::cout << ToJson(response, /*pretty=*/false) << "\n";
  } else {
    std::cout << grpc::health::v1::HealthCheckResponse::ServingStatus_Name(
                     response.status())
              << "\n";
  }
  return response.status() == grpc::health::v1::HealthCheckResponse::SERVING
             ? kExitOk
             : kExitFailed;
}

}  // namespace care::client

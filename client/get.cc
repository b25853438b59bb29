// carectl get JOB_ID...: one job's spec, status and report.
#include <iostream>

#include "client/cli.h"
#include "client/command_support.h"

namespace care::client {

int RunGet(const std::vector<std::string>& args) {
  auto setup = SetupCommand(args, {}, {});
  if (!setup.ok()) return UsageError("get", setup.status());
  const auto& ids = setup->flags.positionals();
  if (ids.empty()) {
    return UsageError("get", absl::InvalidArgumentError("missing JOB_ID"));
  }
  Connection& connection = *setup->connection;
  int exit_code = kExitOk;
  for (size_t i = 0; i < ids.size(); ++i) {
    care::v1::GetJobRequest request;
    request.set_job_id(ids[i]);
    care::v1::Job job;
    auto context = connection.NewContext(/*streaming=*/false);
    grpc::Status status =
        connection.stub().GetJob(context.get(), request, &job);
    if (!status.ok()) {
      std::cerr << connection.Describe(absl::StrCat("get ", ids[i]), status)
                << "\n";
      exit_code = std::max(exit_code, ExitCodeFor(status));
      continue;
    }
    if (i > 0 && setup->output == OutputFormat::kTable) std::cout << "\n";
    std::cout << (setup->output == OutputFormat::kJson
                      ? ToJson(job, /*pretty=*/true) + "\n"
                      : FormatJobTable(job));
  }
  return exit_code;
}

}  // namespace care::client

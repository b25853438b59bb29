// carectl cancel JOB_ID...: queued jobs end at once, running ones move to
// CANCELLING until their worker stops at the next layer boundary.
#include <iostream>

#include "client/cli.h"
#include "client/command_support.h"

namespace care::client {

int RunCancel(const std::vector<std::string>& args) {
  auto setup = SetupCommand(args, {}, {});
  if (!setup.ok()) return UsageError("cancel", setup.status());
  const auto& ids = setup->flags.positionals();
  if (ids.empty()) {
    return UsageError("cancel", absl::InvalidArgumentError("missing JOB_ID"));
  }
  Connection& connection = *setup->connection;
  int exit_code = kExitOk;
  for (const std::string& id : ids) {
    care::v1::CancelJobRequest request;
    request.set_job_id(id);
    care::v1::Job job;
    auto context = connection.NewContext(/*streaming=*/false);
    grpc::Status status =
        connection.stub().CancelJob(context.get(), request, &job);
    if (!status.ok()) {
      std::cerr << connection.Describe(absl::StrCat("cancel ", id), status)
                << "\n";
      exit_code = std::max(exit_code, ExitCodeFor(status));
      continue;
    }
    if (setup->output == OutputFormat::kJson) {
      std::cout << ToJson(job, /*pretty=*/true) << "\n";
    } else {
      std::cout << job.id() << " " << StateName(job.state()) << "\n";
    }
  }
  return exit_code;
}

}  // namespace care::client

// carectl workers: the workers care-server has heard from and the device
// each advertises (issue 11), most recently seen first.
#include <iostream>

#include "absl/strings/str_cat.h"
#include "client/cli.h"
#include "client/command_support.h"
#include "client/format.h"
#include "client/table.h"

namespace care::client {

int RunWorkers(const std::vector<std::string>& args) {
  auto setup = SetupCommand(args, {}, {"connected"});
  if (!setup.ok()) return UsageError("workers", setup.status());
  const Flags& flags = setup->flags;
  if (!flags.positionals().empty()) {
    return UsageError(
        "workers", absl::InvalidArgumentError(absl::StrCat(
                       "unexpected argument '", flags.positionals()[0], "'")));
  }
  care::v1::ListWorkersRequest request;
  request.set_connected_only(flags.Bool("connected"));
  care::v1::ListWorkersResponse response;
  Connection& connection = *setup->connection;
  auto context = connection.NewContext(/*streaming=*/false);
  grpc::Status status =
      connection.stub().ListWorkers(context.get(), request, &response);
  if (!status.ok()) {
    std::cerr << connection.Describe("workers", status) << "\n";
    return ExitCodeFor(status);
  }
  if (setup->output == OutputFormat::kJson) {
    std::cout << ToJson(response, /*pretty=*/true) << "\n";
    return kExitOk;
  }
  Table table({"WORKER", "DEVICE", "CONNECTED", "LAST SEEN"});
  for (const care::v1::Worker& w : response.workers()) {
    table.AddRow(
        {w.worker_id(), w.device_name().empty() ? "-" : w.device_name(),
         w.connected() ? "yes" : "no", FormatTimestamp(w.last_seen_time())});
  }
  std::cout << table.Render();
  return kExitOk;
}

}  // namespace care::client

// carectl events JOB_ID: the job's stored event log (all pages).
#include <iostream>

#include "client/cli.h"
#include "client/command_support.h"

namespace care::client {

int RunEvents(const std::vector<std::string>& args) {
  auto setup = SetupCommand(args, {"after", "page-size"}, {});
  if (!setup.ok()) return UsageError("events", setup.status());
  const Flags& flags = setup->flags;
  if (flags.positionals().size() != 1) {
    return UsageError(
        "events", absl::InvalidArgumentError("expected exactly one JOB_ID"));
  }
  auto after = flags.IntOr("after", 0);
  if (!after.ok()) return UsageError("events", after.status());
  auto page_size = flags.IntOr("page-size", 0);
  if (!page_size.ok()) return UsageError("events", page_size.status());
  if (*after < 0 || *page_size < 0 || *page_size > 1000) {
    return UsageError(
        "events", absl::InvalidArgumentError("flags --after must be >= 0 and "
                                             "--page-size in [1, 1000]"));
  }
  care::v1::ListJobEventsRequest request;
  request.set_job_id(flags.positionals()[0]);
  request.set_after_sequence(*after);
  request.set_page_size(static_cast<int32_t>(*page_size));

  Connection& connection = *setup->connection;
  care::v1::ListJobEventsResponse all;
  while (true) {
    care::v1::ListJobEventsResponse page;
    auto context = connection.NewContext(/*streaming=*/false);
    grpc::Status status =
        connection.stub().ListJobEvents(context.get(), request, &page);
    if (!status.ok()) {
      std::cerr << connection.Describe(
                       absl::StrCat("events ", request.job_id()), status)
                << "\n";
      return ExitCodeFor(status);
    }
    for (auto& event : *page.mutable_events()) {
      *all.add_events() = std::move(event);
    }
    // 0 means no more events now; not moving forward would loop forever.
    if (page.next_after_sequence() <= request.after_sequence()) break;
    request.set_after_sequence(page.next_after_sequence());
  }
  if (setup->output == OutputFormat::kJson) {
    std::cout << ToJson(all, /*pretty=*/true) << "\n";
  } else {
    std::cout << FormatEventsTable(all);
  }
  return kExitOk;
}

}  // namespace care::client

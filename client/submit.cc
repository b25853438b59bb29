// carectl submit: build a JobSpec from flags and/or --spec, validate it
// locally (the same rules as the server), send it, optionally watch it.
#include <unistd.h>

#include <iostream>

#include "client/cli.h"
#include "client/command_support.h"
#include "client/spec_flags.h"
#include "proto/api/spec_validation.h"

namespace care::client {

int RunSubmit(const std::vector<std::string>& args) {
  std::vector<std::string> rest = args;
  ExpandShortFlags(rest);
  auto labels = ExtractRepeated(rest, "label");
  if (!labels.ok()) return UsageError("submit", labels.status());
  std::set<std::string> bools = SpecBoolFlagNames();
  bools.insert({"wait", "quiet", "plain"});
  auto setup = SetupCommand(rest, SpecFlagNames(), bools);
  if (!setup.ok()) return UsageError("submit", setup.status());
  const Flags& flags = setup->flags;
  if (!flags.positionals().empty()) {
    return UsageError(
        "submit", absl::InvalidArgumentError(absl::StrCat(
                      "unexpected argument '", flags.positionals()[0], "'")));
  }
  auto spec = SpecFromFlags(flags, *labels);
  if (!spec.ok()) return UsageError("submit", spec.status());
  if (absl::Status valid = care::api::ValidateJobSpec(*spec); !valid.ok()) {
    std::cerr << "carectl submit: invalid job spec: " << valid.message()
              << "\n";
    return kExitUsage;
  }

  care::v1::SubmitJobRequest request;
  *request.mutable_spec() = *spec;
  care::v1::Job job;
  Connection& connection = *setup->connection;
  auto context = connection.NewContext(/*streaming=*/false);
  grpc::Status status =
      connection.stub().SubmitJob(context.get(), request, &job);
  if (!status.ok()) {
    std::cerr << connection.Describe("submit", status) << "\n";
    return ExitCodeFor(status);
  }
  const bool json = setup->output == OutputFormat::kJson;
  const bool wait = flags.Bool("wait");
  if (flags.Bool("quiet")) {
    std::cout << job.id() << "\n";
  } else if (json) {
    // With --wait the events follow as JSON lines, so keep this one line.
    std::cout << ToJson(job, /*pretty=*/!wait) << "\n";
  } else if (wait) {
    std::cout << "submitted " << job.id() << "\n";
  } else {
    std::cout << FormatJobTable(job);
  }
  std::cout.flush();
  if (!wait) return kExitOk;
  WatchOptions watch;
  watch.json = json;
  watch.progress_bar = !json && !flags.Bool("plain") && isatty(STDOUT_FILENO);
  return WatchJob(connection, job.id(), watch);
}

}  // namespace care::client

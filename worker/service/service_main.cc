// care-worker-service: the gRPC side of `care-worker serve` (which execs
// it). Same flags as `care-worker serve`, plus --pipeline-exe: the
// care-worker binary that runs each job's pipeline (subprocess_runner.h).
#include <iostream>
#include <set>
#include <string>
#include <vector>

#include "base/flags.h"
#include "service/options.h"
#include "service/serve.h"
#include "service/subprocess_runner.h"

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  auto flags = care::Flags::Parse(args, care::worker::ServiceBoolFlagNames());
  absl::Status status = flags.status();
  if (status.ok()) {
    std::set<std::string> known = care::worker::ServiceFlagNames();
    known.insert(care::worker::ServiceBoolFlagNames().begin(),
                 care::worker::ServiceBoolFlagNames().end());
    known.insert("pipeline-exe");
    status = flags->CheckKnown(known);
  }
  if (status.ok() && !flags->positionals().empty()) {
    status = absl::InvalidArgumentError("unexpected argument '" +
                                        flags->positionals()[0] + "'");
  }
  absl::StatusOr<care::worker::ServiceOptions> options =
      status.ok() ? care::worker::ServiceOptionsFromFlags(*flags)
                  : absl::StatusOr<care::worker::ServiceOptions>(status);
  std::string pipeline;
  if (options.ok()) {
    auto exe = flags->Required("pipeline-exe");
    if (exe.ok()) {
      pipeline = *exe;
    } else {
      options = exe.status();
    }
  }
  if (!options.ok()) {
    std::cerr << "care-worker serve: " << options.status().message()
              << "\n(see care-worker help serve)\n";
    return 2;
  }
  care::worker::SubprocessRunner runner(pipeline, options->threads,
                                        options->work_dir);
  runner.set_device(options->DeviceString());
  return care::worker::Serve(*options, runner);
}

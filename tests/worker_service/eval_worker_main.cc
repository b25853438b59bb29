// care_eval_worker: `care-worker serve` with the test PerplexityRunner, a
// real process for the protocol tests (kill -9, SIGTERM, two workers).
// Same flags as `care-worker serve`.
#include <iostream>
#include <string>
#include <vector>

#include "base/flags.h"
#include "service/options.h"
#include "service/serve.h"
#include "worker_service/perplexity_runner.h"

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  auto flags = care::Flags::Parse(args, care::worker::ServiceBoolFlagNames());
  if (!flags.ok()) {
    std::cerr << "care_eval_worker: " << flags.status().message() << "\n";
    return 2;
  }
  std::set<std::string> known = care::worker::ServiceFlagNames();
  known.insert(care::worker::ServiceBoolFlagNames().begin(),
               care::worker::ServiceBoolFlagNames().end());
  absl::Status check = flags->CheckKnown(known);
  auto options = check.ok()
                     ? care::worker::ServiceOptionsFromFlags(*flags)
                     : absl::StatusOr<care::worker::ServiceOptions>(check);
  if (!options.ok()) {
    std::cerr << "care_eval_worker: " << options.status().message() << "\n";
    return 2;
  }
  care::testing::PerplexityRunner runner(options->threads);
  return care::worker::Serve(*options, runner);
}

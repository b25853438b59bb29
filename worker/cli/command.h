// care-worker subcommands. Each lives in its own <name>_command.cc and
// registers itself with CARE_REGISTER_COMMAND; main.cc dispatches on argv[1].
#ifndef CARE_WORKER_CLI_COMMAND_H_
#define CARE_WORKER_CLI_COMMAND_H_

#include <string>
#include <vector>

namespace care::cli {

// Returns the process exit status: 0 success, 1 the operation failed,
// 2 usage error. Prints one clear line on stderr on failure.
using CommandFn = int (*)(const std::vector<std::string>& args);

struct Command {
  const char* name;
  const char* summary;  // One line for `care-worker help`.
  const char* usage;    // Full usage text.
  CommandFn run;
};

// Called from static initializers; returns true so it can initialize a bool.
bool RegisterCommand(const Command& command);
const std::vector<Command>& Commands();

}  // namespace care::cli

#define CARE_REGISTER_COMMAND(ident, ...)             \
  static const bool care_command_registered_##ident = \
      ::care::cli::RegisterCommand(::care::cli::Command{__VA_ARGS__})

#endif  // CARE_WORKER_CLI_COMMAND_H_

#include "client/command_support.h"

#include <iostream>

#include "care/util/status_macros.h"
#include "client/cli.h"

namespace care::client {

absl::StatusOr<CommandSetup> SetupCommand(
    const std::vector<std::string>& args, const std::set<std::string>& valued,
    const std::set<std::string>& boolean) {
  std::set<std::string> bools = ConnectionBoolFlagNames();
  bools.insert(boolean.begin(), boolean.end());
  std::set<std::string> known = ConnectionFlagNames();
  known.insert(valued.begin(), valued.end());
  known.insert(bools.begin(), bools.end());

  CommandSetup setup;
  CARE_ASSIGN_OR_RETURN(setup.flags, Flags::Parse(args, bools));
  CARE_RETURN_IF_ERROR(setup.flags.CheckKnown(known));
  CARE_ASSIGN_OR_RETURN(
      setup.output, ParseOutputFormat(setup.flags.StringOr("output", "table")));
  CARE_ASSIGN_OR_RETURN(ConnectionOptions options,
                        ConnectionOptionsFromFlags(setup.flags));
  CARE_ASSIGN_OR_RETURN(setup.connection, Connection::Open(options));
  return setup;
}

int UsageError(const char* command, const absl::Status& status) {
  std::cerr << "carectl " << command << ": " << status.message()
            << "\n(see carectl help " << command << ")\n";
  return kExitUsage;
}

}  // namespace care::client

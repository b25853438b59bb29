// What every carectl subcommand does first: parse its flags (plus the
// connection flags), pick the output format, and open the connection.
#ifndef CARE_CLIENT_COMMAND_SUPPORT_H_
#define CARE_CLIENT_COMMAND_SUPPORT_H_

#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "base/flags.h"
#include "client/connection.h"
#include "client/format.h"

namespace care::client {

struct CommandSetup {
  Flags flags;
  OutputFormat output = OutputFormat::kTable;
  std::unique_ptr<Connection> connection;
};

// `valued`/`boolean`: the command's own flags. Unknown flags, a bad
// --output or an unreadable token file are InvalidArgument/NotFound.
absl::StatusOr<CommandSetup> SetupCommand(const std::vector<std::string>& args,
                                          const std::set<std::string>& valued,
                                          const std::set<std::string>& boolean);

// Every argument ends up in a proto3 string, which the server cannot parse
// when it is not UTF-8 (gRPC would answer a bare INTERNAL): InvalidArgument
// naming the flag or argument when one is not valid UTF-8.
absl::Status CheckArgumentsUtf8(const std::vector<std::string>& args);

// Prints "carectl <command>: <message>" and the usage hint; returns
// kExitUsage.
int UsageError(const char* command, const absl::Status& status);

}  // namespace care::client

#endif  // CARE_CLIENT_COMMAND_SUPPORT_H_

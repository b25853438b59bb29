// carectl subcommands and the exit codes they share (docs/carectl.md).
#ifndef CARE_CLIENT_CLI_H_
#define CARE_CLIENT_CLI_H_

#include <cstdint>
#include <string>
#include <vector>

namespace care::client {

// Exit codes. A watched job's outcome maps to 0/1/2; every other command
// returns 0 on success, 1 when the server refused the request (not found,
// already exists, ...), 3 on usage, connection or authentication errors.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailed = 1;
inline constexpr int kExitCancelled = 2;
inline constexpr int kExitUsage = 3;

// Each takes the arguments after the subcommand name.
int RunSubmit(const std::vector<std::string>& args);
int RunGet(const std::vector<std::string>& args);
int RunList(const std::vector<std::string>& args);
int RunWatch(const std::vector<std::string>& args);
int RunCancel(const std::vector<std::string>& args);
int RunEvents(const std::vector<std::string>& args);
int RunHealth(const std::vector<std::string>& args);
int RunWorkers(const std::vector<std::string>& args);
int RunReport(const std::vector<std::string>& args);

// Watches `job_id` until it is terminal; shared by `watch` and
// `submit --wait`. Returns the exit code of the outcome.
class Connection;
struct WatchOptions {
  bool json = false;          // One JSON event per line.
  bool progress_bar = false;  // Live bar (a terminal) instead of plain lines.
  int64_t after_sequence = 0;
};
int WatchJob(Connection& connection, const std::string& job_id,
             const WatchOptions& options);

}  // namespace care::client

#endif  // CARE_CLIENT_CLI_H_

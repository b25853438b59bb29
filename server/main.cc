// care-server: the job service. Prints "listening grpc=HOST:PORT
// metrics=HOST:PORT" on stdout once every port is bound, logs to stderr,
// and drains on SIGTERM/SIGINT. Exit codes: 0 clean stop, 1 startup
// failure, 2 bad command line.
#include <pthread.h>
#include <signal.h>

#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "server/config.h"
#include "server/log.h"
#include "server/server.h"

int main(int argc, char** argv) {
  using care::server::Log;
  using care::server::LogLevel;
  std::vector<std::string> args(argv + 1, argv + argc);
  absl::StatusOr<care::server::ServerConfig> config =
      care::server::ParseServerConfig(args);
  if (!config.ok()) {
    std::fprintf(stderr, "care-server: %s\n\n%s",
                 std::string(config.status().message()).c_str(),
                 care::server::Usage().c_str());
    return 2;
  }
  if (config->help) {
    std::fputs(care::server::Usage().c_str(), stdout);
    return 0;
  }
  // Block the stop signals in every thread (gRPC's included, so mask before
  // any starts) and take them synchronously below.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);
  signal(SIGPIPE, SIG_IGN);

  auto server = care::server::CareServer::Start(*config);
  if (!server.ok()) {
    Log(LogLevel::kError, "startup failed",
        {{"error", std::string(server.status().message())}});
    return 1;
  }
  std::printf("listening grpc=%s metrics=%s\n",
              (*server)->grpc_address().c_str(),
              (*server)->metrics_address().c_str());
  std::fflush(stdout);

  int signal_number = 0;
  sigwait(&stop, &signal_number);
  Log(LogLevel::kInfo, "stop signal",
      {{"signal", signal_number == SIGTERM ? "SIGTERM" : "SIGINT"}});
  (*server)->Shutdown();
  return 0;
}

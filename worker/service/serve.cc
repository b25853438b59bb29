#include "service/serve.h"

#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <cstdio>
#include <iostream>
#include <thread>

#include "service/metrics.h"
#include "service/worker.h"

namespace care::worker {

int Serve(const ServiceOptions& options, JobRunner& runner) {
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  auto metrics = WorkerMetrics::Create(options.metrics_listen);
  if (!metrics.ok()) {
    std::cerr << "care-worker serve: " << metrics.status().message() << "\n";
    return 1;
  }
  auto channel = CreateServerChannel(options);
  if (!channel.ok()) {
    std::cerr << "care-worker serve: " << channel.status().message() << "\n";
    return 1;
  }
  Worker worker(options, *channel, runner, metrics->get());

  // Signals are taken synchronously on this thread; a timeout lets it end
  // when Serve returns on its own (--max-jobs).
  std::atomic<bool> done{false};
  std::thread signals([&] {
    timespec tick{0, 200 * 1000 * 1000};
    while (!done.load()) {
      int number = sigtimedwait(&stop_signals, nullptr, &tick);
      if (number == SIGTERM || number == SIGINT) {
        std::cerr << "care-worker: "
                  << (number == SIGTERM ? "SIGTERM" : "SIGINT")
                  << ": stopping after the current layer\n";
        worker.Stop();
        return;
      }
    }
  });

  std::printf(
      "serving worker=%s metrics=%s\n", options.worker_id.c_str(),
      (*metrics)->address().empty() ? "-" : (*metrics)->address().c_str());
  std::fflush(stdout);
  absl::Status status = worker.Serve();
  done.store(true);
  signals.join();
  if (!status.ok()) {
    std::cerr << "care-worker serve: " << status.message() << "\n";
    return 1;
  }
  return 0;
}

}  // namespace care::worker

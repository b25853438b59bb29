// carectl watch JOB_ID: follow a job's events until it is terminal. A live
// progress bar on a terminal, plain lines otherwise (logs, CI), JSON lines
// with --output json. The exit code mirrors the outcome. The stream is
// re-opened after the last seen event when the server goes away briefly.
#include <unistd.h>

#include <iostream>
#include <thread>

#include "client/cli.h"
#include "client/command_support.h"

namespace care::client {

namespace {

// How long the server may stay unreachable before watch gives up.
constexpr absl::Duration kReconnectWindow = absl::Seconds(60);
constexpr int kBarWidth = 30;

absl::Time ToTime(const google::protobuf::Timestamp& t) {
  return absl::FromUnixSeconds(t.seconds()) + absl::Nanoseconds(t.nanos());
}

// Draws events; keeps the bar on the last terminal line.
class Renderer {
 public:
  explicit Renderer(const WatchOptions& options) : options_(options) {}

  void Event(const care::v1::JobEvent& event) {
    if (options_.json) {
      std::cout << ToJson(event, /*pretty=*/false) << "\n" << std::flush;
      return;
    }
    if (!options_.progress_bar) {
      std::cout << FormatEventLine(event) << "\n" << std::flush;
      return;
    }
    // Progress restarts with every attempt: so does the ETA's baseline.
    if (event.attempt() != attempt_) {
      attempt_ = event.attempt();
      anchor_.reset();
    }
    if (event.has_progress() &&
        event.progress().stage() != care::v1::STAGE_UNSPECIFIED) {
      progress_ = event.progress();
      absl::Time when = ToTime(event.time());
      if (!anchor_) anchor_ = {progress_.fraction(), when};
      remaining_ = EstimateRemaining(anchor_->first, anchor_->second,
                                     progress_.fraction(), when);
    }
    // Progress ticks only move the bar; everything else leaves a line.
    if (event.type() != care::v1::EVENT_TYPE_PROGRESS) {
      ClearBar();
      std::cout << FormatEventLine(event) << "\n";
    }
    if (progress_.stage() != care::v1::STAGE_UNSPECIFIED &&
        !IsTerminal(event.state())) {
      std::cout << "\r\033[K"
                << FormatProgressBar(progress_, remaining_, kBarWidth);
      bar_shown_ = true;
    }
    std::cout << std::flush;
  }

  void ClearBar() {
    if (bar_shown_) std::cout << "\r\033[K" << std::flush;
    bar_shown_ = false;
  }

 private:
  WatchOptions options_;
  int attempt_ = -1;
  care::v1::Progress progress_;
  std::optional<std::pair<double, absl::Time>> anchor_;
  std::optional<absl::Duration> remaining_;
  bool bar_shown_ = false;
};

int OutcomeExitCode(care::v1::JobState state) {
  switch (state) {
    case care::v1::JOB_STATE_SUCCEEDED:
      return kExitOk;
    case care::v1::JOB_STATE_FAILED:
      return kExitFailed;
    case care::v1::JOB_STATE_CANCELLED:
      return kExitCancelled;
    default:
      return kExitUsage;
  }
}

bool Retryable(const grpc::Status& status) {
  return status.error_code() == grpc::StatusCode::UNAVAILABLE ||
         status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED;
}

}  // namespace

int WatchJob(Connection& connection, const std::string& job_id,
             const WatchOptions& options) {
  Renderer renderer(options);
  int64_t last_sequence = options.after_sequence;
  std::optional<absl::Time> failing_since;
  absl::Duration backoff = absl::Milliseconds(200);
  while (true) {
    auto context = connection.NewContext(/*streaming=*/true);
    care::v1::WatchJobRequest request;
    request.set_job_id(job_id);
    request.set_after_sequence(last_sequence);
    auto reader = connection.stub().WatchJob(context.get(), request);
    care::v1::JobEvent event;
    while (reader->Read(&event)) {
      failing_since.reset();
      backoff = absl::Milliseconds(200);
      // Replays after a reconnect may repeat what was already shown.
      if (event.sequence() <= last_sequence) continue;
      last_sequence = event.sequence();
      renderer.Event(event);
    }
    grpc::Status status = reader->Finish();
    care::v1::Job job;
    if (status.ok()) {
      // The stream ends at a terminal state; GetJob has the final record.
      care::v1::GetJobRequest get;
      get.set_job_id(job_id);
      auto get_context = connection.NewContext(/*streaming=*/false);
      status = connection.stub().GetJob(get_context.get(), get, &job);
      if (status.ok() && IsTerminal(job.state())) {
        renderer.ClearBar();
        if (!options.json) std::cout << FormatOutcomeLine(job) << "\n";
        std::cout << std::flush;
        return OutcomeExitCode(job.state());
      }
      // Ended early (server draining): reconnect like after an outage.
      if (status.ok())
        status = grpc::Status(grpc::StatusCode::UNAVAILABLE,
                              "watch stream ended early");
    }
    if (!Retryable(status)) {
      renderer.ClearBar();
      std::cerr << connection.Describe(absl::StrCat("watch ", job_id), status)
                << "\n";
      return kExitUsage;
    }
    absl::Time now = absl::Now();
    if (!failing_since) failing_since = now;
    if (now - *failing_since > kReconnectWindow) {
      renderer.ClearBar();
      std::cerr << connection.Describe(absl::StrCat("watch ", job_id), status)
                << " (gave up after " << absl::FormatDuration(kReconnectWindow)
                << ")\n";
      return kExitUsage;
    }
    std::this_thread::sleep_for(absl::ToChronoMilliseconds(backoff));
    backoff = std::min(backoff * 2, absl::Seconds(5));
    connection.ReconnectIfFailing();
  }
}

int RunWatch(const std::vector<std::string>& args) {
  auto setup = SetupCommand(args, {"after"}, {"plain"});
  if (!setup.ok()) return UsageError("watch", setup.status());
  const Flags& flags = setup->flags;
  if (flags.positionals().size() != 1) {
    return UsageError(
        "watch", absl::InvalidArgumentError("expected exactly one JOB_ID"));
  }
  auto after = flags.IntOr("after", 0);
  if (!after.ok()) return UsageError("watch", after.status());
  WatchOptions options;
  options.json = setup->output == OutputFormat::kJson;
  options.progress_bar =
      !options.json && !flags.Bool("plain") && isatty(STDOUT_FILENO);
  options.after_sequence = *after;
  return WatchJob(*setup->connection, flags.positionals()[0], options);
}

}  // namespace care::client

#include "service/heartbeat.h"

#include <algorithm>
#include <iostream>
#include <memory>
#include <thread>

#include "absl/strings/str_cat.h"

namespace care::worker {

Heartbeat::Heartbeat(ServerChannel& server, LeaseIdentity lease,
                     absl::Duration lease_length, absl::Duration interval,
                     absl::Duration min_spacing, CancelToken& cancel,
                     WorkerMetrics* metrics)
    : server_(server),
      lease_(std::move(lease)),
      lease_length_(lease_length),
      interval_(interval),
      min_spacing_(min_spacing),
      cancel_(cancel),
      metrics_(metrics) {
  stage_start_ = absl::Now();
  lease_deadline_ = stage_start_ + lease_length_;
}

Heartbeat::~Heartbeat() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Heartbeat::Start() {
  thread_ = std::thread([this] { Loop(); });
}

void Heartbeat::Finish(bool completed) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
    // A completed job finished every layer of its last stage.
    if (completed) CountLayers(progress_.layer_count());
    // The last stage's time ends now.
    if (metrics_ != nullptr) {
      metrics_->AddStageSeconds(
          progress_.stage(), absl::ToDoubleSeconds(absl::Now() - stage_start_));
    }
    stage_start_ = absl::Now();
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
  if (!cancel_.Has(CancelToken::kLeaseLost)) SendOnce();
}

void Heartbeat::AccountStage(const care::v1::Progress& next, absl::Time now) {
  const bool new_stage = next.stage() != progress_.stage();
  // The pipeline leaves a stage only when all of its layers are done; within
  // a stage, every layer before the reported one is done.
  CountLayers(new_stage ? progress_.layer_count() : next.layer());
  if (new_stage) {
    layers_counted_ = 0;
    if (metrics_ != nullptr &&
        progress_.stage() != care::v1::STAGE_UNSPECIFIED) {
      metrics_->AddStageSeconds(progress_.stage(),
                                absl::ToDoubleSeconds(now - stage_start_));
    }
    stage_start_ = now;
    urgent_ = true;
  }
}

void Heartbeat::CountLayers(int64_t done) {
  for (; layers_counted_ < done; ++layers_counted_) {
    if (metrics_ != nullptr) metrics_->LayerProcessed(progress_.stage());
  }
}

void Heartbeat::Report(const care::v1::Progress& progress) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    AccountStage(progress, absl::Now());
    progress_ = progress;
    CountLayers(progress_.layer());
  }
  wake_.notify_all();
}

void Heartbeat::LayerDone(const care::v1::LayerReport& layer) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    pending_layers_.push_back(layer);
    urgent_ = true;
  }
  wake_.notify_all();
}

void Heartbeat::StageCompute(care::v1::Stage stage, double flops,
                             double seconds) {
  std::lock_guard<std::mutex> lock(mu_);
  if (stage != compute_stage_) {
    compute_stage_ = stage;
    flops_counted_ = 0;
  }
  if (metrics_ != nullptr) {
    metrics_->AddStageFlops(stage, flops - flops_counted_);
    if (flops > 0 && seconds > 0) {
      metrics_->SetAchievedGflops(stage, flops / seconds / 1e9);
    }
  }
  flops_counted_ = std::max(flops_counted_, flops);
}

care::v1::Progress Heartbeat::progress() const {
  std::lock_guard<std::mutex> lock(mu_);
  return progress_;
}

int Heartbeat::sent() const {
  std::lock_guard<std::mutex> lock(mu_);
  return sent_;
}

bool Heartbeat::LeaseLapsed(absl::Time now) const {
  return now >= lease_deadline_;
}

void Heartbeat::Renewed(absl::Time sent) {
  lease_deadline_ = std::max(lease_deadline_, sent + lease_length_);
}

namespace {

std::unique_ptr<grpc::ClientContext> CallContext(const std::string& token,
                                                 absl::Duration timeout) {
  auto context = std::make_unique<grpc::ClientContext>();
  context->AddMetadata("authorization", absl::StrCat("Bearer ", token));
  context->set_deadline(absl::ToChronoTime(
      absl::Now() +
      std::clamp(timeout, absl::Milliseconds(100), absl::Seconds(10))));
  return context;
}

bool Fenced(const grpc::Status& status) {
  return status.error_code() == grpc::StatusCode::FAILED_PRECONDITION ||
         status.error_code() == grpc::StatusCode::NOT_FOUND;
}

}  // namespace

void Heartbeat::Loop() {
  // The first heartbeat goes out at once: leasing may have taken a while,
  // and it tells the server the worker is alive.
  absl::Time last = absl::InfinitePast();
  while (true) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      while (!stop_) {
        const absl::Time now = absl::Now();
        if (LeaseLapsed(now)) break;
        absl::Time due = last + interval_;
        if (urgent_) due = std::min(due, last + min_spacing_);
        if (now >= due) break;
        // Report/LayerDone/Finish notify: a stage change may shorten it.
        wake_.wait_until(lock,
                         absl::ToChronoTime(std::min(due, lease_deadline_)));
      }
      if (stop_) return;
      if (LeaseLapsed(absl::Now())) {
        std::cerr << "care-worker: could not renew the lease of "
                  << lease_.job_id << " attempt " << lease_.attempt
                  << " before its deadline; stopping the job (another "
                     "worker may hold it now)\n";
        cancel_.Cancel(CancelToken::kLeaseLost);
        return;
      }
      urgent_ = false;
    }
    last = absl::Now();
    SendOnce();
    if (cancel_.Has(CancelToken::kLeaseLost)) return;
  }
}

void Heartbeat::SendOnce() {
  std::lock_guard<std::mutex> send_lock(send_mu_);
  care::v1::HeartbeatRequest request;
  request.set_worker_id(lease_.worker_id);
  request.set_job_id(lease_.job_id);
  request.set_attempt(lease_.attempt);
  std::vector<care::v1::LayerReport> layers;
  absl::Duration left;
  {
    std::lock_guard<std::mutex> lock(mu_);
    *request.mutable_progress() = progress_;
    layers.swap(pending_layers_);
    left = lease_deadline_ - absl::Now();
  }
  for (const auto& layer : layers) *request.add_layers() = layer;
  if (metrics_ != nullptr) metrics_->UpdatePeakRss();

  // A call that would end after the lease is of no use: bound it by it.
  const absl::Time sent = absl::Now();
  auto context = CallContext(lease_.token, left);
  care::v1::HeartbeatResponse response;
  grpc::Status status =
      server_.stub()->Heartbeat(context.get(), request, &response);
  if (status.ok()) {
    std::lock_guard<std::mutex> lock(mu_);
    ++sent_;
    Renewed(sent);
    if (response.cancel_requested()) {
      cancel_.Cancel(CancelToken::kCancelRequested);
    }
    return;
  }
  if (Fenced(status)) {
    // The lease expired and the job moved on (or ended).
    std::cerr << "care-worker: lost the lease of " << lease_.job_id
              << " attempt " << lease_.attempt << ": " << status.error_message()
              << "\n";
    cancel_.Cancel(CancelToken::kLeaseLost);
    return;
  }
  // Transient: keep the layers for the next try, and reconnect the way the
  // lease loop does (a channel in transient failure would keep failing).
  server_.ReconnectIfFailing();
  std::lock_guard<std::mutex> lock(mu_);
  pending_layers_.insert(pending_layers_.begin(), layers.begin(), layers.end());
  std::cerr << "care-worker: heartbeat of " << lease_.job_id
            << " failed (will retry): " << status.error_message() << "\n";
}

absl::Status Heartbeat::ConfirmCommit(const std::string& output) {
  std::lock_guard<std::mutex> send_lock(send_mu_);
  care::v1::CommitOutputRequest request;
  request.set_worker_id(lease_.worker_id);
  request.set_job_id(lease_.job_id);
  request.set_attempt(lease_.attempt);
  while (true) {
    absl::Duration left;
    {
      std::lock_guard<std::mutex> lock(mu_);
      left = lease_deadline_ - absl::Now();
    }
    if (cancel_.Has(CancelToken::kLeaseLost) || left <= absl::ZeroDuration()) {
      if (!cancel_.Has(CancelToken::kLeaseLost)) {
        std::cerr << "care-worker: could not renew the lease of "
                  << lease_.job_id << " attempt " << lease_.attempt
                  << " before its deadline; not publishing " << output << "\n";
      }
      cancel_.Cancel(CancelToken::kLeaseLost);
      return absl::FailedPreconditionError(
          absl::StrCat("attempt ", lease_.attempt,
                       " no longer holds the lease; not publishing ", output));
    }
    const absl::Time sent = absl::Now();
    auto context = CallContext(lease_.token, left);
    care::v1::CommitOutputResponse response;
    grpc::Status status =
        server_.stub()->CommitOutput(context.get(), request, &response);
    if (status.error_code() == grpc::StatusCode::UNIMPLEMENTED) {
      // A server older than CommitOutput: a heartbeat is fenced the same
      // way (current attempt, this worker) and renews the lease too.
      care::v1::HeartbeatRequest beat;
      beat.set_worker_id(lease_.worker_id);
      beat.set_job_id(lease_.job_id);
      beat.set_attempt(lease_.attempt);
      auto beat_context = CallContext(lease_.token, left);
      care::v1::HeartbeatResponse answer;
      status = server_.stub()->Heartbeat(beat_context.get(), beat, &answer);
      response.set_granted(!answer.cancel_requested());
    }
    if (status.ok()) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        Renewed(sent);
      }
      if (response.granted()) return absl::OkStatus();
      cancel_.Cancel(CancelToken::kCancelRequested);
      return absl::CancelledError(
          absl::StrCat("cancel requested; not publishing ", output));
    }
    if (Fenced(status)) {
      std::cerr << "care-worker: the server refused the output commit of "
                << lease_.job_id << " attempt " << lease_.attempt << ": "
                << status.error_message() << "\n";
      cancel_.Cancel(CancelToken::kLeaseLost);
      return absl::FailedPreconditionError(absl::StrCat(
          "the server refused the commit: ", status.error_message()));
    }
    // Transient: retry (with a fresh channel) until the lease runs out.
    server_.ReconnectIfFailing();
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
}

}  // namespace care::worker

#include "service/heartbeat.h"

#include <algorithm>
#include <iostream>

#include "absl/strings/str_cat.h"

namespace care::worker {

Heartbeat::Heartbeat(care::v1::WorkerService::Stub& stub, LeaseIdentity lease,
                     absl::Duration interval, absl::Duration min_spacing,
                     CancelToken& cancel, WorkerMetrics* metrics)
    : stub_(stub),
      lease_(std::move(lease)),
      interval_(interval),
      min_spacing_(min_spacing),
      cancel_(cancel),
      metrics_(metrics) {
  stage_start_ = absl::Now();
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

void Heartbeat::Loop() {
  // The first heartbeat goes out at once: leasing may have taken a while,
  // and it tells the server the worker is alive.
  absl::Time last = absl::InfinitePast();
  while (true) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      while (!stop_) {
        absl::Time due = last + interval_;
        if (urgent_) due = std::min(due, last + min_spacing_);
        if (absl::Now() >= due) break;
        // Report/LayerDone/Finish notify: a stage change may shorten it.
        wake_.wait_until(lock, absl::ToChronoTime(due));
      }
      if (stop_) return;
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
  {
    std::lock_guard<std::mutex> lock(mu_);
    *request.mutable_progress() = progress_;
    layers.swap(pending_layers_);
  }
  for (const auto& layer : layers) *request.add_layers() = layer;
  if (metrics_ != nullptr) metrics_->UpdatePeakRss();

  grpc::ClientContext context;
  context.AddMetadata("authorization", absl::StrCat("Bearer ", lease_.token));
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::seconds(10));
  care::v1::HeartbeatResponse response;
  grpc::Status status = stub_.Heartbeat(&context, request, &response);
  if (status.ok()) {
    std::lock_guard<std::mutex> lock(mu_);
    ++sent_;
    if (response.cancel_requested()) {
      cancel_.Cancel(CancelToken::kCancelRequested);
    }
    return;
  }
  switch (status.error_code()) {
    case grpc::StatusCode::FAILED_PRECONDITION:
    case grpc::StatusCode::NOT_FOUND:
      // Fenced: the lease expired and the job moved on (or ended).
      std::cerr << "care-worker: lost the lease of " << lease_.job_id
                << " attempt " << lease_.attempt << ": "
                << status.error_message() << "\n";
      cancel_.Cancel(CancelToken::kLeaseLost);
      break;
    default: {
      // Transient: keep the layers for the next try; the lease has slack.
      std::lock_guard<std::mutex> lock(mu_);
      pending_layers_.insert(pending_layers_.begin(), layers.begin(),
                             layers.end());
      std::cerr << "care-worker: heartbeat of " << lease_.job_id
                << " failed (will retry): " << status.error_message() << "\n";
    }
  }
}

}  // namespace care::worker

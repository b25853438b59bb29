// The heartbeat of one leased job: a thread that renews the lease at a
// bounded interval (and soon after a stage change), carries the latest
// progress and finished layers, and turns the server's answer into the
// runner's CancelToken (cancel requested, or the lease lost to another
// attempt). It is also the runner's ProgressSink (including the fenced
// output commit, ConfirmCommit), and feeds the metrics.
//
// The lease is only as good as its last renewal: when no heartbeat has
// succeeded by the lease deadline (measured on this host's clock from the
// moment the renewing request was sent), the job is stopped as lost
// (kLeaseLost): the server may already have handed it to someone else, and
// a stale attempt must neither publish nor delete shared state.
#ifndef CARE_WORKER_SERVICE_HEARTBEAT_H_
#define CARE_WORKER_SERVICE_HEARTBEAT_H_

#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/time.h"
#include "care/v1/worker_service.grpc.pb.h"
#include "service/job_runner.h"
#include "service/metrics.h"
#include "service/server_channel.h"

namespace care::worker {

struct LeaseIdentity {
  std::string worker_id;
  std::string job_id;
  int attempt = 0;
  std::string token;  // Bearer token for the calls.
};

class Heartbeat : public ProgressSink {
 public:
  // `interval` is the longest gap between heartbeats; `min_spacing` the
  // shortest between progress-driven ones. `metrics` may be null.
  // `lease_length`: how long each renewal extends the lease (the server's
  // --lease-seconds); the first lease counts from now.
  Heartbeat(ServerChannel& server, LeaseIdentity lease,
            absl::Duration lease_length, absl::Duration interval,
            absl::Duration min_spacing, CancelToken& cancel,
            WorkerMetrics* metrics);
  ~Heartbeat() override;

  void Start();
  // Stops the thread and, unless the lease was lost, sends one last
  // heartbeat so every finished layer reaches the server before the job's
  // final write. `completed`: the runner finished its last layer too.
  void Finish(bool completed);

  void Report(const care::v1::Progress& progress) override;
  void LayerDone(const care::v1::LayerReport& layer) override;
  void StageCompute(care::v1::Stage stage, double flops,
                    double seconds) override;

  absl::Status ConfirmCommit(const std::string& output) override;

  care::v1::Progress progress() const;
  int sent() const;

 private:
  void Loop();
  // One Heartbeat RPC with the pending state.
  void SendOnce();
  // Past the lease deadline without a renewal: the job is lost (mu_ held).
  bool LeaseLapsed(absl::Time now) const;
  // Records a renewal sent at `sent`: the server set its deadline to its
  // now + lease_length_, and its now was after `sent`; so sent +
  // lease_length_ is a safe local deadline, whatever the clocks' skew.
  void Renewed(absl::Time sent);
  // Metrics of a progress change; mu_ held.
  void AccountStage(const care::v1::Progress& next, absl::Time now);
  // Counts layers [layers_counted_, done) of the current stage (mu_ held).
  void CountLayers(int64_t done);

  ServerChannel& server_;
  const LeaseIdentity lease_;
  const absl::Duration lease_length_;
  const absl::Duration interval_;
  const absl::Duration min_spacing_;
  CancelToken& cancel_;
  WorkerMetrics* metrics_;

  // Guards everything below but send_mu_ and thread_.
  mutable std::mutex mu_;
  std::condition_variable wake_;
  care::v1::Progress progress_;
  // Layers of progress_.stage() already counted in the layers metric.
  int64_t layers_counted_ = 0;
  std::vector<care::v1::LayerReport> pending_layers_;
  bool urgent_ = false;  // Stage changed or layers pending.
  bool stop_ = false;
  int sent_ = 0;
  absl::Time lease_deadline_;  // Local clock.
  absl::Time stage_start_;
  // The stage whose cumulative FLOPs StageCompute last saw, and how many of
  // them are already in the counter.
  care::v1::Stage compute_stage_ = care::v1::STAGE_UNSPECIFIED;
  double flops_counted_ = 0;
  std::mutex send_mu_;  // One RPC at a time (thread and Finish).
  std::thread thread_;
};

}  // namespace care::worker

#endif  // CARE_WORKER_SERVICE_HEARTBEAT_H_

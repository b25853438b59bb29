// care-worker serve: lease conversion jobs from care-server and run them
// with the CARE pipeline (docs/worker.md).
//
// Two processes: `care-worker serve` execs care-worker-service (the gRPC
// side, worker/service/), which runs each job as a child
// `care-worker serve --run-job` (this file's pipeline mode). They are split
// because Debian's SentencePiece and libprotobuf cannot share a process
// (worker/service/subprocess_runner.h). This binary never links protobuf.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "care/compute/registry.h"
#include "care/convert/pipeline.h"
#include "care/convert/write_checkpoint.h"
#include "cli/command.h"

namespace care::cli {
namespace {

constexpr char kUsage[] =
    "usage: care-worker serve --server HOST:PORT --token-file FILE\n"
    "         [--worker-id ID] [--threads N] [--work-dir DIR]\n"
    "         [--metrics-listen HOST:PORT]\n"
    "         [--device cpu|cuda[:N]] [--tls | --tls-ca FILE]\n"
    "         [--heartbeat-ms N]\n"
    "         [--lease-wait-ms N] [--backoff-max-ms N] [--max-jobs N]\n"
    "\n"
    "Leases jobs from care-server, converts them, heartbeats progress, and\n"
    "reports the result (docs/worker.md). SIGTERM/SIGINT: stop leasing, stop\n"
    "the running job at its next layer boundary and release it.\n"
    "  --server HOST:PORT      care-server gRPC address\n"
    "  --token-file FILE       worker bearer token\n"
    "  --worker-id ID          identity in leases (default hostname:pid)\n"
    "  --threads N             OpenMP/Eigen threads (default: all cores)\n"
    "  --work-dir DIR          scratch space: each job runs in its own\n"
    "                          directory below it (cwd, TMPDIR), removed "
    "after\n"
    "  --metrics-listen A      serve Prometheus /metrics here (port 0 = any)\n"
    "  --device D              cpu (default), cuda (= cuda:0) or cuda:N: the\n"
    "                          device jobs run on; checked at startup (no\n"
    "                          usable device: exit 2) and advertised to\n"
    "                          the server, which routes jobs by it\n"
    "  --tls, --tls-ca FILE    TLS (system roots, or these PEM roots)\n"
    "  --heartbeat-ms N        longest gap between heartbeats (default 5000;\n"
    "                          also at most a third of the lease)\n"
    "  --lease-wait-ms N       LeaseJob long-poll wait (default 20000)\n"
    "  --backoff-max-ms N      cap of the retry backoff while the server is\n"
    "                          unreachable (default 30000, with jitter)\n"
    "  --max-jobs N            exit after N jobs (default 0 = never)\n"
    "The gRPC side is the care-worker-service binary, found through\n"
    "$CARE_WORKER_SERVICE or next to this one.\n";

std::atomic<bool> g_stop{false};
void OnStopSignal(int) { g_stop.store(true); }

// Reads `key` as T when present; InvalidArgument naming it when mistyped.
template <typename T>
absl::Status Read(const nlohmann::json& o, const char* key, T* out) {
  auto it = o.find(key);
  if (it == o.end()) return absl::OkStatus();
  const bool ok = std::is_same_v<T, bool>          ? it->is_boolean()
                  : std::is_same_v<T, std::string> ? it->is_string()
                                                   : it->is_number();
  if (!ok) {
    return absl::InvalidArgumentError(
        absl::StrCat("job options: field '", key, "' has the wrong type"));
  }
  *out = it->get<T>();
  return absl::OkStatus();
}

absl::StatusOr<convert::ConvertOptions> OptionsFromJson(
    const std::string& text) {
  nlohmann::json o = nlohmann::json::parse(text, nullptr, false);
  if (o.is_discarded() || !o.is_object()) {
    return absl::InvalidArgumentError("job options: not a JSON object");
  }
  convert::ConvertOptions c;
  CARE_RETURN_IF_ERROR(Read(o, "model", &c.model));
  CARE_RETURN_IF_ERROR(Read(o, "output_dir", &c.output_dir));
  CARE_RETURN_IF_ERROR(Read(o, "overwrite", &c.overwrite));
  auto budget = o.find("budget");
  if (budget == o.end() || !budget->is_object()) {
    return absl::InvalidArgumentError("job options: 'budget' missing");
  }
  if (budget->contains("rank")) {
    int64_t rank = 0;
    CARE_RETURN_IF_ERROR(Read(*budget, "rank", &rank));
    c.budget = convert::Budget::Rank(rank);
  } else {
    double save = 0;
    CARE_RETURN_IF_ERROR(Read(*budget, "kv_save", &save));
    c.budget = convert::Budget::KvSave(save);
  }
  // Absent fields keep ConvertOptions' defaults (pipeline.h).
  if (o.contains("method")) {
    std::string method;
    CARE_RETURN_IF_ERROR(Read(o, "method", &method));
    CARE_ASSIGN_OR_RETURN(c.method, convert::ParseMethod(method));
  }
  if (o.contains("allocation")) {
    std::string allocation;
    CARE_RETURN_IF_ERROR(Read(o, "allocation", &allocation));
    CARE_ASSIGN_OR_RETURN(c.allocation,
                          convert::ParseAllocationStrategy(allocation));
  }
  CARE_RETURN_IF_ERROR(Read(o, "damping", &c.damping));
  CARE_RETURN_IF_ERROR(Read(o, "calib_data", &c.calib_data));
  CARE_RETURN_IF_ERROR(Read(o, "calib_samples", &c.calib_samples));
  CARE_RETURN_IF_ERROR(Read(o, "calib_seq_len", &c.calib_seq_len));
  CARE_RETURN_IF_ERROR(Read(o, "seed", &c.seed));
  CARE_RETURN_IF_ERROR(Read(o, "eval_data", &c.eval_data));
  CARE_RETURN_IF_ERROR(Read(o, "eval_seq_len", &c.eval_seq_len));
  CARE_RETURN_IF_ERROR(Read(o, "eval_windows", &c.eval_windows));
  CARE_RETURN_IF_ERROR(Read(o, "threads", &c.threads));
  CARE_RETURN_IF_ERROR(Read(o, "device", &c.device));
  CARE_RETURN_IF_ERROR(Read(o, "work_dir", &c.work_dir));
  CARE_RETURN_IF_ERROR(Read(o, "staging_tag", &c.staging_tag));
  CARE_RETURN_IF_ERROR(Read(o, "sequential", &c.sequential));
  // A job's Report carries the per-layer held-out errors: service jobs run
  // the held-out windows unless the options say otherwise.
  c.heldout_figures = true;
  CARE_RETURN_IF_ERROR(Read(o, "heldout_figures", &c.heldout_figures));
  CARE_RETURN_IF_ERROR(Read(o, "calib_text_field", &c.calib_text_field));
  CARE_RETURN_IF_ERROR(Read(o, "eval_text_field", &c.eval_text_field));
  CARE_RETURN_IF_ERROR(Read(o, "eval_prepend_bos", &c.eval_prepend_bos));
  CARE_RETURN_IF_ERROR(Read(o, "eval_rolling_stride", &c.eval_rolling_stride));
  CARE_RETURN_IF_ERROR(
      Read(o, "eval_rolling_documents", &c.eval_rolling_documents));
  if (auto tasks = o.find("eval_tasks"); tasks != o.end()) {
    if (!tasks->is_array()) {
      return absl::InvalidArgumentError(
          "job options: field 'eval_tasks' is not an array");
    }
    for (const nlohmann::json& t : *tasks) {
      if (!t.is_object()) {
        return absl::InvalidArgumentError(
            "job options: an 'eval_tasks' entry is not an object");
      }
      convert::TaskEvalSpec task;
      CARE_RETURN_IF_ERROR(Read(t, "name", &task.name));
      CARE_RETURN_IF_ERROR(Read(t, "path", &task.path));
      CARE_RETURN_IF_ERROR(Read(t, "format", &task.format));
      CARE_RETURN_IF_ERROR(Read(t, "limit", &task.limit));
      c.eval_tasks.push_back(std::move(task));
    }
  }
  std::string dtype = "source";
  CARE_RETURN_IF_ERROR(Read(o, "output_dtype", &dtype));
  CARE_ASSIGN_OR_RETURN(c.output_dtype, convert::ParseOutputDType(dtype));
  std::string layout = "latent";
  CARE_RETURN_IF_ERROR(Read(o, "layout", &layout));
  CARE_ASSIGN_OR_RETURN(c.output_layout, convert::ParseOutputLayout(layout));
  CARE_RETURN_IF_ERROR(Read(o, "rope_dim", &c.mla.rope_dim));
  CARE_RETURN_IF_ERROR(Read(o, "freqfold", &c.mla.freqfold));
  CARE_RETURN_IF_ERROR(Read(o, "kv_lora_rank", &c.mla.kv_lora_rank));
  CARE_RETURN_IF_ERROR(Read(o, "kv_balance", &c.mla.balance_kv));
  if (auto heal = o.find("heal"); heal != o.end() && heal->is_object()) {
    std::string mode = "none", inputs = "original";
    CARE_RETURN_IF_ERROR(Read(*heal, "mode", &mode));
    CARE_RETURN_IF_ERROR(Read(*heal, "inputs", &inputs));
    c.mla.heal = mode == "local";
    c.mla.heal_inputs_healed = inputs == "healed";
    CARE_RETURN_IF_ERROR(Read(*heal, "data", &c.mla.heal_data));
    CARE_RETURN_IF_ERROR(Read(*heal, "tokens", &c.mla.heal_tokens));
    CARE_RETURN_IF_ERROR(Read(*heal, "steps", &c.mla.heal_steps));
  }
  return c;
}

// The pipeline process: options on stdin, JSON lines on stdout.
int RunJobMain() {
  // Keep the protocol channel private: stray prints go to stderr.
  FILE* protocol = fdopen(dup(STDOUT_FILENO), "w");
  dup2(STDERR_FILENO, STDOUT_FILENO);
  if (protocol == nullptr) return 1;
  auto emit = [protocol](const nlohmann::json& line) {
    std::fputs((line.dump() + "\n").c_str(), protocol);
    std::fflush(protocol);
  };
  signal(SIGTERM, OnStopSignal);
  signal(SIGINT, OnStopSignal);

  // The options are the first line; stdin stays open for the answer to the
  // commit request.
  std::string text;
  std::getline(std::cin, text);
  absl::StatusOr<convert::ConversionReport> report;
  absl::StatusOr<convert::ConvertOptions> options = OptionsFromJson(text);
  if (options.ok()) {
    // Fenced commit: the output is renamed into place (and the resume state
    // removed) only once the service says the server confirmed that this
    // attempt still holds the job. No answer (the service died): nothing.
    options->before_publish = [&emit, &options]() -> absl::Status {
      emit({{"commit", {{"output", options->output_dir}}}});
      std::string answer;
      if (!std::getline(std::cin, answer)) {
        return absl::AbortedError(
            "output not published: the worker service did not answer the "
            "commit request");
      }
      nlohmann::json a = nlohmann::json::parse(answer, nullptr, false);
      if (a.is_object() && a.value("granted", false)) return absl::OkStatus();
      return absl::AbortedError(
          absl::StrCat("output not published: ",
                       a.is_object() ? a.value("reason", std::string("refused"))
                                     : std::string("malformed answer")));
    };
    auto on_progress = [&emit](const convert::ConvertProgress& p) {
      emit({{"progress",
             {{"stage", p.stage},
              {"step", p.step},
              {"total", p.total},
              {"overall", p.overall},
              {"flops", p.flops},
              {"seconds", p.seconds},
              {"resumed_layers", p.resumed_layers}}}});
    };
    report = convert::ConvertModel(*options, on_progress,
                                   [] { return g_stop.load(); });
  } else {
    report = options.status();
  }
  if (report.ok()) {
    emit({{"report", convert::ReportToJson(*report)}});
    return 0;
  }
  emit({{"error",
         {{"code", static_cast<int>(report.status().code())},
          {"message", std::string(report.status().message())}}}});
  return 1;
}

// The gRPC process: $CARE_WORKER_SERVICE, beside this binary, or (build
// tree) in ../service/.
std::string FindServiceBinary(const std::filesystem::path& self) {
  if (const char* env = std::getenv("CARE_WORKER_SERVICE"); env && *env) {
    return env;
  }
  for (const auto& candidate :
       {self.parent_path() / "care-worker-service",
        self.parent_path().parent_path() / "service" / "care-worker-service"}) {
    if (access(candidate.c_str(), X_OK) == 0) return candidate.string();
  }
  return "";
}

// The value of --device (last one wins, as in care::Flags); "cpu" if absent.
std::string DeviceFlag(const std::vector<std::string>& args) {
  std::string device = "cpu";
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--device" && i + 1 < args.size()) {
      device = args[++i];
    } else if (args[i].rfind("--device=", 0) == 0) {
      device = args[i].substr(9);
    }
  }
  return device;
}

int ServeMain(const std::vector<std::string>& args) {
  if (args.size() == 1 && args[0] == "--run-job") return RunJobMain();
  // A worker that cannot compute on its device must not lease jobs for it:
  // open the backend once here (this process has the compute library; the
  // service has not) and hand its name to the service to advertise.
  const std::string device = DeviceFlag(args);
  absl::StatusOr<std::unique_ptr<compute::Backend>> backend =
      compute::OpenBackend(device);
  if (!backend.ok()) {
    std::cerr << "care-worker serve: --device " << device << ": "
              << backend.status().message() << "\n";
    return 2;
  }
  const std::string device_name = (*backend)->name();
  backend->reset();  // Each job's pipeline process opens its own.
  std::error_code error;
  const std::filesystem::path self =
      std::filesystem::read_symlink("/proc/self/exe", error);
  const std::string service = error ? "" : FindServiceBinary(self);
  if (service.empty()) {
    std::cerr << "care-worker serve: cannot find care-worker-service (set "
                 "$CARE_WORKER_SERVICE or install it beside care-worker)\n";
    return 1;
  }
  std::vector<std::string> argv = {service};
  argv.insert(argv.end(), args.begin(), args.end());
  argv.push_back("--pipeline-exe=" + self.string());
  argv.push_back("--device-name=" + device_name);
  std::vector<char*> c_argv;
  for (auto& a : argv) c_argv.push_back(a.data());
  c_argv.push_back(nullptr);
  execv(service.c_str(), c_argv.data());
  std::cerr << "care-worker serve: cannot run " << service << ": "
            << std::strerror(errno) << "\n";
  return 1;
}

}  // namespace

CARE_REGISTER_COMMAND(serve, "serve", "lease and run jobs from care-server",
                      kUsage, ServeMain);

}  // namespace care::cli

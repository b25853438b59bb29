// Load generator for care-server: SubmitJob and GetJob throughput and
// p50/p99 latency with 1, 8 and 64 concurrent clients (one channel and TCP
// connection each) against a real server on loopback. The ceiling measured
// in the same run is an RPC the server rejects at its auth check: the full
// gRPC round trip and handler wrapper, without the database.
//
//   server_bench [--server PATH] [--seconds N] [--clients 1,8,64]
#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "care/v1/conversion_service.grpc.pb.h"

namespace {

using Clock = std::chrono::steady_clock;
constexpr char kToken[] = "bench-client-token-0123456789";

struct Result {
  double ops_per_s = 0;
  double p50_ms = 0;
  double p99_ms = 0;
  int errors = 0;
};

pid_t StartServer(const std::string& binary, const std::string& dir,
                  std::string* address) {
  std::filesystem::create_directories(dir + "/models/m");
  std::filesystem::create_directories(dir + "/data");
  std::filesystem::create_directories(dir + "/out");
  std::ofstream(dir + "/c.tok") << kToken << "\n";
  std::ofstream(dir + "/w.tok") << "bench-worker-token-0123456789\n";
  int out[2];
  if (pipe(out) != 0) return -1;
  pid_t pid = fork();
  if (pid == 0) {
    dup2(out[1], 1);
    int err = open((dir + "/server.log").c_str(), O_WRONLY | O_CREAT, 0644);
    dup2(err, 2);
    std::vector<std::string> args = {binary,
                                     "--listen=127.0.0.1:0",
                                     "--metrics-listen=127.0.0.1:0",
                                     "--db=" + dir + "/jobs.db",
                                     "--client-token-file=" + dir + "/c.tok",
                                     "--worker-token-file=" + dir + "/w.tok",
                                     "--model-root=" + dir + "/models",
                                     "--data-root=" + dir + "/data",
                                     "--output-root=" + dir + "/out",
                                     "--log-level=error"};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  close(out[1]);
  std::string line;
  char c;
  while (read(out[0], &c, 1) == 1 && c != '\n') line.push_back(c);
  close(out[0]);
  const std::string prefix = "listening grpc=";
  if (line.rfind(prefix, 0) != 0) return -1;
  *address =
      line.substr(prefix.size(), line.find(' ', prefix.size()) - prefix.size());
  return pid;
}

// Runs `call` from `clients` threads for `seconds`; each thread has its own
// channel (a private subchannel pool, so its own connection).
Result Run(const std::string& address, int clients, double seconds,
           const std::function<bool(care::v1::ConversionService::Stub&, int,
                                    int64_t)>& call) {
  std::vector<std::vector<double>> latencies(clients);
  std::atomic<int> errors{0};
  std::vector<std::thread> threads;
  const auto start = Clock::now();
  const auto end = start + std::chrono::duration<double>(seconds);
  for (int t = 0; t < clients; ++t) {
    threads.emplace_back([&, t] {
      grpc::ChannelArguments args;
      args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
      auto stub =
          care::v1::ConversionService::NewStub(grpc::CreateCustomChannel(
              address, grpc::InsecureChannelCredentials(), args));
      for (int64_t i = 0; Clock::now() < end; ++i) {
        const auto t0 = Clock::now();
        if (!call(*stub, t, i)) ++errors;
        latencies[t].push_back(
            std::chrono::duration<double, std::milli>(Clock::now() - t0)
                .count());
      }
    });
  }
  for (auto& th : threads) th.join();
  const double elapsed =
      std::chrono::duration<double>(Clock::now() - start).count();
  std::vector<double> all;
  for (auto& l : latencies) all.insert(all.end(), l.begin(), l.end());
  std::sort(all.begin(), all.end());
  Result r;
  r.errors = errors.load();
  if (all.empty()) return r;
  r.ops_per_s = all.size() / elapsed;
  r.p50_ms = all[all.size() / 2];
  r.p99_ms = all[std::min(all.size() - 1, all.size() * 99 / 100)];
  return r;
}

std::unique_ptr<grpc::ClientContext> Ctx(bool auth) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() +
                    std::chrono::seconds(30));
  if (auth) ctx->AddMetadata("authorization", std::string("Bearer ") + kToken);
  return ctx;
}

}  // namespace

int main(int argc, char** argv) {
  std::string binary = CARE_SERVER_BINARY;
  double seconds = 3;
  std::vector<int> concurrency = {1, 8, 64};
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i];
    if (flag == "--server") binary = argv[i + 1];
    if (flag == "--seconds") seconds = std::atof(argv[i + 1]);
    if (flag == "--clients") {
      concurrency.clear();
      std::string list = argv[i + 1];
      for (size_t p = 0; p < list.size();) {
        size_t q = list.find(',', p);
        concurrency.push_back(std::atoi(list.substr(p, q - p).c_str()));
        p = q == std::string::npos ? list.size() : q + 1;
      }
    }
  }
  char tmpl[] = "/tmp/care-server-bench-XXXXXX";
  const std::string dir = mkdtemp(tmpl);
  std::string address;
  pid_t pid = StartServer(binary, dir, &address);
  if (pid < 0) {
    std::fprintf(stderr, "cannot start %s\n", binary.c_str());
    return 1;
  }
  std::printf("care-server %s, db %s/jobs.db, %.1f s per measurement\n",
              address.c_str(), dir.c_str(), seconds);
  std::printf("%-8s %-22s %10s %9s %9s %8s %7s\n", "clients", "rpc", "ops/s",
              "p50 ms", "p99 ms", "ceiling", "errors");

  std::vector<std::string> ids;
  std::mutex ids_mu;
  for (int clients : concurrency) {
    Result ceiling =
        Run(address, clients, seconds, [](auto& stub, int, int64_t) {
          care::v1::GetJobRequest req;
          req.set_job_id("job-x");
          care::v1::Job job;
          return stub.GetJob(Ctx(false).get(), req, &job).error_code() ==
                 grpc::StatusCode::UNAUTHENTICATED;
        });
    Result submit =
        Run(address, clients, seconds, [&](auto& stub, int t, int64_t i) {
          care::v1::SubmitJobRequest req;
          auto* spec = req.mutable_spec();
          spec->set_model_uri(dir + "/models/m");
          spec->set_output_uri(
              absl::StrCat(dir, "/out/", clients, "-", t, "-", i));
          spec->mutable_kv_budget()->set_kv_save_fraction(0.5);
          spec->set_method(care::v1::METHOD_SVD);
          care::v1::Job job;
          if (!stub.SubmitJob(Ctx(true).get(), req, &job).ok()) return false;
          std::lock_guard<std::mutex> lock(ids_mu);
          ids.push_back(job.id());
          return true;
        });
    Result get =
        Run(address, clients, seconds, [&](auto& stub, int t, int64_t i) {
          care::v1::GetJobRequest req;
          {
            std::lock_guard<std::mutex> lock(ids_mu);
            req.set_job_id(ids[(i * 7919 + t) % ids.size()]);
          }
          care::v1::Job job;
          return stub.GetJob(Ctx(true).get(), req, &job).ok();
        });
    for (const auto& [name, r] :
         {std::pair<const char*, Result>{"ceiling (auth reject)", ceiling},
          {"SubmitJob", submit},
          {"GetJob", get}}) {
      std::printf("%-8d %-22s %10.0f %9.3f %9.3f %7.1f%% %7d\n", clients, name,
                  r.ops_per_s, r.p50_ms, r.p99_ms,
                  100.0 * r.ops_per_s / std::max(ceiling.ops_per_s, 1e-9),
                  r.errors);
    }
  }
  kill(pid, SIGTERM);
  int status = 0;
  waitpid(pid, &status, 0);
  std::filesystem::remove_all(dir);
  return 0;
}

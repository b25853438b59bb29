// A Hugging Face Hub stand-in for tests: a threaded HTTP/1.1 server on
// 127.0.0.1 serving repos in the hub's URL layout
//   GET /api/models/{repo}/revision/{rev}?blobs=true   -> sha + siblings
//   GET /{repo}/resolve/{rev}/{file}                    -> bytes (Range ok)
// with the hub's error replies (401 RepoNotFound, 403 gated, 404
// RevisionNotFound / EntryNotFound) and injectable faults.
#ifndef CARE_TESTS_IO_FAKE_HUB_H_
#define CARE_TESTS_IO_FAKE_HUB_H_

#include <atomic>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace care::testing {

class FakeHub {
 public:
  enum class Access { kPublic, kPrivate, kGated };
  struct Repo {
    std::string commit;  // 40 hex digits.
    Access access = Access::kPublic;
    std::map<std::string, std::string> files;  // name -> contents
    std::set<std::string> lfs;                 // names listed with lfs.sha256
    // Faults: the first GET of these files sends half the body, then closes.
    std::set<std::string> drop_first;
    // These files are served with one byte flipped (sha256 mismatch).
    std::set<std::string> corrupt;
  };

  FakeHub();
  ~FakeHub();
  // Loads every regular file of `dir` into a repo (*.safetensors as LFS).
  static Repo RepoFromDir(const std::string& dir, const std::string& commit);
  void AddRepo(const std::string& repo_id, Repo repo);
  // Starts listening on an ephemeral port; returns false on failure.
  bool Start();
  void Stop();
  std::string endpoint() const;  // "http://127.0.0.1:<port>"
  // Token accepted for private and gated repos.
  static constexpr const char* kToken = "secret-token";

  // Request log: "GET <path> [range]" lines, in arrival order.
  std::vector<std::string> requests() const;
  int request_count() const;

 private:
  void Serve(int fd);
  void Handle(int fd, const std::string& method, const std::string& path,
              const std::map<std::string, std::string>& headers);

  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::thread acceptor_;
  mutable std::mutex mu_;
  std::vector<std::thread> workers_;
  std::map<std::string, Repo> repos_;
  std::vector<std::string> log_;
  std::set<std::string> dropped_;  // Files whose first GET was dropped.
};

}  // namespace care::testing

#endif  // CARE_TESTS_IO_FAKE_HUB_H_

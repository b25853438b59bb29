#include "io/fake_hub.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "care/io/sha256.h"

namespace care::testing {
namespace {

void SendAll(int fd, const std::string& data) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return;
    off += static_cast<size_t>(n);
  }
}

void Reply(int fd, int status, const std::string& reason,
           const std::string& body,
           const std::vector<std::string>& extra = {}) {
  std::string head = absl::StrCat("HTTP/1.1 ", status, " ", reason, "\r\n");
  for (const std::string& h : extra) absl::StrAppend(&head, h, "\r\n");
  absl::StrAppend(&head, "Content-Length: ", body.size(),
                  "\r\nConnection: close\r\n\r\n");
  SendAll(fd, head + body);
}

void ErrorReply(int fd, int status, const std::string& code) {
  const std::string reason = status == 401   ? "Unauthorized"
                             : status == 403 ? "Forbidden"
                                             : "Not Found";
  Reply(fd, status, reason, absl::StrCat("{\"error\":\"", code, "\"}"),
        {absl::StrCat("X-Error-Code: ", code),
         absl::StrCat("X-Error-Message: fake hub says ", code)});
}

}  // namespace

FakeHub::FakeHub() = default;
FakeHub::~FakeHub() { Stop(); }

FakeHub::Repo FakeHub::RepoFromDir(const std::string& dir,
                                   const std::string& commit) {
  Repo repo;
  repo.commit = commit;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return repo;
  while (struct dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (name[0] == '.') continue;
    std::ifstream in(dir + "/" + name, std::ios::binary);
    std::ostringstream ss;
    ss << in.rdbuf();
    repo.files[name] = ss.str();
    if (absl::EndsWith(name, ".safetensors")) repo.lfs.insert(name);
  }
  ::closedir(d);
  return repo;
}

void FakeHub::AddRepo(const std::string& repo_id, Repo repo) {
  std::lock_guard<std::mutex> lock(mu_);
  repos_[repo_id] = std::move(repo);
}

bool FakeHub::Start() {
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0) return false;
  int one = 1;
  ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) !=
          0 ||
      ::listen(listen_fd_, 64) != 0) {
    return false;
  }
  socklen_t len = sizeof addr;
  ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
  port_ = ntohs(addr.sin_port);
  acceptor_ = std::thread([this] {
    while (!stopping_) {
      pollfd p{listen_fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      std::lock_guard<std::mutex> lock(mu_);
      workers_.emplace_back([this, fd] { Serve(fd); });
    }
  });
  return true;
}

void FakeHub::Stop() {
  if (listen_fd_ < 0) return;
  stopping_ = true;
  if (acceptor_.joinable()) acceptor_.join();
  std::vector<std::thread> workers;
  {
    std::lock_guard<std::mutex> lock(mu_);
    workers.swap(workers_);
  }
  for (std::thread& t : workers) t.join();
  ::close(listen_fd_);
  listen_fd_ = -1;
}

std::string FakeHub::endpoint() const {
  return absl::StrCat("http://127.0.0.1:", port_);
}

std::vector<std::string> FakeHub::requests() const {
  std::lock_guard<std::mutex> lock(mu_);
  return log_;
}

int FakeHub::request_count() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int>(log_.size());
}

void FakeHub::Serve(int fd) {
  std::string req;
  char buf[4096];
  while (req.find("\r\n\r\n") == std::string::npos && req.size() < 65536) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    req.append(buf, static_cast<size_t>(n));
  }
  std::vector<std::string> lines = absl::StrSplit(req, "\r\n");
  if (lines.empty()) {
    ::close(fd);
    return;
  }
  std::vector<std::string> first = absl::StrSplit(lines[0], ' ');
  std::map<std::string, std::string> headers;
  for (size_t i = 1; i < lines.size(); ++i) {
    size_t colon = lines[i].find(':');
    if (colon == std::string::npos) continue;
    headers[absl::AsciiStrToLower(lines[i].substr(0, colon))] =
        std::string(absl::StripAsciiWhitespace(lines[i].substr(colon + 1)));
  }
  if (first.size() >= 2) Handle(fd, first[0], first[1], headers);
  ::shutdown(fd, SHUT_RDWR);
  ::close(fd);
}

void FakeHub::Handle(int fd, const std::string& method, const std::string& path,
                     const std::map<std::string, std::string>& headers) {
  auto header = [&](const char* name) {
    auto it = headers.find(name);
    return it == headers.end() ? std::string() : it->second;
  };
  const std::string range = header("range");
  Repo repo;
  std::string repo_id, rev, file;
  bool api = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    log_.push_back(
        absl::StrCat(method, " ", path, range.empty() ? "" : " " + range));
  }
  // Parse /api/models/{org}/{name}/revision/{rev}?... or
  // /{org}/{name}/resolve/{rev}/{file}.
  std::string p = path.substr(0, path.find('?'));
  std::vector<std::string> parts = absl::StrSplit(p, '/');
  if (parts.size() == 7 && parts[1] == "api" && parts[2] == "models" &&
      parts[5] == "revision") {
    api = true;
    repo_id = parts[3] + "/" + parts[4];
    rev = parts[6];
  } else if (parts.size() == 6 && parts[3] == "resolve") {
    repo_id = parts[1] + "/" + parts[2];
    rev = parts[4];
    file = parts[5];
  } else {
    Reply(fd, 400, "Bad Request", "bad path");
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = repos_.find(repo_id);
    if (it == repos_.end()) {
      ErrorReply(fd, 401, "RepoNotFound");  // As the hub does, to hide.
      return;
    }
    repo = it->second;
  }
  const bool authed =
      header("authorization") == absl::StrCat("Bearer ", kToken);
  if (repo.access == Access::kPrivate && !authed) {
    ErrorReply(fd, 401, "RepoNotFound");
    return;
  }
  if (repo.access == Access::kGated && !authed) {
    ErrorReply(fd, 403, "GatedRepo");
    return;
  }
  if (rev != "main" && rev != repo.commit) {
    ErrorReply(fd, 404, "RevisionNotFound");
    return;
  }
  if (api) {
    nlohmann::json siblings = nlohmann::json::array();
    for (const auto& [name, content] : repo.files) {
      const std::string sha = care::io::Sha256Hex(content);
      nlohmann::json s = {{"rfilename", name},
                          {"size", content.size()},
                          {"blobId", sha.substr(0, 40)}};
      if (repo.lfs.count(name)) {
        s["lfs"] = {
            {"sha256", sha}, {"size", content.size()}, {"pointerSize", 134}};
      }
      siblings.push_back(s);
    }
    siblings.push_back({{"rfilename", "original/consolidated.pth"}});
    nlohmann::json body = {
        {"id", repo_id}, {"sha", repo.commit}, {"siblings", siblings}};
    Reply(fd, 200, "OK", body.dump(), {"Content-Type: application/json"});
    return;
  }
  auto f = repo.files.find(file);
  if (f == repo.files.end()) {
    ErrorReply(fd, 404, "EntryNotFound");
    return;
  }
  std::string content = f->second;
  if (repo.corrupt.count(file)) content[content.size() / 2] ^= 0x5a;
  size_t from = 0;
  if (absl::StartsWith(range, "bytes=")) {
    std::string spec = range.substr(6, range.find('-') - 6);
    size_t v = 0;
    if (absl::SimpleAtoi(spec, &v)) from = v;
    if (from >= content.size()) {
      Reply(fd, 416, "Range Not Satisfiable", "");
      return;
    }
  }
  bool drop = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (repo.drop_first.count(file) && !dropped_.count(file)) {
      dropped_.insert(file);
      drop = true;
    }
  }
  const std::string body = content.substr(from);
  std::string head =
      from > 0 ? absl::StrCat(
                     "HTTP/1.1 206 Partial Content\r\nContent-Range: "
                     "bytes ",
                     from, "-", content.size() - 1, "/", content.size(), "\r\n")
               : std::string("HTTP/1.1 200 OK\r\n");
  absl::StrAppend(&head, "Content-Length: ", body.size(),
                  "\r\nConnection: close\r\n\r\n");
  if (drop) {
    // Half the promised body, then the connection goes away.
    SendAll(fd, head + body.substr(0, body.size() / 2));
    return;
  }
  SendAll(fd, head + body);
}

}  // namespace care::testing

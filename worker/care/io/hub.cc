#include "care/io/hub.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "base/status_macros.h"
#include "care/io/checkpoint.h"
#include "care/io/checkpoint_writer.h"
#include "care/io/file_util.h"
#include "care/io/http_client.h"
#include "care/io/sha256.h"

namespace care::io {
namespace {

using nlohmann::json;

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr ? std::string() : std::string(v);
}

bool IsHex(absl::string_view s, size_t len) {
  if (s.size() != len) return false;
  for (char c : s) {
    if (!absl::ascii_isxdigit(c)) return false;
  }
  return true;
}

// A sibling name we are willing to create in the cache: top level only.
bool IsSafeFileName(const std::string& name) {
  return !name.empty() && name[0] != '.' &&
         name.find('/') == std::string::npos &&
         name.find('\\') == std::string::npos &&
         name.find('\0') == std::string::npos;
}

absl::Status HttpError(const HttpResult& r, const std::string& url) {
  auto header = [&](const char* name) {
    auto it = r.headers.find(name);
    return it == r.headers.end() ? std::string() : it->second;
  };
  const std::string code = header("x-error-code");
  const std::string msg = header("x-error-message");
  const std::string detail = msg.empty() ? "" : absl::StrCat(": ", msg);
  switch (r.status) {
    case 401:
      if (code == "RepoNotFound") {
        return absl::NotFoundError(absl::StrCat(
            "repository not found at ", url,
            " (it does not exist, or it is private and HF_TOKEN does not "
            "grant access)",
            detail));
      }
      return absl::UnauthenticatedError(absl::StrCat(
          "HTTP 401 at ", url, ": authentication required or HF_TOKEN invalid",
          detail));
    case 403:
      return absl::PermissionDeniedError(absl::StrCat(
          "HTTP 403 at ", url,
          ": no permission (a gated model needs its terms accepted by the "
          "account of HF_TOKEN)",
          detail));
    case 404:
      if (code == "RevisionNotFound") {
        return absl::NotFoundError(
            absl::StrCat("revision not found at ", url, detail));
      }
      if (code == "EntryNotFound") {
        return absl::NotFoundError(
            absl::StrCat("file not found at ", url, detail));
      }
      return absl::NotFoundError(
          absl::StrCat("not found (HTTP 404) at ", url, detail));
    default:
      return absl::UnavailableError(
          absl::StrCat("HTTP ", r.status, " at ", url, detail));
  }
}

struct RemoteFile {
  std::string name;
  std::optional<uint64_t> size;
  std::string sha256;  // LFS files only.
  std::string etag;    // Blob name in the cache.
};

uint64_t FdSize(int fd) {
  struct stat st;
  return ::fstat(fd, &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
}

absl::Status LinkIntoSnapshot(const std::string& snapshot,
                              const RemoteFile& f) {
  const std::string link = absl::StrCat(snapshot, "/", f.name);
  const std::string target = absl::StrCat("../../blobs/", f.etag);
  ::unlink(link.c_str());
  if (::symlink(target.c_str(), link.c_str()) != 0) {
    const int err = errno;
    // Another process resolving the same snapshot may have just made it.
    char existing[4096];
    const ssize_t n = ::readlink(link.c_str(), existing, sizeof existing);
    if (err == EEXIST && n > 0 &&
        absl::string_view(existing, static_cast<size_t>(n)) == target) {
      return absl::OkStatus();
    }
    return ErrnoStatus(err, "cannot create link", link);
  }
  return absl::OkStatus();
}

// Downloads one file into blobs/<etag> (if not there yet).
absl::Status FetchBlob(const HubOptions& o, const HttpOptions& http,
                       absl::string_view repo_id, const std::string& commit,
                       const std::string& repo_dir, const RemoteFile& f) {
  const std::string blob = absl::StrCat(repo_dir, "/blobs/", f.etag);
  struct stat st;
  if (::stat(blob.c_str(), &st) == 0 &&
      (!f.size || static_cast<uint64_t>(st.st_size) == *f.size)) {
    return absl::OkStatus();
  }
  const std::string part = blob + ".incomplete";
  int fd = ::open(part.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoStatus(errno, "cannot create", part);
  // Another process fetching the same blob holds the lock until it is done.
  if (::flock(fd, LOCK_EX) != 0) {
    int err = errno;
    ::close(fd);
    return ErrnoStatus(err, "cannot lock", part);
  }
  if (::stat(blob.c_str(), &st) == 0) {  // Finished by the other process.
    ::close(fd);
    return absl::OkStatus();
  }
  const std::string url = absl::StrCat(o.endpoint, "/", repo_id, "/resolve/",
                                       commit, "/", UrlEncode(f.name));
  std::string last_error;
  bool done = false;
  for (int attempt = 1; attempt <= o.max_attempts && !done; ++attempt) {
    if (attempt > 1) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100 * attempt));
    }
    uint64_t offset = FdSize(fd);
    if (f.size && offset == *f.size) break;
    if (f.size && offset > *f.size) {
      if (::ftruncate(fd, 0) != 0) {
        int err = errno;
        ::close(fd);
        return ErrnoStatus(err, "cannot truncate", part);
      }
      offset = 0;
    }
    absl::StatusOr<HttpResult> r = HttpDownload(url, http, fd, offset, part);
    if (!r.ok()) {
      ::close(fd);
      return r.status();  // Local write failure, e.g. disk full.
    }
    if (!r->transport_ok) {
      last_error = r->transport_error;
      continue;  // Dropped connection: resume from what arrived.
    }
    if (r->status == 416) {  // Our partial file is bogus; start over.
      if (::ftruncate(fd, 0) != 0) last_error = "cannot truncate";
      last_error = "HTTP 416";
      continue;
    }
    if (r->status == 200 || r->status == 206) {
      if (f.size && FdSize(fd) < *f.size) {
        last_error = "connection closed early";
        continue;
      }
      done = true;
      continue;
    }
    if (r->status >= 500 || r->status == 429) {
      last_error = absl::StrCat("HTTP ", r->status);
      continue;
    }
    ::close(fd);
    return HttpError(*r, url);
  }
  if (!done && !(f.size && FdSize(fd) == *f.size)) {
    ::close(fd);
    return absl::UnavailableError(absl::StrCat("network failure downloading ",
                                               url, " after ", o.max_attempts,
                                               " attempts: ", last_error));
  }
  // Checked before the blob appears; a bad download is removed.
  const uint64_t got = FdSize(fd);
  absl::Status verified;
  if (f.size && got != *f.size) {
    verified = absl::DataLossError(absl::StrCat(
        "downloaded ", got, " bytes from ", url, ", the hub lists ", *f.size));
  } else if (!f.sha256.empty()) {
    absl::StatusOr<std::string> sum = Sha256File(part);
    if (!sum.ok()) {
      verified = sum.status();
    } else if (*sum != f.sha256) {
      verified = absl::DataLossError(absl::StrCat(
          "sha256 of ", url, " is ", *sum, ", the hub lists ", f.sha256));
    }
  }
  if (!verified.ok()) {
    ::close(fd);
    ::unlink(part.c_str());
    return verified;
  }
  return CommitFile(fd, part, blob);
}

absl::StatusOr<std::vector<std::string>> ShardsOfIndex(
    const std::string& path) {
  CARE_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object() || !j.contains("weight_map") ||
      !j["weight_map"].is_object()) {
    return absl::DataLossError(
        absl::StrCat(path, ": not a valid safetensors index"));
  }
  std::set<std::string> shards;
  for (const auto& [tensor, shard] : j["weight_map"].items()) {
    if (!shard.is_string() || !IsSafeFileName(shard.get<std::string>())) {
      return absl::DataLossError(
          absl::StrCat(path, ": bad shard name for '", tensor, "'"));
    }
    shards.insert(shard.get<std::string>());
  }
  return std::vector<std::string>(shards.begin(), shards.end());
}

}  // namespace

HubOptions HubOptions::FromEnvironment() {
  HubOptions o;
  if (std::string e = Env("HF_ENDPOINT"); !e.empty()) {
    while (!e.empty() && e.back() == '/') e.pop_back();
    o.endpoint = e;
  }
  o.token = Env("HF_TOKEN");
  if (std::string c = Env("HF_HUB_CACHE"); !c.empty()) {
    o.cache_dir = c;
  } else if (std::string h = Env("HF_HOME"); !h.empty()) {
    o.cache_dir = h + "/hub";
  } else if (std::string x = Env("XDG_CACHE_HOME"); !x.empty()) {
    o.cache_dir = x + "/huggingface/hub";
  } else {
    o.cache_dir = Env("HOME") + "/.cache/huggingface/hub";
  }
  const std::string off = absl::AsciiStrToUpper(Env("HF_HUB_OFFLINE"));
  o.offline = off == "1" || off == "ON" || off == "YES" || off == "TRUE";
  return o;
}

std::string HubRepoCacheDir(const std::string& cache_dir,
                            absl::string_view repo_id) {
  return absl::StrCat(cache_dir, "/models--",
                      absl::StrReplaceAll(repo_id, {{"/", "--"}}));
}

bool IsCompleteSnapshot(const std::string& dir) {
  if (!IsRegularFile(dir + "/config.json")) return false;
  const std::string index = absl::StrCat(dir, "/", kSafetensorsIndexFile);
  if (IsRegularFile(index)) {
    absl::StatusOr<std::vector<std::string>> shards = ShardsOfIndex(index);
    if (!shards.ok()) return false;
    for (const std::string& s : *shards) {
      if (!IsRegularFile(absl::StrCat(dir, "/", s))) return false;
    }
    return true;
  }
  return IsRegularFile(absl::StrCat(dir, "/", kSafetensorsFile));
}

std::optional<std::string> FindCachedSnapshot(const HubOptions& options,
                                              absl::string_view repo_id,
                                              absl::string_view revision) {
  const std::string repo_dir = HubRepoCacheDir(options.cache_dir, repo_id);
  std::string commit(revision);
  if (!IsHex(revision, 40)) {
    absl::StatusOr<std::string> ref =
        ReadFileToString(absl::StrCat(repo_dir, "/refs/", revision));
    if (!ref.ok()) return std::nullopt;
    commit = std::string(absl::StripAsciiWhitespace(*ref));
    if (!IsHex(commit, 40)) return std::nullopt;
  }
  std::string dir = absl::StrCat(repo_dir, "/snapshots/", commit);
  if (!IsCompleteSnapshot(dir)) return std::nullopt;
  return dir;
}

absl::StatusOr<std::string> DownloadSnapshot(const HubOptions& o,
                                             absl::string_view repo_id,
                                             absl::string_view revision) {
  if (o.offline) {
    return absl::NotFoundError(absl::StrCat(
        "hf://", repo_id, "@", revision, " is not in the cache at ",
        o.cache_dir, " and HF_HUB_OFFLINE forbids downloading it"));
  }
  HttpOptions http;
  http.bearer_token = o.token;
  http.connect_timeout_s = o.connect_timeout_s;
  http.low_speed_time_s = o.low_speed_time_s;
  const std::string info_url =
      absl::StrCat(o.endpoint, "/api/models/", repo_id, "/revision/",
                   UrlEncode(std::string(revision)), "?blobs=true");
  HttpResult info = HttpGet(info_url, http);
  if (!info.transport_ok) {
    return absl::UnavailableError(absl::StrCat(
        "network failure fetching ", info_url, ": ", info.transport_error));
  }
  if (info.status != 200) return HttpError(info, info_url);
  json j = json::parse(info.body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object() || !j.contains("sha") ||
      !j["sha"].is_string() || !IsHex(j["sha"].get<std::string>(), 40) ||
      !j.contains("siblings") || !j["siblings"].is_array()) {
    return absl::DataLossError(absl::StrCat("unexpected reply from ", info_url,
                                            " (no commit sha or siblings)"));
  }
  const std::string commit = j["sha"].get<std::string>();

  std::map<std::string, RemoteFile> remote;
  for (const json& s : j["siblings"]) {
    if (!s.is_object() || !s.contains("rfilename") ||
        !s["rfilename"].is_string()) {
      continue;
    }
    RemoteFile f;
    f.name = s["rfilename"].get<std::string>();
    if (!IsSafeFileName(f.name)) continue;  // Subfolders are not needed.
    if (s.contains("size") && s["size"].is_number_unsigned()) {
      f.size = s["size"].get<uint64_t>();
    }
    if (s.contains("lfs") && s["lfs"].is_object()) {
      const json& lfs = s["lfs"];
      if (lfs.contains("sha256") && lfs["sha256"].is_string() &&
          IsHex(lfs["sha256"].get<std::string>(), 64)) {
        f.sha256 = absl::AsciiStrToLower(lfs["sha256"].get<std::string>());
      }
      if (lfs.contains("size") && lfs["size"].is_number_unsigned()) {
        f.size = lfs["size"].get<uint64_t>();
      }
    }
    if (!f.sha256.empty()) {
      f.etag = f.sha256;
    } else if (s.contains("blobId") && s["blobId"].is_string() &&
               IsHex(s["blobId"].get<std::string>(), 40)) {
      f.etag = s["blobId"].get<std::string>();
    } else {
      f.etag = Sha256Hex(absl::StrCat(commit, "/", f.name));
    }
    remote[f.name] = std::move(f);
  }
  const std::string uri = absl::StrCat("hf://", repo_id, "@", revision);
  if (remote.count("config.json") == 0) {
    return absl::NotFoundError(absl::StrCat(uri, " has no config.json"));
  }
  const bool sharded = remote.count(kSafetensorsIndexFile) != 0;
  if (!sharded && remote.count(kSafetensorsFile) == 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        uri, " has neither ", kSafetensorsFile, " nor ", kSafetensorsIndexFile,
        " (only safetensors weights are supported)"));
  }

  const std::string repo_dir = HubRepoCacheDir(o.cache_dir, repo_id);
  const std::string snapshot = absl::StrCat(repo_dir, "/snapshots/", commit);
  CARE_RETURN_IF_ERROR(MakeDirs(repo_dir + "/blobs"));
  CARE_RETURN_IF_ERROR(MakeDirs(snapshot));

  auto fetch = [&](const std::string& name) -> absl::Status {
    auto it = remote.find(name);
    if (it == remote.end()) {
      return absl::NotFoundError(
          absl::StrCat(uri, " lists no file '", name, "'"));
    }
    CARE_RETURN_IF_ERROR(
        FetchBlob(o, http, repo_id, commit, repo_dir, it->second));
    return LinkIntoSnapshot(snapshot, it->second);
  };
  // Small files first; weights last, so the snapshot is complete only when
  // every shard is there.
  std::vector<std::string> weights;
  if (sharded) {
    CARE_RETURN_IF_ERROR(fetch(kSafetensorsIndexFile));
    CARE_ASSIGN_OR_RETURN(weights, ShardsOfIndex(absl::StrCat(
                                       snapshot, "/", kSafetensorsIndexFile)));
  } else {
    weights.push_back(kSafetensorsFile);
  }
  for (const auto& [name, f] : remote) {
    if (IsWeightOrConfigFile(name) && name != "config.json") continue;
    CARE_RETURN_IF_ERROR(fetch(name));
  }
  for (const std::string& w : weights) CARE_RETURN_IF_ERROR(fetch(w));

  if (revision != commit) {
    const std::string ref = absl::StrCat(repo_dir, "/refs/", revision);
    CARE_RETURN_IF_ERROR(MakeDirs(ParentDir(ref)));
    CARE_RETURN_IF_ERROR(AtomicWrite(ref, commit));
  }
  if (!IsCompleteSnapshot(snapshot)) {
    return absl::DataLossError(absl::StrCat("download of ", uri, " into ",
                                            snapshot, " is incomplete"));
  }
  return snapshot;
}

}  // namespace care::io

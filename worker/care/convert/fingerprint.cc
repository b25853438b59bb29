#include "care/convert/fingerprint.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "care/io/sha256.h"

namespace care::convert {
namespace {

constexpr uintmax_t kHashContentBelow = 1 << 20;

template <typename T>
void HashVector(io::Sha256& h, const std::vector<T>& v) {
  h.Update(absl::StrCat("[", v.size(), "]"));
  h.Update(absl::string_view(reinterpret_cast<const char*>(v.data()),
                             sizeof(T) * v.size()));
}

void HashWindows(io::Sha256& h, const engine::TokenWindows& w) {
  h.Update(absl::StrCat(w.num_windows, "x", w.seq_len));
  HashVector(h, w.ids);
}

}  // namespace

absl::StatusOr<std::string> ResumeFingerprint(const std::string& model_dir,
                                              const CalibrationWindows& windows,
                                              const ConvertOptions& options) {
  namespace fs = std::filesystem;
  io::Sha256 h;
  h.Update("care-resume v1\n");
  std::vector<fs::path> files;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(model_dir, ec)) {
    if (entry.is_regular_file(ec)) files.push_back(entry.path());
  }
  if (ec) {
    return absl::UnavailableError(absl::StrCat(
        "resume fingerprint: cannot list ", model_dir, ": ", ec.message()));
  }
  std::sort(files.begin(), files.end());
  for (const fs::path& f : files) {
    const uintmax_t size = fs::file_size(f, ec);
    if (ec) {
      return absl::UnavailableError(absl::StrCat(
          "resume fingerprint: cannot stat ", f.string(), ": ", ec.message()));
    }
    h.Update(absl::StrCat("file ", f.filename().string(), " ", size));
    if (size < kHashContentBelow) {
      absl::StatusOr<std::string> digest = io::Sha256File(f.string());
      if (!digest.ok()) return digest.status();
      h.Update(absl::StrCat(" sha256 ", *digest, "\n"));
    } else {
      const auto mtime = fs::last_write_time(f, ec).time_since_epoch();
      h.Update(absl::StrCat(
          " mtime ",
          std::chrono::duration_cast<std::chrono::nanoseconds>(mtime).count(),
          "\n"));
    }
  }
  h.Update("calibration ");
  HashWindows(h, windows.calib);
  h.Update(" heldout ");
  HashWindows(h, windows.heldout);
  HashVector(h, windows.heldout_targets);
  const std::string device = options.device.substr(0, options.device.find(':'));
  h.Update(absl::StrFormat("\nmethod %s damping %.17g solver %d device %s\n",
                           MethodName(options.method), options.damping,
                           static_cast<int>(options.solver), device));
  return h.HexDigest();
}

std::string EvalWindowsKey(const engine::EvalWindows& eval) {
  io::Sha256 h;
  HashWindows(h, eval.inputs);
  HashVector(h, eval.targets);
  return h.HexDigest().substr(0, 16);
}

}  // namespace care::convert

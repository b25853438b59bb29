// Reads and converts a multi-GB BF16 safetensors file to float32 and compares
// the rate with a plain sequential read() of the same file in the same run.
//   checkpoint_read_bench [--gb 2] [--dir /tmp/care-io-bench] [--repeats 3]
// Two page-cache regimes, both reported:
//  - cold: the file's pages are dropped with posix_fadvise(DONTNEED) before
//    each pass (no root needed; the file is fsynced first so every page is
//    clean and really leaves the cache) -> disk-bound;
//  - warm: the file is fully cached (it fits in RAM) -> memory/CPU-bound.
// Ceilings in the same run: sequential read() of the file, memcpy of a
// cached tensor, the BF16->F32 loop alone on cached bytes, and allocating
// the zeroed float32 output (which LoadF32 cannot avoid: Tensor holds a
// std::vector<float>).
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/flags.h"
#include "care/io/checkpoint.h"
#include "care/io/checkpoint_writer.h"
#include "care/io/dtype.h"
#include "care/io/file_util.h"

namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

void DropFromCache(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return;
  ::fdatasync(fd);
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  ::close(fd);
}

// Plain sequential read() in 8 MiB chunks; returns seconds.
double SequentialRead(const std::string& path, uint64_t* bytes) {
  std::vector<char> buf(8 << 20);
  auto t0 = Clock::now();
  int fd = ::open(path.c_str(), O_RDONLY);
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  uint64_t total = 0;
  ssize_t n;
  while ((n = ::read(fd, buf.data(), buf.size())) > 0) total += n;
  ::close(fd);
  *bytes = total;
  return Seconds(t0, Clock::now());
}

// Opens the checkpoint and loads every tensor as float32; returns seconds.
double LoadAll(const std::string& dir, double* checksum) {
  auto t0 = Clock::now();
  auto ckpt = care::io::Checkpoint::Open(dir);
  if (!ckpt.ok()) {
    std::fprintf(stderr, "%s\n", std::string(ckpt.status().message()).c_str());
    std::exit(1);
  }
  double sum = 0;
  for (const std::string& name : (*ckpt)->Names()) {
    auto t = (*ckpt)->LoadF32(name);
    if (!t.ok()) std::exit(1);
    sum += t->data[t->data.size() / 2];  // Keeps the work observable.
  }
  *checksum = sum;
  return Seconds(t0, Clock::now());
}

}  // namespace

int main(int argc, char** argv) {
  auto flags = care::Flags::Parse(
      std::vector<std::string>(argv + 1, argv + argc), {"keep"});
  if (!flags.ok()) {
    std::fprintf(stderr, "%s\n", std::string(flags.status().message()).c_str());
    return 2;
  }
  const double gb = flags->DoubleOr("gb", 2.0).value_or(2.0);
  const int repeats = static_cast<int>(flags->IntOr("repeats", 3).value_or(3));
  const std::string dir = flags->StringOr("dir", "/tmp/care-io-bench");
  const std::string file = dir + "/model.safetensors";
  constexpr int64_t kCols = 8192;
  constexpr int64_t kRows = 8192;  // 64 Mi values = 128 MiB of BF16 each.
  const int tensors =
      std::max(1, static_cast<int>(gb * 1e9 / (2.0 * kRows * kCols)));

  if (!care::io::IsRegularFile(file)) {
    std::printf("generating %d BF16 tensors [%ld, %ld] in %s ...\n", tensors,
                static_cast<long>(kRows), static_cast<long>(kCols),
                dir.c_str());
    auto w = care::io::CheckpointWriter::Create(dir);
    if (!w.ok()) return 1;
    care::Tensor t;
    t.shape = {kRows, kCols};
    t.data.resize(kRows * kCols);
    for (int i = 0; i < tensors; ++i) {
      for (size_t k = 0; k < t.data.size(); ++k) {
        t.data[k] = static_cast<float>((k * 2654435761u + i) % 1000) * 1e-3f;
      }
      if (!(*w)->AddTensorF32(absl::StrCat("w", i), t, care::io::DType::kBF16)
               .ok()) {
        return 1;
      }
    }
    if (!(*w)->SetConfig(nlohmann::json::object()).ok() ||
        !(*w)->Commit().ok()) {
      return 1;
    }
  }

  uint64_t bytes = 0;
  double checksum = 0;
  std::vector<double> cold_read, cold_load, warm_read, warm_load;
  for (int r = 0; r < repeats; ++r) {
    DropFromCache(file);
    cold_read.push_back(SequentialRead(file, &bytes));
    DropFromCache(file);
    cold_load.push_back(LoadAll(dir, &checksum));
  }
  SequentialRead(file, &bytes);  // Warm the cache fully.
  for (int r = 0; r < repeats; ++r) {
    warm_read.push_back(SequentialRead(file, &bytes));
    warm_load.push_back(LoadAll(dir, &checksum));
  }

  // Ceilings on cached bytes: memcpy and the conversion loop alone, on one
  // tensor (128 MiB in, 256 MiB out, buffers preallocated and touched).
  auto ckpt = care::io::Checkpoint::Open(dir);
  auto raw = (*ckpt)->Raw("w0");
  const size_t n = raw->bytes.size() / 2;
  std::vector<float> out(n, 1.0f);
  std::vector<char> copy(raw->bytes.size(), 1);
  std::vector<double> memcpy_s, convert_s, alloc_s, alloc_thp_s;
  for (int r = 0; r < repeats + 1; ++r) {
    auto t0 = Clock::now();
    std::memcpy(copy.data(), raw->bytes.data(), raw->bytes.size());
    auto t1 = Clock::now();
    care::io::Bf16ToF32(raw->bytes.data(), out.data(), n);
    auto t2 = Clock::now();
    {
      // What LoadF32 must do before converting: a fresh zeroed float32
      // buffer (std::vector value-initializes; the kernel zeroes pages too).
      auto a0 = Clock::now();
      std::vector<float> fresh(n);
      alloc_s.push_back(Seconds(a0, Clock::now()));
      if (fresh[n / 2] != 0.0f) return 1;
    }
    {
      auto a0 = Clock::now();
      std::vector<float> fresh = care::io::AllocateF32(n);
      alloc_thp_s.push_back(Seconds(a0, Clock::now()));
      if (fresh[n / 2] != 0.0f) return 1;
    }
    memcpy_s.push_back(Seconds(t0, t1));
    convert_s.push_back(Seconds(t1, t2));
  }

  auto best = [](std::vector<double> v) {
    return *std::min_element(v.begin(), v.end());
  };
  const double gbytes = bytes / 1e9;
  const double tensor_gb = raw->bytes.size() / 1e9;
  std::printf("file: %s, %.2f GB BF16 (%d tensors), best of %d passes\n",
              file.c_str(), gbytes, tensors, repeats);
  std::printf("%-46s %8s %8s\n", "pass", "GB/s", "ratio");
  const double cr = gbytes / best(cold_read), cl = gbytes / best(cold_load);
  const double wr = gbytes / best(warm_read), wl = gbytes / best(warm_load);
  std::printf("%-46s %8.2f %8s\n", "cold: sequential read() (ceiling)", cr,
              "1.00");
  std::printf("%-46s %8.2f %8.2f\n",
              "cold: Checkpoint::LoadF32 all (pread+convert)", cl, cl / cr);
  std::printf("%-46s %8.2f %8s\n", "warm: sequential read() (ceiling)", wr,
              "1.00");
  std::printf("%-46s %8.2f %8.2f\n",
              "warm: Checkpoint::LoadF32 all (pread+convert)", wl, wl / wr);
  std::printf("%-46s %8.2f %8s\n", "cached: memcpy of one tensor (BF16 bytes)",
              tensor_gb / best(memcpy_s), "");
  std::printf("%-46s %8.2f %8.2f\n",
              "cached: Bf16ToF32 loop alone (input GB/s)",
              tensor_gb / best(convert_s), (tensor_gb / best(convert_s)) / wr);
  std::printf("%-46s %8.2f %8s\n",
              "cached: allocate zeroed F32 output (input GB/s)",
              tensor_gb / best(alloc_s), "");
  std::printf("%-46s %8.2f %8s\n",
              "cached: AllocateF32 (huge pages, input GB/s)",
              tensor_gb / best(alloc_thp_s), "");
  std::printf(
      "(checksum %.3f; GB/s counts BF16 input bytes; float32 output is 2x)\n",
      checksum);
  if (!flags->Bool("keep")) care::io::RemoveTree(dir);
  return 0;
}

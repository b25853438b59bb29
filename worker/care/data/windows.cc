#include "care/data/windows.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace care::data {

uint64_t SplitMix64::Below(uint64_t bound) {
  // Reject the lowest (2^64 mod bound) values so each residue is equally
  // likely.
  const uint64_t threshold = (0 - bound) % bound;
  while (true) {
    const uint64_t x = Next();
    if (x >= threshold) return x % bound;
  }
}

absl::StatusOr<TokenRange> ResolveRange(int64_t stream_size, TokenRange range) {
  if (stream_size <= 0) {
    return absl::InvalidArgumentError("token range: the stream is empty");
  }
  if (range.end == -1) range.end = stream_size;
  if (range.begin < 0 || range.end > stream_size || range.begin >= range.end) {
    return absl::InvalidArgumentError(absl::StrCat(
        "token range [", range.begin, ", ", range.end,
        ") must satisfy 0 <= begin < end <= stream size ", stream_size));
  }
  return range;
}

absl::StatusOr<TokenRange> RangeFromFractions(int64_t stream_size,
                                              double begin_fraction,
                                              double end_fraction) {
  if (!(begin_fraction >= 0 && begin_fraction < end_fraction &&
        end_fraction <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("token range fractions [", begin_fraction, ", ",
                     end_fraction, ") must satisfy 0 <= begin < end <= 1"));
  }
  const auto n = static_cast<double>(stream_size);
  TokenRange r{static_cast<int64_t>(std::floor(begin_fraction * n)),
               static_cast<int64_t>(std::floor(end_fraction * n))};
  return ResolveRange(stream_size, r);
}

namespace {

absl::Status CheckWindowFits(const TokenRange& r, int64_t seq_len) {
  if (seq_len <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("window length ", seq_len, " must be >= 1"));
  }
  if (seq_len > r.end - r.begin) {
    return absl::InvalidArgumentError(absl::StrCat(
        "window of ", seq_len, " tokens is larger than the token range [",
        r.begin, ", ", r.end, ") of ", r.end - r.begin, " tokens"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<Window>> SampleCalibrationWindows(
    int64_t stream_size, int64_t samples, int64_t seq_len, uint64_t seed,
    TokenRange range) {
  CARE_ASSIGN_OR_RETURN(const TokenRange r, ResolveRange(stream_size, range));
  CARE_RETURN_IF_ERROR(CheckWindowFits(r, seq_len));
  if (samples <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("calibration samples ", samples, " must be >= 1"));
  }
  SplitMix64 rng(seed);
  const auto starts = static_cast<uint64_t>(r.end - r.begin - seq_len + 1);
  std::vector<Window> windows;
  windows.reserve(static_cast<size_t>(samples));
  for (int64_t i = 0; i < samples; ++i) {
    windows.push_back(
        {r.begin + static_cast<int64_t>(rng.Below(starts)), seq_len});
  }
  return windows;
}

absl::StatusOr<std::vector<Window>> ChunkEvaluationWindows(int64_t stream_size,
                                                           int64_t seq_len,
                                                           int64_t max_windows,
                                                           TokenRange range) {
  CARE_ASSIGN_OR_RETURN(const TokenRange r, ResolveRange(stream_size, range));
  CARE_RETURN_IF_ERROR(CheckWindowFits(r, seq_len));
  if (max_windows < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max evaluation windows ", max_windows, " must be >= 0 (0 = all)"));
  }
  int64_t n = (r.end - r.begin) / seq_len;
  if (max_windows > 0 && max_windows < n) n = max_windows;
  std::vector<Window> windows;
  windows.reserve(static_cast<size_t>(n));
  for (int64_t w = 0; w < n; ++w)
    windows.push_back({r.begin + w * seq_len, seq_len});
  return windows;
}

absl::StatusOr<std::vector<int32_t>> MaterializeWindows(
    const std::vector<int32_t>& stream, const std::vector<Window>& windows) {
  if (windows.empty()) return std::vector<int32_t>();
  const int64_t t = windows[0].length;
  const auto n = static_cast<int64_t>(stream.size());
  std::vector<int32_t> out;
  out.reserve(windows.size() * static_cast<size_t>(t));  // [windows, t]
  for (size_t i = 0; i < windows.size(); ++i) {
    const Window& w = windows[i];
    if (w.length != t || w.start < 0 || w.start + w.length > n) {
      return absl::InvalidArgumentError(absl::StrCat(
          "window ", i, " [", w.start, ", ", w.start + w.length,
          ") must have length ", t, " and lie in the stream [0, ", n, ")"));
    }
    out.insert(out.end(), stream.begin() + w.start,
               stream.begin() + w.start + w.length);
  }
  return out;
}

}  // namespace care::data

#include "care/data/synthetic_tokens.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "care/data/windows.h"

namespace care::data {
namespace {

// The j-th preferred successor of `token`: a fixed hash, so the chain's
// transition table needs no memory.
int32_t Successor(int32_t token, int j, uint64_t seed, int64_t vocab) {
  SplitMix64 h(seed ^ (static_cast<uint64_t>(token) << 8) ^
               static_cast<uint64_t>(j));
  return static_cast<int32_t>(h.Next() % static_cast<uint64_t>(vocab));
}

}  // namespace

absl::StatusOr<std::vector<int32_t>> SyntheticTokenStream(
    const SyntheticTokenOptions& o) {
  if (o.vocab_size < 2 || o.vocab_size > (int64_t{1} << 31) - 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("vocab_size must be in [2, 2^31-1], got ", o.vocab_size));
  }
  if (o.count < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("token count must be >= 1, got ", o.count));
  }
  if (o.successors < 1 || !(o.successor_prob >= 0 && o.successor_prob <= 1) ||
      !(o.zipf_exponent > 0)) {
    return absl::InvalidArgumentError(
        "successors >= 1, successor_prob in [0, 1], zipf_exponent > 0");
  }
  // Zipf CDF over ranks; rank r maps to a token id by a fixed permutation-
  // like hash so frequent tokens are spread over the vocabulary.
  std::vector<double> cdf(static_cast<size_t>(o.vocab_size));
  double total = 0;
  for (int64_t r = 0; r < o.vocab_size; ++r) {
    total += std::pow(static_cast<double>(r + 1), -o.zipf_exponent);
    cdf[static_cast<size_t>(r)] = total;
  }
  SplitMix64 rng(o.seed);
  auto uniform = [&rng] {
    return static_cast<double>(rng.Next() >> 11) * 0x1.0p-53;  // [0, 1)
  };
  auto zipf_token = [&] {
    const double u = uniform() * total;
    const int64_t rank =
        std::upper_bound(cdf.begin(), cdf.end(), u) - cdf.begin();
    const int64_t r = std::min(rank, o.vocab_size - 1);
    // 2654435761 is prime, so r -> r * p mod V is a bijection for V < p.
    return static_cast<int32_t>((static_cast<uint64_t>(r) * 2654435761ull) %
                                static_cast<uint64_t>(o.vocab_size));
  };
  std::vector<int32_t> ids(static_cast<size_t>(o.count));
  ids[0] = zipf_token();
  for (size_t i = 1; i < ids.size(); ++i) {
    if (uniform() < o.successor_prob) {
      const int j = static_cast<int>(rng.Below(o.successors));
      ids[i] = Successor(ids[i - 1], j, o.seed, o.vocab_size);
    } else {
      ids[i] = zipf_token();
    }
  }
  return ids;
}

absl::Status WriteTokenFileU32(const std::string& path,
                               const std::vector<int32_t>& ids) {
  static_assert(std::endian::native == std::endian::little,
                "token files are little-endian");
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(ids.data()),
          static_cast<std::streamsize>(ids.size() * sizeof(int32_t)));
  f.close();
  if (!f) return absl::InternalError(absl::StrCat("cannot write ", path));
  return absl::OkStatus();
}

}  // namespace care::data

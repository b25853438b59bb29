// The BPE model of tokenizer.json: a vocabulary, merges ranked by their
// order, and HF's options for symbols missing from the vocabulary (unk token,
// fuse_unk, byte_fallback). Words are merged lowest rank first (leftmost on
// ties) with a linked list and a priority queue; results are cached per word.
#ifndef CARE_TOKENIZER_BPE_MODEL_H_
#define CARE_TOKENIZER_BPE_MODEL_H_

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace care::tok {

struct BpeOptions {
  std::optional<std::string> unk_token;
  bool fuse_unk = false;
  bool byte_fallback = false;
  // Llama-3 style: a word that is itself in the vocabulary is not merged.
  bool ignore_merges = false;
};

class BpeModel {
 public:
  // Errors when a merge names a token missing from the vocabulary, or the
  // merged token is missing, naming the merge and its index.
  static absl::StatusOr<std::unique_ptr<BpeModel>> Create(
      absl::flat_hash_map<std::string, int32_t> vocab,
      const std::vector<std::pair<std::string, std::string>>& merges,
      BpeOptions options);

  // Appends the ids of one pre-tokenized word. Thread-safe.
  void Tokenize(absl::string_view word, std::vector<int32_t>* ids) const;

  std::optional<int32_t> TokenToId(absl::string_view token) const;
  // nullptr when `id` is not in the vocabulary.
  const std::string* IdToToken(int32_t id) const;
  // One past the largest id.
  int64_t size() const { return static_cast<int64_t>(id_to_token_.size()); }

 private:
  BpeModel() = default;
  void TokenizeUncached(absl::string_view word,
                        std::vector<int32_t>* ids) const;

  struct Merge {
    int32_t rank;
    int32_t new_id;
  };
  static uint64_t PairKey(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) |
           static_cast<uint32_t>(b);
  }

  absl::flat_hash_map<std::string, int32_t> vocab_;
  std::vector<std::string> id_to_token_;
  std::vector<bool> has_id_;
  absl::flat_hash_map<uint64_t, Merge> merges_;
  BpeOptions options_;
  std::optional<int32_t> unk_id_;
  std::array<int32_t, 256> byte_ids_{};  // <0xXX> ids, -1 when absent.

  // Per-word cache, sharded to keep threads from contending on one lock.
  static constexpr int kShards = 64;
  static constexpr size_t kMaxEntriesPerShard = 4096;
  static constexpr size_t kMaxCachedWordBytes = 128;
  struct Shard {
    absl::Mutex mu;
    absl::flat_hash_map<std::string, std::vector<int32_t>> map;
  };
  mutable std::unique_ptr<Shard[]> cache_;
};

}  // namespace care::tok

#endif  // CARE_TOKENIZER_BPE_MODEL_H_

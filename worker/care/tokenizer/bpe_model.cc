#include "care/tokenizer/bpe_model.h"

#include <queue>

#include "absl/hash/hash.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "care/tokenizer/unicode.h"

namespace care::tok {

absl::StatusOr<std::unique_ptr<BpeModel>> BpeModel::Create(
    absl::flat_hash_map<std::string, int32_t> vocab,
    const std::vector<std::pair<std::string, std::string>>& merges,
    BpeOptions options) {
  std::unique_ptr<BpeModel> m(new BpeModel());
  int32_t max_id = -1;
  for (const auto& [token, id] : vocab) {
    if (id < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("BPE vocab: token '", token, "' has negative id ", id));
    }
    max_id = std::max(max_id, id);
  }
  m->id_to_token_.resize(static_cast<size_t>(max_id + 1));
  m->has_id_.assign(static_cast<size_t>(max_id + 1), false);
  for (const auto& [token, id] : vocab) {
    m->id_to_token_[id] = token;
    m->has_id_[id] = true;
  }
  m->vocab_ = std::move(vocab);
  m->merges_.reserve(merges.size());
  for (size_t r = 0; r < merges.size(); ++r) {
    const auto& [a, b] = merges[r];
    auto ia = m->vocab_.find(a);
    auto ib = m->vocab_.find(b);
    auto ic = m->vocab_.find(absl::StrCat(a, b));
    if (ia == m->vocab_.end() || ib == m->vocab_.end() ||
        ic == m->vocab_.end()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "BPE merges[", r, "] ('", a, "' '", b,
          "'): a part or the merged token is not in the vocabulary"));
    }
    // As in HF (a map built in order), a repeated pair keeps its last rank.
    m->merges_.insert_or_assign(PairKey(ia->second, ib->second),
                                Merge{static_cast<int32_t>(r), ic->second});
  }
  m->options_ = std::move(options);
  if (m->options_.unk_token.has_value()) {
    auto it = m->vocab_.find(*m->options_.unk_token);
    if (it == m->vocab_.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("BPE unk_token '", *m->options_.unk_token,
                       "' is not in the vocabulary"));
    }
    m->unk_id_ = it->second;
  }
  for (int b = 0; b < 256; ++b) {
    auto it = m->vocab_.find(absl::StrFormat("<0x%02X>", b));
    m->byte_ids_[b] = it == m->vocab_.end() ? -1 : it->second;
  }
  m->cache_.reset(new Shard[kShards]);
  return m;
}

std::optional<int32_t> BpeModel::TokenToId(absl::string_view token) const {
  auto it = vocab_.find(token);
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

const std::string* BpeModel::IdToToken(int32_t id) const {
  if (id < 0 || id >= size() || !has_id_[id]) return nullptr;
  return &id_to_token_[id];
}

void BpeModel::Tokenize(absl::string_view word,
                        std::vector<int32_t>* ids) const {
  if (word.empty()) return;
  if (options_.ignore_merges) {
    auto it = vocab_.find(word);
    if (it != vocab_.end()) {
      ids->push_back(it->second);
      return;
    }
  }
  if (word.size() > kMaxCachedWordBytes) {
    TokenizeUncached(word, ids);
    return;
  }
  Shard& shard = cache_[absl::Hash<absl::string_view>()(word) % kShards];
  {
    absl::ReaderMutexLock lock(&shard.mu);
    auto it = shard.map.find(word);
    if (it != shard.map.end()) {
      ids->insert(ids->end(), it->second.begin(), it->second.end());
      return;
    }
  }
  const size_t mark = ids->size();
  TokenizeUncached(word, ids);
  absl::MutexLock lock(&shard.mu);
  if (shard.map.size() < kMaxEntriesPerShard) {
    shard.map.try_emplace(word, ids->begin() + mark, ids->end());
  }
}

void BpeModel::TokenizeUncached(absl::string_view word,
                                std::vector<int32_t>* ids) const {
  // Initial symbols: one per character (or per byte with byte_fallback).
  std::vector<int32_t> sym;
  sym.reserve(word.size());
  bool last_was_unk = false;
  for (size_t i = 0; i < word.size();) {
    size_t len = Utf8Length(static_cast<unsigned char>(word[i]));
    if (i + len > word.size()) len = word.size() - i;
    const absl::string_view ch = word.substr(i, len);
    i += len;
    auto it = vocab_.find(ch);
    if (it != vocab_.end()) {
      sym.push_back(it->second);
      last_was_unk = false;
      continue;
    }
    if (options_.byte_fallback) {
      bool all = true;
      for (char c : ch)
        all = all && byte_ids_[static_cast<unsigned char>(c)] >= 0;
      if (all) {
        for (char c : ch)
          sym.push_back(byte_ids_[static_cast<unsigned char>(c)]);
        last_was_unk = false;
        continue;
      }
    }
    if (unk_id_.has_value()) {
      if (!(options_.fuse_unk && last_was_unk)) sym.push_back(*unk_id_);
      last_was_unk = true;
    }
    // Without an unk token HF drops the character; so do we.
  }
  const size_t n = sym.size();
  if (n <= 1) {
    ids->insert(ids->end(), sym.begin(), sym.end());
    return;
  }
  // Doubly linked list over positions; a merge keeps the left position.
  std::vector<int32_t> prev(n), next(n);
  for (size_t i = 0; i < n; ++i) {
    prev[i] = static_cast<int32_t>(i) - 1;
    next[i] = (i + 1 < n) ? static_cast<int32_t>(i + 1) : -1;
  }
  struct Candidate {
    int32_t rank;
    int32_t pos;
    bool operator>(const Candidate& o) const {
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> heap;
  auto push_pair = [&](int32_t pos) {
    if (pos < 0 || next[pos] < 0) return;
    auto it = merges_.find(PairKey(sym[pos], sym[next[pos]]));
    if (it != merges_.end()) heap.push({it->second.rank, pos});
  };
  for (size_t i = 0; i + 1 < n; ++i) push_pair(static_cast<int32_t>(i));
  std::vector<bool> dead(n, false);
  while (!heap.empty()) {
    const Candidate c = heap.top();
    heap.pop();
    if (dead[c.pos] || next[c.pos] < 0) continue;
    // Stale entry unless the current pair still has this rank (ranks are
    // unique per pair, so the rank identifies the pair).
    auto it = merges_.find(PairKey(sym[c.pos], sym[next[c.pos]]));
    if (it == merges_.end() || it->second.rank != c.rank) continue;
    const int32_t right = next[c.pos];
    sym[c.pos] = it->second.new_id;
    dead[right] = true;
    next[c.pos] = next[right];
    if (next[right] >= 0) prev[next[right]] = c.pos;
    push_pair(prev[c.pos]);
    push_pair(c.pos);
  }
  for (int32_t p = 0; p >= 0; p = next[p]) ids->push_back(sym[p]);
}

}  // namespace care::tok

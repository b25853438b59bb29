// Small tokenizer.json documents built by the tokenizer tests.
#ifndef CARE_TESTS_TOKENIZER_TEST_TOKENIZERS_H_
#define CARE_TESTS_TOKENIZER_TEST_TOKENIZERS_H_

#include <string>
#include <utility>
#include <vector>

#include "nlohmann/json.hpp"

namespace care::tok::testing {

// A byte-level BPE tokenizer.json: the 256 byte symbols (ids 0..255), the
// given merges (as "a b" strings of byte-level symbols) with merged tokens
// numbered from 256 in merge order, the Qwen2 split + ByteLevel
// pre-tokenizer, ByteLevel decoder and no normalizer.
nlohmann::json ByteLevelTokenizerJson(
    const std::vector<std::pair<std::string, std::string>>& merges);

// A SentencePiece-style tokenizer.json: <unk>=0, <s>=1, </s>=2,
// <0x00>..<0xFF> = 3..258, then `pieces` from 259, the given merges,
// byte_fallback, <s>/</s> as special added tokens, and the decoder chain
// Replace(▁→" "), ByteFallback, Fuse, Strip(" ", 1, 0). `legacy` selects the
// normalizer form (Prepend ▁ + Replace " "→▁) instead of a Metaspace
// pre-tokenizer with prepend_scheme "first".
nlohmann::json MetaspaceTokenizerJson(
    const std::vector<std::string>& pieces,
    const std::vector<std::pair<std::string, std::string>>& merges,
    bool legacy);

}  // namespace care::tok::testing

#endif  // CARE_TESTS_TOKENIZER_TEST_TOKENIZERS_H_

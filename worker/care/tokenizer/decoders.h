// tokenizer.json decoders: ByteLevel, Metaspace, Replace, ByteFallback, Fuse,
// Strip and Sequence, each a step on the list of token strings as in HF
// (decode_chain); the final string is their concatenation.
#ifndef CARE_TOKENIZER_DECODERS_H_
#define CARE_TOKENIZER_DECODERS_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace care::tok {

class Decoder {
 public:
  virtual ~Decoder() = default;
  virtual void Apply(std::vector<std::string>* tokens) const = 0;
};

absl::StatusOr<std::unique_ptr<Decoder>> ParseDecoder(const nlohmann::json& j,
                                                      const std::string& where);

}  // namespace care::tok

#endif  // CARE_TOKENIZER_DECODERS_H_

// scale_tokens: tokenizes a text file with a real tokenizer and writes the
// ids as a little-endian .u32 file, folded into a synthetic model's
// vocabulary (id mod V), so a checkpoint without a matching tokenizer (the
// synthetic Llama-3.1-8B shape, V = 128,256) gets realistic token
// statistics: the Zipf-like frequencies and repetitions of real text.
//
//   scale_tokens --tokenizer DIR --text FILE --vocab V --out FILE.u32
#include <cstdint>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "base/flags.h"
#include "base/status_macros.h"
#include "care/data/dataset.h"
#include "care/tokenizer/tokenizer.h"

namespace {

absl::Status Run(const std::vector<std::string>& args) {
  CARE_ASSIGN_OR_RETURN(care::Flags flags, care::Flags::Parse(args, {}));
  CARE_RETURN_IF_ERROR(flags.CheckKnown({"tokenizer", "text", "vocab", "out"}));
  CARE_ASSIGN_OR_RETURN(std::string tok_dir, flags.Required("tokenizer"));
  CARE_ASSIGN_OR_RETURN(std::string text, flags.Required("text"));
  CARE_ASSIGN_OR_RETURN(std::string out, flags.Required("out"));
  CARE_ASSIGN_OR_RETURN(int64_t vocab, flags.IntOr("vocab", 0));
  if (vocab < 1 || vocab > (int64_t{1} << 31)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--vocab must be in [1, 2^31], got ", vocab));
  }
  CARE_ASSIGN_OR_RETURN(auto tokenizer, care::tok::LoadTokenizer(tok_dir));
  CARE_ASSIGN_OR_RETURN(std::vector<int32_t> ids,
                        care::data::LoadTokenStream(text, tokenizer.get()));
  std::vector<uint32_t> folded(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    folded[i] = static_cast<uint32_t>(ids[i] % vocab);  // little-endian host
  }
  std::ofstream f(out, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(folded.data()),
          static_cast<std::streamsize>(folded.size() * sizeof(uint32_t)));
  f.close();
  if (!f) return absl::InternalError("cannot write " + out);
  std::cout << folded.size() << " ids -> " << out << "\n";
  return absl::OkStatus();
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "--help") {
    std::cerr << "usage: scale_tokens --tokenizer DIR --text FILE --vocab V "
                 "--out FILE.u32\n";
    return args.empty() ? 2 : 0;
  }
  const absl::Status st = Run(args);
  if (!st.ok()) {
    std::cerr << "scale_tokens: " << st.message() << "\n";
    return st.code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
  }
  return 0;
}

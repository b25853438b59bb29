// care-synth: writes a synthetic checkpoint of a real model's shape (random
// weights of realistic scale) for benchmarks and demos.
//
//   care-synth --preset llama-3.2-1b [--layers N] [--dtype bf16|f16|f32]
//              [--seed S] [--shard-bytes B] [--structure on|off]
//              [--tokenizer DIR] --out DIR
#include <cstdint>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "base/flags.h"
#include "base/status_macros.h"
#include "care/data/synthetic_tokens.h"
#include "care/engine/synthetic_model.h"
#include "care/io/dtype.h"

namespace {

constexpr char kUsage[] =
    "usage: care-synth --preset NAME --out DIR [--layers N] [--dtype "
    "bf16|f16|f32]\n"
    "                  [--seed S] [--shard-bytes B] [--structure on|off]\n"
    "                  [--tokenizer DIR] [--tokens-out FILE.u32 --tokens N]\n"
    "presets: demo, llama-3.2-1b, llama-3.1-8b, qwen3-4b, qwen3-30b-a3b,\n"
    "deepseek-v3-tiny, deepseek-v2-lite.\n"
    "Weights N(0, 0.02²), norms ~1; --structure on (default) adds a shared\n"
    "low-rank residual subspace and outlier channels (docs/scale.md).\n"
    "--tokenizer copies tokenizer.json/tokenizer_config.json from DIR (its\n"
    "vocabulary must fit the preset's); otherwise none is written (use id\n"
    "files, e.g. from scale_tokens).\n"
    "--tokens-out writes N ids (default 200000) of a seeded Markov stream\n"
    "over the preset's vocabulary (Zipf unigrams, predictable bigrams) as\n"
    "calibration/evaluation data for models without real text.\n";

absl::Status Run(const std::vector<std::string>& args) {
  CARE_ASSIGN_OR_RETURN(care::Flags flags, care::Flags::Parse(args, {}));
  CARE_RETURN_IF_ERROR(flags.CheckKnown({"preset", "out", "layers", "dtype",
                                         "seed", "shard-bytes", "structure",
                                         "tokenizer", "tokens-out", "tokens"}));
  CARE_ASSIGN_OR_RETURN(std::string preset, flags.Required("preset"));
  CARE_ASSIGN_OR_RETURN(std::string out, flags.Required("out"));
  CARE_ASSIGN_OR_RETURN(int64_t layers, flags.IntOr("layers", 0));
  CARE_ASSIGN_OR_RETURN(int64_t seed, flags.IntOr("seed", 1));
  CARE_ASSIGN_OR_RETURN(int64_t shard,
                        flags.IntOr("shard-bytes", 5'000'000'000));
  const std::string dtype_name = flags.StringOr("dtype", "bf16");
  std::optional<care::io::DType> dtype =
      care::io::DTypeFromTorchName(dtype_name == "bf16"  ? "bfloat16"
                                   : dtype_name == "f16" ? "float16"
                                   : dtype_name == "f32" ? "float32"
                                                         : dtype_name);
  if (!dtype.has_value() || !care::io::IsWritableFromF32(*dtype)) {
    return absl::InvalidArgumentError(
        "--dtype must be bf16, f16 or f32, got '" + dtype_name + "'");
  }
  if (layers < 0 || shard <= 0) {
    return absl::InvalidArgumentError(
        "--layers must be >= 0 and --shard-bytes > 0");
  }
  const std::string structure = flags.StringOr("structure", "on");
  if (structure != "on" && structure != "off") {
    return absl::InvalidArgumentError("--structure must be on or off, got '" +
                                      structure + "'");
  }
  CARE_ASSIGN_OR_RETURN(nlohmann::json config,
                        care::engine::PresetConfigJson(preset, layers));
  CARE_RETURN_IF_ERROR(care::engine::WriteSyntheticModel(
      config, out, *dtype,
      {.seed = static_cast<uint64_t>(seed), .structured = structure == "on"},
      static_cast<uint64_t>(shard)));
  if (const std::string ids_out = flags.StringOr("tokens-out", "");
      !ids_out.empty()) {
    CARE_ASSIGN_OR_RETURN(int64_t count, flags.IntOr("tokens", 200000));
    CARE_ASSIGN_OR_RETURN(
        std::vector<int32_t> ids,
        care::data::SyntheticTokenStream(
            {.vocab_size = config.value("vocab_size", int64_t{0}),
             .count = count,
             .seed = static_cast<uint64_t>(seed)}));
    CARE_RETURN_IF_ERROR(care::data::WriteTokenFileU32(ids_out, ids));
  }
  const std::string tok = flags.StringOr("tokenizer", "");
  if (tok.empty()) return absl::OkStatus();
  for (const char* name : {"tokenizer.json", "tokenizer_config.json"}) {
    std::error_code ec;
    const std::filesystem::path src = std::filesystem::path(tok) / name;
    if (!std::filesystem::exists(src, ec)) continue;
    std::filesystem::copy_file(
        src, std::filesystem::path(out) / name,
        std::filesystem::copy_options::overwrite_existing, ec);
    if (ec) {
      return absl::InternalError("cannot copy " + src.string() + " into " +
                                 out + ": " + ec.message());
    }
  }
  return absl::OkStatus();
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "--help") {
    std::cerr << kUsage;
    return args.empty() ? 2 : 0;
  }
  const absl::Status st = Run(args);
  if (!st.ok()) {
    std::cerr << "care-synth: " << st.message() << "\n";
    return st.code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
  }
  return 0;
}

// care-worker eval: perplexity of a model on a token stream (docs/engine.md).
#include <chrono>
#include <cstdint>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_format.h"
#include "care/data/dataset.h"
#include "care/engine/engine.h"
#include "care/engine/families.h"
#include "care/engine/perplexity.h"
#include "care/io/model.h"
#include "care/io/model_source.h"
#include "care/tokenizer/tokenizer.h"
#include "care/util/flags.h"
#include "care/util/status_macros.h"
#include "cli/command.h"

namespace care::cli {
namespace {

constexpr char kUsage[] =
    "usage: care-worker eval --model MODEL_URI (--data FILE | --tokens "
    "FILE.u16)\n"
    "                        --seq-len T [--max-windows W] [--start N] "
    "[--bos]\n"
    "                        [--batch-windows B] [--threads N] [--json]\n"
    "\n"
    "Perplexity over non-overlapping windows of T tokens (docs/engine.md):\n"
    "every position but the first of each window is scored; ppl = exp(mean "
    "NLL).\n"
    "  --model          model directory, file:///dir or hf://org/name[@rev]\n"
    "  --data FILE      .txt/.jsonl (tokenized with the model's tokenizer) or\n"
    "                   .u16/.u32 token ids\n"
    "  --tokens FILE    .u16/.u32 token ids (no tokenizer needed)\n"
    "  --seq-len T      window length, >= 2\n"
    "  --max-windows W  use at most W windows (default: all full windows)\n"
    "  --start N        first stream position used (default 0)\n"
    "  --bos            prepend BOS to every window (T-1 stream tokens each)\n"
    "  --batch-windows B  windows per pass through the layers (default: "
    "all)\n"
    "  --threads N      OpenMP/Eigen threads (default: all cores)\n"
    "  --json           one JSON object: windows, predictions, mean_nll, ppl,\n"
    "                   timing {seconds, tokens_per_second}\n";

struct EvalArgs {
  std::string model;
  std::optional<std::string> data, tokens;
  int64_t seq_len = 0, max_windows = 0, start = 0, batch_windows = 0;
  int threads = 0;
  bool bos = false, json = false;
};

absl::StatusOr<EvalArgs> ParseArgs(const std::vector<std::string>& args) {
  CARE_ASSIGN_OR_RETURN(Flags flags, Flags::Parse(args, {"bos", "json"}));
  CARE_RETURN_IF_ERROR(
      flags.CheckKnown({"model", "data", "tokens", "seq-len", "max-windows",
                        "start", "bos", "json", "threads", "batch-windows"}));
  if (!flags.positionals().empty()) {
    return absl::InvalidArgumentError("unexpected argument '" +
                                      flags.positionals()[0] + "'");
  }
  EvalArgs a;
  CARE_ASSIGN_OR_RETURN(a.model, flags.Required("model"));
  a.data = flags.String("data");
  a.tokens = flags.String("tokens");
  if (a.data.has_value() == a.tokens.has_value()) {
    return absl::InvalidArgumentError(
        "give exactly one of --data FILE and --tokens FILE");
  }
  CARE_ASSIGN_OR_RETURN(a.seq_len, flags.IntOr("seq-len", 0));
  if (a.seq_len < 2) {
    return absl::InvalidArgumentError("--seq-len T is required, T >= 2");
  }
  CARE_ASSIGN_OR_RETURN(a.max_windows, flags.IntOr("max-windows", 0));
  CARE_ASSIGN_OR_RETURN(a.start, flags.IntOr("start", 0));
  CARE_ASSIGN_OR_RETURN(a.batch_windows, flags.IntOr("batch-windows", 0));
  CARE_ASSIGN_OR_RETURN(int64_t threads, flags.IntOr("threads", 0));
  if (a.max_windows < 0 || a.start < 0 || a.batch_windows < 0 || threads < 0 ||
      threads > 4096) {
    return absl::InvalidArgumentError(
        "--max-windows, --start and --batch-windows must be >= 0, --threads "
        "in [0, 4096]");
  }
  a.threads = static_cast<int>(threads);
  a.bos = flags.Bool("bos");
  a.json = flags.Bool("json");
  return a;
}

absl::Status Run(const EvalArgs& a) {
  CARE_ASSIGN_OR_RETURN(std::string dir, io::ResolveModelDir(a.model));
  CARE_ASSIGN_OR_RETURN(io::Model model,
                        io::OpenModel(dir, engine::Families()));
  std::vector<int32_t> stream;
  std::unique_ptr<tok::Tokenizer> tokenizer;
  if (a.tokens.has_value()) {
    CARE_ASSIGN_OR_RETURN(stream, data::ReadTokenFile(*a.tokens));
  } else {
    // Id files need no tokenizer (synthetic models have none).
    const bool ids =
        absl::EndsWith(*a.data, ".u16") || absl::EndsWith(*a.data, ".u32");
    if (!ids) {
      CARE_ASSIGN_OR_RETURN(tokenizer, tok::LoadTokenizer(dir));
    }
    CARE_ASSIGN_OR_RETURN(stream,
                          data::LoadTokenStream(*a.data, tokenizer.get()));
  }
  std::optional<int32_t> bos;
  if (a.bos) {
    if (model.config.bos_token_id.has_value()) {
      bos = static_cast<int32_t>(*model.config.bos_token_id);
    } else if (tokenizer != nullptr && tokenizer->bos_id().has_value()) {
      bos = tokenizer->bos_id();
    } else {
      return absl::InvalidArgumentError(
          "--bos: the model's config.json has no bos_token_id");
    }
  }
  CARE_ASSIGN_OR_RETURN(
      engine::EvalWindows windows,
      engine::MakeEvalWindows(stream, {.seq_len = a.seq_len,
                                       .max_windows = a.max_windows,
                                       .start = a.start,
                                       .bos = bos}));
  const auto t0 = std::chrono::steady_clock::now();
  CARE_ASSIGN_OR_RETURN(
      engine::PerplexityResult r,
      engine::EvaluatePerplexity(model.config, *model.weights, windows,
                                 {.threads = a.threads}, {}, a.batch_windows));
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
          .count();
  const double tps = windows.inputs.tokens() / seconds;
  if (a.json) {
    nlohmann::json out = {
        {"windows", r.windows},
        {"predictions", r.predictions},
        {"mean_nll", r.mean_nll},
        {"ppl", r.ppl},
        {"seq_len", a.seq_len},
        {"bos", a.bos},
        {"timing", {{"seconds", seconds}, {"tokens_per_second", tps}}}};
    std::cout << out.dump() << "\n";
  } else {
    std::cout << absl::StrFormat(
        "windows      %d\npredictions  %d\nmean_nll     %.6f\nppl          "
        "%.6f\nseconds      %.3f (%.0f tokens/s)\n",
        r.windows, r.predictions, r.mean_nll, r.ppl, seconds, tps);
  }
  return absl::OkStatus();
}

int EvalMain(const std::vector<std::string>& args) {
  absl::StatusOr<EvalArgs> parsed = ParseArgs(args);
  if (!parsed.ok()) {
    std::cerr << "care-worker eval: " << parsed.status().message() << "\n"
              << kUsage;
    return 2;
  }
  const absl::Status st = Run(*parsed);
  if (!st.ok()) {
    std::cerr << "care-worker eval: " << st.message() << "\n";
    return 1;
  }
  return 0;
}

}  // namespace

CARE_REGISTER_COMMAND(eval, "eval", "perplexity of a model on a token stream",
                      kUsage, EvalMain);

}  // namespace care::cli

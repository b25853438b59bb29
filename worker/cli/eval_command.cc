// care-worker eval: perplexity of a model on a token stream, rolling
// perplexity of whole documents, and zero-shot multiple-choice task accuracy
// (docs/engine.md).
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
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "base/flags.h"
#include "base/status_macros.h"
#include "care/data/dataset.h"
#include "care/engine/engine.h"
#include "care/engine/families.h"
#include "care/engine/perplexity.h"
#include "care/eval/documents.h"
#include "care/eval/multiple_choice.h"
#include "care/eval/rolling.h"
#include "care/eval/task.h"
#include "care/io/model.h"
#include "care/io/model_source.h"
#include "care/tokenizer/tokenizer.h"
#include "cli/command.h"

namespace care::cli {
namespace {

constexpr char kUsage[] =
    "usage: care-worker eval --model MODEL_URI\n"
    "         [--data FILE | --tokens FILE.u16] [--seq-len T] [--max-windows "
    "W]\n"
    "         [--start N] [--bos] [--batch-windows B]\n"
    "         [--rolling [--max-length W] [--stride S] [--rolling-prefix "
    "bos|none]\n"
    "                    [--documents whole|wikitext] [--text-field F]]\n"
    "         [--tasks FILE[,FILE...] [--task-format F[,F...]] [--limit N]\n"
    "                    [--task-bos] [--max-length W]]\n"
    "         [--tokens-per-pass N] [--threads N] [--json]\n"
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
    "Rolling perplexity of whole documents (lm-eval loglikelihood_rolling):\n"
    "  --rolling        score every token of the --data/--tokens documents\n"
    "  --max-length W   model inputs per window (default: the config's\n"
    "                   max_position_embeddings)\n"
    "  --stride S       new tokens scored per window after the first\n"
    "                   (default W: disjoint windows, as lm-eval)\n"
    "  --rolling-prefix bos (default, lm-eval) or none (transformers'\n"
    "                   stride method: the first token is context only)\n"
    "  --documents      whole (default: a .txt is one document, a .jsonl\n"
    "                   one per record) or wikitext (WikiText pages,\n"
    "                   lm-eval's detokenizer)\n"
    "Zero-shot multiple-choice accuracy (lm-eval acc / acc_norm):\n"
    "  --tasks FILES    JSONL task files, comma-separated\n"
    "  --task-format F  auto (default), generic, arc, hellaswag, piqa,\n"
    "                   winogrande, boolq, openbookqa; one, or one per file\n"
    "  --limit N        first N items of each task (default: all)\n"
    "  --task-bos       prepend BOS to every context\n"
    "  --tokens-per-pass N  padded tokens per engine pass (default 16384)\n"
    "  --threads N      OpenMP/Eigen threads (default: all cores)\n"
    "  --json           one JSON object: windows, predictions, mean_nll, ppl,\n"
    "                   timing {seconds, tokens_per_second}; \"rolling\" and\n"
    "                   \"tasks\" when asked for\n";

struct EvalArgs {
  std::string model;
  std::optional<std::string> data, tokens;
  int64_t seq_len = 0, max_windows = 0, start = 0, batch_windows = 0;
  int threads = 0;
  bool bos = false, json = false;
  // Rolling perplexity.
  bool rolling = false;
  int64_t max_length = 0, stride = 0, tokens_per_pass = 16384;
  bool rolling_prefix = true;
  eval::DocumentSplit documents = eval::DocumentSplit::kWhole;
  std::string text_field = "text";
  // Tasks.
  std::vector<std::string> tasks;
  std::vector<eval::TaskFormat> task_formats;
  int64_t limit = 0;
  bool task_bos = false;
};

absl::StatusOr<EvalArgs> ParseArgs(const std::vector<std::string>& args) {
  CARE_ASSIGN_OR_RETURN(
      Flags flags, Flags::Parse(args, {"bos", "json", "rolling", "task-bos"}));
  CARE_RETURN_IF_ERROR(flags.CheckKnown(
      {"model",          "data",           "tokens",    "seq-len",
       "max-windows",    "start",          "bos",       "json",
       "threads",        "batch-windows",  "rolling",   "max-length",
       "stride",         "rolling-prefix", "documents", "text-field",
       "tasks",          "task-format",    "limit",     "task-bos",
       "tokens-per-pass"}));
  if (!flags.positionals().empty()) {
    return absl::InvalidArgumentError("unexpected argument '" +
                                      flags.positionals()[0] + "'");
  }
  EvalArgs a;
  CARE_ASSIGN_OR_RETURN(a.model, flags.Required("model"));
  a.data = flags.String("data");
  a.tokens = flags.String("tokens");
  if (auto tasks = flags.String("tasks")) {
    a.tasks = absl::StrSplit(*tasks, ',', absl::SkipEmpty());
    if (a.tasks.empty()) {
      return absl::InvalidArgumentError("--tasks names no file");
    }
  }
  if (a.data.has_value() && a.tokens.has_value()) {
    return absl::InvalidArgumentError(
        "give at most one of --data FILE and --tokens FILE");
  }
  if (!a.data.has_value() && !a.tokens.has_value() && a.tasks.empty()) {
    return absl::InvalidArgumentError(
        "give --data FILE or --tokens FILE, or --tasks FILES");
  }
  a.rolling = flags.Bool("rolling");
  if (a.rolling && !a.data.has_value() && !a.tokens.has_value()) {
    return absl::InvalidArgumentError("--rolling needs --data or --tokens");
  }
  CARE_ASSIGN_OR_RETURN(a.seq_len, flags.IntOr("seq-len", 0));
  const bool plain = (a.data.has_value() || a.tokens.has_value()) && !a.rolling;
  if ((plain || flags.Has("seq-len")) && a.seq_len < 2) {
    return absl::InvalidArgumentError("--seq-len T is required, T >= 2");
  }
  CARE_ASSIGN_OR_RETURN(a.max_length, flags.IntOr("max-length", 0));
  CARE_ASSIGN_OR_RETURN(a.stride, flags.IntOr("stride", 0));
  CARE_ASSIGN_OR_RETURN(a.tokens_per_pass,
                        flags.IntOr("tokens-per-pass", 16384));
  CARE_ASSIGN_OR_RETURN(a.limit, flags.IntOr("limit", 0));
  if (a.max_length < 0 || a.stride < 0 || a.tokens_per_pass < 1 ||
      a.limit < 0) {
    return absl::InvalidArgumentError(
        "--max-length, --stride and --limit must be >= 0, --tokens-per-pass "
        ">= 1");
  }
  if (a.stride > 0 && a.max_length > 0 && a.stride > a.max_length) {
    return absl::InvalidArgumentError("--stride must be <= --max-length");
  }
  const std::string prefix = flags.StringOr("rolling-prefix", "bos");
  if (prefix != "bos" && prefix != "none") {
    return absl::InvalidArgumentError("--rolling-prefix is bos or none");
  }
  a.rolling_prefix = prefix == "bos";
  CARE_ASSIGN_OR_RETURN(a.documents, eval::ParseDocumentSplit(
                                         flags.StringOr("documents", "whole")));
  a.text_field = flags.StringOr("text-field", "text");
  const std::vector<std::string> formats = absl::StrSplit(
      flags.StringOr("task-format", "auto"), ',', absl::SkipEmpty());
  for (const std::string& f : formats) {
    CARE_ASSIGN_OR_RETURN(eval::TaskFormat tf, eval::ParseTaskFormat(f));
    a.task_formats.push_back(tf);
  }
  if (!a.tasks.empty() && a.task_formats.size() != 1 &&
      a.task_formats.size() != a.tasks.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--task-format gives ", a.task_formats.size(), " formats for ",
        a.tasks.size(), " task files (give one, or one per file)"));
  }
  a.task_bos = flags.Bool("task-bos");
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

std::optional<int32_t> ModelBos(const io::Model& model,
                                const tok::Tokenizer* tokenizer) {
  if (model.config.bos_token_id.has_value()) {
    return static_cast<int32_t>(*model.config.bos_token_id);
  }
  if (tokenizer != nullptr) return tokenizer->bos_id();
  return std::nullopt;
}

// Plain windows (today's perplexity): adds the keys to `out`.
absl::Status RunPlain(const EvalArgs& a, const io::Model& model,
                      const std::vector<int32_t>& stream,
                      std::optional<int32_t> bos, nlohmann::json& out) {
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
  out["windows"] = r.windows;
  out["predictions"] = r.predictions;
  out["mean_nll"] = r.mean_nll;
  out["ppl"] = r.ppl;
  out["seq_len"] = a.seq_len;
  out["bos"] = a.bos;
  out["model_type"] = model.config.model_type;
  out["kv_values_per_token"] = KvValuesPerToken(model.config);
  out["timing"] = {{"seconds", seconds}, {"tokens_per_second", tps}};
  if (!a.json) {
    std::cout << absl::StrFormat(
        "windows      %d\npredictions  %d\nmean_nll     %.6f\nppl          "
        "%.6f\nseconds      %.3f (%.0f tokens/s)\n"
        "KV cache     %d values per token (%s, all layers)\n",
        r.windows, r.predictions, r.mean_nll, r.ppl, seconds, tps,
        KvValuesPerToken(model.config), model.config.model_type);
  }
  return absl::OkStatus();
}

absl::Status RunRolling(const EvalArgs& a, const io::Model& model,
                        const tok::Tokenizer* tokenizer,
                        const std::string& path, nlohmann::json& out) {
  CARE_ASSIGN_OR_RETURN(
      std::vector<eval::RollingDocument> docs,
      eval::LoadRollingDocuments(
          path, tokenizer, {.split = a.documents, .text_field = a.text_field}));
  eval::RollingOptions ro;
  ro.max_length =
      a.max_length > 0 ? a.max_length : model.config.max_position_embeddings;
  if (ro.max_length <= 0) {
    return absl::InvalidArgumentError(
        "--max-length is required: config.json has no "
        "max_position_embeddings");
  }
  ro.stride = a.stride;
  if (a.rolling_prefix) {
    ro.prefix = ModelBos(model, tokenizer);
    if (!ro.prefix) {
      return absl::InvalidArgumentError(
          "--rolling-prefix bos: the model has no BOS id (use none)");
    }
  }
  eval::SequenceOptions so;
  so.engine.threads = a.threads;
  so.tokens_per_pass = a.tokens_per_pass;
  CARE_ASSIGN_OR_RETURN(
      eval::RollingResult r,
      eval::EvaluateRolling(model.config, *model.weights, docs, ro, so));
  nlohmann::json j = {{"documents", r.documents},
                      {"windows", r.windows},
                      {"predictions", r.predictions},
                      {"max_length", ro.max_length},
                      {"stride", ro.stride > 0 ? ro.stride : ro.max_length},
                      {"prefix", a.rolling_prefix ? "bos" : "none"},
                      {"mean_nll", r.mean_nll},
                      {"token_perplexity", r.token_perplexity}};
  if (r.bytes > 0) {
    j["words"] = r.words;
    j["bytes"] = r.bytes;
    j["word_perplexity"] = r.word_perplexity;
    j["byte_perplexity"] = r.byte_perplexity;
    j["bits_per_byte"] = r.bits_per_byte;
  }
  out["rolling"] = j;
  if (!a.json) {
    std::cout << absl::StrFormat(
        "rolling: %d documents, %d windows (max_length %d, stride %d), %d "
        "tokens\n  token_perplexity %.6f (mean_nll %.6f)\n",
        r.documents, r.windows, ro.max_length,
        ro.stride > 0 ? ro.stride : ro.max_length, r.predictions,
        r.token_perplexity, r.mean_nll);
    if (r.bytes > 0) {
      std::cout << absl::StrFormat(
          "  word_perplexity %.6f (%d words)\n  byte_perplexity %.6f (%d "
          "bytes)\n  bits_per_byte %.6f\n",
          r.word_perplexity, r.words, r.byte_perplexity, r.bytes,
          r.bits_per_byte);
    }
  }
  return absl::OkStatus();
}

absl::Status RunTasks(const EvalArgs& a, const io::Model& model,
                      const tok::Tokenizer& tokenizer, nlohmann::json& out) {
  nlohmann::json tasks = nlohmann::json::array();
  if (!a.json) {
    std::cout << absl::StrFormat("%-24s %-10s %6s %8s %8s %9s %8s\n", "task",
                                 "format", "items", "acc", "stderr", "acc_norm",
                                 "stderr");
  }
  for (size_t i = 0; i < a.tasks.size(); ++i) {
    const eval::TaskFormat format =
        a.task_formats.size() == 1 ? a.task_formats[0] : a.task_formats[i];
    CARE_ASSIGN_OR_RETURN(eval::Task task,
                          eval::ReadTaskFile(a.tasks[i], format, a.limit));
    eval::EncodeOptions eo;
    eo.prepend_bos = a.task_bos;
    eo.bos_id = ModelBos(model, &tokenizer);
    CARE_ASSIGN_OR_RETURN(eval::EncodedTask encoded,
                          eval::EncodeTask(task, tokenizer, eo));
    eval::SequenceOptions so;
    so.engine.threads = a.threads;
    so.tokens_per_pass = a.tokens_per_pass;
    CARE_ASSIGN_OR_RETURN(eval::TaskResult r,
                          eval::ScoreTask(model.config, *model.weights, encoded,
                                          so, a.max_length));
    tasks.push_back({{"name", r.name},
                     {"file", a.tasks[i]},
                     {"format", r.format},
                     {"items", r.items},
                     {"acc", r.acc},
                     {"acc_stderr", r.acc_stderr},
                     {"acc_norm", r.acc_norm},
                     {"acc_norm_stderr", r.acc_norm_stderr}});
    if (!a.json) {
      std::cout << absl::StrFormat("%-24s %-10s %6d %8.4f %8.4f %9.4f %8.4f\n",
                                   r.name, r.format, r.items, r.acc,
                                   r.acc_stderr, r.acc_norm, r.acc_norm_stderr);
    }
  }
  out["tasks"] = tasks;
  return absl::OkStatus();
}

absl::Status Run(const EvalArgs& a) {
  CARE_ASSIGN_OR_RETURN(std::string dir, io::ResolveModelDir(a.model));
  CARE_ASSIGN_OR_RETURN(io::Model model,
                        io::OpenModel(dir, engine::Families()));
  std::unique_ptr<tok::Tokenizer> tokenizer;
  const std::optional<std::string>& file = a.tokens ? a.tokens : a.data;
  // Id files need no tokenizer (synthetic models have none).
  const bool ids = file.has_value() && (absl::EndsWith(*file, ".u16") ||
                                        absl::EndsWith(*file, ".u32"));
  if ((file.has_value() && !ids) || !a.tasks.empty()) {
    CARE_ASSIGN_OR_RETURN(tokenizer, tok::LoadTokenizer(dir));
  }
  nlohmann::json out = nlohmann::json::object();
  if (file.has_value() && !a.rolling) {
    std::vector<int32_t> stream;
    if (a.tokens.has_value()) {
      CARE_ASSIGN_OR_RETURN(stream, data::ReadTokenFile(*a.tokens));
    } else {
      CARE_ASSIGN_OR_RETURN(stream,
                            data::LoadTokenStream(*a.data, tokenizer.get()));
    }
    std::optional<int32_t> bos;
    if (a.bos) {
      bos = ModelBos(model, tokenizer.get());
      if (!bos) {
        return absl::InvalidArgumentError(
            "--bos: the model's config.json has no bos_token_id");
      }
    }
    CARE_RETURN_IF_ERROR(RunPlain(a, model, stream, bos, out));
  }
  if (a.rolling) {
    CARE_RETURN_IF_ERROR(RunRolling(a, model, tokenizer.get(), *file, out));
  }
  if (!a.tasks.empty()) {
    CARE_RETURN_IF_ERROR(RunTasks(a, model, *tokenizer, out));
  }
  if (a.json) std::cout << out.dump() << "\n";
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

CARE_REGISTER_COMMAND(eval, "eval",
                      "perplexity, rolling perplexity and task accuracy",
                      kUsage, EvalMain);

}  // namespace care::cli

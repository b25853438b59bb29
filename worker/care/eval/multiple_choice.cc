#include "care/eval/multiple_choice.h"

#include <cmath>
#include <limits>
#include <map>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace care::eval {
namespace {

// First index of the maximum (numpy.argmax).
int64_t ArgMax(const std::vector<double>& v) {
  int64_t best = 0;
  for (int64_t i = 1; i < static_cast<int64_t>(v.size()); ++i) {
    if (v[i] > v[best]) best = i;
  }
  return best;
}

}  // namespace

absl::StatusOr<EncodedTask> EncodeTask(const Task& task,
                                       const tok::Tokenizer& tokenizer,
                                       const EncodeOptions& options) {
  EncodedTask out;
  out.name = task.name;
  out.format = TaskFormatName(task.format);
  const std::optional<int32_t> bos =
      options.bos_id.has_value() ? options.bos_id : tokenizer.bos_id();
  if (options.prepend_bos && !bos.has_value()) {
    return absl::InvalidArgumentError(
        absl::StrCat(task.path, ": prepend BOS: the model has no BOS id"));
  }
  for (const TaskItem& item : task.items) {
    const std::string where = absl::StrCat(task.path, ":", item.line);
    EncodedItem e;
    e.choice_lengths = item.choice_lengths;
    e.label = item.label;
    std::map<std::string, std::vector<int32_t>> contexts;  // per item
    for (const Request& r : item.requests) {
      // _encode_pair: trailing whitespace of the context goes with the
      // continuation.
      const size_t keep = absl::StripTrailingAsciiWhitespace(r.context).size();
      const std::string context = r.context.substr(0, keep);
      const std::string continuation = r.context.substr(keep) + r.continuation;
      EncodedRequest er;
      if (context.empty()) {
        if (!bos.has_value()) {
          return absl::InvalidArgumentError(absl::StrCat(
              where, ": empty context and the model has no BOS id"));
        }
        er.context = {*bos};
        CARE_ASSIGN_OR_RETURN(er.continuation, tokenizer.Encode(continuation));
      } else {
        auto it = contexts.find(context);
        if (it == contexts.end()) {
          CARE_ASSIGN_OR_RETURN(std::vector<int32_t> ids,
                                tokenizer.Encode(context));
          it = contexts.emplace(context, std::move(ids)).first;
        }
        CARE_ASSIGN_OR_RETURN(std::vector<int32_t> whole,
                              tokenizer.Encode(context + continuation));
        const std::vector<int32_t>& ctx = it->second;
        const size_t n = std::min(ctx.size(), whole.size());
        er.context = ctx;
        er.continuation.assign(whole.begin() + n, whole.end());
        if (options.prepend_bos) er.context.insert(er.context.begin(), *bos);
      }
      if (er.continuation.empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, ": continuation '", r.continuation,
                         "' encodes to no tokens after its context"));
      }
      e.requests.push_back(std::move(er));
    }
    out.items.push_back(std::move(e));
  }
  return out;
}

double MeanStderr(const std::vector<double>& values) {
  const int64_t n = static_cast<int64_t>(values.size());
  if (n < 2) return 0;
  double mean = 0;
  for (double v : values) mean += v;
  mean /= n;
  double ss = 0;
  for (double v : values) ss += (v - mean) * (v - mean);
  return std::sqrt(ss / (n - 1)) / std::sqrt(static_cast<double>(n));
}

void Aggregate(const std::vector<EncodedItem>& items, TaskResult* r) {
  std::vector<double> acc, acc_norm;
  for (size_t i = 0; i < items.size(); ++i) {
    ItemScore& s = r->scores[i];
    std::vector<double> normed(s.loglikelihoods.size());
    for (size_t c = 0; c < normed.size(); ++c) {
      const double len = items[i].choice_lengths[c];
      normed[c] = len > 0 ? s.loglikelihoods[c] / len
                          : -std::numeric_limits<double>::infinity();
    }
    s.pred = ArgMax(s.loglikelihoods);
    s.pred_norm = ArgMax(normed);
    acc.push_back(s.pred == items[i].label ? 1.0 : 0.0);
    acc_norm.push_back(s.pred_norm == items[i].label ? 1.0 : 0.0);
  }
  const double n = static_cast<double>(items.size());
  r->items = static_cast<int64_t>(items.size());
  r->acc = r->acc_norm = 0;
  for (size_t i = 0; i < acc.size(); ++i) {
    r->acc += acc[i] / n;
    r->acc_norm += acc_norm[i] / n;
  }
  r->acc_stderr = MeanStderr(acc);
  r->acc_norm_stderr = MeanStderr(acc_norm);
}

absl::StatusOr<TaskResult> ScoreTask(const ModelConfig& config,
                                     const TensorSource& weights,
                                     const EncodedTask& task,
                                     const SequenceOptions& options,
                                     int64_t max_length) {
  if (max_length <= 0) {
    max_length = config.max_position_embeddings > 0
                     ? config.max_position_embeddings
                     : 2048;
  }
  std::vector<Sequence> seqs;
  for (size_t i = 0; i < task.items.size(); ++i) {
    for (const EncodedRequest& r : task.items[i].requests) {
      const int64_t nc = static_cast<int64_t>(r.continuation.size());
      if (r.context.empty() || nc == 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            task.name, " item ", i, ": empty context or continuation ids"));
      }
      if (nc > max_length) {
        return absl::InvalidArgumentError(
            absl::StrCat(task.name, " item ", i, ": continuation of ", nc,
                         " tokens exceeds max_length ", max_length));
      }
      std::vector<int32_t> full = r.context;
      full.insert(full.end(), r.continuation.begin(), r.continuation.end());
      // The last max_length + 1 tokens; the model reads all but the last.
      const int64_t keep = std::min<int64_t>(full.size(), max_length + 1);
      full.erase(full.begin(), full.end() - keep);
      Sequence s;
      s.inputs.assign(full.begin(), full.end() - 1);
      s.targets.assign(s.inputs.size(), -1);
      for (int64_t k = 0; k < nc; ++k) {
        const int64_t pos = keep - 1 - nc + k;  // predicts full[pos + 1]
        s.targets[pos] = full[pos + 1];
      }
      seqs.push_back(std::move(s));
    }
  }
  CARE_ASSIGN_OR_RETURN(std::vector<engine::NllSum> nll,
                        ScoreSequences(config, weights, seqs, options));
  TaskResult result;
  result.name = task.name;
  result.format = task.format;
  size_t k = 0;
  for (const EncodedItem& item : task.items) {
    ItemScore s;
    for (size_t c = 0; c < item.requests.size(); ++c) {
      s.loglikelihoods.push_back(-nll[k++].sum);
    }
    result.scores.push_back(std::move(s));
  }
  Aggregate(task.items, &result);
  return result;
}

}  // namespace care::eval

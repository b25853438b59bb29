// Tokenizer throughput: the Qwen3 tokenizer.json (our C++ BPE) against
// SentencePiece (stories260K's tokenizer.model, the library's C++ encoder)
// on the same text in the same run, single-threaded and with documents
// encoded in parallel on all hardware threads. Figures go into
// docs/performance.md ("Tokenizers").
//
// usage: tokenizer_bench [--fixtures DIR] [--mb N] [--threads N] [--repeat N]
// Each figure is the best of --repeat runs (default 3).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_split.h"
#include "base/flags.h"
#include "care/tokenizer/tokenizer.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Result {
  double seconds;
  int64_t tokens;
};

// Best (shortest) of `repeats` runs of EncodeAll: the machine may be shared.
Result EncodeAll(const care::tok::Tokenizer& t,
                 const std::vector<std::string>& docs, int threads);
Result Best(const care::tok::Tokenizer& t, const std::vector<std::string>& docs,
            int threads, int repeats) {
  Result best = EncodeAll(t, docs, threads);
  for (int r = 1; r < repeats; ++r) {
    const Result x = EncodeAll(t, docs, threads);
    if (x.seconds < best.seconds) best = x;
  }
  return best;
}

// Encodes `docs` with `threads` threads, each taking every threads-th
// document; returns wall time and the total token count.
Result EncodeAll(const care::tok::Tokenizer& t,
                 const std::vector<std::string>& docs, int threads) {
  std::vector<int64_t> counts(threads, 0);
  std::vector<int> failures(threads, 0);
  const auto start = Clock::now();
  std::vector<std::thread> pool;
  for (int w = 0; w < threads; ++w) {
    pool.emplace_back([&, w] {
      for (size_t i = w; i < docs.size(); i += threads) {
        auto ids = t.Encode(docs[i]);
        if (ids.ok()) {
          counts[w] += static_cast<int64_t>(ids->size());
        } else {
          ++failures[w];
        }
      }
    });
  }
  for (auto& th : pool) th.join();
  const double s = std::chrono::duration<double>(Clock::now() - start).count();
  int64_t total = 0;
  for (int w = 0; w < threads; ++w) {
    total += counts[w];
    if (failures[w] > 0)
      std::cerr << "encode failures: " << failures[w] << "\n";
  }
  return {s, total};
}

}  // namespace

int main(int argc, char** argv) {
  auto flags =
      care::Flags::Parse(std::vector<std::string>(argv + 1, argv + argc), {});
  if (!flags.ok() ||
      !flags->CheckKnown({"fixtures", "mb", "threads", "repeat"}).ok()) {
    std::cerr << "usage: tokenizer_bench [--fixtures DIR] [--mb N] "
                 "[--threads N] [--repeat N]\n";
    return 2;
  }
  const std::string fixtures =
      flags->StringOr("fixtures", CARE_SOURCE_DIR "/../shared/fixtures");
  const int64_t mb = flags->IntOr("mb", 4).value_or(4);
  const int repeats = static_cast<int>(
      std::max<int64_t>(1, flags->IntOr("repeat", 3).value_or(3)));
  const int hw =
      static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const int threads =
      static_cast<int>(flags->IntOr("threads", hw).value_or(hw));

  std::ifstream in(fixtures + "/tinystories/tinystories_val_head.txt",
                   std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
  if (text.empty()) {
    std::cerr << "cannot read the TinyStories fixture under " << fixtures
              << "\n";
    return 1;
  }
  // Documents: the stories' paragraphs, the file repeated to ~mb MB.
  std::vector<std::string> paragraphs =
      absl::StrSplit(text, "\n\n", absl::SkipEmpty());
  std::vector<std::string> docs;
  size_t bytes = 0;
  while (bytes < static_cast<size_t>(mb) << 20) {
    for (const std::string& p : paragraphs) {
      docs.push_back(p);
      bytes += p.size();
    }
  }

  auto qwen = care::tok::LoadTokenizer(fixtures + "/qwen3-tokenizer");
  auto sp = care::tok::LoadTokenizer(fixtures + "/stories260K-hf");
  if (!qwen.ok() || !sp.ok()) {
    std::cerr << (qwen.ok() ? sp.status() : qwen.status()) << "\n";
    return 1;
  }
  std::printf("text: %zu documents, %.2f MB; hardware threads: %d\n",
              docs.size(), bytes / 1048576.0, hw);
  std::printf("%-32s %8s %10s %12s %9s\n", "tokenizer", "threads", "MB/s",
              "tokens/s", "vs SP");
  // First pass, single thread: every distinct word misses the BPE cache.
  const Result cold = EncodeAll(**qwen, docs, 1);
  std::printf("%-32s %8d %10.2f %12.0f %9s\n", "Qwen3, first pass (cold cache)",
              1, bytes / 1048576.0 / cold.seconds, cold.tokens / cold.seconds,
              "-");
  for (int th : {1, threads}) {
    const Result s = Best(**sp, docs, th, repeats);
    const Result q = Best(**qwen, docs, th, repeats);
    const double sp_mbs = bytes / 1048576.0 / s.seconds;
    const double q_mbs = bytes / 1048576.0 / q.seconds;
    std::printf("%-32s %8d %10.2f %12.0f %9s\n",
                "SentencePiece tok512 (ceiling)", th, sp_mbs,
                s.tokens / s.seconds, "1.00x");
    std::printf("%-32s %8d %10.2f %12.0f %8.2fx\n",
                "Qwen3 tokenizer.json (ours)", th, q_mbs, q.tokens / q.seconds,
                q_mbs / sp_mbs);
    if (th == threads && threads == 1) break;
  }
  return 0;
}

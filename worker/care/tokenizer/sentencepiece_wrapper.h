// A thin, Abseil-free wrapper around sentencepiece::SentencePieceProcessor.
// Debian's sentencepiece_processor.h defines absl::string_view as an alias of
// std::string_view, which collides with Debian Abseil's own class, so that
// header is confined to sentencepiece_wrapper.cc, which includes no Abseil.
#ifndef CARE_TOKENIZER_SENTENCEPIECE_WRAPPER_H_
#define CARE_TOKENIZER_SENTENCEPIECE_WRAPPER_H_

#include <memory>
#include <string>
#include <vector>

namespace care::tok::spw {

class Processor {
 public:
  ~Processor();
  // nullptr and *error set on failure.
  static std::unique_ptr<Processor> Load(const std::string& path,
                                         std::string* error);
  // Thread-safe (the processor is immutable once loaded).
  bool Encode(const char* data, size_t size, std::vector<int>* ids,
              std::string* error) const;
  bool Decode(const std::vector<int>& ids, std::string* text,
              std::string* error) const;
  int piece_size() const;
  int bos_id() const;  // -1 when undefined.
  int eos_id() const;

 private:
  struct Impl;
  explicit Processor(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace care::tok::spw

#endif  // CARE_TOKENIZER_SENTENCEPIECE_WRAPPER_H_

// No Abseil header may be included here (see the header comment).
#include "care/tokenizer/sentencepiece_wrapper.h"

#include <string_view>

#include "sentencepiece_processor.h"

namespace care::tok::spw {

struct Processor::Impl {
  sentencepiece::SentencePieceProcessor sp;
};

Processor::Processor(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Processor::~Processor() = default;

std::unique_ptr<Processor> Processor::Load(const std::string& path,
                                           std::string* error) {
  auto impl = std::make_unique<Impl>();
  const auto status = impl->sp.Load(path);
  if (!status.ok()) {
    *error = status.ToString();
    return nullptr;
  }
  return std::unique_ptr<Processor>(new Processor(std::move(impl)));
}

bool Processor::Encode(const char* data, size_t size, std::vector<int>* ids,
                       std::string* error) const {
  const auto status = impl_->sp.Encode(std::string_view(data, size), ids);
  if (!status.ok()) *error = status.ToString();
  return status.ok();
}

bool Processor::Decode(const std::vector<int>& ids, std::string* text,
                       std::string* error) const {
  const auto status = impl_->sp.Decode(ids, text);
  if (!status.ok()) *error = status.ToString();
  return status.ok();
}

int Processor::piece_size() const { return impl_->sp.GetPieceSize(); }
int Processor::bos_id() const { return impl_->sp.bos_id(); }
int Processor::eos_id() const { return impl_->sp.eos_id(); }

}  // namespace care::tok::spw

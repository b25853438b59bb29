#include "care/compute/buffer_pool.h"

#include <sys/mman.h>

#include <cstdlib>
#include <iterator>
#include <vector>

namespace care::compute {

namespace {

constexpr size_t kAlign = 64;
constexpr size_t kHuge = size_t{2} << 20;

void* AllocateAligned(size_t bytes) {
  // Large buffers on 2 MiB boundaries and marked for transparent huge pages
  // (THP "madvise" mode): first touch then costs one fault per 2 MiB.
  const size_t align = bytes >= 2 * kHuge ? kHuge : kAlign;
  const size_t rounded = (bytes + align - 1) / align * align;
  void* p = std::aligned_alloc(align, rounded);
  if (p != nullptr && align == kHuge) {
    (void)::madvise(p, rounded, MADV_HUGEPAGE);  // advisory
  }
  return p;
}

}  // namespace

std::shared_ptr<BufferPool> BufferPool::Create(size_t max_idle_bytes) {
  return std::shared_ptr<BufferPool>(new BufferPool(max_idle_bytes));
}

BufferPool::~BufferPool() {
  for (auto& [bytes, p] : idle_) std::free(p);
}

std::shared_ptr<void> BufferPool::Take(size_t bytes) {
  void* p = nullptr;
  std::vector<void*> evicted;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = idle_.find(bytes);
    if (it != idle_.end()) {
      p = it->second;
      idle_.erase(it);
      idle_bytes_ -= bytes;
      ++hits_;
    } else {
      ++misses_;
      // A new size: the work changed shape (the head after the layers, a
      // new pass). Idle buffers plus this one stay within max_idle_, largest
      // first out, so the pool never adds more than max_idle_ to the peak.
      while (!idle_.empty() && idle_bytes_ + bytes > max_idle_) {
        auto last = std::prev(idle_.end());
        idle_bytes_ -= last->first;
        evicted.push_back(last->second);
        idle_.erase(last);
      }
    }
  }
  for (void* q : evicted) std::free(q);
  if (p == nullptr) p = AllocateAligned(bytes);
  if (p == nullptr) return nullptr;
  std::shared_ptr<BufferPool> self = shared_from_this();
  return std::shared_ptr<void>(
      p, [self, bytes](void* q) { self->Give(q, bytes); });
}

void BufferPool::Give(void* p, size_t bytes) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (idle_bytes_ + bytes <= max_idle_) {
      idle_.emplace(bytes, p);
      idle_bytes_ += bytes;
      return;
    }
  }
  std::free(p);
}

size_t BufferPool::idle_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return idle_bytes_;
}
int64_t BufferPool::hits() const {
  std::lock_guard<std::mutex> lock(mu_);
  return hits_;
}
int64_t BufferPool::misses() const {
  std::lock_guard<std::mutex> lock(mu_);
  return misses_;
}

}  // namespace care::compute

#include "care/compute/buffer_pool.h"

#include <sys/mman.h>

#include <cstdint>
#include <cstdlib>
#include <iterator>
#include <utility>
#include <vector>

namespace care::compute {

namespace {

constexpr size_t kAlign = 64;
constexpr size_t kPage = size_t{4} << 10;
constexpr size_t kHuge = size_t{2} << 20;
// Buffers from this size up are mapped directly rather than taken from
// malloc: once glibc's dynamic mmap threshold has grown (it rises to the size
// of every mapped chunk freed, up to 32 MiB), it serves such sizes from its
// per-thread heaps, where freed buffers of mixed sizes stay resident. A
// mapping goes back to the kernel when it is freed.
constexpr size_t kMapMin = size_t{1} << 20;

size_t RoundUp(size_t n, size_t align) {
  return (n + align - 1) / align * align;
}

// Large buffers start on a 2 MiB boundary and are marked for transparent
// huge pages (THP "madvise" mode): first touch then costs one fault per
// 2 MiB.
bool WantsHugePages(size_t bytes) { return bytes >= 2 * kHuge; }

size_t MappedBytes(size_t bytes) {
  return RoundUp(bytes, WantsHugePages(bytes) ? kHuge : kPage);
}

void* AllocateBuffer(size_t bytes) {
  if (bytes < kMapMin) {
    return std::aligned_alloc(kAlign, RoundUp(bytes, kAlign));
  }
  const size_t size = MappedBytes(bytes);
  const size_t align = WantsHugePages(bytes) ? kHuge : kPage;
  // Over-map by the alignment, then unmap the unaligned head and the tail.
  const size_t span = size + align - kPage;
  void* m = ::mmap(nullptr, span, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) {
    return nullptr;
  }
  char* base = static_cast<char*>(m);
  const size_t head = RoundUp(reinterpret_cast<uintptr_t>(base), align) -
                      reinterpret_cast<uintptr_t>(base);
  char* start = base + head;
  if (head > 0) {
    ::munmap(base, head);
  }
  if (span > head + size) {
    ::munmap(start + size, span - head - size);
  }
  if (align == kHuge) {
    (void)::madvise(start, size, MADV_HUGEPAGE);  // advisory
  }
  return start;
}

void FreeBuffer(void* p, size_t bytes) {
  if (bytes < kMapMin) {
    std::free(p);
  } else {
    ::munmap(p, MappedBytes(bytes));
  }
}

}  // namespace

std::shared_ptr<BufferPool> BufferPool::Create(size_t max_idle_bytes) {
  return std::shared_ptr<BufferPool>(new BufferPool(max_idle_bytes));
}

BufferPool::~BufferPool() {
  for (auto& [bytes, p] : idle_) {
    FreeBuffer(p, bytes);
  }
}

std::shared_ptr<void> BufferPool::Take(size_t bytes) {
  void* p = nullptr;
  std::vector<std::pair<void*, size_t>> evicted;
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
        evicted.emplace_back(last->second, last->first);
        idle_.erase(last);
      }
    }
  }
  for (auto [q, n] : evicted) {
    FreeBuffer(q, n);
  }
  if (p == nullptr) {
    p = AllocateBuffer(bytes);
  }
  if (p == nullptr) {
    return nullptr;
  }
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
  FreeBuffer(p, bytes);
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

// A pool of 64-byte-aligned host buffers reused by exact size. The CPU
// backend takes every weight and activation buffer from it: a forward pass
// converts each layer's weights into buffers of the same sizes as the layer
// before, so after the first layer a Take() returns memory whose pages are
// already mapped instead of a fresh allocation that page-faults on first
// touch (docs/scale.md, "Weight pool"). Thread-safe.
#ifndef CARE_COMPUTE_BUFFER_POOL_H_
#define CARE_COMPUTE_BUFFER_POOL_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>

namespace care::compute {

class BufferPool : public std::enable_shared_from_this<BufferPool> {
 public:
  // Idle buffers beyond `max_idle_bytes` in total are freed when returned;
  // a Take of a size not in the pool first frees idle buffers (largest
  // first) until they and the new buffer fit in max_idle_bytes.
  static std::shared_ptr<BufferPool> Create(size_t max_idle_bytes);
  ~BufferPool();

  // A buffer of `bytes` (> 0) that goes back to the pool when the last
  // shared_ptr copy is destroyed (the pool outlives it: the deleter holds a
  // reference). nullptr when the allocation fails.
  std::shared_ptr<void> Take(size_t bytes);

  size_t idle_bytes() const;
  // Counters for benchmarks and tests.
  int64_t hits() const;
  int64_t misses() const;

 private:
  explicit BufferPool(size_t max_idle_bytes) : max_idle_(max_idle_bytes) {}
  void Give(void* p, size_t bytes);

  const size_t max_idle_;
  mutable std::mutex mu_;
  std::multimap<size_t, void*> idle_;  // bytes -> buffer
  size_t idle_bytes_ = 0;
  int64_t hits_ = 0, misses_ = 0;
};

}  // namespace care::compute

#endif  // CARE_COMPUTE_BUFFER_POOL_H_

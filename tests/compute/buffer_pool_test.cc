// BufferPool: reuse by exact size, the idle cap and its eviction order,
// alignment, and that released buffers really leave the process's resident
// set (the RSS the conversion's peak is measured by).
#include "care/compute/buffer_pool.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

namespace care::compute {
namespace {

constexpr size_t kMiB = size_t{1} << 20;

uintptr_t Address(const std::shared_ptr<void>& p) {
  return reinterpret_cast<uintptr_t>(p.get());
}

// VmRSS of this process in bytes, from /proc/self/status.
int64_t ResidentBytes() {
  std::ifstream in("/proc/self/status");
  std::string key;
  while (in >> key) {
    if (key == "VmRSS:") {
      int64_t kb = 0;
      in >> kb;
      return kb * 1024;
    }
    in.ignore(1 << 12, '\n');
  }
  return -1;
}

TEST(BufferPoolTest, ReusesBuffersOfTheExactSize) {
  auto pool = BufferPool::Create(64 * kMiB);
  void* first = nullptr;
  {
    std::shared_ptr<void> a = pool->Take(1000);
    ASSERT_NE(a, nullptr);
    first = a.get();
  }
  EXPECT_EQ(pool->idle_bytes(), 1000u);
  std::shared_ptr<void> again = pool->Take(1000);
  EXPECT_EQ(again.get(), first);
  std::shared_ptr<void> other = pool->Take(1001);
  EXPECT_NE(other.get(), first);
  EXPECT_EQ(pool->hits(), 1);
  EXPECT_EQ(pool->misses(), 2);
  EXPECT_EQ(pool->idle_bytes(), 0u);
}

TEST(BufferPoolTest, AlignmentAndWholeBuffersAreWritable) {
  auto pool = BufferPool::Create(0);
  // Below the mapping size, at the mapped page-aligned sizes, and at the
  // huge-page sizes, including sizes that are not a multiple of a page.
  for (size_t bytes : {size_t{8}, size_t{100000}, kMiB, kMiB + 12345, 4 * kMiB,
                       4 * kMiB + 1, 37 * kMiB + 4097}) {
    std::shared_ptr<void> p = pool->Take(bytes);
    ASSERT_NE(p, nullptr) << bytes;
    EXPECT_EQ(Address(p) % 64, 0u) << bytes;
    if (bytes >= kMiB) {
      EXPECT_EQ(Address(p) % 4096, 0u) << bytes;
    }
    if (bytes >= 4 * kMiB) {
      EXPECT_EQ(Address(p) % (2 * kMiB), 0u) << bytes;
    }
    std::memset(p.get(), 0xab, bytes);  // every byte is backed
    EXPECT_EQ(static_cast<unsigned char*>(p.get())[bytes - 1], 0xab);
  }
}

TEST(BufferPoolTest, IdleBuffersStayWithinTheCapLargestEvictedFirst) {
  auto pool = BufferPool::Create(10 * kMiB);
  {
    std::vector<std::shared_ptr<void>> held(3);
    for (std::shared_ptr<void>& p : held) {
      p = pool->Take(4 * kMiB);
    }
  }
  EXPECT_EQ(pool->idle_bytes(), 8 * kMiB);  // the third did not fit
  {
    std::shared_ptr<void> small = pool->Take(1 * kMiB);  // fits beside 8
    EXPECT_EQ(pool->idle_bytes(), 8 * kMiB);
  }
  EXPECT_EQ(pool->idle_bytes(), 9 * kMiB);
  {
    // A new size that does not fit: 4 MiB buffers go first, the 1 MiB stays.
    std::shared_ptr<void> big = pool->Take(6 * kMiB);
    EXPECT_EQ(pool->idle_bytes(), 1 * kMiB);
  }
  EXPECT_EQ(pool->idle_bytes(), 7 * kMiB);
}

TEST(BufferPoolTest, ReleasedBuffersLeaveTheResidentSet) {
  // Free one large malloc'd block first: glibc then raises its mmap threshold
  // to that size and would serve the buffers below from its heap, where
  // freed memory below a live allocation stays resident.
  void* raise = std::malloc(32 * kMiB);
  ASSERT_NE(raise, nullptr);
  std::memset(raise, 1, 32 * kMiB);
  std::free(raise);

  auto pool = BufferPool::Create(0);  // keeps nothing idle
  constexpr int kBuffers = 16;
  constexpr size_t kEach = 3 * kMiB;
  std::vector<std::shared_ptr<void>> held;
  held.reserve(kBuffers);
  for (int i = 0; i < kBuffers; ++i) {
    held.push_back(pool->Take(kEach + size_t{4096} * i));  // distinct sizes
    ASSERT_NE(held.back(), nullptr);
    std::memset(held.back().get(), 1, kEach);
  }
  std::shared_ptr<void> pin = pool->Take(512 << 10);  // allocated after them
  std::memset(pin.get(), 1, 512 << 10);
  const int64_t touched = ResidentBytes();
  held.clear();
  const int64_t released = ResidentBytes();
  ASSERT_GT(touched, 0);
  EXPECT_GE(touched - released, static_cast<int64_t>(kBuffers * kEach * 9 / 10))
      << "resident " << touched << " -> " << released << " bytes";
}

}  // namespace
}  // namespace care::compute

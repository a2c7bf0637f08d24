#include "core/block_cache.h"

#include <pthread.h>
#include <sys/mman.h>

#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <new>
#include <vector>

namespace pycnnrnn {
namespace {

constexpr size_t kHuge = size_t{2} << 20;

struct Block {
  void* p;
  size_t bytes;  // mapped size (mapped_size)
};

struct Cache {
  std::mutex mu;
  std::vector<Block> free_blocks;  // oldest first
  size_t free_bytes = 0;
};

Cache& cache() {
  static Cache* c = [] {
    auto* made = new Cache();  // never destroyed: arrays may be freed during interpreter exit
    pthread_atfork(nullptr, nullptr, [] { new (&cache().mu) std::mutex(); });
    return made;
  }();
  return *c;
}

// Blocks of at least one huge page: whole huge pages, 2 MiB aligned. Smaller ones: whole pages
// (a 2 MiB block for a 100 KB array would be 20x its size).
constexpr size_t kGranule = size_t{4} << 10;
size_t mapped_size(size_t bytes) {
  const size_t unit = bytes >= kHuge ? kHuge : kGranule;
  return (bytes + unit - 1) / unit * unit;
}

void* map_block(size_t size) {
  if (size < kHuge) {
    void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    return p;
  }
  // Over-map by one huge page and trim, so the block starts on a 2 MiB boundary.
  void* raw = mmap(nullptr, size + kHuge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) throw std::bad_alloc();
  const uintptr_t start = reinterpret_cast<uintptr_t>(raw);
  const uintptr_t aligned = (start + kHuge - 1) / kHuge * kHuge;
  if (aligned > start) munmap(raw, aligned - start);
  const uintptr_t end = start + size + kHuge;
  if (end > aligned + size) munmap(reinterpret_cast<void*>(aligned + size), end - (aligned + size));
#ifdef MADV_HUGEPAGE
  madvise(reinterpret_cast<void*>(aligned), size, MADV_HUGEPAGE);
#endif
  return reinterpret_cast<void*>(aligned);
}

}  // namespace

void* block_alloc(size_t bytes) {
  if (bytes < BLOCK_CACHE_MIN_BYTES) {
    void* p = std::aligned_alloc(64, (bytes + 63) / 64 * 64 + (bytes == 0 ? 64 : 0));
    if (!p) throw std::bad_alloc();
    return p;
  }
  const size_t size = mapped_size(bytes);
  {
    Cache& c = cache();
    std::lock_guard<std::mutex> lk(c.mu);
    // the smallest free block that fits and wastes at most a quarter of itself
    size_t best = c.free_blocks.size();
    for (size_t i = 0; i < c.free_blocks.size(); ++i) {
      const size_t b = c.free_blocks[i].bytes;
      if (b >= size && b - size <= b / 4 && (best == c.free_blocks.size() || b < c.free_blocks[best].bytes))
        best = i;
    }
    if (best < c.free_blocks.size()) {
      void* p = c.free_blocks[best].p;
      c.free_bytes -= c.free_blocks[best].bytes;
      c.free_blocks.erase(c.free_blocks.begin() + static_cast<std::ptrdiff_t>(best));
      return p;
    }
  }
  return map_block(size);
}

void block_free(void* p, size_t bytes) noexcept {
  if (!p) return;
  if (bytes < BLOCK_CACHE_MIN_BYTES) {
    std::free(p);
    return;
  }
  const size_t size = mapped_size(bytes);
  if (size > BLOCK_CACHE_MAX_BYTES) {
    munmap(p, size);
    return;
  }
  Cache& c = cache();
  std::lock_guard<std::mutex> lk(c.mu);
  try {
    c.free_blocks.push_back({p, size});
  } catch (...) {
    munmap(p, size);
    return;
  }
  c.free_bytes += size;
  while (c.free_bytes > BLOCK_CACHE_MAX_BYTES) {  // oldest first
    munmap(c.free_blocks.front().p, c.free_blocks.front().bytes);
    c.free_bytes -= c.free_blocks.front().bytes;
    c.free_blocks.erase(c.free_blocks.begin());
  }
}

void block_cache_clear() noexcept {
  std::vector<Block> all;
  {
    Cache& c = cache();
    std::lock_guard<std::mutex> lk(c.mu);
    all.swap(c.free_blocks);
    c.free_bytes = 0;
  }
  for (const Block& b : all) munmap(b.p, b.bytes);
}

size_t block_cache_bytes() noexcept {
  Cache& c = cache();
  std::lock_guard<std::mutex> lk(c.mu);
  return c.free_bytes;
}

}  // namespace pycnnrnn

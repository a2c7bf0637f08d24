// block_cache.h — memory for large output arrays that is reused instead of returned to the
// kernel. glibc hands blocks above its mmap threshold (at most 32 MiB) out as fresh mappings,
// so every call that returns a 100 MB array (VGG at batch 8, pool backward) paid ~25,000 page
// faults and the zero-fill of each page: 4-13 ms per call, measured; blocks of a few hundred
// KB come and go the same way when glibc trims its heap (an LSTM(300, 512, 2) forward at batch
// 8: 120 faults per call). Blocks of at least BLOCK_CACHE_MIN_BYTES are mapped here instead
// (whole pages; from 2 MiB whole huge pages, 2 MiB aligned, transparent huge pages requested),
// and a freed one waits in a small cache for the next request of about its size. Thread-safe;
// the GIL is not needed.
#pragma once
#include <cstddef>

namespace pycnnrnn {

constexpr size_t BLOCK_CACHE_MIN_BYTES = size_t{64} << 10;  // smaller ones: malloc
constexpr size_t BLOCK_CACHE_MAX_BYTES = size_t{1} << 30;  // cached (free) bytes at most

// At least `bytes` bytes, 64-byte aligned (cached sizes page aligned, and 2 MiB aligned from
// 2 MiB up); throws std::bad_alloc.
void* block_alloc(size_t bytes);
// Returns a block from block_alloc (same `bytes`).
void block_free(void* p, size_t bytes) noexcept;
// Unmaps every cached free block (tests, memory pressure).
void block_cache_clear() noexcept;
// Bytes currently held in the cache (free blocks only).
size_t block_cache_bytes() noexcept;

// n elements of T in a block_alloc block, uninitialised, returned to the cache when this goes
// out of scope (scratch rebuilt on every call, e.g. packed weights: no fresh pages each time).
template <typename T>
class BlockArray {
 public:
  BlockArray() = default;
  explicit BlockArray(size_t n) : p_(static_cast<T*>(block_alloc(n * sizeof(T)))), n_(n) {}
  ~BlockArray() { reset(); }
  BlockArray(BlockArray&& o) noexcept : p_(o.p_), n_(o.n_) { o.p_ = nullptr, o.n_ = 0; }
  BlockArray& operator=(BlockArray&& o) noexcept {
    if (this != &o) {
      reset();
      p_ = o.p_, n_ = o.n_;
      o.p_ = nullptr, o.n_ = 0;
    }
    return *this;
  }
  BlockArray(const BlockArray&) = delete;
  BlockArray& operator=(const BlockArray&) = delete;
  T* data() const { return p_; }

 private:
  void reset() noexcept {
    if (p_) block_free(p_, n_ * sizeof(T));
    p_ = nullptr, n_ = 0;
  }
  T* p_ = nullptr;
  size_t n_ = 0;
};

}  // namespace pycnnrnn

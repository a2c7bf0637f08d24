// pool2d.cpp — max pooling forward/backward and max unpooling, NCHW, float32/float64.
//
// 1. The naive reference loop (torch's cpu_max_pool, the oracle; also the scalar ISA path and
//    the border columns of every path).
// 2. The fast forward driver: threads over (plane, output row) pairs; per row, the columns
//    whose windows lie fully inside the input go to the per-ISA row kernel
//    (ukernels/<isa>/pool2d_<isa>.cpp: 16 outputs per zmm, the same scan order and update
//    rule as the reference, so values and indices are bit-identical), the clipped border
//    columns to the reference loop.
//    Software prefetch keeps the input stream ahead (the N=8 case is memory bound).
// 3. Backward: the reference is zero-fill + ordered scatter-add per plane (torch's order).
//    When windows do not overlap vertically, each output row owns a band of input rows and
//    the bands are done in parallel (2x2/2 float32: a dense AVX-512 write, no scatter);
//    foreign indices fall back to the reference per plane. Small planes (at most 4 KiB, no
//    vector band kernel for their rows) take the reference whole. Then unpool.
//
// Shapes: x (planes, H, W), y/idx/grad_output (planes, OH, OW); planes = N * C.
#include "cpu/pool2d.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <type_traits>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <emmintrin.h>  // _mm_stream_pd
#include <xmmintrin.h>  // _mm_sfence, _mm_stream_ps
#endif

#include "core/dispatch.h"
#include "core/thread_pool.h"

namespace pycnnrnn {

// ------------------------------------------------------------------------------------------
// 1. Reference: one output element, exactly torch's loop.
//    hstart = oh*sh - ph; hend = min(hstart + (kh-1)*dh + 1, H); skip negative rows by dh;
//    maxval = -inf, maxidx = first valid position; update if (v > maxval) || isnan(v).
// ------------------------------------------------------------------------------------------
// xp: input plane; yrow/irow: output row oh (column 0); irow may be nullptr.
template <typename T>
static inline void ref_one(const T* xp, T* yrow, int64_t* irow, const Pool2dShape& s, int64_t oh, int64_t ow) {
  int64_t hs = oh * s.sh - s.ph, ws = ow * s.sw - s.pw;
  const int64_t he = std::min(hs + (s.kh - 1) * s.dh + 1, s.H);
  const int64_t we = std::min(ws + (s.kw - 1) * s.dw + 1, s.W);
  while (hs < 0) hs += s.dh;
  while (ws < 0) ws += s.dw;
  T maxval = -std::numeric_limits<T>::infinity();
  int64_t maxidx = hs * s.W + ws;
  for (int64_t ih = hs; ih < he; ih += s.dh)
    for (int64_t iw = ws; iw < we; iw += s.dw) {
      const T v = xp[ih * s.W + iw];
      // selects, not a branch: random data mispredicted it every other element, and this loop
      // also finishes the rows the vector kernels leave (e.g. every row of 4 outputs)
      const bool take = (v > maxval) | (v != v);
      maxval = take ? v : maxval;
      maxidx = take ? ih * s.W + iw : maxidx;
    }
  yrow[ow] = maxval;
  if (irow) irow[ow] = maxidx;
}

template <typename T>
void max_pool2d_forward_reference(const T* x, T* y, int64_t* idx, const Pool2dShape& s) {
  for (int64_t p = 0; p < s.planes; ++p)
    for (int64_t oh = 0; oh < s.OH; ++oh)
      for (int64_t ow = 0; ow < s.OW; ++ow)
        ref_one(x + p * s.H * s.W, y + (p * s.OH + oh) * s.OW, idx ? idx + (p * s.OH + oh) * s.OW : nullptr, s, oh,
                ow);
}

// ------------------------------------------------------------------------------------------
// 2. Fast forward.
// ------------------------------------------------------------------------------------------
template <typename T>
static PoolRowFn row_kernel();
template <>
PoolRowFn row_kernel<float>() {
#if PYCNNRNN_HAVE_X86
  static const PoolRowFn table[3] = {nullptr, pool2d_avx2::row_f32, pool2d_avx512::row_f32};
  return pick(table);
#else
  return nullptr;
#endif
}
template <>
PoolRowFn row_kernel<double>() {
#if PYCNNRNN_HAVE_X86
  static const PoolRowFn table[3] = {nullptr, pool2d_avx2::row_f64, pool2d_avx512::row_f64};
  return pick(table);
#else
  return nullptr;
#endif
}

// How far ahead of the current position the streaming loops prefetch.
constexpr int64_t kPrefetchBytes = 4096;

static inline void prefetch_range(const void* begin, int64_t bytes, const void* end) {
  const char* a = static_cast<const char*>(begin);
  const char* e = std::min(a + bytes, static_cast<const char*>(end));
  for (; a < e; a += 64) __builtin_prefetch(a, 0, 3);
}

static inline int64_t ceil_div_nonneg(int64_t a, int64_t b) { return a <= 0 ? 0 : (a + b - 1) / b; }

template <typename T>
void max_pool2d_forward(const T* x, T* y, int64_t* idx, const Pool2dShape& s) {
  const int64_t rows = s.planes * s.OH;
  if (rows == 0 || s.OW == 0) return;
  PoolRowFn fn = row_kernel<T>();
  // Interior columns: ow*sw - pw >= 0 and ow*sw - pw + (kw-1)*dw <= W-1.
  const int64_t owA = std::min(ceil_div_nonneg(s.pw, s.sw), s.OW);
  const int64_t last = s.W - 1 - (s.kw - 1) * s.dw + s.pw;  // max ow*sw
  int64_t owB = last < 0 ? 0 : std::min(last / s.sw + 1, s.OW);
  if (owB < owA) owB = owA;
  // Window-local index codes are int32 in the kernels.
  // (128-bit: with ceil_mode and a huge stride the window may be far larger than the input)
  const __int128 span = static_cast<__int128>(s.kh - 1) * s.dh * s.W + static_cast<__int128>(s.kw - 1) * s.dw;
  const bool codes_fit = span < (static_cast<__int128>(1) << 31) && s.sw <= (1 << 20);
  if (!codes_fit) fn = nullptr;

  // Rows r = p*OH + oh are contiguous in y (and idx): y + r*OW. do_rows writes rows [r0, r1)
  // to yb/ib (row r at yb + (r - r0)*OW).
  // Software prefetch: the input is consumed as one forward stream (sh rows per output row);
  // request the lines kPrefetchBytes ahead of the current output row's first input row
  // (measured, 2 threads, N=8 224x224: 2x2/2 5.3 -> 3.0 ms, 3x3/2 6.4 -> 2.8 ms).
  const char* x_end = reinterpret_cast<const char*>(x + s.planes * s.H * s.W);
  const int64_t step_bytes = s.sh * s.W * static_cast<int64_t>(sizeof(T));
  // Output rows whose window rows all lie in the input (no top/bottom padding or clipping):
  // [oh_lo, oh_hi). Where an output row reads at most 512 bytes of input, runs of them within a
  // plane go to the kernel in one call (PoolRowArgs::rows), up to kPrefetchBytes of input: a call
  // per row cost 2-3x the work of a small plane's row. Measured, 2 threads, 2x2/2 with indices,
  // one process, row by row / batched (ms): 64x16x32x32 0.28 / 0.17, 64x32x16x16 0.24 / 0.11,
  // 64x64x8x8 0.31 / 0.14, 8x256x28x28 1.19 / 0.85, 8x128x56x56 0.78 / 0.57, 3x3/1 8x64x56x56
  // 2.3 / 2.0; rows of 112 (896 bytes) batched were 14% slower (the batch's burst of prefetches),
  // so they stay one per call.
  const int64_t oh_lo = std::min(ceil_div_nonneg(s.ph, s.sh), s.OH);
  const int64_t last_h = s.H - 1 - (s.kh - 1) * s.dh + s.ph;  // max oh*sh with a full window
  const int64_t oh_hi = std::max(oh_lo, last_h < 0 ? 0 : std::min(last_h / s.sh + 1, s.OH));
  const int64_t max_batch = step_bytes <= 512 ? kPrefetchBytes / std::max<int64_t>(1, step_bytes) : 1;
  auto do_rows = [&](int64_t r0, int64_t r1, T* yb, int64_t* ib) {
    int64_t p = r0 / s.OH, oh = r0 % s.OH;  // row r's plane and output row (no division per row)
    for (int64_t r = r0; r < r1;) {
      const T* xp = x + p * s.H * s.W;
      // rows r .. r + count - 1 (output rows oh .. oh + count - 1 of plane p) in one call
      const int64_t count =
          oh >= oh_lo && oh < oh_hi ? std::min({r1 - r, oh_hi - oh, max_batch}) : int64_t{1};
      {
        const int64_t h0 = std::max<int64_t>(0, oh * s.sh - s.ph);
        const char* a = reinterpret_cast<const char*>(xp + h0 * s.W) + kPrefetchBytes;
        const char* e = std::min(a + count * step_bytes, x_end);
        for (; a < e; a += 64) __builtin_prefetch(a, 0, 3);
      }
      T* yrow = yb + (r - r0) * s.OW;
      int64_t* irow = ib ? ib + (r - r0) * s.OW : nullptr;
      // valid window rows of the first row: ih = ih0 + i*dh, i < nrows (the same for the run)
      int64_t hs = oh * s.sh - s.ph;
      const int64_t he = std::min(hs + (s.kh - 1) * s.dh + 1, s.H);
      while (hs < 0) hs += s.dh;
      const int64_t nrows = hs < he ? (he - hs + s.dh - 1) / s.dh : 0;
      int64_t ow = 0;
      if (fn != nullptr && nrows > 0 && owA < owB) {
        PoolRowArgs a{xp, yrow, irow, s.W, hs, nrows, owA, owB, s.kw, s.sw, s.pw, s.dh, s.dw, count, s.sh, s.OW};
        ow = fn(a);
        for (int64_t q = 0; q < count; ++q)  // the left padding's columns
          for (int64_t c = 0; c < owA; ++c)
            ref_one(xp, yrow + q * s.OW, irow ? irow + q * s.OW : nullptr, s, oh + q, c);
      }
      for (int64_t q = 0; q < count; ++q)  // the columns the kernel left
        for (int64_t c = ow; c < s.OW; ++c)
          ref_one(xp, yrow + q * s.OW, irow ? irow + q * s.OW : nullptr, s, oh + q, c);
      r += count;
      oh += count;
      if (oh == s.OH) oh = 0, ++p;
    }
  };
  // 2 threads split the rows; non-temporal stores were measured and did not help (fresh
  // output pages are faulted in, and zeroed, by the kernel anyway).
  const int64_t grain = std::max<int64_t>(1, 8192 / std::max<int64_t>(1, s.OW * s.kh * s.kw));
  parallel_for(rows, grain, [&](int64_t r0, int64_t r1) {
    do_rows(r0, r1, y + r0 * s.OW, idx ? idx + r0 * s.OW : nullptr);
  });
}

template <typename T>
void max_pool2d_2x2_row(const T* x, int64_t W, T* y) {
  const Pool2dShape s{1, 2, W, 1, W / 2, 2, 2, 2, 2, 0, 0, 1, 1};
  int64_t ow = 0;
  if (PoolRowFn fn = row_kernel<T>()) {
    const PoolRowArgs a{x, y, nullptr, W, 0, 2, 0, W / 2, 2, 2, 0, 1, 1};
    ow = fn(a);
  }
  for (int64_t c = ow; c < W / 2; ++c) ref_one(x, y, nullptr, s, 0, c);
}

// ------------------------------------------------------------------------------------------
// 3. Backward and unpool: zero-fill each plane, then scatter in output order (torch's order,
//    so overlapping windows accumulate bit-identically). Threads split planes. Bad indices
//    (outside the plane) stop the work and are reported; nothing is written out of bounds.
// ------------------------------------------------------------------------------------------
// Scatter one plane: g[idx[j]] += go[j] in output order; indices outside the plane are dropped.
template <typename T>
static inline void scatter_plane(T* g, const T* go, const int64_t* ix, int64_t out_hw, int64_t in_hw) {
  for (int64_t j = 0; j < out_hw; ++j) {
    const int64_t i = ix[j];
    if (static_cast<uint64_t>(i) < static_cast<uint64_t>(in_hw)) g[i] += go[j];
  }
}

// grad_input of at least this size is written with non-temporal stores (backward_banded).
constexpr int64_t POOL_STREAM_MIN_BYTES = int64_t{32} << 20;

// Banded backward, when windows do not overlap vertically ((kh-1)*dh + 1 <= sh): output row
// oh owns the input rows [oh*sh - ph, (oh+1)*sh - ph) (its "band"; the rows below the last
// band belong to nobody and are zero). If every index of row oh lies in its band, the band
// receives contributions only from row oh, in ow order: zero the band and scatter-add the
// row, exactly torch's order for those elements. Rows are independent, so threads split
// (plane, oh) pairs and each band is written while it is hot in L1. A plane with an index
// outside its band is redone afterwards with the plain zero-fill + scatter.
template <typename T>
static PoolBandFn band_kernel(const Pool2dShape& s) {
  if (!std::is_same<T, float>::value || s.kh != 2 || s.kw != 2 || s.sh != 2 || s.sw != 2 || s.dh != 1 ||
      s.dw != 1 || s.ph != 0 || s.pw != 0)
    return nullptr;
#if PYCNNRNN_HAVE_X86
  static const PoolBandFn table[3] = {nullptr, nullptr, pool2d_avx512::bwd_band_2x2_f32};
  return pick(table);
#else
  return nullptr;
#endif
}

// stream: grad_input is past the caches (POOL_STREAM_MIN_BYTES), written with non-temporal stores.
template <typename T>
static void backward_banded(const T* gy, const int64_t* idx, T* gx, const Pool2dShape& s, bool stream,
                            unsigned char* bad_planes) {
  const int64_t in_hw = s.H * s.W, out_hw = s.OH * s.OW, rows = s.planes * s.OH;
  const PoolBandFn fn = band_kernel<T>(s);
  const void* idx_end = idx + s.planes * out_hw;
  const void* gy_end = gy + s.planes * out_hw;
  const int64_t grain = std::max<int64_t>(1, 8192 / std::max<int64_t>(1, s.OW));
  parallel_for(rows, grain, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t p = r / s.OH, oh = r % s.OH;
      T* g = gx + p * in_hw;
      const int64_t b0 = std::max<int64_t>(0, oh * s.sh - s.ph);
      const int64_t b1 = oh + 1 == s.OH ? s.H : std::min(s.H, (oh + 1) * s.sh - s.ph);  // last band: to the end
      if (b1 <= b0) continue;
      const int64_t lo = b0 * s.W, n = (b1 - b0) * s.W;
      T* band = g + lo;
      const T* go = gy + p * out_hw + oh * s.OW;
      const int64_t* ix = idx + p * out_hw + oh * s.OW;
      prefetch_range(reinterpret_cast<const char*>(ix) + kPrefetchBytes, s.OW * 8, idx_end);
      prefetch_range(reinterpret_cast<const char*>(go) + kPrefetchBytes, s.OW * int64_t(sizeof(T)), gy_end);
      int64_t ow = 0;
      if (fn != nullptr && b1 - b0 >= 2) {
        // dense SIMD writes of rows b0, b0+1 for outputs [0, ow); zero everything else
        // only outputs whose whole window is inside the row (ceil_mode's last one may be clipped)
        ow = fn(reinterpret_cast<const float*>(go), ix, reinterpret_cast<float*>(band), s.W, lo, std::min(s.OW, s.W / 2),
               stream);
        for (int r = 0; r < 2; ++r)
          std::memset(static_cast<void*>(band + r * s.W + 2 * ow), 0, static_cast<size_t>(s.W - 2 * ow) * sizeof(T));
        std::memset(static_cast<void*>(band + 2 * s.W), 0, static_cast<size_t>(n - 2 * s.W) * sizeof(T));
      } else {
        std::memset(static_cast<void*>(band), 0, static_cast<size_t>(n) * sizeof(T));
      }
      for (; ow < s.OW; ++ow) {
        const int64_t i = ix[ow] - lo;
        if (static_cast<uint64_t>(i) >= static_cast<uint64_t>(n)) {
          __atomic_store_n(&bad_planes[p], 1, __ATOMIC_RELAXED);  // several rows may flag a plane
          break;
        }
        band[i] += go[ow];
      }
    }
#if PYCNNRNN_HAVE_X86
    if (stream) _mm_sfence();  // streamed stores visible before this part reports done
#endif
  });
}

// dst[0, n) = src[0, n) with non-temporal stores (no read-for-ownership of dst's lines);
// the caller fences. Unaligned ends element by element.
#if PYCNNRNN_HAVE_X86
inline void stream_copy(float* dst, const float* src, int64_t n) {
  int64_t i = 0;
  for (; i < n && (reinterpret_cast<uintptr_t>(dst + i) & 15) != 0; ++i) dst[i] = src[i];
  for (; i + 4 <= n; i += 4) _mm_stream_ps(dst + i, _mm_loadu_ps(src + i));
  for (; i < n; ++i) dst[i] = src[i];
}
inline void stream_copy(double* dst, const double* src, int64_t n) {
  int64_t i = 0;
  for (; i < n && (reinterpret_cast<uintptr_t>(dst + i) & 15) != 0; ++i) dst[i] = src[i];
  for (; i + 2 <= n; i += 2) _mm_stream_pd(dst + i, _mm_loadu_pd(src + i));
  for (; i < n; ++i) dst[i] = src[i];
}
#endif

// Largest plane the non-overlapping backward takes whole instead of band by band (below).
constexpr int64_t POOL_PLANE_PATH_MAX_BYTES = 4096;

// Largest plane the streamed path gathers in a per-thread buffer (it must stay in L2).
constexpr int64_t POOL_STREAM_PLANE_MAX_BYTES = int64_t{1} << 20;

template <typename T>
void max_pool2d_backward(const T* gy, const int64_t* idx, T* gx, const Pool2dShape& s) {
  const int64_t in_hw = s.H * s.W, out_hw = s.OH * s.OW;
  const size_t plane_bytes = static_cast<size_t>(in_hw) * sizeof(T);
  // grad_input beyond a cache's worth is streamed past the caches: the banded 2x2/2 path
  // (N=8, 64x224x224: 7.2 -> 4.7 ms), and overlapping windows (3x3/2), where each plane is
  // zeroed and scattered into a cached per-thread buffer, then streamed out (zeroing it in
  // place made every line be read from memory before it was written: 8.9 -> 6.1-6.6 ms).
  // Smaller ones stay cached for whoever reads them next (N=1: 0.45 vs 0.6 ms streamed).
#if PYCNNRNN_HAVE_X86
  const bool stream = s.planes * in_hw * int64_t(sizeof(T)) >= POOL_STREAM_MIN_BYTES;
#else
  const bool stream = false;
#endif
  std::unique_ptr<unsigned char[]> redo;
  // Small cached planes whose rows no vector band kernel serves (none on this ISA, or rows
  // shorter than the AVX-512 kernel's 16 outputs) go whole through the reference below: the
  // banded path's per-row work (a division, two prefetch runs, a band memset) cost more than
  // the row itself on 8x8 planes.
  const bool whole_planes = !stream && int64_t(plane_bytes) <= POOL_PLANE_PATH_MAX_BYTES &&
                            (band_kernel<T>(s) == nullptr || s.OW < 16);
  const bool banded = (s.kh - 1) * s.dh + 1 <= s.sh && s.OH > 0 && !whole_planes;
  if (banded) {
    redo.reset(new unsigned char[static_cast<size_t>(s.planes)]());
    backward_banded(gy, idx, gx, s, stream, redo.get());
  }
  const bool stream_planes = stream && !banded && int64_t(plane_bytes) <= POOL_STREAM_PLANE_MAX_BYTES;
  // grain: about 64 KiB of grad_input per thread, so small calls do not wake the pool
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 14) / std::max<int64_t>(1, in_hw));
  parallel_for(s.planes, grain, [&](int64_t p0, int64_t p1) {
    thread_local std::vector<T> tl_plane;
    T* buf = nullptr;
    if (stream_planes) {
      if (tl_plane.size() < static_cast<size_t>(in_hw)) tl_plane.resize(static_cast<size_t>(in_hw));
      buf = tl_plane.data();
    }
    for (int64_t p = p0; p < p1; ++p) {
      if (banded && !redo[p]) continue;
      T* g = gx + p * in_hw;
      T* dst = buf ? buf : g;
      std::memset(static_cast<void*>(dst), 0, plane_bytes);
      scatter_plane(dst, gy + p * out_hw, idx + p * out_hw, out_hw, in_hw);
#if PYCNNRNN_HAVE_X86
      if (buf) stream_copy(g, buf, in_hw);
#endif
    }
#if PYCNNRNN_HAVE_X86
    if (buf) _mm_sfence();  // streamed stores visible before this part reports done
#endif
  });
}

template <typename T>
int64_t max_unpool2d(const T* x, const int64_t* idx, T* y, int64_t planes, int64_t in_hw, int64_t out_hw) {
  std::atomic<int64_t> bad{-1};  // some bad position (the caller reports one)
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 14) / std::max<int64_t>(1, out_hw + in_hw));
  parallel_for(planes, grain, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      T* yo = y + p * out_hw;
      const T* xi = x + p * in_hw;
      const int64_t* ix = idx + p * in_hw;
      std::memset(static_cast<void*>(yo), 0, static_cast<size_t>(out_hw) * sizeof(T));
      for (int64_t j = 0; j < in_hw; ++j) {
        const int64_t i = ix[j];
        if (static_cast<uint64_t>(i) >= static_cast<uint64_t>(out_hw)) {
          bad.store(p * in_hw + j, std::memory_order_relaxed);
          return;
        }
        yo[i] = xi[j];
      }
    }
  });
  return bad.load();
}

#define PYC_POOL_INSTANTIATE(T)                                                                     \
  template void max_pool2d_forward<T>(const T*, T*, int64_t*, const Pool2dShape&);                  \
  template void max_pool2d_2x2_row<T>(const T*, int64_t, T*);                                          \
  template void max_pool2d_forward_reference<T>(const T*, T*, int64_t*, const Pool2dShape&);        \
  template void max_pool2d_backward<T>(const T*, const int64_t*, T*, const Pool2dShape&);           \
  template int64_t max_unpool2d<T>(const T*, const int64_t*, T*, int64_t, int64_t, int64_t);
PYC_POOL_INSTANTIATE(float)
PYC_POOL_INSTANTIATE(double)

}  // namespace pycnnrnn

// pool2d_avx2.cpp — max-pool row kernel, AVX2 (8 float / 4 double outputs per vector).
//
// Same algorithm as the AVX-512 kernel (see pool2d_avx512.cpp): the window is scanned in
// row-major order with torch's update rule k = (v > m) | isnan(v), blended with blendv; the
// window-local argmax is kept as a code i*dh*W + j*dw and widened to int64 at the store.
// Values only: max + a NaN-flagging sum, exact recompute of flagged vectors (as AVX-512).
// Full vectors only: the kernel returns the first column it did not do and the driver's
// reference loop finishes the row (no masked stores needed).
#include <cstdint>

// gcc 12 reports its own _mm512_undefined_*() (`__m512 __Y = __Y;`) inside inlined intrinsics
// as maybe-uninitialized; a known false positive.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include "cpu/pool2d.h"

namespace pycnnrnn::pool2d_avx2 {
namespace {

struct F32 {
  using T = float;
  using V = __m256;
  using C = __m256i;  // int32 codes
  static constexpr int L = 8;
  static V loadu(const T* p) { return _mm256_loadu_ps(p); }
  static V loadu_head(const T* p) { return _mm256_maskload_ps(p, _mm256_setr_epi32(-1, -1, -1, -1, -1, -1, -1, 0)); }
  static void store(T* p, V v) { _mm256_storeu_ps(p, v); }
  static V upd(V v, V mx) { return _mm256_or_ps(_mm256_cmp_ps(v, mx, _CMP_GT_OQ), _mm256_cmp_ps(v, v, _CMP_UNORD_Q)); }
  static V blend(V k, V a, V b) { return _mm256_blendv_ps(a, b, k); }
  static V max(V v, V mx) { return _mm256_max_ps(v, mx); }  // v > mx ? v : mx
  static V add(V a, V b) { return _mm256_add_ps(a, b); }
  static bool any_nan(V v) { return _mm256_movemask_ps(_mm256_cmp_ps(v, v, _CMP_UNORD_Q)) != 0; }
  static V even(V lo, V hi) {
    const __m256 t = _mm256_shuffle_ps(lo, hi, 0x88);  // lo0 lo2 hi0 hi2 | lo4 lo6 hi4 hi6
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(t), 0xD8));
  }
  static V gather(const T* p, int64_t sw) {
    const __m256i vi =
        _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(static_cast<int>(sw)));
    return _mm256_mask_i32gather_ps(_mm256_setzero_ps(), p, vi, _mm256_castsi256_ps(_mm256_set1_epi32(-1)), 4);
  }
  static C code_zero() { return _mm256_setzero_si256(); }
  static C code_blend(V k, C c, int64_t v) {
    return _mm256_castps_si256(
        _mm256_blendv_ps(_mm256_castsi256_ps(c), _mm256_castsi256_ps(_mm256_set1_epi32(static_cast<int32_t>(v))), k));
  }
  static void store_idx(int64_t* out, C code, int64_t base, int64_t sw) {
    const __m256i b0 = _mm256_add_epi64(_mm256_set1_epi64x(base), _mm256_setr_epi64x(0, sw, 2 * sw, 3 * sw));
    const __m256i b1 = _mm256_add_epi64(b0, _mm256_set1_epi64x(4 * sw));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out),
                        _mm256_add_epi64(b0, _mm256_cvtepi32_epi64(_mm256_castsi256_si128(code))));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 4),
                        _mm256_add_epi64(b1, _mm256_cvtepi32_epi64(_mm256_extracti128_si256(code, 1))));
  }
};

// Half vectors (4 floats, SSE) for the rest of a row the 8-wide pass leaves: rows of 4-7
// outputs (2x2/2 pooling of 8- and 14-wide maps) went to the scalar reference loop.
struct F32x4 {
  using T = float;
  using V = __m128;
  using C = __m128i;  // int32 codes
  static constexpr int L = 4;
  static V loadu(const T* p) { return _mm_loadu_ps(p); }
  static V loadu_head(const T* p) { return _mm_maskload_ps(p, _mm_setr_epi32(-1, -1, -1, 0)); }
  static void store(T* p, V v) { _mm_storeu_ps(p, v); }
  static V upd(V v, V mx) { return _mm_or_ps(_mm_cmp_ps(v, mx, _CMP_GT_OQ), _mm_cmp_ps(v, v, _CMP_UNORD_Q)); }
  static V blend(V k, V a, V b) { return _mm_blendv_ps(a, b, k); }
  static V max(V v, V mx) { return _mm_max_ps(v, mx); }  // v > mx ? v : mx
  static V add(V a, V b) { return _mm_add_ps(a, b); }
  static bool any_nan(V v) { return _mm_movemask_ps(_mm_cmp_ps(v, v, _CMP_UNORD_Q)) != 0; }
  static V even(V lo, V hi) { return _mm_shuffle_ps(lo, hi, 0x88); }  // lo0 lo2 hi0 hi2
  static V gather(const T* p, int64_t sw) {
    const __m128i vi = _mm_mullo_epi32(_mm_setr_epi32(0, 1, 2, 3), _mm_set1_epi32(static_cast<int>(sw)));
    return _mm_mask_i32gather_ps(_mm_setzero_ps(), p, vi, _mm_castsi128_ps(_mm_set1_epi32(-1)), 4);
  }
  static C code_zero() { return _mm_setzero_si128(); }
  static C code_blend(V k, C c, int64_t v) {
    return _mm_castps_si128(
        _mm_blendv_ps(_mm_castsi128_ps(c), _mm_castsi128_ps(_mm_set1_epi32(static_cast<int32_t>(v))), k));
  }
  static void store_idx(int64_t* out, C code, int64_t base, int64_t sw) {
    const __m128i b0 = _mm_add_epi64(_mm_set1_epi64x(base), _mm_set_epi64x(sw, 0));
    const __m128i b1 = _mm_add_epi64(b0, _mm_set1_epi64x(2 * sw));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out), _mm_add_epi64(b0, _mm_cvtepi32_epi64(code)));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 2), _mm_add_epi64(b1, _mm_cvtepi32_epi64(_mm_srli_si128(code, 8))));
  }
};

struct F64 {
  using T = double;
  using V = __m256d;
  using C = __m256i;  // int64 codes
  static constexpr int L = 4;
  static V loadu(const T* p) { return _mm256_loadu_pd(p); }
  static V loadu_head(const T* p) { return _mm256_maskload_pd(p, _mm256_setr_epi64x(-1, -1, -1, 0)); }
  static void store(T* p, V v) { _mm256_storeu_pd(p, v); }
  static V upd(V v, V mx) { return _mm256_or_pd(_mm256_cmp_pd(v, mx, _CMP_GT_OQ), _mm256_cmp_pd(v, v, _CMP_UNORD_Q)); }
  static V blend(V k, V a, V b) { return _mm256_blendv_pd(a, b, k); }
  static V max(V v, V mx) { return _mm256_max_pd(v, mx); }
  static V add(V a, V b) { return _mm256_add_pd(a, b); }
  static bool any_nan(V v) { return _mm256_movemask_pd(_mm256_cmp_pd(v, v, _CMP_UNORD_Q)) != 0; }
  static V even(V lo, V hi) {
    return _mm256_permute4x64_pd(_mm256_unpacklo_pd(lo, hi), 0xD8);  // p0 p4 p2 p6 -> p0 p2 p4 p6
  }
  static V gather(const T* p, int64_t sw) {
    const __m128i vi = _mm_mullo_epi32(_mm_setr_epi32(0, 1, 2, 3), _mm_set1_epi32(static_cast<int>(sw)));
    return _mm256_mask_i32gather_pd(_mm256_setzero_pd(), p, vi, _mm256_castsi256_pd(_mm256_set1_epi64x(-1)), 8);
  }
  static C code_zero() { return _mm256_setzero_si256(); }
  static C code_blend(V k, C c, int64_t v) {
    return _mm256_castpd_si256(
        _mm256_blendv_pd(_mm256_castsi256_pd(c), _mm256_castsi256_pd(_mm256_set1_epi64x(v)), k));
  }
  static void store_idx(int64_t* out, C code, int64_t base, int64_t sw) {
    const __m256i b0 = _mm256_add_epi64(_mm256_set1_epi64x(base), _mm256_setr_epi64x(0, sw, 2 * sw, 3 * sw));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), _mm256_add_epi64(b0, code));
  }
};

// LAST (SW == 2): a row's last vector, whose paired load must not read past the row.
template <class K, int SW, bool LAST = false>
inline typename K::V load_strided(const typename K::T* p, int64_t sw) {
  if constexpr (SW == 1) {
    return K::loadu(p);
  } else if constexpr (SW == 2) {  // reads p[0 .. 2L-1] (LAST: p[0 .. 2L-2], the last is not needed)
    return K::even(K::loadu(p), LAST ? K::loadu_head(p + K::L) : K::loadu(p + K::L));
  } else {
    return K::gather(p, sw);
  }
}

// One full vector at column ow. EXACT: torch's rule with compares + blends (and the codes
// when IDX). !EXACT (values only): m = max(v, m) (maxps keeps m on ties and on NaN) plus a
// running sum that flags NaN lanes; returns false for a flagged vector (redone EXACT).
template <class K, int SW, int KH, int KW, bool IDX, bool EXACT, bool LAST = false>
inline bool vec_body(const PoolRowArgs& a, int64_t ow) {
  using T = typename K::T;
  using V = typename K::V;
  const T* x = static_cast<const T*>(a.x);
  T* y = static_cast<T*>(a.y_row);
  const int64_t W = a.W, kw = KW > 0 ? KW : a.kw, nrows = KH > 0 ? KH : a.nrows, dw = a.dw;
  const int64_t sw = SW > 0 ? SW : a.sw, rstep = a.dh * W;
  const int64_t col0 = ow * sw - a.pw;
  const T* base = x + a.ih0 * W + col0;
  V mx = load_strided<K, SW, LAST>(base, sw);
  if constexpr (EXACT) {
    typename K::C code = K::code_zero();
    for (int64_t i = 0; i < nrows; ++i) {
      const T* r = base + i * rstep;
      for (int64_t j = (i == 0 ? 1 : 0); j < kw; ++j) {
        const V v = load_strided<K, SW, LAST>(r + j * dw, sw);
        const V k = K::upd(v, mx);
        mx = K::blend(k, mx, v);
        if constexpr (IDX) code = K::code_blend(k, code, i * rstep + j * dw);
      }
    }
    K::store(y + ow, mx);
    if constexpr (IDX) K::store_idx(a.idx_row + ow, code, a.ih0 * W + col0, sw);
    return true;
  } else {
    V acc = mx;
    for (int64_t i = 0; i < nrows; ++i) {
      const T* r = base + i * rstep;
      for (int64_t j = (i == 0 ? 1 : 0); j < kw; ++j) {
        const V v = load_strided<K, SW, LAST>(r + j * dw, sw);
        mx = K::max(v, mx);
        acc = K::add(acc, v);
      }
    }
    if (K::any_nan(acc)) return false;
    K::store(y + ow, mx);
    return true;
  }
}

template <class K, int SW, int KH, int KW, bool IDX>
int64_t row_one(const PoolRowArgs& a);

#include "cpu/pool2d_rows.inc"  // row_impl: the call's rows, each by row_one

template <class K, int SW, int KH, int KW, bool IDX>
int64_t row_one(const PoolRowArgs& args) {
  const PoolRowArgs a = args;
  const int64_t kw = KW > 0 ? KW : a.kw, sw = SW > 0 ? SW : a.sw;
  // Full vectors only, and (SW == 2) the one extra element the paired load reads must lie in
  // the row: (ow + L - 1)*sw - pw + (kw-1)*dw + 1 <= W - 1.
  int64_t ow = a.ow0;
  for (; ow + K::L <= a.ow1; ow += K::L) {
    if (SW == 2 && ow * sw - a.pw + 2 * K::L - 1 + (kw - 1) * a.dw > a.W - 1) break;
    if constexpr (IDX) {
      vec_body<K, SW, KH, KW, true, true>(a, ow);
    } else {
      if (!vec_body<K, SW, KH, KW, false, false>(a, ow)) vec_body<K, SW, KH, KW, false, true>(a, ow);
    }
  }
  // SW == 2: one more vector where only the paired load's unused last element lies past the
  // row (2x2/2 pooling of 32-wide rows: their second half; of 16-wide rows: all of them), with
  // that element masked off. It went to the scalar reference loop.
  if constexpr (SW == 2) {
    if (ow + K::L <= a.ow1 && ow * sw - a.pw + 2 * K::L - 2 + (kw - 1) * a.dw <= a.W - 1) {
      if constexpr (IDX) {
        vec_body<K, SW, KH, KW, true, true, true>(a, ow);
      } else {
        if (!vec_body<K, SW, KH, KW, false, false, true>(a, ow)) vec_body<K, SW, KH, KW, false, true, true>(a, ow);
      }
      ow += K::L;
    }
  }
  return ow;
}

template <class K, int SW, int KH, int KW>
int64_t row_idx(const PoolRowArgs& a) {
  return a.idx_row ? row_impl<K, SW, KH, KW, true>(a) : row_impl<K, SW, KH, KW, false>(a);
}

template <class K>
int64_t row_any(const PoolRowArgs& a) {
  if (a.sw == 2) {
    if (a.kw == 2) return a.nrows == 2 ? row_idx<K, 2, 2, 2>(a) : row_idx<K, 2, 0, 2>(a);
    if (a.kw == 3) return a.nrows == 3 ? row_idx<K, 2, 3, 3>(a) : row_idx<K, 2, 0, 3>(a);
    return row_idx<K, 2, 0, 0>(a);
  }
  if (a.sw == 1) return row_idx<K, 1, 0, 0>(a);
  return row_idx<K, 0, 0, 0>(a);
}

}  // namespace

int64_t row_f32(const PoolRowArgs& a) {
  const int64_t ow = row_any<F32>(a);
  if (ow + F32x4::L > a.ow1) return ow;
  PoolRowArgs rest = a;
  rest.ow0 = ow;
  return row_any<F32x4>(rest);
}
int64_t row_f64(const PoolRowArgs& a) { return row_any<F64>(a); }

}  // namespace pycnnrnn::pool2d_avx2

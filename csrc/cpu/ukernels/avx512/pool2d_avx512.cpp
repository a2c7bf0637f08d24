// pool2d_avx512.cpp — max-pool row kernel, AVX-512 (16 float / 8 double outputs per vector).
//
// Per vector of L outputs ow..ow+L-1 (all windows inside the row horizontally):
//   m = x[row0][col0 + lane*sw]                              (first window element)
//   for every later (i, j) in row-major window order:
//     v = x[ih0 + i*dh][col0 + j*dw + lane*sw]
//     k = (v > m) | isnan(v)                                 (torch's update rule, exactly)
//     m = k ? v : m;  code = k ? i*dh*W + j*dw : code        (int32 window-local argmax)
//   y = m; idx = (ih0*W + col0 + lane*sw) + code             (int64, only when requested)
// Values only: m = max(v, m) (vmaxps keeps m on ties: torch's rule without NaN) plus a
// running sum that flags NaN, so NaN-free vectors need no compares; flagged vectors are
// recomputed with the exact rule above.
// Strided loads: sw == 1 plain loads; sw == 2 two loads + vpermt2 (even lanes); other
// strides a masked gather. Tails use masks, so every column in [ow0, ow1) is done here.
// 2x2/2, 3x3/2 and 3x3/1 are compiled with constant window sizes (fully unrolled).
#include <cstdint>

// gcc 12 reports its own _mm512_undefined_*() (`__m512 __Y = __Y;`) inside inlined intrinsics
// as maybe-uninitialized; a known false positive.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include "cpu/pool2d.h"

namespace pycnnrnn::pool2d_avx512 {
namespace {

struct F32 {
  using T = float;
  using V = __m512;
  using M = __mmask16;
  static constexpr int L = 16;
  static M mask(int64_t n) { return n >= 16 ? M(0xFFFF) : M((1u << n) - 1u); }
  static V loadu(M m, const T* p) { return _mm512_maskz_loadu_ps(m, p); }
  static V loadu(const T* p) { return _mm512_loadu_ps(p); }
  static void store(T* p, M m, V v) { _mm512_mask_storeu_ps(p, m, v); }
  static M upd(V v, V mx) {
    return _mm512_kor(_mm512_cmp_ps_mask(v, mx, _CMP_GT_OQ), _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q));
  }
  static V blend(M k, V a, V b) { return _mm512_mask_mov_ps(a, k, b); }
  static V max(V v, V mx) { return _mm512_max_ps(v, mx); }  // v > mx ? v : mx
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
  static bool any_nan(M m, V v) { return _mm512_mask_cmp_ps_mask(m, v, v, _CMP_UNORD_Q) != 0; }
  // even elements of (lo, hi): p[0], p[2], ..., p[2L-2]
  static V even(V lo, V hi) {
    const __m512i e = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    return _mm512_permutex2var_ps(lo, e, hi);
  }
  static V gather(M m, const T* p, int64_t sw) {
    const __m512i vi = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                          _mm512_set1_epi32(static_cast<int>(sw)));
    return _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, vi, p, 4);
  }
  // codes: one int32 per lane
  using C = __m512i;
  static C code_zero() { return _mm512_setzero_si512(); }
  static C code_blend(M k, C c, int32_t v) { return _mm512_mask_mov_epi32(c, k, _mm512_set1_epi32(v)); }
  static void store_idx(int64_t* out, M m, C code, int64_t base, int64_t sw) {
    const __m512i lane = _mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7);
    const __m512i b0 = _mm512_add_epi64(_mm512_set1_epi64(base), _mm512_mullo_epi64(lane, _mm512_set1_epi64(sw)));
    const __m512i b1 = _mm512_add_epi64(b0, _mm512_set1_epi64(8 * sw));
    const __m512i lo = _mm512_add_epi64(b0, _mm512_cvtepi32_epi64(_mm512_castsi512_si256(code)));
    const __m512i hi = _mm512_add_epi64(b1, _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(code, 1)));
    _mm512_mask_storeu_epi64(out, static_cast<__mmask8>(m), lo);
    _mm512_mask_storeu_epi64(out + 8, static_cast<__mmask8>(m >> 8), hi);
  }
};

struct F64 {
  using T = double;
  using V = __m512d;
  using M = __mmask8;
  static constexpr int L = 8;
  static M mask(int64_t n) { return n >= 8 ? M(0xFF) : M((1u << n) - 1u); }
  static V loadu(M m, const T* p) { return _mm512_maskz_loadu_pd(m, p); }
  static V loadu(const T* p) { return _mm512_loadu_pd(p); }
  static void store(T* p, M m, V v) { _mm512_mask_storeu_pd(p, m, v); }
  static M upd(V v, V mx) {
    return static_cast<M>(_mm512_kor(_mm512_cmp_pd_mask(v, mx, _CMP_GT_OQ), _mm512_cmp_pd_mask(v, v, _CMP_UNORD_Q)));
  }
  static V blend(M k, V a, V b) { return _mm512_mask_mov_pd(a, k, b); }
  static V max(V v, V mx) { return _mm512_max_pd(v, mx); }
  static V add(V a, V b) { return _mm512_add_pd(a, b); }
  static bool any_nan(M m, V v) { return _mm512_mask_cmp_pd_mask(m, v, v, _CMP_UNORD_Q) != 0; }
  static V even(V lo, V hi) {
    const __m512i e = _mm512_setr_epi64(0, 2, 4, 6, 8, 10, 12, 14);
    return _mm512_permutex2var_pd(lo, e, hi);
  }
  static V gather(M m, const T* p, int64_t sw) {
    const __m256i vi = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                                          _mm256_set1_epi32(static_cast<int>(sw)));
    return _mm512_mask_i32gather_pd(_mm512_setzero_pd(), m, vi, p, 8);
  }
  using C = __m256i;
  static C code_zero() { return _mm256_setzero_si256(); }
  static C code_blend(M k, C c, int32_t v) { return _mm256_mask_mov_epi32(c, k, _mm256_set1_epi32(v)); }
  static void store_idx(int64_t* out, M m, C code, int64_t base, int64_t sw) {
    const __m512i lane = _mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7);
    const __m512i b0 = _mm512_add_epi64(_mm512_set1_epi64(base), _mm512_mullo_epi64(lane, _mm512_set1_epi64(sw)));
    _mm512_mask_storeu_epi64(out, m, _mm512_add_epi64(b0, _mm512_cvtepi32_epi64(code)));
  }
};

// Loads x[p + lane*SW] for the first n lanes (FULL: all L lanes, and for SW == 2 the 2L
// elements p[0 .. 2L-1] are known to be readable; else zeros elsewhere, never touching
// memory past the last needed element).
template <class K, int SW, bool FULL>
inline typename K::V load_strided(const typename K::T* p, int64_t n, typename K::M m, int64_t sw) {
  if constexpr (SW == 1) {
    if constexpr (FULL) return K::loadu(p);
    return K::loadu(m, p);
  } else if constexpr (SW == 2) {
    if constexpr (FULL) return K::even(K::loadu(p), K::loadu(p + K::L));
    const int64_t need = 2 * n - 1;  // elements p[0 .. 2n-2]
    const typename K::V lo = K::loadu(K::mask(need), p);
    const typename K::V hi = need > K::L ? K::loadu(K::mask(need - K::L), p + K::L) : lo;
    return K::even(lo, hi);
  } else {
    return K::gather(m, p, sw);
  }
}

// One vector of n outputs at column ow. EXACT: torch's rule per element with masks (and the
// int32 argmax codes when IDX). !EXACT (values only): m = max(v, m) keeps the earlier element
// on ties (maxps returns its second operand unless v > m), which is torch's rule whenever
// no NaN is involved; a running sum flags NaN (or inf - inf) lanes, and such a vector is
// recomputed exactly.
template <class K, int SW, int KH, int KW, bool IDX, bool FULL, bool EXACT>
inline bool vec_body(const PoolRowArgs& a, int64_t ow, int64_t n) {
  using T = typename K::T;
  using V = typename K::V;
  using M = typename K::M;
  const T* x = static_cast<const T*>(a.x);
  T* y = static_cast<T*>(a.y_row);
  const int64_t W = a.W, kw = KW > 0 ? KW : a.kw, nrows = KH > 0 ? KH : a.nrows, dw = a.dw;
  const int64_t sw = SW > 0 ? SW : a.sw, rstep = a.dh * W;
  const M m = K::mask(n);
  const int64_t col0 = ow * sw - a.pw;
  const T* base = x + a.ih0 * W + col0;
  V mx = load_strided<K, SW, FULL>(base, n, m, sw);
  if constexpr (EXACT) {
    typename K::C code = K::code_zero();
    for (int64_t i = 0; i < nrows; ++i) {
      const T* r = base + i * rstep;
      for (int64_t j = (i == 0 ? 1 : 0); j < kw; ++j) {
        const V v = load_strided<K, SW, FULL>(r + j * dw, n, m, sw);
        const M k = K::upd(v, mx);
        mx = K::blend(k, mx, v);
        if constexpr (IDX) code = K::code_blend(k, code, static_cast<int32_t>(i * rstep + j * dw));
      }
    }
    K::store(y + ow, m, mx);
    if constexpr (IDX) K::store_idx(a.idx_row + ow, m, code, a.ih0 * W + col0, sw);
    return true;
  } else {
    V acc = mx;
    for (int64_t i = 0; i < nrows; ++i) {
      const T* r = base + i * rstep;
      for (int64_t j = (i == 0 ? 1 : 0); j < kw; ++j) {
        const V v = load_strided<K, SW, FULL>(r + j * dw, n, m, sw);
        mx = K::max(v, mx);
        acc = K::add(acc, v);
      }
    }
    if (K::any_nan(m, acc)) return false;
    K::store(y + ow, m, mx);
    return true;
  }
}

template <class K, int SW, int KH, int KW, bool IDX>
int64_t row_one(const PoolRowArgs& a);

#include "cpu/pool2d_rows.inc"  // row_impl: the call's rows, each by row_one

template <class K, int SW, int KH, int KW, bool IDX>
int64_t row_one(const PoolRowArgs& args) {
  const PoolRowArgs a = args;  // a local copy: the (may-alias-anything) masked stores then
                               // cannot force reloads of the arguments
  const int64_t kw = KW > 0 ? KW : a.kw, sw = SW > 0 ? SW : a.sw;
  int64_t ow = a.ow0;
  // full vectors whose paired loads (SW == 2 reads one element past the last needed) stay
  // inside the row: (ow + L - 1)*sw - pw + (kw-1)*dw + 1 <= W - 1
  for (; ow + K::L <= a.ow1; ow += K::L) {
    if (SW == 2 && ow * sw - a.pw + (kw - 1) * a.dw + 2 * K::L - 1 > a.W - 1) break;
    if constexpr (IDX) {
      vec_body<K, SW, KH, KW, true, true, true>(a, ow, K::L);
    } else {
      if (!vec_body<K, SW, KH, KW, false, true, false>(a, ow, K::L))
        vec_body<K, SW, KH, KW, false, true, true>(a, ow, K::L);
    }
  }
  for (; ow < a.ow1; ow += K::L) {
    const int64_t n = a.ow1 - ow < K::L ? a.ow1 - ow : K::L;
    vec_body<K, SW, KH, KW, IDX, false, true>(a, ow, n);
  }
  return a.ow1;
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
  if (a.sw == 1) {
    if (a.kw == 3) return a.nrows == 3 ? row_idx<K, 1, 3, 3>(a) : row_idx<K, 1, 0, 3>(a);
    return row_idx<K, 1, 0, 0>(a);
  }
  return row_idx<K, 0, 0, 0>(a);
}

}  // namespace

// 16 outputs per step: off = idx - (lo + 2*ow) in {0, 1, W, W+1} selects the window slot;
// slot masks give 0 + g (torch's zero-filled += , so -0.0 becomes +0.0) or +0.0, and two
// vpermt2 interleave the even/odd columns of each of the two rows.
int64_t bwd_band_2x2_f32(const float* go, const int64_t* ix, float* band, int64_t W, int64_t lo, int64_t OW,
                         bool stream) {
  const __m512i lane2 = _mm512_setr_epi64(0, 2, 4, 6, 8, 10, 12, 14);
  const __m512i w0 = _mm512_set1_epi64(W), w1 = _mm512_set1_epi64(W + 1), one = _mm512_set1_epi64(1);
  const __m512i zero64 = _mm512_setzero_si512();
  const __m512i ilo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  const __m512i ihi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  const __m512 zero = _mm512_setzero_ps();
  float* r0 = band;
  float* r1 = band + W;
  int64_t ow = 0;
  for (; ow + 16 <= OW; ow += 16) {
    const __m512i b0 = _mm512_add_epi64(_mm512_set1_epi64(lo + 2 * ow), lane2);
    const __m512i b1 = _mm512_add_epi64(b0, _mm512_set1_epi64(16));
    const __m512i o0 = _mm512_sub_epi64(_mm512_loadu_si512(ix + ow), b0);
    const __m512i o1 = _mm512_sub_epi64(_mm512_loadu_si512(ix + ow + 8), b1);
    const __mmask16 m00 = _mm512_kunpackb(_mm512_cmpeq_epi64_mask(o1, zero64), _mm512_cmpeq_epi64_mask(o0, zero64));
    const __mmask16 m01 = _mm512_kunpackb(_mm512_cmpeq_epi64_mask(o1, one), _mm512_cmpeq_epi64_mask(o0, one));
    const __mmask16 m10 = _mm512_kunpackb(_mm512_cmpeq_epi64_mask(o1, w0), _mm512_cmpeq_epi64_mask(o0, w0));
    const __mmask16 m11 = _mm512_kunpackb(_mm512_cmpeq_epi64_mask(o1, w1), _mm512_cmpeq_epi64_mask(o0, w1));
    if (static_cast<uint16_t>(m00 | m01 | m10 | m11) != 0xFFFF) break;  // a foreign index
    const __m512 g = _mm512_loadu_ps(go + ow);
    const __m512 z00 = _mm512_maskz_add_ps(m00, zero, g), z01 = _mm512_maskz_add_ps(m01, zero, g);
    const __m512 z10 = _mm512_maskz_add_ps(m10, zero, g), z11 = _mm512_maskz_add_ps(m11, zero, g);
    const __m512 v00 = _mm512_permutex2var_ps(z00, ilo, z01), v01 = _mm512_permutex2var_ps(z00, ihi, z01);
    const __m512 v10 = _mm512_permutex2var_ps(z10, ilo, z11), v11 = _mm512_permutex2var_ps(z10, ihi, z11);
    float* d0 = r0 + 2 * ow;
    float* d1 = r1 + 2 * ow;
    if (stream && ((reinterpret_cast<uintptr_t>(d0) | reinterpret_cast<uintptr_t>(d1)) & 63) == 0) {
      // non-temporal: no read-for-ownership of the output lines (a third less traffic)
      _mm512_stream_ps(d0, v00);
      _mm512_stream_ps(d0 + 16, v01);
      _mm512_stream_ps(d1, v10);
      _mm512_stream_ps(d1 + 16, v11);
    } else {
      _mm512_storeu_ps(d0, v00);
      _mm512_storeu_ps(d0 + 16, v01);
      _mm512_storeu_ps(d1, v10);
      _mm512_storeu_ps(d1 + 16, v11);
    }
  }
  return ow;
}

int64_t row_f32(const PoolRowArgs& a) { return row_any<F32>(a); }
int64_t row_f64(const PoolRowArgs& a) { return row_any<F64>(a); }

}  // namespace pycnnrnn::pool2d_avx512

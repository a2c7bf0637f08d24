// gemm_avx2.cpp — AVX2+FMA GEMM micro-kernels (float 6x16, double 6x8: 12 ymm accumulators,
// the BLIS haswell shape). Edges: vmaskmov loads/stores. Everything in pycnnrnn::gemm_avx2.
#include <algorithm>
#include <cstdint>

#include <immintrin.h>

#include "cpu/gemm_ukernel.h"

namespace pycnnrnn {
namespace gemm_avx2 {
namespace {

struct F32 {
  using T = float;
  using V = __m256;
  using M = __m256i;
  static constexpr int L = 8;
  static M mask(int n) {  // lanes < n set
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  static V zero() { return _mm256_setzero_ps(); }
  static V load(const T* p) { return _mm256_loadu_ps(p); }
  static V loadm(M m, const T* p) { return _mm256_maskload_ps(p, m); }
  static void store(T* p, V v) { _mm256_storeu_ps(p, v); }
  static void storem(T* p, M m, V v) { _mm256_maskstore_ps(p, m, v); }
  static V set1(T x) { return _mm256_set1_ps(x); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  static V add(V a, V b) { return _mm256_add_ps(a, b); }
  static V relu(V v) { return _mm256_max_ps(_mm256_setzero_ps(), v); }  // NaN kept
  static T hsum(V v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  // out[i] = the sum of v[i]'s lanes, 8 vectors at once (see the AVX-512 F32::lane_sums): after
  // the three levels lane 4h + r holds vector 2r + h.
  static void lane_sums(const V v[8], T out[8]) {
    V a[4], b[2];
    for (int i = 0; i < 4; ++i)  // 128-bit halves: [v(2i) 4 sums | v(2i+1) 4 sums]
      a[i] = _mm256_add_ps(_mm256_permute2f128_ps(v[2 * i], v[2 * i + 1], 0x20),
                           _mm256_permute2f128_ps(v[2 * i], v[2 * i + 1], 0x31));
    for (int i = 0; i < 2; ++i)  // half h: 2 sums of v(4i + h), 2 of v(4i + 2 + h)
      b[i] = _mm256_add_ps(_mm256_shuffle_ps(a[2 * i], a[2 * i + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                           _mm256_shuffle_ps(a[2 * i], a[2 * i + 1], _MM_SHUFFLE(3, 2, 3, 2)));
    const V d = _mm256_add_ps(_mm256_shuffle_ps(b[0], b[1], _MM_SHUFFLE(2, 0, 2, 0)),
                              _mm256_shuffle_ps(b[0], b[1], _MM_SHUFFLE(3, 1, 3, 1)));
    alignas(32) T lanes[8];
    _mm256_store_ps(lanes, d);
    for (int p = 0; p < 8; ++p) out[(p & 3) * 2 + (p >> 2)] = lanes[p];
  }
};

struct F64 {
  using T = double;
  using V = __m256d;
  using M = __m256i;
  static constexpr int L = 4;
  static M mask(int n) { return _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), _mm256_setr_epi64x(0, 1, 2, 3)); }
  static V zero() { return _mm256_setzero_pd(); }
  static V load(const T* p) { return _mm256_loadu_pd(p); }
  static V loadm(M m, const T* p) { return _mm256_maskload_pd(p, m); }
  static void store(T* p, V v) { _mm256_storeu_pd(p, v); }
  static void storem(T* p, M m, V v) { _mm256_maskstore_pd(p, m, v); }
  static V set1(T x) { return _mm256_set1_pd(x); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_pd(a, b, c); }
  static V mul(V a, V b) { return _mm256_mul_pd(a, b); }
  static V add(V a, V b) { return _mm256_add_pd(a, b); }
  static V relu(V v) { return _mm256_max_pd(_mm256_setzero_pd(), v); }
  static T hsum(V v) {
    __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
  }
  static void lane_sums(const V v[4], T out[4]) {
    for (int i = 0; i < 4; ++i) out[i] = hsum(v[i]);
  }
};

#include "cpu/gemm_ukr.inc"

void ukr_f32(int64_t kc, const float* a, int64_t lda, const float* b, int64_t bs, float* c, int64_t ldc, int m, int n,
             const UkrParams<float>* p) {
  ukr_any_n<F32, 6, 2>(kc, a, lda, b, bs, c, ldc, m, n, p);
}
void ukr_f64(int64_t kc, const double* a, int64_t lda, const double* b, int64_t bs, double* c, int64_t ldc, int m,
             int n,
             const UkrParams<double>* p) {
  ukr_any_n<F64, 6, 2>(kc, a, lda, b, bs, c, ldc, m, n, p);
}


#include "cpu/gemm_smallm.inc"

// r[i] = row i of an 8 x 8 block -> r[j] = its column j.
inline void transpose8(__m256 (&r)[8]) {
  const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  const __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  const __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  const __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  const __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  r[0] = _mm256_permute2f128_ps(s0, s4, 0x20), r[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
  r[2] = _mm256_permute2f128_ps(s2, s6, 0x20), r[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
  r[4] = _mm256_permute2f128_ps(s0, s4, 0x31), r[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
  r[6] = _mm256_permute2f128_ps(s2, s6, 0x31), r[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

// Transposed B (Linear weights, an LSTM's W_ih, conv grad_weight's im2col) into NR-column
// panels: 8 x 8 blocks through registers. The generic pack wrote one float at a time with
// stride NR (7% of a small convolution's backward, 4% of an LSTM forward at batch 8).
void pack_bt_f32(const float* Bt, int64_t ldb, int64_t kc, int64_t nc, int NR, float* dst, int64_t ld) {
  const int64_t kv = kc / 8 * 8;
  for (int64_t q = 0; q < nc; q += NR) {
    float* d = dst + q / NR * kc * ld;
    for (int v = 0; v < NR / 8; ++v) {
      const int64_t c0 = q + v * 8, lanes = nc - c0 < 0 ? 0 : nc - c0 < 8 ? nc - c0 : 8;
      const float* base = Bt + c0 * ldb;
      float* dv = d + v * 8;
      int64_t k = 0;
      if (lanes == 8) {
        for (; k < kv; k += 8) {
          __m256 r[8];
          for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(base + i * ldb + k);
          transpose8(r);
          for (int j = 0; j < 8; ++j) _mm256_storeu_ps(dv + (k + j) * ld, r[j]);
        }
      }
      for (; k < kc; ++k)  // the last k (kc % 8), and column groups past nc (zeros)
        for (int j = 0; j < 8; ++j) dv[k * ld + j] = j < lanes ? base[j * ldb + k] : 0.f;
    }
  }
}

}  // namespace

UkrInfo<float> info_f32() { return {6, 16, 8, 256, 120, 2048, ukr_f32, smallm_n_f32, smallm_t_f32, pack_bt_f32}; }
UkrInfo<double> info_f64() { return {6, 8, 4, 256, 120, 1024, ukr_f64, smallm_n_f64, smallm_t_f64, nullptr}; }

}  // namespace gemm_avx2
}  // namespace pycnnrnn

// gemm_avx2.cpp — AVX2+FMA GEMM micro-kernels (float 6x16, double 6x8: 12 ymm accumulators,
// the BLIS haswell shape). Edges: vmaskmov loads/stores. Everything in pycnnrnn::gemm_avx2.
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
};

template <class S, int MR, int NV>
void ukr(int64_t kc, const typename S::T* a, const typename S::T* b, int64_t bs, typename S::T* c, int64_t ldc,
         int m, int n, const UkrParams<typename S::T>* p) {
  using T = typename S::T;
  using V = typename S::V;
  V acc[MR][NV];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < NV; ++j) acc[i][j] = S::zero();

  for (int64_t k = 0; k < kc; ++k) {
    V bv[NV];
#pragma GCC unroll 8
    for (int j = 0; j < NV; ++j) bv[j] = S::load(b + j * S::L);
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      V av = S::set1(a[i]);
#pragma GCC unroll 8
      for (int j = 0; j < NV; ++j) acc[i][j] = S::fma(av, bv[j], acc[i][j]);
    }
    a += MR;
    b += bs;
  }

  const T alpha = p->alpha, beta = p->beta;
  const V valpha = S::set1(alpha), vbeta = S::set1(beta);
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) {
    if (i >= m) break;
    T* cr = c + i * ldc;
#pragma GCC unroll 8
    for (int j = 0; j < NV; ++j) {
      const int nn = n - j * S::L;
      if (nn <= 0) break;
      const typename S::M mk = S::mask(nn);
      V v = acc[i][j];
      if (alpha != T(1)) v = S::mul(v, valpha);
      if (beta != T(0)) v = S::fma(vbeta, nn >= S::L ? S::load(cr + j * S::L) : S::loadm(mk, cr + j * S::L), v);
      if (p->bias_row) v = S::add(v, S::set1(p->bias_row[i]));
      if (p->bias_col) v = S::add(v, nn >= S::L ? S::load(p->bias_col + j * S::L) : S::loadm(mk, p->bias_col + j * S::L));
      if (p->relu) v = S::relu(v);
      if (nn >= S::L)
        S::store(cr + j * S::L, v);
      else
        S::storem(cr + j * S::L, mk, v);
    }
  }
}

void ukr_f32(int64_t kc, const float* a, const float* b, int64_t bs, float* c, int64_t ldc, int m, int n,
             const UkrParams<float>* p) {
  ukr<F32, 6, 2>(kc, a, b, bs, c, ldc, m, n, p);
}
void ukr_f64(int64_t kc, const double* a, const double* b, int64_t bs, double* c, int64_t ldc, int m, int n,
             const UkrParams<double>* p) {
  ukr<F64, 6, 2>(kc, a, b, bs, c, ldc, m, n, p);
}

}  // namespace

UkrInfo<float> info_f32() { return {6, 16, 256, 120, 2048, ukr_f32}; }
UkrInfo<double> info_f64() { return {6, 8, 256, 120, 1024, ukr_f64}; }

}  // namespace gemm_avx2
}  // namespace pycnnrnn

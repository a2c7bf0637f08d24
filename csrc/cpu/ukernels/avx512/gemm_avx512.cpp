// gemm_avx512.cpp — AVX-512 GEMM micro-kernels (float 6x64, double 6x32: 24 zmm accumulators,
// NV vector loads + MR broadcasts feed MR*NV FMAs per k). Edges: k-masked loads/stores.
// Compiled with -mavx512f/bw/dq/vl -mfma; everything lives in pycnnrnn::gemm_avx512.
#include <cstdint>

#include <immintrin.h>

#include "cpu/gemm_ukernel.h"

// gcc 12 false positive inside _mm512_max_p[sd] (_mm512_undefined_*): not our variable.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace pycnnrnn {
namespace gemm_avx512 {
namespace {

struct F32 {
  using T = float;
  using V = __m512;
  static constexpr int L = 16;
  static V zero() { return _mm512_setzero_ps(); }
  static V load(const T* p) { return _mm512_loadu_ps(p); }
  static V loadm(uint32_t m, const T* p) { return _mm512_maskz_loadu_ps(static_cast<__mmask16>(m), p); }
  static void store(T* p, V v) { _mm512_storeu_ps(p, v); }
  static void storem(T* p, uint32_t m, V v) { _mm512_mask_storeu_ps(p, static_cast<__mmask16>(m), v); }
  static V set1(T x) { return _mm512_set1_ps(x); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
  // max(0, v): MAXPS returns the second operand when either is NaN -> NaN is kept.
  static V relu(V v) { return _mm512_max_ps(_mm512_setzero_ps(), v); }
};

struct F64 {
  using T = double;
  using V = __m512d;
  static constexpr int L = 8;
  static V zero() { return _mm512_setzero_pd(); }
  static V load(const T* p) { return _mm512_loadu_pd(p); }
  static V loadm(uint32_t m, const T* p) { return _mm512_maskz_loadu_pd(static_cast<__mmask8>(m), p); }
  static void store(T* p, V v) { _mm512_storeu_pd(p, v); }
  static void storem(T* p, uint32_t m, V v) { _mm512_mask_storeu_pd(p, static_cast<__mmask8>(m), v); }
  static V set1(T x) { return _mm512_set1_pd(x); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_pd(a, b, c); }
  static V mul(V a, V b) { return _mm512_mul_pd(a, b); }
  static V add(V a, V b) { return _mm512_add_pd(a, b); }
  static V relu(V v) { return _mm512_max_pd(_mm512_setzero_pd(), v); }
};

// C[m x n] (= MR x NV*L tile, masked) from a (kc x MR packed) and b (kc rows, stride bs).
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
      const uint32_t mk = nn >= S::L ? (S::L == 32 ? 0xFFFFFFFFu : ((1u << S::L) - 1u)) : ((1u << nn) - 1u);
      V v = acc[i][j];
      if (alpha != T(1)) v = S::mul(v, valpha);
      if (beta != T(0)) v = S::fma(vbeta, S::loadm(mk, cr + j * S::L), v);
      if (p->bias_row) v = S::add(v, S::set1(p->bias_row[i]));
      if (p->bias_col) v = S::add(v, S::loadm(mk, p->bias_col + j * S::L));
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
  ukr<F32, 6, 4>(kc, a, b, bs, c, ldc, m, n, p);
}
void ukr_f64(int64_t kc, const double* a, const double* b, int64_t bs, double* c, int64_t ldc, int m, int n,
             const UkrParams<double>* p) {
  ukr<F64, 6, 4>(kc, a, b, bs, c, ldc, m, n, p);
}

}  // namespace

// kc: A micro-panel 6 x 256 floats = 6 KiB stays in L1; B block 256 x 1024 = 1 MiB in L2.
UkrInfo<float> info_f32() { return {6, 64, 256, 144, 1024, ukr_f32}; }
UkrInfo<double> info_f64() { return {6, 32, 256, 144, 512, ukr_f64}; }

}  // namespace gemm_avx512
}  // namespace pycnnrnn

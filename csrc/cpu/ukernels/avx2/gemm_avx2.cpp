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


// ---- small-M kernels (see gemm_ukernel.h) ------------------------------------------------
// smallm_n: S[m][j] = sum_k A[m][k] * B[k][j]. Column chunks of W keep the S chunk (MM x W)
// in L1; per k-group of KU rows, each vector of B is loaded once and feeds MM*KU FMAs.
template <class S, int MM, int KU>
void smallm_n_t(int64_t n, int64_t K, const typename S::T* A, int64_t lda, const typename S::T* B, int64_t ldb,
                typename S::T* Sout, int64_t lds) {
  using T = typename S::T;
  using V = typename S::V;
  constexpr int64_t W = (16384 / (MM * static_cast<int64_t>(sizeof(T)))) / S::L * S::L;
  for (int64_t n0 = 0; n0 < n; n0 += W) {
    const int64_t w = n - n0 < W ? n - n0 : W;
    const int64_t wv = w / S::L * S::L;
    const int tail = static_cast<int>(w - wv);
    const auto mk = S::mask(tail);
    for (int m = 0; m < MM; ++m)
      for (int64_t j = 0; j < w; ++j) Sout[m * lds + n0 + j] = T(0);
    int64_t k = 0;
    for (; k + KU <= K; k += KU) {
      V a[MM][KU];
#pragma GCC unroll 8
      for (int m = 0; m < MM; ++m)
#pragma GCC unroll 4
        for (int u = 0; u < KU; ++u) a[m][u] = S::set1(A[m * lda + k + u]);
      const T* b = B + k * ldb + n0;
      for (int64_t j = 0; j < wv; j += S::L) {
        V x[KU];
#pragma GCC unroll 4
        for (int u = 0; u < KU; ++u) x[u] = S::load(b + u * ldb + j);
#pragma GCC unroll 8
        for (int m = 0; m < MM; ++m) {
          T* s = Sout + m * lds + n0 + j;
          V c = S::load(s);
#pragma GCC unroll 4
          for (int u = 0; u < KU; ++u) c = S::fma(a[m][u], x[u], c);
          S::store(s, c);
        }
      }
      if (tail) {
        V x[KU];
#pragma GCC unroll 4
        for (int u = 0; u < KU; ++u) x[u] = S::loadm(mk, b + u * ldb + wv);
#pragma GCC unroll 8
        for (int m = 0; m < MM; ++m) {
          T* s = Sout + m * lds + n0 + wv;
          V c = S::loadm(mk, s);
#pragma GCC unroll 4
          for (int u = 0; u < KU; ++u) c = S::fma(a[m][u], x[u], c);
          S::storem(s, mk, c);
        }
      }
    }
    for (; k < K; ++k) {
      const T* b = B + k * ldb + n0;
      for (int m = 0; m < MM; ++m) {
        const V a = S::set1(A[m * lda + k]);
        T* s = Sout + m * lds + n0;
        int64_t j = 0;
        for (; j < wv; j += S::L) S::store(s + j, S::fma(a, S::load(b + j), S::load(s + j)));
        if (tail) S::storem(s + wv, mk, S::fma(a, S::loadm(mk, b + wv), S::loadm(mk, s + wv)));
      }
    }
  }
}

// smallm_t: S[m][j] = dot(A[m][:], Bt[j][:]) for NB rows of Bt at a time (NB contiguous
// streams), MM*NB vector accumulators reduced horizontally at the end.
template <class S, int MM, int NB>
void smallm_t_block(int64_t K, const typename S::T* A, int64_t lda, const typename S::T* Bt, int64_t ldb,
                    typename S::T* Sout, int64_t lds) {
  using V = typename S::V;
  V acc[MM][NB];
#pragma GCC unroll 8
  for (int m = 0; m < MM; ++m)
#pragma GCC unroll 8
    for (int q = 0; q < NB; ++q) acc[m][q] = S::zero();
  const int64_t kv = K / S::L * S::L;
  for (int64_t k = 0; k < kv; k += S::L) {
    V x[NB];
#pragma GCC unroll 8
    for (int q = 0; q < NB; ++q) x[q] = S::load(Bt + q * ldb + k);
#pragma GCC unroll 8
    for (int m = 0; m < MM; ++m) {
      const V a = S::load(A + m * lda + k);
#pragma GCC unroll 8
      for (int q = 0; q < NB; ++q) acc[m][q] = S::fma(a, x[q], acc[m][q]);
    }
  }
  if (kv < K) {
    const auto mk = S::mask(static_cast<int>(K - kv));
    V x[NB];
#pragma GCC unroll 8
    for (int q = 0; q < NB; ++q) x[q] = S::loadm(mk, Bt + q * ldb + kv);
#pragma GCC unroll 8
    for (int m = 0; m < MM; ++m) {
      const V a = S::loadm(mk, A + m * lda + kv);
#pragma GCC unroll 8
      for (int q = 0; q < NB; ++q) acc[m][q] = S::fma(a, x[q], acc[m][q]);
    }
  }
#pragma GCC unroll 8
  for (int m = 0; m < MM; ++m)
#pragma GCC unroll 8
    for (int q = 0; q < NB; ++q) Sout[m * lds + q] = S::hsum(acc[m][q]);
}

template <class S, int MM>
void smallm_t_t(int64_t n, int64_t K, const typename S::T* A, int64_t lda, const typename S::T* B, int64_t ldb,
                typename S::T* Sout, int64_t lds) {
  constexpr int NB = MM <= 2 ? 8 : MM <= 6 ? 4 : 3;
  int64_t j = 0;
  for (; j + NB <= n; j += NB) smallm_t_block<S, MM, NB>(K, A, lda, B + j * ldb, ldb, Sout + j, lds);
  for (; j < n; ++j) smallm_t_block<S, MM, 1>(K, A, lda, B + j * ldb, ldb, Sout + j, lds);
}

template <class S>
void smallm_n_any(int M, int64_t n, int64_t K, const typename S::T* A, int64_t lda, const typename S::T* B,
                  int64_t ldb, typename S::T* Sout, int64_t lds) {
  switch (M) {
    case 1: return smallm_n_t<S, 1, 4>(n, K, A, lda, B, ldb, Sout, lds);
    case 2: return smallm_n_t<S, 2, 4>(n, K, A, lda, B, ldb, Sout, lds);
    case 3: return smallm_n_t<S, 3, 4>(n, K, A, lda, B, ldb, Sout, lds);
    case 4: return smallm_n_t<S, 4, 4>(n, K, A, lda, B, ldb, Sout, lds);
    case 5: return smallm_n_t<S, 5, 2>(n, K, A, lda, B, ldb, Sout, lds);
    case 6: return smallm_n_t<S, 6, 2>(n, K, A, lda, B, ldb, Sout, lds);
    case 7: return smallm_n_t<S, 7, 2>(n, K, A, lda, B, ldb, Sout, lds);
    default: return smallm_n_t<S, 8, 2>(n, K, A, lda, B, ldb, Sout, lds);
  }
}

template <class S>
void smallm_t_any(int M, int64_t n, int64_t K, const typename S::T* A, int64_t lda, const typename S::T* B,
                  int64_t ldb, typename S::T* Sout, int64_t lds) {
  switch (M) {
    case 1: return smallm_t_t<S, 1>(n, K, A, lda, B, ldb, Sout, lds);
    case 2: return smallm_t_t<S, 2>(n, K, A, lda, B, ldb, Sout, lds);
    case 3: return smallm_t_t<S, 3>(n, K, A, lda, B, ldb, Sout, lds);
    case 4: return smallm_t_t<S, 4>(n, K, A, lda, B, ldb, Sout, lds);
    case 5: return smallm_t_t<S, 5>(n, K, A, lda, B, ldb, Sout, lds);
    case 6: return smallm_t_t<S, 6>(n, K, A, lda, B, ldb, Sout, lds);
    case 7: return smallm_t_t<S, 7>(n, K, A, lda, B, ldb, Sout, lds);
    default: return smallm_t_t<S, 8>(n, K, A, lda, B, ldb, Sout, lds);
  }
}

void smallm_n_f32(int M, int64_t n, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb, float* S,
                  int64_t lds) {
  smallm_n_any<F32>(M, n, K, A, lda, B, ldb, S, lds);
}
void smallm_t_f32(int M, int64_t n, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb, float* S,
                  int64_t lds) {
  smallm_t_any<F32>(M, n, K, A, lda, B, ldb, S, lds);
}
void smallm_n_f64(int M, int64_t n, int64_t K, const double* A, int64_t lda, const double* B, int64_t ldb,
                  double* S, int64_t lds) {
  smallm_n_any<F64>(M, n, K, A, lda, B, ldb, S, lds);
}
void smallm_t_f64(int M, int64_t n, int64_t K, const double* A, int64_t lda, const double* B, int64_t ldb,
                  double* S, int64_t lds) {
  smallm_t_any<F64>(M, n, K, A, lda, B, ldb, S, lds);
}

}  // namespace

UkrInfo<float> info_f32() { return {6, 16, 8, 256, 120, 2048, ukr_f32, smallm_n_f32, smallm_t_f32, nullptr}; }
UkrInfo<double> info_f64() { return {6, 8, 4, 256, 120, 1024, ukr_f64, smallm_n_f64, smallm_t_f64, nullptr}; }

}  // namespace gemm_avx2
}  // namespace pycnnrnn

// gemm_scalar.cpp — portable GEMM micro-kernel (4x8 register tile in plain C++; the compiler
// may use baseline SIMD). Same contract as the vector kernels. Everything in
// pycnnrnn::gemm_scalar.
#include <cstdint>

#include "cpu/gemm_ukernel.h"

namespace pycnnrnn {
namespace gemm_scalar {
namespace {

template <typename T, int MR, int NR>
void ukr(int64_t kc, const T* a, int64_t lda, const T* b, int64_t bs, T* c, int64_t ldc, int m, int n,
         const UkrParams<T>* p) {
  const int64_t ksub = p->ksub > 0 ? p->ksub : kc;
  for (int64_t k0 = 0; k0 < kc; k0 += ksub) {  // sub-blocks: see gemm_ukernel.h
    const int64_t k1 = k0 + ksub < kc ? k0 + ksub : kc;
    T acc[MR][NR] = {};
    for (int64_t k = k0; k < k1; ++k) {
      if (p->copy_b)
        for (int j = 0; j < NR; ++j) p->copy_b[k * NR + j] = b[j];
      for (int i = 0; i < MR; ++i) {
        // packed: a[k*MR + i]; in place (lda > 0): row i (clamped to the last real row).
        const T ai = lda > 0 ? a[(i < m ? i : m - 1) * lda + k] : a[k * MR + i];
        for (int j = 0; j < NR; ++j) acc[i][j] += ai * b[j];
      }
      b += bs;
    }
    // C tile += this sub-block (the first applies beta, the last the epilogue)
    const bool final = k1 == kc;
    const T beta = k0 == 0 ? p->beta : T(1);
    for (int i = 0; i < m; ++i)
      for (int j = 0; j < n; ++j) {
        T v = p->alpha * acc[i][j];
        if (beta != T(0)) v += beta * c[i * ldc + j];
        if (final && p->bias_row) v += p->bias_row[i];
        if (final && p->bias_col) v += p->bias_col[j];
        if (final && p->relu && v < T(0)) v = T(0);  // NaN kept
        c[i * ldc + j] = v;
      }
  }
}

void ukr_f32(int64_t kc, const float* a, int64_t lda, const float* b, int64_t bs, float* c, int64_t ldc, int m, int n,
             const UkrParams<float>* p) {
  ukr<float, 4, 8>(kc, a, lda, b, bs, c, ldc, m, n, p);
}
void ukr_f64(int64_t kc, const double* a, int64_t lda, const double* b, int64_t bs, double* c, int64_t ldc, int m, int n,
             const UkrParams<double>* p) {
  ukr<double, 4, 8>(kc, a, lda, b, bs, c, ldc, m, n, p);
}

// Small-M kernels: plain loops (B streamed once; S row chunks stay in cache).
template <typename T>
void smallm_n(int M, int64_t n, int64_t K, const T* A, int64_t lda, const T* B, int64_t ldb, T* S, int64_t lds,
              bool /*far_b*/) {
  for (int m = 0; m < M; ++m)
    for (int64_t j = 0; j < n; ++j) S[m * lds + j] = T(0);
  for (int64_t k = 0; k < K; ++k)
    for (int m = 0; m < M; ++m) {
      const T a = A[m * lda + k];
      T* s = S + m * lds;
      const T* b = B + k * ldb;
      for (int64_t j = 0; j < n; ++j) s[j] += a * b[j];
    }
}
template <typename T>
void smallm_t(int M, int64_t n, int64_t K, const T* A, int64_t lda, const T* B, int64_t ldb, T* S, int64_t lds,
              bool /*far_b*/) {
  for (int64_t j = 0; j < n; ++j)
    for (int m = 0; m < M; ++m) {
      T acc[16] = {};  // 16 running sums (like a 16-lane vector), added pairwise at the end
      const T* a = A + m * lda;
      const T* b = B + j * ldb;
      int64_t k = 0;
      for (; k + 16 <= K; k += 16)
        for (int u = 0; u < 16; ++u) acc[u] += a[k + u] * b[k + u];
      for (; k < K; ++k) acc[k % 16] += a[k] * b[k];
      for (int h = 8; h >= 1; h /= 2)
        for (int u = 0; u < h; ++u) acc[u] += acc[u + h];
      S[m * lds + j] = acc[0];
    }
}

}  // namespace

UkrInfo<float> info_f32() { return {4, 8, 8, 256, 128, 1024, ukr_f32, smallm_n<float>, smallm_t<float>, nullptr}; }
UkrInfo<double> info_f64() { return {4, 8, 8, 256, 128, 512, ukr_f64, smallm_n<double>, smallm_t<double>, nullptr}; }

}  // namespace gemm_scalar
}  // namespace pycnnrnn

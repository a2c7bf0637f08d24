// gemm.cpp — TEMPORARY correct-but-slow engine so other operators can be written against
// gemm.h while the packed, cache-blocked engine is built (issue 3 replaces this file).
#include "cpu/gemm.h"

#include <algorithm>
#include <vector>

namespace pycnnrnn {

template <typename T>
void gemm_naive(bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda, const T* B,
                int64_t ldb, T beta, T* C, int64_t ldc, const GemmEpilogue<T>& ep) {
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      T acc = 0;
      for (int64_t k = 0; k < K; ++k) {
        T a = ta ? A[k * lda + m] : A[m * lda + k];
        T b = tb ? B[n * ldb + k] : B[k * ldb + n];
        acc += a * b;
      }
      T c = alpha * acc;
      if (beta != T(0)) c += beta * C[m * ldc + n];
      if (ep.bias_kind == BiasKind::row) c += ep.bias[m];
      if (ep.bias_kind == BiasKind::col) c += ep.bias[n];
      if (ep.relu) c = c > T(0) ? c : T(0);
      C[m * ldc + n] = c;
    }
}

template <typename T>
void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda, const T* B,
          int64_t ldb, T beta, T* C, int64_t ldc, const GemmEpilogue<T>& ep, int) {
  gemm_naive(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, ep);
}

template <typename T>
void gemm_provided_b(bool ta, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
                     const BlockProvider<T>& B, T beta, T* C, int64_t ldc, const GemmEpilogue<T>& ep, int) {
  std::vector<T> b(static_cast<size_t>(std::max<int64_t>(K * N, 1)));
  if (K > 0 && N > 0) B(0, K, 0, N, b.data(), N);
  gemm_naive(ta, false, M, N, K, alpha, A, lda, b.data(), N, beta, C, ldc, ep);
}

#define INSTANTIATE(T)                                                                                        \
  template void gemm_naive<T>(bool, bool, int64_t, int64_t, int64_t, T, const T*, int64_t, const T*, int64_t, T, \
                              T*, int64_t, const GemmEpilogue<T>&);                                          \
  template void gemm<T>(bool, bool, int64_t, int64_t, int64_t, T, const T*, int64_t, const T*, int64_t, T, T*,    \
                        int64_t, const GemmEpilogue<T>&, int);                                               \
  template void gemm_provided_b<T>(bool, int64_t, int64_t, int64_t, T, const T*, int64_t, const BlockProvider<T>&, \
                                   T, T*, int64_t, const GemmEpilogue<T>&, int);
INSTANTIATE(float)
INSTANTIATE(double)

}  // namespace pycnnrnn

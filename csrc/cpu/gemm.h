// gemm.h — the one GEMM engine every operator runs on (Linear, conv, recurrent layers).
//
//   C[M][N] = alpha * op(A)[M][K] * op(B)[K][N] + beta * C[M][N]   (then the epilogue)
//
// Row-major storage; op(X) = X or X^T chosen by trans_a / trans_b; lda/ldb/ldc are row
// strides in elements. beta == 0 means C is write-only (NaN in C is not propagated).
//
// Epilogue (applied after alpha/beta, in registers, before the single store of C):
//   bias_kind == BiasKind::row : C[m][n] += bias[m]    (conv: bias per output channel)
//   bias_kind == BiasKind::col : C[m][n] += bias[n]    (Linear: bias per output feature)
//   relu                       : C = max(C, 0)
//
// B may also come from a provider callback instead of memory (implicit GEMM: conv's im2col
// is generated block by block inside packing, never materialised whole).
//
// float is the fast path; double is the correct path (same blocking, scalar/vector FMA).
// Threading: the engine splits work over the pool (pycnnrnn::parallel_run) itself; pass
// nthreads = 1 when calling from inside a parallel region you already own.
#pragma once
#include <cstdint>
#include <functional>

namespace pycnnrnn {

enum class BiasKind { none, row, col };

template <typename T>
struct GemmEpilogue {
  const T* bias = nullptr;
  BiasKind bias_kind = BiasKind::none;
  bool relu = false;
};

// Writes the logical block B[k0 : k0+kc][n0 : n0+nc] of a provided B operand into dst,
// row-major with row stride ld_dst (>= nc). Must be thread-safe (called concurrently).
template <typename T>
using BlockProvider = std::function<void(int64_t k0, int64_t kc, int64_t n0, int64_t nc, T* dst, int64_t ld_dst)>;

// nthreads <= 0: use get_num_threads().
template <typename T>
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
          const T* B, int64_t ldb, T beta, T* C, int64_t ldc, const GemmEpilogue<T>& ep = {}, int nthreads = 0);

// Same with B given by a provider (shape K x N, logical row-major).
template <typename T>
void gemm_provided_b(bool trans_a, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
                     const BlockProvider<T>& B, T beta, T* C, int64_t ldc, const GemmEpilogue<T>& ep = {},
                     int nthreads = 0);

// The naive triple loop: the oracle beside the fast engine (used by tests through _C).
template <typename T>
void gemm_naive(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
                const T* B, int64_t ldb, T beta, T* C, int64_t ldc, const GemmEpilogue<T>& ep = {});

}  // namespace pycnnrnn

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
//   relu                       : C = max(C, 0)          (NaN stays NaN, like torch.relu)
//
// B may also come from a provider callback instead of memory (implicit GEMM: conv's im2col
// is generated block by block inside packing, never materialised whole).
//
// float is the fast path; double is the correct path (same blocking, scalar/vector FMA).
// Threading: the engine splits work over the pool (pycnnrnn::parallel_run) itself; pass
// nthreads = 1 when calling from inside a parallel region you already own.
//
// Blocking (Goto/BLIS): jc (NC columns, split over threads) -> pc (KC, pack B) -> ic (MC,
// pack A) -> ir (MR) -> jr (NR) -> micro-kernel (cpu/gemm_ukernel.h, one per ISA). Packing
// buffers are thread_local, 64-byte aligned and reused across calls (no shared mutable
// state: concurrent calls from several Python threads are safe). Results are deterministic
// for a given thread count (static partition; the K reduction order never depends on it).
#pragma once
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <memory>

namespace pycnnrnn {

enum class BiasKind { none, row, col };

template <typename T>
struct GemmEpilogue {
  const T* bias = nullptr;
  BiasKind bias_kind = BiasKind::none;
  bool relu = false;
  // Accumulate K in short float chains (sub-blocks of GEMM_SHORT_SUMS_K steps added to C,
  // about 8% slower): the convolutions' long reductions then stay within torch's error.
  bool short_sums = false;
};
constexpr int64_t GEMM_SHORT_SUMS_K = 64;

// Writes the logical block B[k0 : k0+kc][n0 : n0+nc] of a provided B operand into dst,
// row-major with row stride ld_dst (>= nc). Must be thread-safe (called concurrently).
template <typename T>
using BlockProvider = std::function<void(int64_t k0, int64_t kc, int64_t n0, int64_t nc, T* dst, int64_t ld_dst)>;

// nthreads <= 0: use get_num_threads().
template <typename T>
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
          const T* B, int64_t ldb, T beta, T* C, int64_t ldc, const GemmEpilogue<T>& ep = {}, int nthreads = 0);

// Same with B given by a provider (shape K x N, logical row-major). The engine calls the
// provider once per NR-column panel of each (KC x NC) block of B and thread (blocks never
// overlap between threads when N is split; when M is split each thread asks for the blocks it
// needs) with dst = the packed panel itself and ld_dst = NR: the provider's block is the
// packed B, no second copy.
template <typename T>
void gemm_provided_b(bool trans_a, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
                     const BlockProvider<T>& B, T beta, T* C, int64_t ldc, const GemmEpilogue<T>& ep = {},
                     int nthreads = 0);

// ---- packed-A cache (weights reused across calls: conv weights, LSTM W_hh, Linear) -------
// pack_a() copies op(A) (M x K) once into the engine's micro-panel layout for the active ISA;
// gemm_packed_a*() then skip A packing. The object is plain data owning its buffer (move-only;
// hold it in a bound class or a capsule). It does not watch A: when the weights change the
// caller packs again (the Python side keys its cache on the array's identity/version).
// Layout: for each KC block starting at k0 (kc = min(KC, K - k0)) at data + k0 * mpad, panels
// of MR rows: panel p at + p * MR * kc, element (m = p*MR + i, k0 + k) at + k * MR + i, rows
// M..mpad-1 zero.
struct AlignedFree {
  void operator()(void* p) const { std::free(p); }
};

template <typename T>
struct PackedA {
  int64_t M = 0, K = 0;
  int64_t mpad = 0;  // M rounded up to mr
  int isa = -1;      // static_cast<int>(Isa) it was packed for
  int mr = 0, kc = 0;
  std::unique_ptr<T, AlignedFree> data;
  int64_t bytes() const { return mpad * K * static_cast<int64_t>(sizeof(T)); }
};

template <typename T>
PackedA<T> pack_a(bool trans_a, int64_t M, int64_t K, const T* A, int64_t lda);

// C = alpha * A * op(B) + beta * C with A pre-packed (M, K taken from it).
template <typename T>
void gemm_packed_a(const PackedA<T>& A, bool trans_b, int64_t N, T alpha, const T* B, int64_t ldb, T beta, T* C,
                   int64_t ldc, const GemmEpilogue<T>& ep = {}, int nthreads = 0);

template <typename T>
void gemm_packed_a_provided_b(const PackedA<T>& A, int64_t N, T alpha, const BlockProvider<T>& B, T beta, T* C,
                              int64_t ldc, const GemmEpilogue<T>& ep = {}, int nthreads = 0);

// ---- packed-B cache (the same idea for a B reused across calls: Linear weights, W_hh when
// the recurrent product is h @ W_hh^T with a batch of more than a few rows) ----------------
// Layout: for each KC block starting at k0 at data + k0 * npad, panels of NR columns: panel q
// at + q * NR * kc, element (k0 + k, q*NR + j) at + k * NR + j, columns N..npad-1 zero.
template <typename T>
struct PackedB {
  int64_t K = 0, N = 0;
  int64_t npad = 0;  // N rounded up to nr
  int isa = -1;
  int nr = 0, kc = 0;
  std::unique_ptr<T, AlignedFree> data;
  int64_t bytes() const { return npad * K * static_cast<int64_t>(sizeof(T)); }
};

// Packs op(B) (K x N): B[k][n] (trans_b false) or B[n][k] (trans_b true), row stride ldb.
template <typename T>
PackedB<T> pack_b(bool trans_b, int64_t K, int64_t N, const T* B, int64_t ldb);

// Rows of a row-major matrix as the columns of a panel, through the active ISA's transposed-B
// packer (16 x 16 or 8 x 8 blocks in registers): dst[k * ld + c] = src[c * lds + k] for k < K,
// c < n, and zero for n <= c < width (n <= width, width a multiple of gemm_tile's vector_cols,
// ld >= width). The recurrent layers' gate-interleaved W_hh panels (rnn.cpp pack_forward).
void pack_columns(const float* src, int64_t lds, int64_t K, int64_t n, int width, float* dst, int64_t ld);

// C = alpha * op(A) * B + beta * C with B pre-packed (K, N taken from it). Always the packed
// path (no small-M special case), so results do not depend on M's size class.
template <typename T>
void gemm_packed_b(bool trans_a, int64_t M, T alpha, const T* A, int64_t lda, const PackedB<T>& B, T beta, T* C,
                   int64_t ldc, const GemmEpilogue<T>& ep = {}, int nthreads = 0);

// Whether gemm() runs M rows on its unpacked small-M path (A and B in memory, M <= 8): it
// streams B once at memory bandwidth (GEMV-like Linear/LSTM shapes) in a summation order of its
// own; above it gemm() packs B like gemm_packed_b() and gives the same sums. Both paths are
// deterministic. The provider and packed entry points always use the packed path.
bool gemm_small_m(int64_t M);

// gemm() with at most GEMM_FEW_ROWS rows and a row-major B (trans_b false) reads B where it
// lies, without packing it, when every panel of B is whole: N a multiple of the register
// tile's columns, or N below that and a multiple of its vector. Winograd's fused weight
// transform (conv2d_winograd.cpp) pads its B's rows to such widths.
constexpr int64_t GEMM_FEW_ROWS = 48;
struct GemmTile {
  int64_t rows, cols, vector_cols;  // the micro-kernel's register tile (MR x NR) and vector
};
template <typename T>
GemmTile gemm_tile();

// Notes for callers:
// - The provider and any code running while the engine runs on this thread must not call
//   the engine re-entrantly (per-thread packing buffers).

// The naive triple loop: the oracle beside the fast engine (used by tests through _C).
template <typename T>
void gemm_naive(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
                const T* B, int64_t ldb, T beta, T* C, int64_t ldc, const GemmEpilogue<T>& ep = {});

}  // namespace pycnnrnn

// gemm_ukernel.h — the contract between the GEMM driver (gemm.cpp) and the per-ISA
// micro-kernels (cpu/ukernels/<isa>/gemm_<isa>.cpp). Plain data and declarations only: this
// header is included by translation units compiled with different -m flags, so it must not
// define inline functions or instantiate templates that generate code.
//
// Micro-kernel: one MR x NR tile of C from a packed A micro-panel and a B micro-panel
//   a : packed A, a[k*MR + i]  (i < MR, rows >= m are zero padding)        kc x MR
//       or, when lda > 0, A rows in place: a[i*lda + k] (only rows i < m are read) — no
//       packing pass for a row-major A (conv weights, Linear inputs); L1 holds the MR rows
//       of one KC block just as it holds a packed micro-panel.
//   b : B rows,  b[k*bs + j]   (j < NR; packed: bs == NR, columns >= n zero) kc x NR
//   c : C tile, row stride ldc; only the m x n corner (m <= MR, n <= NR) is read/written
//   C = alpha * (a^T b) + beta * C     (beta == 0: C is not read)
//   With p->ksub > 0 the k loop runs in sub-blocks of ksub steps, each sub-block's register
//   sums added to the C tile (which stays in L1 for the call): a float sum then carries
//   chains of about ksub + K / ksub terms instead of kc. The convolutions ask for it (K = 9 *
//   C_in, Winograd included: within torch's error on long reductions); it costs ~8% speed.
//   then, if the params say so: += bias_row[i], += bias_col[j], relu (NaN kept).
//   p->fetch_b > 0 (b in place, rows a page or more apart): row k + fetch_b is fetched into L1 as
//   row k is read (the portable kernel ignores it); p->copy_b (a full panel, n == NR): every row
//   of b read is also written to copy_b + k * NR, the packed panel of the next row panels.
// Edges are masked stores (AVX-512 k-masks, AVX2 maskstore), never a scalar loop over C.
#pragma once
#include <cstdint>

namespace pycnnrnn {

template <typename T>
struct UkrParams {
  T alpha;
  T beta;                  // 0: C is write-only for this call
  const T* bias_row;       // bias_row[i] for tile row i (already offset), or nullptr
  const T* bias_col;       // bias_col[j] for tile column j (already offset), or nullptr
  int relu;                // 1: C = max(C, 0) keeping NaN
  int64_t ksub;            // > 0: accumulate in sub-blocks of ksub k steps (see above)
  int64_t fetch_b;         // > 0: fetch b's row k + fetch_b while reading row k (see above)
  T* copy_b;               // or nullptr: write each row of b read to copy_b + k * NR (see above)
};

// Small-M kernels (M <= SMALLM_MAX): raw sums, no packing, B streamed once from memory at
// bandwidth (GEMV-like shapes: Linear at batch 1..8).
//   S[m*lds + j] = sum_k A[m*lda + k] * op(B)(k, j)      m < M, j < n
//   smallm_n: op(B)(k, j) = B[k*ldb + j]   (B row-major, rows streamed, S chunk in L1)
//   smallm_t: op(B)(k, j) = B[j*ldb + k]   (B^T rows streamed: dot products, Linear weights)
// far_b: B comes from memory, not from the caches (the driver's call: gemm.cpp smallm_far_b), and
// the kernel fetches it ahead in software: smallm_n the next k-group's rows, smallm_t each row 2
// KiB ahead. (The portable kernels ignore it.)
constexpr int SMALLM_MAX = 8;

template <typename T>
using SmallMFn = void (*)(int M, int64_t n, int64_t K, const T* A, int64_t lda, const T* B, int64_t ldb, T* S,
                          int64_t lds, bool far_b);

// One entry per ISA and dtype: the tile and the blocking it was tuned for.
template <typename T>
struct UkrInfo {
  int mr, nr;              // register tile
  int nr_step;             // columns per vector: a partial panel costs ceil(n / nr_step) vectors
  int kc, mc, nc;          // cache blocking (kc: A micro-panel in L1; kc x nc: B block in L2)
  void (*ukr)(int64_t kc, const T* a, int64_t lda, const T* b, int64_t bs, T* c, int64_t ldc, int m, int n,
              const UkrParams<T>* p);
  SmallMFn<T> smallm_n, smallm_t;
  // Optional fast packer for a transposed B block (nullptr: the generic one): Bt points at
  // B^T[n0][k0] (row stride ldb); writes ceil(nc/nr) panels of kc rows x nr columns
  // (zero-padded) to dst: panel q (q = 0, nr, 2nr, ...) at dst + q/nr * kc * ld, row k at
  // + k * ld; nr = the panel width (a multiple of nr_step, at most the kernel's nr), ld >= nr the
  // row stride (nr in the GEMM's own panels; the RNN's gate-interleaved panels put several
  // such column groups side by side).
  void (*pack_bt)(const T* Bt, int64_t ldb, int64_t kc, int64_t nc, int nr, T* dst, int64_t ld);
};

namespace gemm_avx512 {
UkrInfo<float> info_f32();
UkrInfo<double> info_f64();
}  // namespace gemm_avx512
namespace gemm_avx2 {
UkrInfo<float> info_f32();
UkrInfo<double> info_f64();
}  // namespace gemm_avx2
namespace gemm_scalar {
UkrInfo<float> info_f32();
UkrInfo<double> info_f64();
}  // namespace gemm_scalar

}  // namespace pycnnrnn

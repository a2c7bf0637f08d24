// gemm.cpp — the GEMM engine: naive oracle first, then the packed, cache-blocked driver.
//
//   C[M][N] = alpha * op(A)[M][K] * op(B)[K][N] + beta * C[M][N]   (+ bias, relu)
//
// Driver (Goto/BLIS five loops, per thread over its own rectangle [m0,m1) x [n0,n1)):
//   for jc in n-range step NC:            B block columns (NC = NR: <= 48 rows, B in memory)
//     for pc in 0..K step KC:             pack B[pc:pc+kc][jc:jc+nc] -> NR-wide panels (L2)
//       for ic in m-range step MC:        pack A[ic:ic+mc][pc:pc+kc] -> MR-high panels
//                                         (a row-major A is read in place, not packed)
//         for ir in mc step MR:           A micro-panel (MR x kc) stays in L1
//           for jr in nc step NR:         B micro-panel streams from L2
//             micro-kernel (cpu/gemm_ukr.inc in cpu/ukernels/<isa>/gemm_<isa>.cpp)
// The first KC block applies beta, the last one the epilogue (bias, relu); C is touched once
// per KC block. Threads split N (each packs its own B into its own L2) unless splitting M
// balances the micro-tiles better (run(): max_thread_tiles); a shared A packed once by both
// threads was tried: one more pool region per call, slower when measured interleaved. The K
// order never depends on the thread count, so results are deterministic.
// Entry points: plain (A, B in memory), provided B (conv's implicit GEMM), pre-packed A or B
// (weights reused across calls). M <= SMALLM_MAX with A and B in memory takes the small-M
// path instead: no packing, B streamed once (GEMV-like Linear / recurrent shapes); a few more
// rows against a wide transposed B compute C^T = B A^T (run_transposed_c).
#include "cpu/gemm.h"

#include <algorithm>
#include <cstring>
#include <new>

#include "core/block_cache.h"
#include "core/dispatch.h"
#include "core/errors.h"
#include "core/thread_pool.h"
#include "cpu/gemm_ukernel.h"

namespace pycnnrnn {

// ---- the oracle ------------------------------------------------------------------------
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
      if (ep.relu && c < T(0)) c = T(0);  // NaN kept
      C[m * ldc + n] = c;
    }
}

namespace {

// ---- kernel table ----------------------------------------------------------------------
template <typename T>
UkrInfo<T> make_info(Isa isa);
template <>
UkrInfo<float> make_info<float>(Isa isa) {
#if PYCNNRNN_HAVE_X86
  if (isa == Isa::avx512) return gemm_avx512::info_f32();
  if (isa == Isa::avx2) return gemm_avx2::info_f32();
#endif
  (void)isa;
  return gemm_scalar::info_f32();
}
template <>
UkrInfo<double> make_info<double>(Isa isa) {
#if PYCNNRNN_HAVE_X86
  if (isa == Isa::avx512) return gemm_avx512::info_f64();
  if (isa == Isa::avx2) return gemm_avx2::info_f64();
#endif
  (void)isa;
  return gemm_scalar::info_f64();
}
template <typename T>
const UkrInfo<T>& kernels() {
  static const UkrInfo<T> info = make_info<T>(active_isa());
  return info;
}

// ---- per-thread packing buffers (64-byte aligned, grown on demand, reused) -------------
struct Scratch {
  void* p = nullptr;
  size_t cap = 0;
  ~Scratch() { std::free(p); }
  template <typename T>
  T* get(int64_t elems) {
    size_t bytes = (static_cast<size_t>(elems) * sizeof(T) + 63) & ~size_t(63);
    if (bytes > cap) {
      std::free(p);
      p = nullptr;
      cap = 0;
      p = std::aligned_alloc(64, bytes);
      if (!p) throw std::bad_alloc();
      cap = bytes;
    }
    return static_cast<T*>(p);
  }
};
thread_local Scratch tl_a, tl_b, tl_prov, tl_at;

int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// ---- packing ---------------------------------------------------------------------------
// A panels: rows [m0, m0+mc) x cols [k0, k0+kc) of op(A) -> ceil(mc/MR) panels of kc x MR,
// panel p at dst + p*MR*kc, element (p*MR+i, k) at + k*MR + i; rows past mc are zero.
template <typename T>
void pack_a_block(bool ta, const T* A, int64_t lda, int64_t m0, int64_t mc, int64_t k0, int64_t kc, int mr,
                  T* dst) {
  if (ta && mr == 6) {
    // op(A)(m, k) = A[k][m]: row k0 + k of A holds rows m0.. of op(A) side by side. k outer:
    // each row of A is read once, contiguously, and its full panels get 6 elements each (a
    // fixed-size copy). Panel by panel, the 256 rows' 24-byte pieces at a row stride of 8 KiB
    // (dW = dG^T x in an LSTM backward) all fell into one L1 set: 4.7% of an LSTM(300, 512, 2)
    // forward + backward at B=64, T=30.
    const int64_t full = mc / 6 * 6;
    for (int64_t k = 0; k < kc; ++k) {
      const T* s = A + (k0 + k) * lda + m0;
      for (int64_t p = 0; p < full; p += 6) std::memcpy(dst + p * kc + k * 6, s + p, 6 * sizeof(T));
    }
    if (full == mc) return;
    dst += full * kc;  // the partial last panel below
    m0 += full;
    mc -= full;
  }
  for (int64_t p = 0; p < mc; p += mr) {
    const int rows = static_cast<int>(std::min<int64_t>(mr, mc - p));
    T* d = dst + p * kc;
    if (ta) {  // op(A)(m, k) = A[k][m]: MR contiguous elements per k
      const T* s = A + k0 * lda + m0 + p;
      for (int64_t k = 0; k < kc; ++k) {
        const T* sk = s + k * lda;
        T* dk = d + k * mr;
        int i = 0;
        for (; i < rows; ++i) dk[i] = sk[i];
        for (; i < mr; ++i) dk[i] = T(0);
      }
    } else {  // op(A)(m, k) = A[m][k]: read rows contiguously, write with stride MR
      for (int i = 0; i < rows; ++i) {
        const T* s = A + (m0 + p + i) * lda + k0;
        for (int64_t k = 0; k < kc; ++k) d[k * mr + i] = s[k];
      }
      for (int i = rows; i < mr; ++i)
        for (int64_t k = 0; k < kc; ++k) d[k * mr + i] = T(0);
    }
  }
}

// d[k * nr + j] = s[k * ld + j] (k < kc, j < nr): a full B panel's rows. The kernels' panel
// widths get a fixed-size copy the compiler inlines: memcpy with a run-time size was a library
// call per 64-byte row, 12% of a Winograd layer's time (N=8, 256->256 at 56x56).
template <typename T, int NR>
void copy_rows_fixed(const T* s, int64_t ld, int64_t kc, T* d) {
  for (int64_t k = 0; k < kc; ++k) std::memcpy(d + k * NR, s + k * ld, NR * sizeof(T));
}
template <typename T>
void copy_panel_rows(const T* s, int64_t ld, int64_t kc, int nr, T* d) {
  switch (nr) {
    case 8: return copy_rows_fixed<T, 8>(s, ld, kc, d);
    case 16: return copy_rows_fixed<T, 16>(s, ld, kc, d);
    case 32: return copy_rows_fixed<T, 32>(s, ld, kc, d);
    case 64: return copy_rows_fixed<T, 64>(s, ld, kc, d);
    default:
      for (int64_t k = 0; k < kc; ++k) std::memcpy(d + k * nr, s + k * ld, sizeof(T) * nr);
  }
}

// B panels: rows [k0, k0+kc) x cols [n0, n0+nc) of op(B) -> ceil(nc/NR) panels of kc x NR,
// panel q at dst + q*NR*kc, element (k, q*NR+j) at + k*NR + j; columns past nc are zero.
template <typename T>
void pack_b_block(bool tb, const T* B, int64_t ldb, int64_t k0, int64_t kc, int64_t n0, int64_t nc, int nr,
                  T* dst) {
  for (int64_t q = 0; q < nc; q += nr) {
    const int cols = static_cast<int>(std::min<int64_t>(nr, nc - q));
    T* d = dst + q * kc;
    if (!tb) {  // op(B)(k, n) = B[k][n]: NR contiguous elements per k
      const T* s = B + k0 * ldb + n0 + q;
      if (cols == nr) {
        copy_panel_rows(s, ldb, kc, nr, d);
      } else {
        for (int64_t k = 0; k < kc; ++k) {
          int j = 0;
          for (; j < cols; ++j) d[k * nr + j] = s[k * ldb + j];
          for (; j < nr; ++j) d[k * nr + j] = T(0);
        }
      }
    } else {  // op(B)(k, n) = B[n][k]: read rows of B contiguously, write with stride NR
      for (int j = 0; j < cols; ++j) {
        const T* s = B + (n0 + q + j) * ldb + k0;
        for (int64_t k = 0; k < kc; ++k) d[k * nr + j] = s[k];
      }
      for (int j = cols; j < nr; ++j)
        for (int64_t k = 0; k < kc; ++k) d[k * nr + j] = T(0);
    }
  }
}

// ---- the problem as the driver sees it -------------------------------------------------
template <typename T>
struct Problem {
  int64_t M, N, K;
  T alpha, beta;
  const PackedA<T>* pa;  // A pre-packed, or
  bool ta;
  const T* A;
  int64_t lda;
  const PackedB<T>* pb;          // B pre-packed, or
  const BlockProvider<T>* prov;  // B from a provider, or
  bool tb;
  const T* B;
  int64_t ldb;
  T* C;
  int64_t ldc;
  GemmEpilogue<T> ep;
};

// A row-major in memory: the micro-kernel reads its rows where they lie (no packing pass).
template <typename T>
bool a_in_place(const Problem<T>& P) {
  return !P.pa && !P.ta && P.lda > 0;
}
// Neither pre-packed nor read in place: run_rect packs op(A) (A^T) block by block on every call.
template <typename T>
bool a_packed_per_call(const Problem<T>& P) {
  return !P.pa && !a_in_place(P);
}

// K == 0: C = beta*C (+ bias, relu).
template <typename T>
void scale_only(const Problem<T>& P) {
  for (int64_t m = 0; m < P.M; ++m)
    for (int64_t n = 0; n < P.N; ++n) {
      T& c = P.C[m * P.ldc + n];
      T v = P.beta != T(0) ? P.beta * c : T(0);
      if (P.ep.bias_kind == BiasKind::row) v += P.ep.bias[m];
      if (P.ep.bias_kind == BiasKind::col) v += P.ep.bias[n];
      if (P.ep.relu && v < T(0)) v = T(0);
      c = v;
    }
}

// The provider's block of rows [k0, k0 + kc) and columns [n0, n0 + cols) as one packed panel
// (row stride nr >= cols); the panel's columns past cols are zeros.
template <typename T>
void provide_panel(const Problem<T>& P, int64_t k0, int64_t kc, int64_t n0, int64_t cols, int nr, T* panel) {
  (*P.prov)(k0, kc, n0, cols, panel, nr);
  if (cols < nr)
    for (int64_t k = 0; k < kc; ++k) std::fill(panel + k * nr + cols, panel + (k + 1) * nr, T(0));
}

// K blocking: K up to twice the kernel's kc in one block, else blocks of kc, or of 2 kc where A
// is not packed per call (read in place or pre-packed: its micro-panel only has to sit in L1);
// the B block's columns cut so that kc x nc stays the tuned size. Each K block is a pass over
// the C block: K = 300 or 512 (an LSTM's input projection, Linear layers) takes one pass instead
// of 256 + 44 / 256 + 256 (same runs: 1920x300 @ 300x2048 6.7 -> 6.1 ms, 64x512 @ 512x2048 0.56
// -> 0.52 ms, LSTM(300, 512, 2) B=64 52.4 -> 49.7 ms). Whatever the block, the micro-kernel sums
// in chains of kc (run_rect's ksub), each chain's register sums added to the C tile, which stays
// in L1 for the call: the float sums are those of blocks of kc. One chain over a block of 512
// had 512^3 at 1.9-2.6x torch's float32 error against float64 (4 seeds), chains of 256 at
// 1.0-1.4x (numpy's, bit for bit); 512^3 and 1920x300 @ 300x2048 the same speed within 2%,
// LSTM(300, 512, 2) B=64 forward 1.5% slower (alternating processes). Blocks of 2 kc send the C
// tiles to L3 and back half as often (alternating in one process, medians of 8: 2048^3 458-464
// -> 467-475 GFLOP/s, 1024^3 454 -> 472, 1920x2048 @ 2048x300 +4%; convolutions bit-identical).
// An A packed per call (transposed) keeps blocks of kc: its packed block (mc x kc) and B's share
// L2, and 2048x1920 @ 1920x300 with A^T lost 12-22%. The convolutions' short sums (chains of 64)
// are the same sums whatever the block.
template <typename T>
int64_t block_k(const UkrInfo<T>& kr, int64_t K, bool a_packed_per_call) {
  if (K <= 2 * kr.kc) return std::max<int64_t>(K, 1);
  return a_packed_per_call ? kr.kc : 2 * kr.kc;
}
template <typename T>
int64_t block_n(const UkrInfo<T>& kr, int64_t kc) {
  return std::max<int64_t>(kr.nr, kr.kc * kr.nc / std::max<int64_t>(kc, kr.kc) / kr.nr * kr.nr);
}

// The next A micro-panel (rows rows of kc elements: in place, row stride a_rows, or packed,
// contiguous) fetched into L1 while the current row panel makes its last micro-kernel call. A
// big GEMM's A comes from L3 (at 2048^3 each KC block of the row-major A is 2 MB, read in place)
// and the first call of each row panel waited on it: one process alternating, 2048^3 38.6 ->
// 37.9 and 39.2 -> 38.3 ms, 1920x300 @ 300x2048 +2-3%, 512^3 and 1024^3 +0.5-1%. Only where the
// row panel makes several calls: in the Winograd blocks' GEMMs (48 rows, one 64-column call per
// row panel) the lines competed with the current panel's own (512->512@14 N=1 1.75 -> 1.79 ms).
constexpr int64_t A_PREFETCH_MIN_PANELS = 4;

// A row-major B read in place (the few-rows path below, one or two row panels at this stride) at
// a row stride of a page or more: each of a panel's rows lies in another 4 KiB page, where the
// hardware prefetchers stop, and every row panel of A waited for the panel's lines from L3 (at 8
// KiB the panel's 300 x 4 lines also overflow their L1 and L2 sets, which is why more row panels
// get a packed panel instead). The micro-kernel fetches row k + FETCH_B_ROWS as it reads row k.
// Intel Xeon (Emerald Rapids class, 2 threads), one process alternating, median of 7 rounds,
// measured before the packing rule in run_rect: 30x300 @ 300x2048 0.87x the time, 16x512 @
// 512x2048 0.76x, 9x4096 @ 4096x4096 0.72x, 40x1024 @ 1024x4096 0.84x (8 rows ahead: 0.89x,
// 0.76x, 0.74x, 0.89x; 16: 0.91x, 0.88x, 0.89x, 0.98x). At strides of 1-3 KiB mixed (30x600 @
// 600x256 1.08x, 12x25088 @ 25088x512 0.91x): not there. Not for the convolutions (short sums):
// their in-place B, Winograd's transformed tiles, was just written and is in L2 (128->128@112
// N=1 1.07x, 256->256@56 1.21x with the fetch).
constexpr int64_t FETCH_B_MIN_STRIDE = 4096;  // bytes
constexpr int64_t FETCH_B_ROWS = 4;
template <typename T>
void prefetch_a_panel(const T* a, int64_t a_rows, int rows, int64_t kc) {
  const int64_t step = 64 / static_cast<int64_t>(sizeof(T));  // elements per cache line
  if (a_rows) {
    for (int i = 0; i < rows; ++i)
      for (int64_t k = 0; k < kc; k += step) __builtin_prefetch(a + i * a_rows + k, 0, 3);
  } else {
    for (int64_t e = 0; e < rows * kc; e += step) __builtin_prefetch(a + e, 0, 3);
  }
}

// One thread's rectangle [m0, m1) x [n0, n1); m0 is a multiple of MR.
template <typename T>
void run_rect(const Problem<T>& P, const UkrInfo<T>& kr, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  if (m0 >= m1 || n0 >= n1) return;
  // B panel width: the kernel's NR, or for a rectangle narrower than one panel just enough
  // vectors (a 16-column B packed 64 wide was three quarters zeros to write and stream)
  const int mr = kr.mr;
  const int nr = P.pb || n1 - n0 >= kr.nr ? kr.nr : static_cast<int>(round_up(n1 - n0, kr.nr_step));
  const bool in_place_a = a_in_place(P);
  const int64_t KC = P.pa ? P.pa->kc : P.pb ? P.pb->kc : block_k(kr, P.K, a_packed_per_call(P));
  const int64_t MC = std::max<int64_t>(mr, kr.mc / mr * mr);
  // Few rows and B in memory (Linear at batch 30, an RNN's input projection): B goes one NR
  // panel at a time, right before the row panels use it, so it is read once and stays in L1/L2
  // (30x300 @ 300x2048: 225 -> 172 us; a 1 MiB B block went through L2 once per row panel).
  // A row-major B's full panels are not even packed: the micro-kernel reads their rows where
  // they lie (row stride ldb), the few row panels that reuse them finding them in L2. Same
  // sums. Packed / in place, same runs (us): 30x300 @ 300x2048 100 / 80, 48x1024 @ 1024x1024
  // 249 / 222, 30x2048 @ 2048x512 175 / 133, 9x4096 @ 4096x4096 3700 / 2200, 12x25088 @
  // 25088x512 2350 / 1250. Provided and pre-packed B keep the wide blocks.
  const bool few_rows = m1 - m0 <= GEMM_FEW_ROWS && !P.pb && !P.prov;
  const int64_t NC = few_rows ? nr : block_n(kr, KC);
  // Rows of B a page or more apart (FETCH_B_MIN_STRIDE) are read in place by one or two row
  // panels only: the panel's lines, all in a few L1 and L2 sets, are not there for a third. From
  // three row panels, and on the wide-block path, the first row panel reads a full panel's rows
  // in place (fetched ahead) and writes the packed panel that the others read
  // (UkrParams::copy_b): the packing pass read them a page apart, without the hardware's
  // prefetch. Intel Xeon, one process alternating, 7-15 rounds, time against reading in place
  // with the fetch: packing pass 48x1024 @ 1024x1024 0.64x, 40x1024 @ 1024x4096 0.57x, 48x300 @
  // 300x2048 0.80x, 16x512 @ 512x2048 0.81x, 13x4096 @ 4096x4096 0.85x, 30x300 @ 300x2048 1.01x
  // (at 12 rows and below even or slower); then the copy against the packing pass 0.89x, 0.90x,
  // 0.90x, 0.78x, 0.68x, 0.86x, and on the wide-block path 64x512 @ 512x2048 0.88x / 0.94x (two
  // sets), 64x1024 @ 1024x4096 0.95x, 100x1024 @ 1024x1024 0.95x, 200x512 @ 512x2048 0.96x,
  // 1024^3 and 2048^3 even. The figures above for in place came from AMD Zen, whose L3 serves the
  // misses faster. The convolutions' short sums keep their in-place B (in L2).
  const bool b_rows_page_apart = !P.tb && P.ldb * static_cast<int64_t>(sizeof(T)) >= FETCH_B_MIN_STRIDE;
  const bool few_rows_b_in_place = few_rows && !P.tb && (P.ep.short_sums || !b_rows_page_apart || m1 - m0 <= 2 * mr);
  const bool copy_b_panels = !P.pb && !P.prov && !P.ep.short_sums && b_rows_page_apart && !few_rows_b_in_place;
  const int64_t ncmax = std::min<int64_t>(NC, n1 - n0);
  const int64_t kcmax = std::min<int64_t>(KC, P.K);
  T* bbuf = P.pb ? nullptr : tl_b.get<T>(kcmax * round_up(ncmax, nr));
  T* abuf = P.pa || in_place_a ? nullptr : tl_a.get<T>(kcmax * round_up(std::min<int64_t>(MC, m1 - m0), mr));
  const BiasKind bk = P.ep.bias ? P.ep.bias_kind : BiasKind::none;

  for (int64_t jc = n0; jc < n1; jc += NC) {
    const int64_t nc = std::min<int64_t>(NC, n1 - jc);
    for (int64_t pc = 0; pc < P.K; pc += KC) {
      const int64_t kc = std::min<int64_t>(KC, P.K - pc);
      const T* bp = bbuf;
      int64_t bs = nr;  // B's row stride as the micro-kernel reads it
      const int64_t copied = copy_b_panels ? nc / nr * nr : 0;  // full panels the first row panel packs
      if (few_rows_b_in_place && nc == nr) {  // a full panel of a row-major B, read where it lies
        bp = P.B + pc * P.ldb + jc;
        bs = P.ldb;
      } else if (P.pb) {  // jc is a multiple of NR: panel jc/NR of KC block pc
        bp = P.pb->data.get() + pc * P.pb->npad + jc * kc;
      } else if (P.prov) {
        // The provider writes each NR-column panel straight into the packed layout (a
        // row-major kc x cols block with row stride NR); a partial panel's tail is zeroed.
        for (int64_t q = 0; q < nc; q += nr)
          provide_panel(P, pc, kc, jc + q, std::min<int64_t>(nr, nc - q), nr, bbuf + q * kc);
      } else if (P.tb && kr.pack_bt) {
        kr.pack_bt(P.B + jc * P.ldb + pc, P.ldb, kc, nc, nr, bbuf, nr);
      } else if (copied < nc) {
        pack_b_block(P.tb, P.B, P.ldb, pc, kc, jc + copied, nc - copied, nr, bbuf + copied * kc);
      }
      const bool last = pc + kc == P.K;
      UkrParams<T> prm;
      prm.fetch_b = bs != nr && b_rows_page_apart && !P.ep.short_sums ? FETCH_B_ROWS : 0;  // B read in place
      prm.copy_b = nullptr;
      prm.alpha = P.alpha;
      prm.beta = pc == 0 ? P.beta : T(1);
      prm.relu = last && P.ep.relu;
      prm.ksub = P.ep.short_sums ? GEMM_SHORT_SUMS_K : kr.kc;  // chains of kc (block_k)
      for (int64_t ic = m0; ic < m1; ic += MC) {
        const int64_t mc = std::min<int64_t>(MC, m1 - ic);
        // A micro-panel rows ir..ir+MR: pre-packed, read in place (row-major A), or packed now.
        const T* ap;
        int64_t a_rows = 0;  // ukr's lda: 0 = packed panels (panel ir at ap + ir * kc)
        if (P.pa) {
          ap = P.pa->data.get() + pc * P.pa->mpad + ic * kc;
        } else if (in_place_a) {
          ap = P.A + ic * P.lda + pc;
          a_rows = P.lda;
        } else {
          pack_a_block(P.ta, P.A, P.lda, ic, mc, pc, kc, mr, abuf);
          ap = abuf;
        }
        for (int64_t ir = 0; ir < mc; ir += mr) {
          const int m = static_cast<int>(std::min<int64_t>(mr, mc - ir));
          T* crow = P.C + (ic + ir) * P.ldc;
          const T* a = a_rows ? ap + ir * a_rows : ap + ir * kc;
          prm.bias_row = last && bk == BiasKind::row ? P.ep.bias + ic + ir : nullptr;
          for (int64_t jr = 0; jr < nc; jr += nr) {
            const int n = static_cast<int>(std::min<int64_t>(nr, nc - jr));
            prm.bias_col = last && bk == BiasKind::col ? P.ep.bias + jc + jr : nullptr;
            if (jr + nr >= nc && nc >= A_PREFETCH_MIN_PANELS * nr && ir + mr < mc)
              prefetch_a_panel(a_rows ? a + mr * a_rows : a + mr * kc, a_rows,
                               static_cast<int>(std::min<int64_t>(mr, mc - ir - mr)), kc);
            if (jr < copied && ic == m0 && ir == 0) {  // B's rows in place, fetched ahead, copied to bbuf
              UkrParams<T> first = prm;
              first.fetch_b = FETCH_B_ROWS;
              first.copy_b = bbuf + jr * kc;
              kr.ukr(kc, a, a_rows, P.B + pc * P.ldb + jc + jr, P.ldb, crow + jc + jr, P.ldc, m, n, &first);
              continue;
            }
            kr.ukr(kc, a, a_rows, bs == nr ? bp + jr * kc : bp + jr, bs, crow + jc + jr, P.ldc, m, n, &prm);
          }
        }
      }
    }
  }
}

// ---- small M (<= SMALLM_MAX rows): no packing, B streamed once --------------------------
// C[m][j] = alpha * S[m][j] + beta * C[m][j] (+ bias, relu) for one column chunk.
template <typename T>
void smallm_epilogue(const Problem<T>& P, const T* S, int64_t lds, int64_t j0, int64_t nc) {
  for (int64_t m = 0; m < P.M; ++m) {
    T* c = P.C + m * P.ldc + j0;
    const T* s = S + m * lds;
    const T rb = P.ep.bias && P.ep.bias_kind == BiasKind::row ? P.ep.bias[m] : T(0);
    const T* cb = P.ep.bias && P.ep.bias_kind == BiasKind::col ? P.ep.bias + j0 : nullptr;
    for (int64_t j = 0; j < nc; ++j) {
      T v = P.alpha * s[j];
      if (P.beta != T(0)) v += P.beta * c[j];
      v += rb;
      if (cb) v += cb[j];
      if (P.ep.relu && v < T(0)) v = T(0);
      c[j] = v;
    }
  }
}

// B from memory rather than the caches for the small-M kernels (gemm_ukernel.h: far_b): from 32
// MiB, the L3's size on the machines measured (at 16 MiB, 2048x2048, 8 rows of B^T ran 5%
// slower with the software prefetch, 3 rows 8% faster).
constexpr int64_t SMALLM_FAR_B_MIN_BYTES = int64_t(32) << 20;
template <typename T>
bool smallm_far_b(const Problem<T>& P) {
  return P.K * P.N * static_cast<int64_t>(sizeof(T)) >= SMALLM_FAR_B_MIN_BYTES;
}

template <typename T>
void smallm_rect(const Problem<T>& P, const UkrInfo<T>& kr, const T* A, int64_t lda, int64_t n0, int64_t n1) {
  constexpr int64_t CHUNK = 8192;  // columns per pass: S (M x CHUNK) <= 256 KiB
  // K is summed in blocks whose partial sums are added (two levels, like the packed path's
  // chains of kc): one running sum over K = 25088 was 10x less accurate than torch. For a
  // row-major B the blocks are the packed path's chains, so that C^T = B^T A^T on the packed path
  // gives the same sums (matmul's B.T views). B^T: long row segments keep the streams efficient.
  const int64_t KB = P.tb ? 8192 : kr.kc;
  if (n0 >= n1) return;
  const int64_t w = std::min<int64_t>(CHUNK, n1 - n0);
  T* S = tl_prov.get<T>(2 * P.M * w);
  T* part = S + P.M * w;  // one K block's sums
  const int M = static_cast<int>(P.M);
  const bool far_b = smallm_far_b(P);
  for (int64_t j0 = n0; j0 < n1; j0 += CHUNK) {
    const int64_t nc = std::min<int64_t>(CHUNK, n1 - j0);
    for (int64_t k0 = 0; k0 < P.K; k0 += KB) {
      const int64_t kb = std::min<int64_t>(KB, P.K - k0);
      T* dst = k0 == 0 ? S : part;
      if (P.tb)
        kr.smallm_t(M, nc, kb, A + k0, lda, P.B + j0 * P.ldb + k0, P.ldb, dst, w, far_b);
      else
        kr.smallm_n(M, nc, kb, A + k0, lda, P.B + k0 * P.ldb + j0, P.ldb, dst, w, far_b);
      if (k0 > 0)
        for (int64_t m = 0; m < P.M; ++m)
          for (int64_t j = 0; j < nc; ++j) S[m * w + j] += part[m * w + j];
    }
    smallm_epilogue(P, S, w, j0, nc);
  }
}

template <typename T>
void run_smallm(const Problem<T>& P, const UkrInfo<T>& kr, int nt) {
  const T* A = P.A;
  int64_t lda = P.lda;
  if (P.ta) {  // op(A) = A^T: gather the M x K rows once (M * K elements, cheap)
    T* at = tl_at.get<T>(P.M * P.K);
    for (int64_t k = 0; k < P.K; ++k)
      for (int64_t m = 0; m < P.M; ++m) at[m * P.K + k] = P.A[k * P.lda + m];
    A = at;
    lda = P.K;
  }
  const int64_t align = 64;
  nt = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(nt, (P.N + align - 1) / align)));
  if (nt <= 1) return smallm_rect(P, kr, A, lda, 0, P.N);
  parallel_run(nt, [&](int tid, int n) {
    int64_t b, e;
    split_range(P.N, tid, n, align, &b, &e);
    smallm_rect(P, kr, A, lda, b, e);
  });
}

// Micro-tile columns of the busiest thread when N is split into nt NR-aligned ranges, in
// full-panel units: a last partial panel of c columns costs ceil(c / step) / (NR / step)
// (the micro-kernel narrows its register tile to the vectors it needs).
double max_thread_tiles(int64_t N, int nr, int step, int nt) {
  double worst = 0;
  for (int t = 0; t < nt; ++t) {
    int64_t b, e;
    split_range(N, t, nt, nr, &b, &e);
    const int64_t cols = std::max<int64_t>(0, e - b), tail = cols % nr;
    const double tiles = static_cast<double>(cols / nr) +
                         static_cast<double>((tail + step - 1) / step) / static_cast<double>(nr / step);
    worst = std::max(worst, tiles);
  }
  return worst;
}

// M split with B from a provider: instead of every thread providing all of B for its own rows
// (conv 512->512 at 14x14, N=1: each of two threads ran the whole im2col), the threads provide
// B's panels once, each its share, into one buffer in the pre-packed layout (PackedB), and then
// each runs its rows against it (two pool regions). Same panels, same sums: bit-identical.
thread_local Scratch tl_shared_b;

template <typename T>
void run_split_m_shared_b(const Problem<T>& P, const UkrInfo<T>& kr, int nt) {
  struct Borrowed {  // a PackedB view of the caller's scratch (not freed with it)
    PackedB<T> pb;
    ~Borrowed() { (void)pb.data.release(); }
  } shared;
  PackedB<T>& pb = shared.pb;
  pb.K = P.K;
  pb.N = P.N;
  pb.nr = kr.nr;
  pb.kc = static_cast<int>(block_k(kr, P.K, a_packed_per_call(P)));
  pb.isa = static_cast<int>(active_isa());
  pb.npad = round_up(P.N, kr.nr);
  pb.data.reset(tl_shared_b.get<T>(pb.npad * P.K));
  const int64_t kblocks = (P.K + pb.kc - 1) / pb.kc, panels = pb.npad / pb.nr;
  parallel_run(nt, [&](int tid, int n) {
    int64_t b, e;
    split_range(kblocks * panels, tid, n, 1, &b, &e);
    for (int64_t i = b; i < e; ++i) {
      const int64_t k0 = i / panels * pb.kc, kc = std::min<int64_t>(pb.kc, P.K - k0);
      const int64_t n0 = i % panels * pb.nr, cols = std::min<int64_t>(pb.nr, P.N - n0);
      provide_panel(P, k0, kc, n0, cols, pb.nr, pb.data.get() + k0 * pb.npad + n0 * kc);  // run_rect's P.pb layout
    }
  });
  Problem<T> Q = P;
  Q.prov = nullptr;
  Q.pb = &pb;
  parallel_run(nt, [&](int tid, int n) {
    int64_t b, e;
    split_range(Q.M, tid, n, kr.mr, &b, &e);
    run_rect(Q, kr, b, e, 0, Q.N);
  });
}

template <typename T>
void run(const Problem<T>& P, int nthreads);

// dst[k * ld + c] = src[c * lds + k] (k < K, c < n), zero for n <= c < width: the transposed-B
// packer where width is whole vectors of it, else element by element (gemm.h's pack_columns).
template <typename T>
void transpose_rows(const T* src, int64_t lds, int64_t K, int64_t n, int width, T* dst, int64_t ld) {
  const UkrInfo<T>& kr = kernels<T>();
  if (kr.pack_bt && width % kr.nr_step == 0) {
    kr.pack_bt(src, lds, K, n, width, dst, ld);
    return;
  }
  for (int64_t k = 0; k < K; ++k)
    for (int c = 0; c < width; ++c) dst[k * ld + c] = c < n ? src[c * lds + k] : T(0);
}

// Few rows (SMALLM_MAX < M <= GEMM_FEW_ROWS) against a transposed B of many columns (Linear's
// weight [N][K] at batch 9-48, an RNN's input projection over T*B <= 48 rows): C^T = B A^T
// instead, where B's rows are the A operand read in place (not packed: the few-rows path packs
// every NR panel of B^T on every call, for M rows' worth of use) and A^T the small operand
// packed, into a scratch C^T that is then transposed into C by the transposed-B packer. Every
// sum is the same chain over k (same KC blocks; a * b = b * a) with the bias on the other
// side: bit-identical. One process alternating, Linear M x K -> N: 12x300 -> 2048 107 -> 67
// us, 30x300 -> 2048 106 -> 92, 30x512 -> 2048 169 -> 152, 48x1024 -> 1024 264 -> 224, 9x4096
// -> 4096 2.63 -> 2.18 ms, 12x25088 -> 512 2.05 -> 1.71 ms; 24x300 -> 2048 even; below 256
// columns not (40x1000 -> 64 20 -> 23 us). Only with beta = 0 (C is written, not updated).
constexpr int64_t TRANSPOSED_C_MIN_N = 256;
static_assert(TRANSPOSED_C_MIN_N > GEMM_FEW_ROWS, "C^T = B A^T must not swap back");
template <typename T>
bool transposed_c(const Problem<T>& P) {
  return !P.pa && !P.pb && !P.prov && P.tb && !P.ta && P.beta == T(0) && P.M > SMALLM_MAX &&
         P.M <= GEMM_FEW_ROWS && P.N >= TRANSPOSED_C_MIN_N;
}
template <typename T>
void run_transposed_c(const Problem<T>& P, const UkrInfo<T>& kr, int nthreads) {
  const int64_t ldt = round_up(P.M, 16);
  BlockArray<T> ct(static_cast<size_t>(P.N * ldt));  // C^T [N][ldt]
  GemmEpilogue<T> ep = P.ep;
  if (ep.bias) ep.bias_kind = ep.bias_kind == BiasKind::col ? BiasKind::row : BiasKind::col;
  const Problem<T> Q{P.N, P.M, P.K, P.alpha, T(0), nullptr, false, P.B, P.ldb, nullptr, nullptr, true, P.A, P.lda,
                     ct.data(), ldt, ep};
  run(Q, nthreads);
  // C[:, n0 .. n0+g) = C^T[n0 .. n0+g, :]^T in groups of the packer's vector (g columns; the
  // last group as wide as what is left, so nothing is written past C's columns)
  const int g = kr.nr_step;
  const int64_t groups = (P.N + g - 1) / g;
  const int nt = static_cast<int>(std::min<int64_t>(nthreads > 0 ? nthreads : get_num_threads(), groups));
  parallel_run(nt, [&](int tid, int n) {
    int64_t q0, q1;
    split_range(groups, tid, n, 1, &q0, &q1);
    for (int64_t q = q0; q < q1; ++q) {
      const int64_t n0 = q * g, cols = std::min<int64_t>(g, P.N - n0);
      transpose_rows(ct.data() + n0 * ldt, ldt, P.M, cols, static_cast<int>(cols), P.C + n0, P.ldc);
    }
  });
}

template <typename T>
void run(const Problem<T>& P, int nthreads) {
  if (P.M <= 0 || P.N <= 0) return;
  if (P.K <= 0) return scale_only(P);
  const UkrInfo<T>& kr = kernels<T>();
  if (P.pa) PYC_CHECK(P.pa->isa == static_cast<int>(active_isa()) && P.pa->mr == kr.mr, "packed A",
                      " was packed for another ISA");
  if (P.pb) PYC_CHECK(P.pb->isa == static_cast<int>(active_isa()) && P.pb->nr == kr.nr, "packed B",
                      " was packed for another ISA");
  int nt = nthreads > 0 ? nthreads : get_num_threads();
  // Below ~0.5 MFLOP a second thread costs more than it saves.
  const double work = static_cast<double>(P.M) * static_cast<double>(P.N) * static_cast<double>(P.K);
  nt = static_cast<int>(std::max<double>(1.0, std::min<double>(nt, work / (1 << 18))));
  // Small-M path (measured against packing, interleaved in one process, at 5x and 8x25088x4096:
  // 66 vs 96 ms and 86 vs 105 ms).
  if (!P.pa && !P.pb && !P.prov && gemm_small_m(P.M)) return run_smallm(P, kr, nt);
  if (transposed_c(P)) return run_transposed_c(P, kr, nthreads);
  const int64_t nblocks_n = (P.N + kr.nr - 1) / kr.nr, nblocks_m = (P.M + kr.mr - 1) / kr.mr;
  // Split N (each thread packs only its own B; a provider is asked for each block once) unless
  // splitting M balances the micro-tiles better, e.g. N = 196 = 3 panels + 4 columns on two
  // threads: 2 panels vs 1.06 when N is split, 1.53 each when M is split.
  bool split_n = nblocks_n >= nt;
  if (nblocks_m >= nt) {
    const double by_n = split_n ? max_thread_tiles(P.N, kr.nr, kr.nr_step, nt) * nblocks_m : 1e300;
    // Splitting M has every thread pack all of B, about two tiles per panel (a provided B is
    // provided once, each thread its share: run_split_m_shared_b).
    const double pack_tiles = P.pb ? 0.0 : P.prov ? 2.0 / nt : 2.0;
    const double by_m = (static_cast<double>((nblocks_m + nt - 1) / nt) + pack_tiles) *
                        max_thread_tiles(P.N, kr.nr, kr.nr_step, 1);
    // An A packed per call (op(A) = A^T: weight gradients dY^T X) is packed whole by every
    // thread when N is split, only its own rows when M is split: counted as half a tile per
    // MR-row slab. Uncounted, the split went to N for the LSTM's dW = dG^T X (M = 4H): 2048x1920^T
    // @ 1920x512 10.7 -> 9.35 ms with M split, at K = 30 0.27 -> 0.16 ms (the thread's half rows
    // of C written in 1 KiB pieces); over M 512-4096, N 256-2048, K 30-1920 (one process, min of
    // 3 medians) the chosen split is now within 3% of the better one except M = 512, K = 30, N
    // 1024 / 2048 (M split 1.40x / 1.11x faster, N kept). Same partition rules otherwise; the
    // split never changes a sum (bit-identical).
    const double a_slab_tiles = a_packed_per_call(P) ? 0.5 : 0.0;
    split_n = by_n + a_slab_tiles * static_cast<double>(nblocks_m) <=
              by_m + a_slab_tiles * static_cast<double>((nblocks_m + nt - 1) / nt);
  }
  if (!split_n && nblocks_m < nt) nt = static_cast<int>(std::max<int64_t>(1, nblocks_m));
  if (split_n && nblocks_n < nt) nt = static_cast<int>(std::max<int64_t>(1, nblocks_n));
  if (nt <= 1) return run_rect(P, kr, 0, P.M, 0, P.N);
  if (!split_n && P.prov) return run_split_m_shared_b(P, kr, nt);
  parallel_run(nt, [&](int tid, int n) {
    int64_t b, e;
    if (split_n) {
      split_range(P.N, tid, n, kr.nr, &b, &e);
      run_rect(P, kr, 0, P.M, b, e);
    } else {
      split_range(P.M, tid, n, kr.mr, &b, &e);
      run_rect(P, kr, b, e, 0, P.N);
    }
  });
}

}  // namespace

// ---- public entry points ---------------------------------------------------------------
bool gemm_small_m(int64_t M) { return M <= SMALLM_MAX; }

void pack_columns(const float* src, int64_t lds, int64_t K, int64_t n, int width, float* dst, int64_t ld) {
  transpose_rows(src, lds, K, n, width, dst, ld);
}

template <typename T>
GemmTile gemm_tile() {
  const UkrInfo<T>& kr = kernels<T>();
  return {kr.mr, kr.nr, kr.nr_step};
}

template <typename T>
void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda, const T* B,
          int64_t ldb, T beta, T* C, int64_t ldc, const GemmEpilogue<T>& ep, int nthreads) {
  Problem<T> P{M, N, K, alpha, beta, nullptr, ta, A, lda, nullptr, nullptr, tb, B, ldb, C, ldc, ep};
  run(P, nthreads);
}

template <typename T>
void gemm_provided_b(bool ta, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
                     const BlockProvider<T>& B, T beta, T* C, int64_t ldc, const GemmEpilogue<T>& ep, int nthreads) {
  Problem<T> P{M, N, K, alpha, beta, nullptr, ta, A, lda, nullptr, &B, false, nullptr, 0, C, ldc, ep};
  run(P, nthreads);
}

template <typename T>
PackedA<T> pack_a(bool ta, int64_t M, int64_t K, const T* A, int64_t lda) {
  const UkrInfo<T>& kr = kernels<T>();
  PackedA<T> pa;
  pa.M = M;
  pa.K = K;
  pa.mr = kr.mr;
  pa.kc = block_k(kr, K, false);
  pa.isa = static_cast<int>(active_isa());
  pa.mpad = round_up(std::max<int64_t>(M, 0), kr.mr);
  const int64_t elems = checked_mul(pa.mpad, std::max<int64_t>(K, 0), "pack_a");
  size_t bytes = (static_cast<size_t>(std::max<int64_t>(elems, 1)) * sizeof(T) + 63) & ~size_t(63);
  void* p = std::aligned_alloc(64, bytes);
  if (!p) throw std::bad_alloc();
  pa.data.reset(static_cast<T*>(p));
  for (int64_t k0 = 0; k0 < K; k0 += pa.kc) {
    const int64_t kc = std::min<int64_t>(pa.kc, K - k0);
    if (M > 0) pack_a_block(ta, A, lda, 0, M, k0, kc, pa.mr, pa.data.get() + k0 * pa.mpad);
  }
  return pa;
}

template <typename T>
PackedB<T> pack_b(bool tb, int64_t K, int64_t N, const T* B, int64_t ldb) {
  const UkrInfo<T>& kr = kernels<T>();
  PackedB<T> pb;
  pb.K = K;
  pb.N = N;
  pb.nr = kr.nr;
  pb.kc = block_k(kr, K, false);  // for A in place (LSTM states, Linear inputs)
  pb.isa = static_cast<int>(active_isa());
  pb.npad = round_up(std::max<int64_t>(N, 0), kr.nr);
  const int64_t elems = checked_mul(pb.npad, std::max<int64_t>(K, 0), "pack_b");
  size_t bytes = (static_cast<size_t>(std::max<int64_t>(elems, 1)) * sizeof(T) + 63) & ~size_t(63);
  void* p = std::aligned_alloc(64, bytes);
  if (!p) throw std::bad_alloc();
  pb.data.reset(static_cast<T*>(p));
  for (int64_t k0 = 0; k0 < K; k0 += pb.kc) {
    const int64_t kc = std::min<int64_t>(pb.kc, K - k0);
    T* dst = pb.data.get() + k0 * pb.npad;
    if (N > 0 && tb && kr.pack_bt)
      kr.pack_bt(B + k0, ldb, kc, N, pb.nr, dst, pb.nr);
    else if (N > 0)
      pack_b_block(tb, B, ldb, k0, kc, 0, N, pb.nr, dst);
  }
  return pb;
}

template <typename T>
void gemm_packed_b(bool ta, int64_t M, T alpha, const T* A, int64_t lda, const PackedB<T>& B, T beta, T* C,
                   int64_t ldc, const GemmEpilogue<T>& ep, int nthreads) {
  Problem<T> P{M, B.N, B.K, alpha, beta, nullptr, ta, A, lda, &B, nullptr, false, nullptr, 0, C, ldc, ep};
  run(P, nthreads);
}

template <typename T>
void gemm_packed_a(const PackedA<T>& A, bool tb, int64_t N, T alpha, const T* B, int64_t ldb, T beta, T* C,
                   int64_t ldc, const GemmEpilogue<T>& ep, int nthreads) {
  Problem<T> P{A.M, N, A.K, alpha, beta, &A, false, nullptr, 0, nullptr, nullptr, tb, B, ldb, C, ldc, ep};
  run(P, nthreads);
}

template <typename T>
void gemm_packed_a_provided_b(const PackedA<T>& A, int64_t N, T alpha, const BlockProvider<T>& B, T beta, T* C,
                              int64_t ldc, const GemmEpilogue<T>& ep, int nthreads) {
  Problem<T> P{A.M, N, A.K, alpha, beta, &A, false, nullptr, 0, nullptr, &B, false, nullptr, 0, C, ldc, ep};
  run(P, nthreads);
}

#define INSTANTIATE(T)                                                                                        \
  template void gemm_naive<T>(bool, bool, int64_t, int64_t, int64_t, T, const T*, int64_t, const T*, int64_t, T, \
                              T*, int64_t, const GemmEpilogue<T>&);                                          \
  template void gemm<T>(bool, bool, int64_t, int64_t, int64_t, T, const T*, int64_t, const T*, int64_t, T, T*,    \
                        int64_t, const GemmEpilogue<T>&, int);                                               \
  template void gemm_provided_b<T>(bool, int64_t, int64_t, int64_t, T, const T*, int64_t, const BlockProvider<T>&, \
                                   T, T*, int64_t, const GemmEpilogue<T>&, int);                             \
  template PackedA<T> pack_a<T>(bool, int64_t, int64_t, const T*, int64_t);                                   \
  template void gemm_packed_a<T>(const PackedA<T>&, bool, int64_t, T, const T*, int64_t, T, T*, int64_t,         \
                                 const GemmEpilogue<T>&, int);                                               \
  template void gemm_packed_a_provided_b<T>(const PackedA<T>&, int64_t, T, const BlockProvider<T>&, T, T*,       \
                                            int64_t, const GemmEpilogue<T>&, int);                           \
  template PackedB<T> pack_b<T>(bool, int64_t, int64_t, const T*, int64_t);                                   \
  template GemmTile gemm_tile<T>();                                                                           \
  template void gemm_packed_b<T>(bool, int64_t, T, const T*, int64_t, const PackedB<T>&, T, T*, int64_t,         \
                                 const GemmEpilogue<T>&, int);
INSTANTIATE(float)
INSTANTIATE(double)

}  // namespace pycnnrnn

// rnn.cpp — recurrent layers (LSTM, GRU, RNN): the naive oracle, then the fast driver.
//
// Forward of one layer-direction (rnn.h):
//   1. pre[T*B][GH] = X W_ih^T + (b_ih + b_hh)  — one GEMM over all steps (GRU keeps b_hn apart;
//      a single step, i.e. a cell, computes it inside step 2 instead)
//   2. per step t: the recurrent product h_prev W_hh^T and the gate formulas per panel of
//      hidden units, threads splitting the units (float32: the ISA kernels of cpu/rnn_vec.inc,
//      fused with the product on packed W_hh from batch 2 (1 for W_hh up to 3 MiB), after each
//      thread's own small-M product below, or after one GEMM engine call per step for big W_hh
//      from batch 16, see rnn_engine_step; float64 and PYCNNRNN_ISA=scalar: the portable step
//      below); weight rows in serpentine order across steps; LSTM projection: h = h_raw W_hr^T
//      (a small GEMM).
// Backward (BPTT), steps in reverse: fused pointwise gate gradients dG_t, then
// dh_prev = dG_t W_hh (packed W_hh for float32 ISA kernels); after the loop the merged GEMMs
// dW_ih = dG^T X, dW_hh = dG^T H_prev, dX = dG W_ih, db = column sums of dG.
#include "cpu/rnn.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <thread>
#include <type_traits>
#include <vector>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "core/block_cache.h"
#include "core/dispatch.h"
#include "core/errors.h"
#include "core/thread_pool.h"
#include "cpu/gemm.h"
#include "cpu/rnn_kernels.h"

namespace pycnnrnn {
namespace rnn_generic {

// libm activations for the portable path and the oracle.
struct ScalarMath {
  template <typename T>
  static T sigmoid(T x) {
    return T(1) / (T(1) + std::exp(-x));
  }
  template <typename T>
  static T tanh(T x) {
    return std::tanh(x);
  }
  template <typename T>
  static T relu(T x) {
    return x < T(0) ? T(0) : x;
  }
  template <typename T>
  static T relu_grad(T dh, T h) {
    return h > T(0) ? dh : T(0);
  }
};
template <typename T>
struct Math : ScalarMath {
  static T one() { return T(1); }
  static T sigmoid(T x) { return ScalarMath::sigmoid(x); }
  static T tanh(T x) { return ScalarMath::tanh(x); }
  static T relu(T x) { return ScalarMath::relu(x); }
  static T relu_grad(T dh, T h) { return ScalarMath::relu_grad(dh, h); }
};

#include "cpu/rnn_cell_math.inc"

}  // namespace rnn_generic

namespace {

template <typename T>
using GCell = rnn_generic::Cell<T, rnn_generic::Math<T>>;

inline bool row_valid(const int64_t* lengths, int64_t b, int64_t t) { return !lengths || t < lengths[b]; }

// Threads for split_run: all from 2^15 units of work, at most one per item.
int split_threads(int64_t n, int64_t work) {
  const int nt = work >= (1 << 15) ? get_num_threads() : 1;
  return nt > n ? static_cast<int>(n) : nt;
}
// Runs fn(begin, end) over a static split of [0, n) on the pool when the work is big enough.
template <typename Fn>
void split_run(int64_t n, int64_t work, Fn&& fn) {
  const int nt = split_threads(n, work);
  if (nt <= 1) {
    fn(int64_t(0), n);
    return;
  }
  parallel_run(nt, [&](int tid, int nthreads) {
    int64_t b, e;
    split_range(n, tid, nthreads, 1, &b, &e);
    if (b < e) fn(b, e);
  });
}

// Batch rows from which a multi-step forward packs W_hh (below: per-step GEMV/small-M product
// from the GEMM engine on the unpacked weights, then the fused gate formulas). Packing is a pass
// over W_hh on every call (without prepared weights). Measured on 2 threads, LSTM(300, 512, 2)
// T=30, three alternating runs, median ms unpacked / packed, on Zen 3 once packing read its
// rows sequentially into reused memory: B=2 9.0-12.1 / 7.9-8.8, B=4 14.6-26.7 / 15.6-20.6 (min
// 13.2-19.1 / 11.0-11.6); GRU B=4 min 10.1-11.8 / 8.4-10.4; B=1 even (LSTM 4.1-5.3 / 5.0-5.4,
// GRU mixed). From batch 1 where W_hh is at most 3 MiB: on AMD Zen 5, 2 threads, two layers,
// T=30, one process alternating (medians of 4-6 rounds), forward / training forward+backward at
// batch 1, packed against unpacked: LSTM H=256 (1 MiB) +15% / +8%, H=384 (2.3 MiB) +6% / +4%,
// GRU H=256 +17% / +7%, H=512 (3 MiB) +8% / +0.3%, tanh RNN H=512 (1 MiB) +15% / +7%; from 4
// MiB even or slower: LSTM H=512 -1..+5% / -3..-14%, tanh RNN H=1024 -1% / -7%, GRU H=640 (4.7
// MiB) -7% / -7%. Cells (T = 1) never pack. PYCNNRNN_RNN_PACK_MIN_B overrides it for every size (a
// tuning knob for benchmarks and tests, read once).
constexpr int64_t RNN_PACK_AT_BATCH_1_MAX_WEIGHT_BYTES = int64_t(3) << 20;
int64_t pack_min_batch(int64_t w_hh_bytes) {
  static const int64_t forced = [] {
    const char* e = std::getenv("PYCNNRNN_RNN_PACK_MIN_B");
    return e && *e ? std::max<int64_t>(1, std::atoll(e)) : int64_t(0);
  }();
  if (forced) return forced;
  return w_hh_bytes <= RNN_PACK_AT_BATCH_1_MAX_WEIGHT_BYTES ? 1 : 2;
}

const RnnKernelsF32& f32_kernels() {
  static const RnnKernelsF32 table[3] = {
      RnnKernelsF32{},
#if PYCNNRNN_HAVE_X86
      rnn_avx2::kernels(),
      rnn_avx512::kernels(),
#else
      RnnKernelsF32{},
      RnnKernelsF32{},
#endif
  };
  return pick(table);
}

// Everything one step needs; rows [0, B), the step's slices of pre and the workspace.
template <typename T>
struct StepArgs {
  RnnMode mode;
  int64_t B, H, K;
  const T* w_hh;  // [GH][K] (portable path)
  const T* h;     // [B][K]
  const T* pre;   // [B][GH]
  const T* c;     // [B][H]
  const T* b_hn;  // [H] or null
  T* h_out;       // [B][H]
  T* c_out;       // [B][H]
  T* gates;       // [B][GH] or null
  T* tanhc;       // [B][H] or null
  T* hn;          // [B][H] or null
};

// The portable step for hidden units [u0, u1): dot products against unpacked W_hh rows.
template <typename T>
void portable_step(const StepArgs<T>& s, int64_t u0, int64_t u1) {
  const int G = rnn_gate_count(s.mode);
  const int64_t H = s.H, K = s.K, GH = G * H;
  for (int64_t b = 0; b < s.B; ++b) {
    const T* hb = s.h + b * K;
    const T* pre = s.pre + b * GH;
    for (int64_t j = u0; j < u1; ++j) {
      T acc[4];
      for (int g = 0; g < G; ++g) {
        const T* w = s.w_hh + (g * H + j) * K;
        T sum = 0;
        for (int64_t k = 0; k < K; ++k) sum += hb[k] * w[k];
        acc[g] = sum;
      }
      if (s.mode == RnnMode::lstm) {
        T i, f, g, o, c, tc, h;
        GCell<T>::lstm_fwd(acc[0] + pre[j], acc[1] + pre[H + j], acc[2] + pre[2 * H + j], acc[3] + pre[3 * H + j],
                           s.c[b * H + j], i, f, g, o, c, tc, h);
        s.c_out[b * H + j] = c;
        s.h_out[b * H + j] = h;
        if (s.gates) {
          T* gs = s.gates + b * GH + j;
          gs[0] = i, gs[H] = f, gs[2 * H] = g, gs[3 * H] = o;
        }
        if (s.tanhc) s.tanhc[b * H + j] = tc;
      } else if (s.mode == RnnMode::gru) {
        T hn = acc[2] + (s.b_hn ? s.b_hn[j] : T(0));
        T r, z, n, h;
        GCell<T>::gru_fwd(acc[0] + pre[j], acc[1] + pre[H + j], pre[2 * H + j], hn, hb[j], r, z, n, h);
        s.h_out[b * H + j] = h;
        if (s.gates) {
          T* gs = s.gates + b * GH + j;
          gs[0] = r, gs[H] = z, gs[2 * H] = n;
        }
        if (s.hn) s.hn[b * H + j] = hn;
      } else {
        T h = GCell<T>::rnn_fwd(acc[0] + pre[j], s.mode == RnnMode::rnn_relu);
        s.h_out[b * H + j] = h;
        if (s.gates) s.gates[b * GH + j] = h;
      }
    }
  }
}

// Serpentine order: a thread streams the same weight rows every step (and a cell the same rows
// every call), and at batch 1-8 (LSTM(300, 512, 2): 2 MiB of W_hh per thread per step, as big
// as the L2) a pass in the same direction finds each line evicted by the lines after it, while
// a reversed pass starts with the lines just used. So every other pass runs backwards: item i
// of n is n-1-i when `reverse`. The direction alternates per pass process-wide (also across
// calls); the order never changes a result. Forward, T=30 B=1, same runs: 3.5 -> 2.8 ms.
inline int64_t serpentine(int64_t i, int64_t n, bool reverse) { return reverse ? n - 1 - i : i; }
// Whether the next pass runs reversed, taking n passes at once (the k-th of them is reversed when
// the first is and k is even, or the first is not and k is odd).
bool next_pass_reversed(unsigned n = 1) {
  static std::atomic<unsigned> passes{0};
  return passes.fetch_add(n, std::memory_order_relaxed) & 1u;
}

// The steps of a recurrence in one parallel_team region, part by part: step s has nparts parts
// (static ranges of its work), each claimed once by compare-and-swap. A thread runs its own parts
// (p = tid mod team size) first; a part still unclaimed after the pool's grace period
// (kStealAfterIterations; its owner late: descheduled, or more threads than free cores) is taken
// by whichever thread is waiting, which yields its core after kSpinIterations; a thread goes on
// to step s + 1 once all of step s's parts are done. Who ran a part never changes a result (the
// partition is fixed). A part that throws marks the steps failed, which releases the waiting
// threads.
class StepParts {
 public:
  explicit StepParts(int nparts) : n_(nparts), last_(new std::atomic<int64_t>[nparts]) {
    for (int p = 0; p < n_; ++p) last_[p].store(-1, std::memory_order_relaxed);
  }
  int parts() const { return n_; }
  // Step s (0, 1, ... in order) on thread tid of a team of `team`: run(p) for the parts this
  // thread gets; returns once every part of step s is done, false if any part failed.
  template <typename Run>
  bool step(int64_t s, int tid, int team, Run&& run) {
    try {
      for (int p = tid; p < n_; p += team) try_run(s, p, run);
      const int64_t all = (s + 1) * n_;
      for (int i = 0; done_.load(std::memory_order_acquire) < all; ++i) {
        if (failed_.load(std::memory_order_relaxed)) return false;
        if (i == kStealAfterIterations)
          for (int p = 0; p < n_; ++p) try_run(s, p, run);
        if (i < kSpinIterations)
          cpu_relax();
        else
          std::this_thread::yield();
      }
    } catch (...) {
      failed_.store(true, std::memory_order_relaxed);
      throw;
    }
    return !failed_.load(std::memory_order_relaxed);
  }

 private:
  template <typename Run>
  void try_run(int64_t s, int p, Run& run) {
    int64_t v = last_[p].load(std::memory_order_acquire);
    while (v < s)
      if (last_[p].compare_exchange_weak(v, s, std::memory_order_acq_rel, std::memory_order_acquire)) {
        run(p);
        done_.fetch_add(1, std::memory_order_acq_rel);
        return;
      }
  }
  const int n_;
  std::unique_ptr<std::atomic<int64_t>[]> last_;  // the last step whose part p was claimed
  std::atomic<int64_t> done_{0};                    // parts done, all steps
  std::atomic<bool> failed_{false};
};

// Threads that each run the whole recurrence for their own batch rows (rows are independent:
// no barrier per step, and the state copies run in parallel too), or 1: every step split over
// hidden units with a barrier per step.
// - From 8 rows a thread when the packed weights are small enough for each thread to stream
//   all of them every step from its L2 (W_hh read once per thread instead of once in all).
//   Torch-autograd calls, same runs: LSTM(32, 96) T=10 B=64 (the training model's) forward
//   0.83 -> 0.67 ms, backward 1.53 -> 1.35 ms; LSTM(64, 128) T=20 B=32 forward 1.29 -> 0.92 ms,
//   backward 2.23 -> 1.94 ms.
// - From 16 rows a thread whatever the weights' size (since the engine step below: GRU only, for
//   weights above 512 KiB): each thread then reads all of W_hh from
//   L3 every step, but 16 rows of work per panel hide it, and the 2 x T barriers go. LSTM(300,
//   512, 2) T=30 on 2 threads, alternating in one process: forward B=64 1.01-1.04x, B=48
//   1.06x, B=32 1.02x; forward+backward B=64 1.05-1.11x, B=32 1.01-1.09x; at 8 rows a thread
//   (B=16) 0.97-1.02x, so not there.
constexpr int64_t RNN_ROW_SPLIT_MIN_ROWS = 8;
constexpr int64_t RNN_ROW_SPLIT_MAX_WEIGHT_BYTES = int64_t(512) << 10;
constexpr int64_t RNN_ROW_SPLIT_ANY_WEIGHT_ROWS = 16;
int rnn_row_threads(int64_t B, int64_t GH, int64_t K) {
  const int nt = get_num_threads();
  if (nt <= 1 || B < RNN_ROW_SPLIT_MIN_ROWS * nt) return 1;
  if (B >= RNN_ROW_SPLIT_ANY_WEIGHT_ROWS * nt) return nt;
  return GH * K * int64_t(sizeof(float)) <= RNN_ROW_SPLIT_MAX_WEIGHT_BYTES ? nt : 1;
}
// The step's product from the GEMM engine (LSTM and RNN; GRU needs W_hn h apart): from 16 rows,
// when W_hh is too big for the row split above, each step adds h W_hh^T into its slice of pre
// with one engine call on W_hh^T packed once per call (or prepared), and the step kernel then
// applies only the gate formulas (Kd = 0), each thread also saving and updating the state
// columns of its own units. The fused step's 3-row tiles run at 65-80% of a core's peak (C++
// microbenchmark, one thread, panels and h streamed through L2); the engine's 6x16 tiles
// (C prefetched, so pre comes in while the sums run) reach 126-129 GFLOP/s on 2 threads.
// LSTM(512, 512) one step on 2 threads: B=16 260 vs 328 us, B=32 521 vs 735 us, B=64 1065 vs
// 1413 us (engine product alone vs fused step); B=8 226 vs 210 us, so not there. The gate
// formulas then cost about 0.15-0.2 ms a step at B=64, so the whole LSTM(300, 512, 2) T=30
// forward gains less, alternating in one process (medians of 11, three runs): plain B=16
// 0.94-1.05x, B=32 0.99-1.10x, B=64 0.99-1.08x; prepared 1.06-1.09x, 1.00-1.06x, 1.08-1.15x.
constexpr int64_t RNN_ENGINE_STEP_MIN_ROWS = 16;
bool rnn_engine_step(RnnMode mode, int64_t B, int64_t GH, int64_t K) {
  return mode != RnnMode::gru && B >= RNN_ENGINE_STEP_MIN_ROWS &&
         GH * K * int64_t(sizeof(float)) > RNN_ROW_SPLIT_MAX_WEIGHT_BYTES;
}

// Forward panels for the float32 ISA kernels (layout in rnn_kernels.h): the geometry, which
// also splits the hidden units between threads when W_hh is not packed, and the data when it is.
struct FwdPanels {
  int nv = 0;
  int64_t units = 0, count = 0;  // hidden units per panel, panels
  BlockArray<float> data;
};
FwdPanels panel_geometry(int G, int64_t H, int vl) {
  FwdPanels p;
  p.nv = G == 3 ? 3 : 4;
  p.units = G == 1 ? 4 * vl : vl;
  p.count = (H + p.units - 1) / p.units;
  return p;
}
FwdPanels pack_forward(const float* w_hh, int G, int64_t H, int64_t K, int vl) {
  FwdPanels p = panel_geometry(G, H, vl);
  const int64_t pw = p.nv * vl;
  p.data = BlockArray<float>(static_cast<size_t>(p.count * K * pw));
  // Each vector of a panel's rows holds consecutive units of one gate (RNN: one of its 4 unit
  // groups): the rows of W_hh from that gate's first unit, transposed by the GEMM engine's
  // transposed-B packer (16 x 16 blocks in AVX-512 registers, whole cache lines in and out) into
  // the vector's columns, zero past H. The 4x4 SSE transposes this replaced read 64 rows 128
  // bytes at a time, too many short streams for the hardware prefetcher: one 4 MiB W_hh in an
  // LSTM forward at batch 8 took 400 us to pack, now 190 (LSTM(300, 512, 2) T=30 B=8 5.48 ->
  // 5.02 ms).
  split_run(p.count, p.count * K * pw, [&](int64_t p0, int64_t p1) {
    for (int64_t q = p0; q < p1; ++q) {
      float* panel = p.data.data() + q * K * pw;
      const int64_t u0 = q * p.units;
      if (G == 1) {  // 4 vectors of units u0 ...
        pack_columns(w_hh + u0 * K, K, K, std::min(p.units, H - u0), static_cast<int>(pw), panel, pw);
      } else {
        for (int v = 0; v < p.nv; ++v)  // gate v, units u0 ...
          pack_columns(w_hh + (v * H + u0) * K, K, K, std::min<int64_t>(vl, H - u0), vl, panel + v * vl, pw);
      }
    }
  });
  return p;
}

// Whether every one of w[0 .. n) is finite: one parallel pass (the exponent bits of each value).
bool all_finite(const float* w, int64_t n) {
  std::atomic<bool> nonfinite{false};
  split_run(n, n, [&](int64_t i0, int64_t i1) {
    uint32_t bad = 0;
    for (int64_t i = i0; i < i1; ++i) {
      uint32_t bits;
      std::memcpy(&bits, w + i, sizeof bits);
      bad |= static_cast<uint32_t>((bits & 0x7f800000u) == 0x7f800000u);
    }
    if (bad) nonfinite.store(true, std::memory_order_relaxed);
  });
  return !nonfinite.load(std::memory_order_relaxed);
}

}  // namespace

const float* RnnPrepared::forward_panels(const float* w_hh, int G, int64_t H, int64_t K, int vl) {
  std::call_once(once_, [&] {
    panels_ = pack_forward(w_hh, G, H, K, vl).data;
    G_ = G, H_ = H, K_ = K, vl_ = vl;
  });
  return G == G_ && H == H_ && K == K_ && vl == vl_ ? panels_.data() : nullptr;
}

bool RnnPrepared::recurrent_weights_finite(const float* w_hh, int64_t n) {
  std::call_once(once_finite_, [&] { w_hh_finite_ = all_finite(w_hh, n); });
  return w_hh_finite_;
}

const PackedB<float>* RnnPrepared::input_weights(const float* w_ih, int64_t GH, int64_t I) {
  std::call_once(once_input_, [&] { input_ = pack_b<float>(true, I, GH, w_ih, I); });
  return input_.K == I && input_.N == GH && input_.isa == static_cast<int>(active_isa()) ? &input_ : nullptr;
}

const PackedB<float>* RnnPrepared::recurrent_weights(const float* w_hh, int64_t GH, int64_t K) {
  std::call_once(once_recurrent_, [&] { recurrent_ = pack_b<float>(true, K, GH, w_hh, K); });
  return recurrent_.K == K && recurrent_.N == GH && recurrent_.isa == static_cast<int>(active_isa()) ? &recurrent_
                                                                                                      : nullptr;
}

namespace {

// Backward panels: 4*vl columns of W_hh [GH][K] each, zero past K.
BlockArray<float> pack_backward(const float* w_hh, int64_t GH, int64_t K, int vl, int64_t* count) {
  const int64_t pw = 4 * vl;
  *count = (K + pw - 1) / pw;
  BlockArray<float> d(static_cast<size_t>(*count * GH * pw));
  split_run(*count, *count * GH * pw, [&](int64_t q0, int64_t q1) {
    for (int64_t q = q0; q < q1; ++q)
      for (int64_t g = 0; g < GH; ++g) {
        const int64_t n = std::min<int64_t>(pw, K - q * pw);
        float* row = d.data() + (q * GH + g) * pw;
        std::memcpy(row, w_hh + g * K + q * pw, static_cast<size_t>(n) * sizeof(float));
        std::fill(row + n, row + pw, 0.f);
      }
  });
  return d;
}

// Layer workspaces from this size are saved around the caches (stream_saved in rnn_layer_forward).
constexpr int64_t RNN_STREAM_SAVED_MIN_BYTES = int64_t(4) << 20;

// n values saved for BPTT; with `stream` (a workspace bigger than the caches, see
// rnn_layer_forward) the aligned whole 16-byte groups of float32 go to memory with non-temporal
// stores (no read for ownership of lines read back only by the backward pass); stream_fence()
// orders them before the step's end.
template <typename T>
void copy_saved(T* dst, const T* src, int64_t n, bool stream) {
#if defined(__SSE2__)
  if constexpr (std::is_same<T, float>::value) {
    if (stream && reinterpret_cast<uintptr_t>(dst) % 16 == 0) {
      int64_t i = 0;
      for (; i + 4 <= n; i += 4) _mm_stream_ps(dst + i, _mm_loadu_ps(src + i));
      for (; i < n; ++i) dst[i] = src[i];
      return;
    }
  }
#endif
  (void)stream;
  std::memcpy(dst, src, sizeof(T) * static_cast<size_t>(n));
}
inline void stream_fence() {
#if defined(__SSE2__)
  _mm_sfence();
#endif
}

// A scratch array every element of which is written before it is read: no zero fill (for
// LSTM(300, 512, 2) B=64 the input projection alone is 15.7 MB per layer, memset ~5% of it),
// and from the block cache: a fresh mapping per call cost LSTM(300, 512, 2) B=8 150 page
// faults and 1.6 ms of kernel time per forward.
template <typename T>
BlockArray<T> scratch(int64_t n) {
  return BlockArray<T>(static_cast<size_t>(n));
}

template <typename T>
void copy_rows(T* dst, const T* src, int64_t n) {
  if (src)
    std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(T));
  else
    std::fill(dst, dst + n, T(0));
}

}  // namespace

RnnWorkspace rnn_workspace_layout(RnnMode mode, int64_t T, int64_t B, int64_t H, int64_t P) {
  const int64_t G = rnn_gate_count(mode), K = P ? P : H;
  const int64_t TB = checked_mul(T, B, "rnn workspace");
  RnnWorkspace w;
  int64_t off = 0;
  auto take = [&](int64_t n) {
    int64_t o = off;
    off += checked_mul(TB, n, "rnn workspace");
    return o;
  };
  w.gates = take(G * H);
  w.hprev = take(K);
  if (mode == RnnMode::lstm) {
    w.cprev = take(H);
    w.tanhc = take(H);
  }
  if (mode == RnnMode::gru) w.hn = take(H);
  if (P) w.hraw = take(H);
  w.size = off;
  return w;
}

// ---- the oracle -----------------------------------------------------------------------------
template <typename T>
void rnn_layer_forward_naive(const RnnLayer<T>& L, const T* x, const T* h0, const T* c0, T* y, int64_t ldy, T* hn,
                             T* cn) {
  const int G = rnn_gate_count(L.mode);
  const int64_t Tn = L.steps, B = L.batch, I = L.input, H = L.hidden, P = L.proj, K = P ? P : H, GH = G * H;
  std::vector<double> h(B * K, 0.0), c(B * H, 0.0), a(GH), hraw(H);
  if (h0) std::copy(h0, h0 + B * K, h.begin());
  if (c0 && L.mode == RnnMode::lstm) std::copy(c0, c0 + B * H, c.begin());
  using C = rnn_generic::Cell<double, rnn_generic::Math<double>>;
  for (int64_t s = 0; s < Tn; ++s) {
    const int64_t t = L.reverse ? Tn - 1 - s : s;
    for (int64_t b = 0; b < B; ++b) {
      T* yr = y + (t * B + b) * ldy;
      if (!row_valid(L.lengths, b, t)) {
        for (int64_t k = 0; k < K; ++k) yr[k] = 0;
        continue;
      }
      const T* xr = x + (t * B + b) * I;
      double* hb = h.data() + b * K;
      for (int64_t r = 0; r < GH; ++r) {
        double sx = L.b_ih ? double(L.b_ih[r]) : 0.0, sh = L.b_hh ? double(L.b_hh[r]) : 0.0;
        for (int64_t i = 0; i < I; ++i) sx += double(L.w_ih[r * I + i]) * xr[i];
        for (int64_t k = 0; k < K; ++k) sh += double(L.w_hh[r * K + k]) * hb[k];
        // GRU keeps the n block's two halves apart (a[r] = x part, a[2H + j] handled below)
        a[r] = (L.mode == RnnMode::gru && r >= 2 * H) ? sx : sx + sh;
        if (L.mode == RnnMode::gru && r >= 2 * H) hraw[r - 2 * H] = sh;  // W_hn h + b_hn
      }
      std::vector<double> hnew(H);
      for (int64_t j = 0; j < H; ++j) {
        if (L.mode == RnnMode::lstm) {
          double i, f, g, o, cc, tc, hh;
          C::lstm_fwd(a[j], a[H + j], a[2 * H + j], a[3 * H + j], c[b * H + j], i, f, g, o, cc, tc, hh);
          c[b * H + j] = cc;
          hnew[j] = hh;
        } else if (L.mode == RnnMode::gru) {
          double r, z, n, hh;
          C::gru_fwd(a[j], a[H + j], a[2 * H + j], hraw[j], hb[j], r, z, n, hh);
          hnew[j] = hh;
        } else {
          hnew[j] = C::rnn_fwd(a[j], L.mode == RnnMode::rnn_relu);
        }
      }
      for (int64_t k = 0; k < K; ++k) {
        double v = hnew[k < H ? k : 0];
        if (P) {
          v = 0;
          for (int64_t j = 0; j < H; ++j) v += double(L.w_hr[k * H + j]) * hnew[j];
        }
        hb[k] = v;
        yr[k] = static_cast<T>(v);
      }
    }
  }
  for (int64_t i = 0; i < B * K; ++i) hn[i] = static_cast<T>(h[i]);
  if (L.mode == RnnMode::lstm && cn)
    for (int64_t i = 0; i < B * H; ++i) cn[i] = static_cast<T>(c[i]);
}

// ---- the fast forward -----------------------------------------------------------------------
template <typename T>
void rnn_layer_forward(const RnnLayer<T>& L, const T* x, const T* h0, const T* c0, T* y, int64_t ldy, T* hn, T* cn,
                       T* ws) {
  const RnnMode mode = L.mode;
  const bool lstm = mode == RnnMode::lstm, gru = mode == RnnMode::gru;
  const int G = rnn_gate_count(mode);
  const int64_t Tn = L.steps, B = L.batch, I = L.input, H = L.hidden, P = L.proj, K = P ? P : H, GH = G * H;
  PYC_CHECK(Tn >= 0 && B >= 0 && I >= 0 && H > 0 && P >= 0 && P < H + (P == 0), "rnn: bad sizes T=", Tn, " B=", B,
            " I=", I, " H=", H, " P=", P);
  PYC_CHECK(ldy >= K, "rnn: ldy=", ldy, " < K=", K);
  const RnnWorkspace wl = rnn_workspace_layout(mode, Tn, B, H, P);
  std::vector<T> h(B * K), hstep(B * H), c, cstep, hproj(P ? B * K : 0);
  copy_rows(h.data(), h0, B * K);
  if (lstm) {
    c.resize(B * H);
    cstep.resize(B * H);
    copy_rows(c.data(), c0, B * H);
  }
  // The state entering a step (h_cur, c_cur) and the one it writes (h_nxt, c_nxt). Where the
  // threads finish their own units in the step's region (units_in_step below) the two swap after
  // each step; otherwise finish_rows copies the new state over the old one.
  T* h_cur = h.data();
  T* h_nxt = hstep.data();
  T* c_cur = lstm ? c.data() : nullptr;
  T* c_nxt = lstm ? cstep.data() : nullptr;
  if (Tn > 0 && B > 0) {
    // 1. input projection of every step, biases folded in (GRU: b_hn stays inside r*(...)), in
    // one GEMM (a single step: inside the step, see 2.)
    std::vector<T> bsum(GH, T(0));
    BlockArray<T> pre = scratch<T>(checked_mul(Tn * B, GH, "rnn pre"));  // [T*B][GH]
    for (int64_t r = 0; r < GH; ++r) {
      if (L.b_ih) bsum[r] += L.b_ih[r];
      if (L.b_hh && !(gru && r >= 2 * H)) bsum[r] += L.b_hh[r];
    }
    // 2. (the loop below) the recurrence
    // float32 ISA kernels: from batch pack_min_batch(), pack W_hh once (gate-interleaved panels)
    // and fuse the product with the gate formulas. Below, packing would be an extra pass over
    // W_hh for too little reuse: each thread takes h W_hh^T for its units from the GEMM engine's
    // small-M path (unpacked W_hh) and then their gate formulas (vk_step below); a single step
    // (cells) takes its input projection there too (own units, same region).
    const RnnKernelsF32* vk = nullptr;
    FwdPanels panels;
    const float* panel_data = nullptr;  // panels.data, or the prepared weights' panels
    bool packed = false;
    // the engine's step product (rnn_engine_step): W_hh^T packed for the engine, per call or
    // prepared
    PackedB<float> engine_own;
    const PackedB<float>* engine_w = nullptr;
    std::vector<T> rec;
    if constexpr (std::is_same<T, float>::value) {
      if (f32_kernels().vl > 0) {
        vk = &f32_kernels();
        if (Tn >= 2 && rnn_engine_step(mode, B, GH, K)) {
          if (L.prepared) engine_w = L.prepared->recurrent_weights(L.w_hh, GH, K);
          if (!engine_w) {
            engine_own = pack_b<float>(true, K, GH, L.w_hh, K);
            engine_w = &engine_own;
          }
        }
        if (L.prepared && Tn >= 2 && !engine_w) panel_data = L.prepared->forward_panels(L.w_hh, G, H, K, vk->vl);
        packed = !engine_w && (panel_data || (B >= pack_min_batch(GH * K * int64_t(sizeof(float))) && Tn >= 2));
        if (packed && !panel_data) {
          panels = pack_forward(L.w_hh, G, H, K, vk->vl);
          panel_data = panels.data.data();
        } else {
          panels = panel_geometry(G, H, vk->vl);
          if (!packed && !engine_w) rec.resize(B * GH);
        }
      }
    }
    // Without h0 the state entering the first step is zero, and so is its product h W_hh^T:
    // that step runs on pre alone. Only where every weight of W_hh is known to be finite (0 * inf
    // is NaN, which the product would have put in those gates): prepared weights learn it once,
    // and the engine's per-call operand takes a pass over W_hh for it (at the batches that use
    // it a step costs far more). Not for panels packed on this call, nor on the unpacked path:
    // there the pass costs more than the step it saves (the pass over each packed panel, in L2:
    // GRU(300, 512, 2) T=30 batch 1 1.16 -> 1.10 ms without it, LSTM batch 8 even; benchmark
    // harness, alternating). The outputs are the product's to the bit (pre + 0 = pre; a -0 sum
    // could flip the sign of a zero). LSTM(300, 512, 2) T=30 forward, one process alternating with
    // and without (medians of 8 rounds): batch 64 37.5 -> 36.6 ms; prepared batch 1 1.39 -> 1.36
    // ms, batch 8 5.09 -> 5.01 ms.
    bool skip_first_product = false;
    if constexpr (std::is_same<T, float>::value) {
      if (vk && !h0 && Tn >= 2) {
        if (L.prepared && (panel_data || engine_w))
          skip_first_product = L.prepared->recurrent_weights_finite(L.w_hh, GH * K);
        else if (engine_w)
          skip_first_product = all_finite(L.w_hh, GH * K);
      }
    }
    const bool input_in_step = vk && !packed && Tn == 1;
    if (!input_in_step) {
      GemmEpilogue<T> ep;
      ep.bias = bsum.data();
      ep.bias_kind = BiasKind::col;
      // pre[T*B][GH] = x[T*B][I] W_ih^T + bias. A prepared W_ih is used where gemm() would pack
      // it too (above its small-M path): the same sums, bit-identical to the unprepared call.
      bool done = false;
      if constexpr (std::is_same<T, float>::value) {
        const PackedB<float>* wih =
            L.prepared_ih && !gemm_small_m(Tn * B) ? L.prepared_ih->input_weights(L.w_ih, GH, I) : nullptr;
        if (wih) gemm_packed_b<float>(false, Tn * B, 1.f, x, I, *wih, 0.f, pre.data(), GH, ep);
        done = wih != nullptr;
      }
      if (!done) gemm<T>(false, true, Tn * B, GH, I, T(1), x, I, L.w_ih, I, T(0), pre.data(), GH, ep);
    }
    const T* b_hn = (gru && L.b_hh) ? L.b_hh + 2 * H : nullptr;

    // Step t for batch rows [b0, b1) (every array is row-major by batch row: offset pointers):
    // the state entering it saved for BPTT, the cell's arguments, and after the cell the LSTM
    // projection (h = h_raw W_hr^T) and the state/output update (invalid rows keep their state
    // and output zeros).
    // What BPTT reads back from the workspace goes around the caches when the layer's workspace
    // is 4 MiB or more, twice the two cores' L2s (copy_saved, the step kernels' st_saved):
    // LSTM(300, 512, 2) T=30 training forward, in one process, B=16 (6.9 MB a layer) 9.9 -> 9.5
    // ms, B=32 18.7 -> 18.3, B=64 34.8 -> 34.0 (forward+backward 0-1.6% faster); B=8 (3.4 MB)
    // and B=1 even.
    const bool stream_saved = ws && wl.size * int64_t(sizeof(T)) >= RNN_STREAM_SAVED_MIN_BYTES;
    auto save_state = [&](int64_t t, int64_t b0, int64_t b1) {
      if (!ws) return;
      const int64_t row0 = t * B + b0, nb = b1 - b0;
      copy_saved(ws + wl.hprev + row0 * K, h_cur + b0 * K, nb * K, stream_saved);
      if (lstm) copy_saved(ws + wl.cprev + row0 * H, c_cur + b0 * H, nb * H, stream_saved);
      if (stream_saved) stream_fence();
    };
    // (hc, cc): the state entering the step, (hx, cx): the one it writes
    auto step_args = [&](int64_t t, int64_t b0, int64_t b1, const T* hc, const T* cc, T* hx, T* cx) {
      const int64_t row0 = t * B + b0;
      return StepArgs<T>{mode,
                         b1 - b0,
                         H,
                         K,
                         L.w_hh,
                         hc + b0 * K,
                         pre.data() + row0 * GH,
                         lstm ? cc + b0 * H : nullptr,
                         b_hn,
                         hx + b0 * H,
                         lstm ? cx + b0 * H : nullptr,
                         ws ? ws + wl.gates + row0 * GH : nullptr,
                         (ws && lstm) ? ws + wl.tanhc + row0 * H : nullptr,
                         (ws && gru) ? ws + wl.hn + row0 * H : nullptr};
    };
    auto f32_args = [&](const auto& sa) {  // (float32 only: called in float branches)
      RnnStepF32 fs;
      fs.stream_saved = stream_saved;
      fs.mode = static_cast<int>(mode);
      fs.B = sa.B, fs.H = H, fs.K = K;
      fs.h = sa.h, fs.pre = sa.pre, fs.c = sa.c, fs.b_hn = sa.b_hn;
      fs.h_out = sa.h_out, fs.c_out = sa.c_out, fs.gates = sa.gates, fs.tanhc = sa.tanhc, fs.hn = sa.hn;
      return fs;
    };
    auto finish_rows = [&](int64_t t, int64_t b0, int64_t b1) {
      const int64_t row0 = t * B + b0, nb = b1 - b0;
      const T* hnew = h_nxt + b0 * H;
      if (P) {
        if (ws) std::memcpy(ws + wl.hraw + row0 * H, hnew, sizeof(T) * nb * H);
        gemm<T>(false, true, nb, P, H, T(1), hnew, H, L.w_hr, H, T(0), hproj.data() + b0 * K, P, {}, 1);
        hnew = hproj.data() + b0 * K;
      }
      for (int64_t b = b0; b < b1; ++b) {
        T* yr = y + (t * B + b) * ldy;
        const T* hb = hnew + (b - b0) * K;
        if (row_valid(L.lengths, b, t)) {
          std::memcpy(h_cur + b * K, hb, sizeof(T) * K);
          if (lstm) std::memcpy(c_cur + b * H, c_nxt + b * H, sizeof(T) * H);
          std::memcpy(yr, hb, sizeof(T) * K);
        } else {
          std::fill(yr, yr + K, T(0));
        }
      }
    };

    // Without projection or lengths, on one row range (no row split), each thread finishes the
    // units it computed inside the step's region: it saves their entering state for BPTT and
    // writes their new h to y, and the state buffers swap after the step (no serial pass over the
    // rows per step, no copy of the state). The step's products read all of h_cur, which nobody
    // writes during the step; the units' formulas read only their own columns of h_cur, c_cur.
    // Against the serial finish_rows (h, c and y copied row by row, the other thread waiting),
    // LSTM(300, 512, 2) T=30 forward at batch 8, alternating processes: 5.82-6.19 -> 5.40-5.75 ms.
    auto finish_units = [&](int64_t t, int64_t u0, int64_t u1, const T* hc, const T* cc, const T* hx) {
      const size_t n = sizeof(T) * static_cast<size_t>(u1 - u0);
      for (int64_t b = 0; b < B; ++b) {
        const int64_t row = t * B + b;
        if (ws) copy_saved(ws + wl.hprev + row * K + u0, hc + b * K + u0, u1 - u0, stream_saved);
        if (ws && lstm) copy_saved(ws + wl.cprev + row * H + u0, cc + b * H + u0, u1 - u0, stream_saved);
        std::memcpy(y + row * ldy + u0, hx + b * H + u0, n);
      }
      if (stream_saved) stream_fence();
    };
    const int rt = packed ? rnn_row_threads(B, GH, K) : 1;
    if (rt > 1) {  // every thread runs all steps for its own rows [b0, b1) (see rnn_row_threads)
      if constexpr (std::is_same<T, float>::value)
        parallel_run(rt, [&](int tid, int nt) {
          int64_t b0, b1;
          split_range(B, tid, nt, vk->mr, &b0, &b1);
          for (int64_t s = 0; b0 < b1 && s < Tn; ++s) {
            const int64_t t = L.reverse ? Tn - 1 - s : s;
            save_state(t, b0, b1);
            RnnStepF32 fs = f32_args(step_args(t, b0, b1, h_cur, c_cur, h_nxt, c_nxt));
            if (!(s == 0 && skip_first_product)) fs.Kd = K, fs.wp = panel_data;
            fs.reverse = (s & 1) != 0;  // serpentine order over this thread's steps
            vk->step(fs, 0, panels.count);
            finish_rows(t, b0, b1);
          }
        });
    } else {
      const bool units_in_step = vk && !P && !L.lengths;
      // Step s of the float32 ISA kernels for panels [p0, p1) (hidden units p0 * units ...):
      // the product (packed panels, or this thread's own small-M products; none after the
      // engine's or for the zero first state), the gate formulas, and with units_in_step the
      // units' entering state saved and their new h written.
      auto vk_step = [&](int64_t s, bool reverse, const T* hc, const T* cc, T* hx, T* cx, int64_t p0, int64_t p1) {
        if constexpr (std::is_same<T, float>::value) {
          const int64_t t = L.reverse ? Tn - 1 - s : s, units = panels.units;
          RnnStepF32 fs = f32_args(step_args(t, 0, B, hc, cc, hx, cx));
          if (s == 0 && skip_first_product) {
            // pre alone (Kd = 0, no rec): the zero state's product is zero
          } else if (packed) {
            fs.Kd = K;
            fs.wp = panel_data;
            fs.reverse = reverse;
          } else if (!engine_w) {
            // this thread's units [u0, u1) of every gate, in chunks of 64 units in serpentine
            // order: rec[:, g*H + c0 .. g*H + c1) = h W_hh[g*H + c0 .. g*H + c1)^T (and for a
            // single step first pre[...] = x W_ih[...]^T + bias)
            const int64_t u0 = p0 * units, u1 = std::min(H, p1 * units);
            constexpr int64_t chunk = 64;
            const int64_t nch = (u1 - u0 + chunk - 1) / chunk, nrec = G * nch, n = nrec << int(input_in_step);
            for (int64_t i = 0; i < n; ++i) {
              const int64_t j = serpentine(i, n, reverse);
              const bool input = j >= nrec;  // (only when input_in_step)
              const int g = static_cast<int>((j % nrec) / nch);
              const int64_t c0 = u0 + (j % nch) * chunk, c1 = std::min(u1, c0 + chunk), col = g * H + c0;
              if (input) {
                GemmEpilogue<T> ep_own;
                ep_own.bias = bsum.data() + col;
                ep_own.bias_kind = BiasKind::col;
                gemm<T>(false, true, B, c1 - c0, I, T(1), x, I, L.w_ih + col * I, I, T(0), pre.data() + col, GH,
                        ep_own, 1);
              } else {
                gemm<T>(false, true, B, c1 - c0, K, T(1), hc, K, L.w_hh + col * K, K, T(0), rec.data() + col, GH,
                        {}, 1);
              }
            }
            fs.rec = rec.data();
          }
          vk->step(fs, p0, p1);
          if (units_in_step) finish_units(t, std::min(H, p0 * units), std::min(H, p1 * units), hc, cc, hx);
        }
      };
      const int64_t step_work = (B * GH * K) << int(input_in_step);
      // With units_in_step and no engine product, all steps in one region whose threads go from
      // step to step together (parallel_team and StepParts; the state buffers take turns by the
      // step's parity), instead of a region per step (the region's start and end cost ~2 us a
      // step on 2 threads: 18.8 us regions around 16.7-17.0 us parts at batch 1). Where the pool
      // cannot promise that (busy, nested), the loop below. Two layers of 512 units, T=30,
      // batch 1, the benchmark harness with the two builds alternating (medians of 3 rounds):
      // LSTM(300, 512, 2) forward 1.72 -> 1.63 ms, prepared 1.34 -> 1.24, tanh RNN 0.43 -> 0.36,
      // GRU 1.25 -> 1.23; batch 8 and 64 within noise. A late thread's parts are taken over (a
      // plain barrier waited for it: LSTM batch 1 on 3 threads on 2 cores took 33 ms): 3 and 4
      // threads on 2 cores 5.4-6.3 and 7.9-8.0 ms against the per-step regions' 5.5-6.9 and
      // 7.4-7.6; with another process keeping one core busy 1.5-1.8 ms against 7.4-7.6 ms.
      bool steps_done = false;
      if (vk && units_in_step && !engine_w && Tn >= 2) {
        const int nt = split_threads(panels.count, step_work);
        const bool first_reversed = next_pass_reversed(static_cast<unsigned>(Tn));
        StepParts parts(nt);
        T* hb[2] = {h_cur, h_nxt};
        T* cb[2] = {c_cur, c_nxt};
        steps_done = parallel_team(nt, [&](int tid, int team) {
          for (int64_t s = 0; s < Tn; ++s) {
            const int i = static_cast<int>(s & 1);
            const bool ok = parts.step(s, tid, team, [&](int p) {
              int64_t p0, p1;
              split_range(panels.count, p, parts.parts(), 1, &p0, &p1);
              if (p0 < p1) vk_step(s, first_reversed != (i != 0), hb[i], cb[i], hb[1 - i], cb[1 - i], p0, p1);
            });
            if (!ok) return;
          }
        });
        if (steps_done && (Tn & 1)) {
          std::swap(h_cur, h_nxt);
          if (lstm) std::swap(c_cur, c_nxt);
        }
      }
      for (int64_t s = 0; s < Tn && !steps_done; ++s) {
        const int64_t t = L.reverse ? Tn - 1 - s : s;
        if (!units_in_step) save_state(t, 0, B);
        if constexpr (std::is_same<T, float>::value) {
          if (vk) {
            const bool reverse = next_pass_reversed();  // serpentine order: packed panels or own rows
            if (engine_w && !(s == 0 && skip_first_product)) {
              // pre[t] += h W_hh^T (the engine's threads), then only the gate formulas
              gemm_packed_b<float>(false, B, 1.f, h_cur, K, *engine_w, 1.f, pre.data() + t * B * GH, GH);
            }
            split_run(panels.count, step_work, [&](int64_t p0, int64_t p1) {
              vk_step(s, reverse, h_cur, c_cur, h_nxt, c_nxt, p0, p1);
            });
          }
        }
        if (!vk) {
          const StepArgs<T> sa = step_args(t, 0, B, h_cur, c_cur, h_nxt, c_nxt);
          split_run(H, B * GH * K, [&](int64_t u0, int64_t u1) { portable_step<T>(sa, u0, u1); });
        }
        if (!units_in_step) {
          finish_rows(t, 0, B);
        } else {
          std::swap(h_cur, h_nxt);
          if (lstm) std::swap(c_cur, c_nxt);
        }
      }
    }
  }
  if (hn) std::memcpy(hn, h_cur, sizeof(T) * B * K);
  if (lstm && cn) std::memcpy(cn, c_cur, sizeof(T) * B * H);
}

// ---- BPTT -----------------------------------------------------------------------------------
template <typename T>
void rnn_layer_backward(const RnnLayer<T>& L, const T* x, const T* h0, const T* c0, const T* ws, const T* dy,
                        int64_t lddy, const T* dhn, const T* dcn, T* dx, bool accumulate_dx, T* dw_ih, T* dw_hh,
                        T* db_ih, T* db_hh, T* dw_hr, T* dh0, T* dc0) {
  (void)h0;
  (void)c0;
  const RnnMode mode = L.mode;
  const bool lstm = mode == RnnMode::lstm, gru = mode == RnnMode::gru, relu = mode == RnnMode::rnn_relu;
  const int G = rnn_gate_count(mode);
  const int64_t Tn = L.steps, B = L.batch, I = L.input, H = L.hidden, P = L.proj, K = P ? P : H, GH = G * H;
  const int64_t TB = Tn * B;
  const RnnWorkspace wl = rnn_workspace_layout(mode, Tn, B, H, P);

  // all written step by step (rows past a length as zeros) before the merged GEMMs read them
  BlockArray<T> dgx = scratch<T>(checked_mul(TB, GH, "rnn dG")), dgh_sep = scratch<T>(gru ? TB * GH : 0);  // [T*B][GH]
  T* dgh = gru ? dgh_sep.data() : dgx.data();
  BlockArray<T> dhp = scratch<T>(P ? TB * P : 0);  // [T*B][P]
  std::vector<T> carry_h(B * K), carry_c(lstm ? B * H : 0), dh(B * K), dhraw_buf(P ? B * H : 0), direct(B * H),
      dh_next(B * K);
  // The bias gradients' sums, per batch row over the steps: each step's pointwise backward adds
  // its rows of dG (in L1 then) to them, and the rows are added in order at the end, so the sums
  // do not depend on the thread count. Column sums of all of dG after the loop read it back
  // from memory: LSTM(300, 512, 2) T=30 B=64, 15.7 MB per layer, 0.7 ms.
  const bool bias_grads = db_ih || db_hh;
  std::vector<T> dbx_rows(bias_grads ? B * GH : 0), dbh_rows(bias_grads && gru ? B * GH : 0);  // [B][GH]
  copy_rows(carry_h.data(), dhn, B * K);
  if (lstm) copy_rows(carry_c.data(), dcn, B * H);

  const RnnKernelsF32* vk = nullptr;
  BlockArray<float> bpanels;
  int64_t nq = 0;
  if constexpr (std::is_same<T, float>::value) {
    if (f32_kernels().vl > 0 && TB > 0) {
      vk = &f32_kernels();
      bpanels = pack_backward(L.w_hh, GH, K, vk->vl, &nq);
    }
  }

  // The fused pointwise backward of one valid row b of step t: dG (and GRU's direct term) from
  // the saved gates and dh_raw (dhb: the row's H values).
  auto pointwise_row = [&](int64_t t, int64_t b, const T* dhb, T* gxb, T* ghb, T* dir) {
    const int64_t row = t * B + b;
    const T* gb = ws + wl.gates + row * GH;
    if (lstm) {
      const T* tc = ws + wl.tanhc + row * H;
      const T* cp = ws + wl.cprev + row * H;
      T* dc = carry_c.data() + b * H;
      if constexpr (std::is_same<T, float>::value)
        if (vk) {  // the same formulas in vectors (ISA kernels)
          vk->lstm_back_row(dhb, dc, gb, tc, cp, gxb, H);
          return;
        }
      for (int64_t j = 0; j < H; ++j)
        GCell<T>::lstm_bwd(dhb[j], dc[j], gb[j], gb[H + j], gb[2 * H + j], gb[3 * H + j], tc[j], cp[j], gxb[j],
                           gxb[H + j], gxb[2 * H + j], gxb[3 * H + j]);
    } else if (gru) {
      const T* hnb = ws + wl.hn + row * H;
      const T* hp = ws + wl.hprev + row * K;
      for (int64_t j = 0; j < H; ++j) {
        GCell<T>::gru_bwd(dhb[j], gb[j], gb[H + j], gb[2 * H + j], hnb[j], hp[j], gxb[j], gxb[H + j],
                          gxb[2 * H + j], ghb[2 * H + j], dir[j]);
        ghb[j] = gxb[j];
        ghb[H + j] = gxb[H + j];
      }
    } else {
      for (int64_t j = 0; j < H; ++j) gxb[j] = GCell<T>::rnn_bwd(dhb[j], gb[j], relu);
    }
  };
  auto add_row = [GH](T* acc, const T* row) {
    for (int64_t g = 0; g < GH; ++g) acc[g] += row[g];
  };
  // Rows [b0, b1) of step t (dhraw: their dh_raw, row b0 first); invalid rows get zeros.
  auto pointwise = [&](int64_t t, int64_t b0, int64_t b1, const T* dhraw) {
    T* gx = dgx.data() + t * B * GH;
    T* gh = dgh + t * B * GH;
    for (int64_t b = b0; b < b1; ++b) {
      T* gxb = gx + b * GH;
      T* ghb = gh + b * GH;
      T* dir = direct.data() + b * H;
      if (!row_valid(L.lengths, b, t)) {
        std::fill(gxb, gxb + GH, T(0));
        if (gru) std::fill(ghb, ghb + GH, T(0));
        std::fill(dir, dir + H, T(0));
        continue;
      }
      pointwise_row(t, b, dhraw + (b - b0) * H, gxb, ghb, dir);
      if (bias_grads) {
        add_row(dbx_rows.data() + b * GH, gxb);
        if (gru) add_row(dbh_rows.data() + b * GH, ghb);
      }
    }
  };
  // dh[b] = carry[b] + dy[t][b] (zero for invalid rows), rows [b0, b1)
  auto gather_dh = [&](int64_t t, int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      T* d = dh.data() + b * K;
      if (!row_valid(L.lengths, b, t)) {
        std::fill(d, d + K, T(0));
        continue;
      }
      const T* cy = carry_h.data() + b * K;
      const T* ey = dy ? dy + (t * B + b) * lddy : nullptr;
      for (int64_t k = 0; k < K; ++k) d[k] = cy[k] + (ey ? ey[k] : T(0));
    }
  };
  // dh_raw of rows [b0, b1): dh, or through the LSTM projection dh W_hr (dh saved for dW_hr)
  auto raw_dh = [&](int64_t t, int64_t b0, int64_t b1) -> const T* {
    if (!P) return dh.data() + b0 * K;
    std::memcpy(dhp.data() + (t * B + b0) * P, dh.data() + b0 * K, sizeof(T) * (b1 - b0) * P);
    gemm<T>(false, false, b1 - b0, H, P, T(1), dh.data() + b0 * K, P, L.w_hr, H, T(0), dhraw_buf.data() + b0 * H, H,
            {}, 1);
    return dhraw_buf.data() + b0 * H;
  };
  // the carry into step t - 1: dh_prev of the valid rows (invalid rows pass theirs through)
  auto update_carry = [&](int64_t t, int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b)
      if (row_valid(L.lengths, b, t)) std::memcpy(carry_h.data() + b * K, dh_next.data() + b * K, sizeof(T) * K);
  };
  const int rt = vk ? rnn_row_threads(B, GH, K) : 1;
  if (rt > 1) {  // every thread runs BPTT for its own rows (see rnn_row_threads)
    if constexpr (std::is_same<T, float>::value)
      parallel_run(rt, [&](int tid, int nt) {
        int64_t b0, b1;
        split_range(B, tid, nt, vk->mr, &b0, &b1);
        for (int64_t s = Tn - 1; b0 < b1 && s >= 0; --s) {
          const int64_t t = L.reverse ? Tn - 1 - s : s;
          gather_dh(t, b0, b1);
          pointwise(t, b0, b1, raw_dh(t, b0, b1));
          RnnBackF32 bs;  // dh_prev = dG_h W_hh (+ GRU's direct z*dh term), own rows
          bs.B = b1 - b0, bs.N = K, bs.Kd = GH, bs.wp = bpanels.data(), bs.dg = dgh + (t * B + b0) * GH;
          bs.add = gru ? direct.data() + b0 * H : nullptr, bs.out = dh_next.data() + b0 * K;
          bs.reverse = (s & 1) != 0;  // serpentine order over this thread's steps
          vk->back(bs, 0, nq);
          update_carry(t, b0, b1);
        }
      });
  } else {
    for (int64_t s = Tn - 1; s >= 0; --s) {
      const int64_t t = L.reverse ? Tn - 1 - s : s;
      const int64_t row0 = t * B;
      // gradient into this step's output h: the carry plus dy (zero for invalid rows)
      gather_dh(t, 0, B);
      const T* dhraw = raw_dh(t, 0, B);
      // fused pointwise backward of the gates
      split_run(B, B * H * 16, [&](int64_t b0, int64_t b1) { pointwise(t, b0, b1, dhraw + b0 * H); });
      T* gh = dgh + row0 * GH;
      // dh_prev = dG_h W_hh (+ GRU's direct z*dh term)
      const T* add = gru ? direct.data() : nullptr;
      bool done = false;
      if constexpr (std::is_same<T, float>::value) {
        if (vk) {
          RnnBackF32 bs;
          bs.B = B, bs.N = K, bs.Kd = GH, bs.wp = bpanels.data(), bs.dg = gh, bs.add = add, bs.out = dh_next.data();
          bs.reverse = next_pass_reversed();  // panels in serpentine order
          RnnBackFn fn = vk->back;
          split_run(nq, B * GH * K, [&](int64_t q0, int64_t q1) { fn(bs, q0, q1); });
          done = true;
        }
      }
      if (!done) {
        split_run(K, B * GH * K, [&](int64_t k0, int64_t k1) {
          for (int64_t b = 0; b < B; ++b) {
            T* o = dh_next.data() + b * K;
            for (int64_t k = k0; k < k1; ++k) o[k] = add ? add[b * H + k] : T(0);
            const T* db = gh + b * GH;
            for (int64_t g = 0; g < GH; ++g) {
              const T d = db[g];
              const T* w = L.w_hh + g * K;
              for (int64_t k = k0; k < k1; ++k) o[k] += d * w[k];
            }
          }
        });
      }
      update_carry(t, 0, B);
    }
  }

  // merged weight gradients over all steps
  gemm<T>(true, false, GH, I, TB, T(1), dgx.data(), GH, x, I, T(0), dw_ih, I);
  gemm<T>(true, false, GH, K, TB, T(1), dgh, GH, ws + wl.hprev, K, T(0), dw_hh, K);
  if (P) gemm<T>(true, false, P, H, TB, T(1), dhp.data(), P, ws + wl.hraw, H, T(0), dw_hr, H);
  // bias gradients: the per-row sums (pointwise) added over the rows. LSTM/RNN: dG_h is dG_x,
  // so db_hh = db_ih.
  auto row_sums = [&](const std::vector<T>& rows, T* out) {
    std::fill(out, out + GH, T(0));
    for (int64_t b = 0; b < B; ++b) add_row(out, rows.data() + b * GH);
  };
  if (db_ih) row_sums(dbx_rows, db_ih);
  if (db_hh) {
    if (db_ih && !gru)
      std::memcpy(db_hh, db_ih, sizeof(T) * GH);
    else
      row_sums(gru ? dbh_rows : dbx_rows, db_hh);
  }
  if (dx && TB > 0 && I > 0)
    gemm<T>(false, false, TB, I, GH, T(1), dgx.data(), GH, L.w_ih, I, accumulate_dx ? T(1) : T(0), dx, I);
  if (dh0) std::memcpy(dh0, carry_h.data(), sizeof(T) * B * K);
  if (lstm && dc0) std::memcpy(dc0, carry_c.data(), sizeof(T) * B * H);
}

#define PYC_RNN_INSTANTIATE(T)                                                                                \
  template void rnn_layer_forward<T>(const RnnLayer<T>&, const T*, const T*, const T*, T*, int64_t, T*, T*, T*); \
  template void rnn_layer_backward<T>(const RnnLayer<T>&, const T*, const T*, const T*, const T*, const T*,    \
                                      int64_t, const T*, const T*, T*, bool, T*, T*, T*, T*, T*, T*, T*);     \
  template void rnn_layer_forward_naive<T>(const RnnLayer<T>&, const T*, const T*, const T*, T*, int64_t, T*, T*);
PYC_RNN_INSTANTIATE(float)
PYC_RNN_INSTANTIATE(double)

}  // namespace pycnnrnn

// rnn_step_tiled.cuh — the register-tiled forward step of lstm.cu and gru.cu (B >= 16): the
// recurrent product rec = h_{t-1} W_hh^T as a small GEMM, with the cell update as its epilogue.
// (The GEMV-shaped step kernels re-read the whole h tile for every gate row, so at larger batch
// they are bound by L1/L2 loads.) One staging / multiply / reduction implementation for both
// cells: the kernel is templated on an epilogue functor Cell with
//   static constexpr int GATES;                                  // G: 4 (LSTM) or 3 (GRU)
//   void operator()(const T rec[G], int b, int j, int H) const;  // finishes cell (b, j)
// where rec[g] = (h_{t-1} W_hh^T)[b, g*H + j]. Kernel only (the launches sit in each .cu), so
// the host emulator (tests/cuda_emu) can include it.
//
// Shapes, with KV = 16 / sizeof(T) elements per 16-byte vector (4 floats, 2 doubles):
//   CTA tile: UNITS hidden units with all G gates (ROWS = G * UNITS rows g*H + j of W_hh) x
//     BATCH batch columns, UNITS * BATCH = 256 = one epilogue cell per thread:
//       LSTM (G = 4): UNITS =  8, BATCH = 32 -> 32 rows x 32 columns
//       GRU  (G = 3): UNITS = 16, BATCH = 16 -> 48 rows x 16 columns (8 units would give 24 rows,
//         and 24 rows * 16 vectors do not split evenly over 256 staging threads)
//     A 1-D grid of ceil(H/UNITS) * ceil(B/BATCH) CTAs, unit tile fastest (H = 512, B = 64:
//     128 CTAs for both cells).
//   k loop: chunks of KC = 16 * KV k (256 bytes of a row: 64 floats, 32 doubles). Shared memory
//     holds two buffers (double buffering) of w[ROWS][LD] (row lr = g * UNITS + u) and
//     h[BATCH][LD] (h_{t-1} rows), both row-major along k with LD = KC + KV: the 16-byte padding
//     makes the 16-byte stores of the staging and the 16-byte reads of the multiply
//     conflict-free. Each thread fetches W_FETCH + H_FETCH vectors of the next chunk into
//     registers (zeros past H, B or the valid units) while the current chunk is multiplied, then
//     stores them: one __syncthreads per chunk. LSTM: 2 + 2 vectors, GRU: 3 + 1.
//   Threads: 256 = KSPLIT (4) k-slices x 64 tile threads. A tile thread owns the G gates of
//     unit u x the 4 batch columns bg + BATCH_GROUPS * bi (BATCH_GROUPS = 64 / UNITS: 8 for
//     LSTM, 4 for GRU): a G x 4 register tile, fed by G + 4 16-byte shared loads per G * 4 * KV
//     fmas, k ascending through its quarter of every chunk.
//   Epilogue: the k-slice partial tiles go through shared memory (part[KSPLIT][G][BATCH][UNITS],
//     in the staging buffers), summed in slice order (deterministic); then each of the 256
//     threads hands one (batch, unit) cell to Cell.
//   Shared memory: (2 * (ROWS + BATCH) * LD) elements = 34816 bytes for both cells, float and
//     double (the partial sums need 16384 / 12288 bytes in float, twice that in double).
#pragma once
#include <cstdint>

namespace pycnnrnn::cuda {

constexpr int RNN_TILED_THREADS = 256;
constexpr int RNN_TILED_MIN_BATCH = 16;  // batch from which lstm.cu and gru.cu launch this kernel

template <typename T>
struct alignas(16) Vec16 {  // 16 bytes of consecutive k
  static constexpr int N = 16 / sizeof(T);
  T v[N];
};

// CTA tile per gate count (see above)
template <int G>
struct RnnCtaTile;
template <>
struct RnnCtaTile<4> {
  static constexpr int UNITS = 8, BATCH = 32;
};
template <>
struct RnnCtaTile<3> {
  static constexpr int UNITS = 16, BATCH = 16;
};

template <typename T, int G>
struct RnnTiledShape {
  static constexpr int UNITS = RnnCtaTile<G>::UNITS;        // hidden units per CTA
  static constexpr int BATCH = RnnCtaTile<G>::BATCH;        // batch columns per CTA
  static constexpr int ROWS = G * UNITS;                    // W_hh rows per CTA
  static constexpr int KSPLIT = 4;                          // k-slices per CTA
  static constexpr int BATCH_GROUPS = RNN_TILED_THREADS / (KSPLIT * UNITS);
  static constexpr int COLS = BATCH / BATCH_GROUPS;         // batch columns per tile thread
  static constexpr int KV = Vec16<T>::N;
  static constexpr int KC = 16 * KV;                        // k per staged chunk
  static constexpr int LD = KC + KV;                        // padded row stride of the staged chunks
  static constexpr int ROW_VECS = KC / KV;                  // vectors per staged row
  static constexpr int SLICE_VECS = ROW_VECS / KSPLIT;      // vectors per k-slice and chunk
  static constexpr int W_FETCH = ROWS * ROW_VECS / RNN_TILED_THREADS;  // vectors each thread stages
  static constexpr int H_FETCH = BATCH * ROW_VECS / RNN_TILED_THREADS;
  static_assert(UNITS * BATCH == RNN_TILED_THREADS, "the epilogue gives each thread one (unit, batch) cell");
  static_assert(KSPLIT * UNITS * BATCH_GROUPS == RNN_TILED_THREADS && BATCH % BATCH_GROUPS == 0, "thread tiles");
  static_assert(RNN_TILED_THREADS % ROW_VECS == 0 && ROW_VECS % KSPLIT == 0, "staging layout");
  static_assert(ROWS * ROW_VECS % RNN_TILED_THREADS == 0 && BATCH * ROW_VECS % RNN_TILED_THREADS == 0,
                "every thread stages the same number of vectors");
};

template <typename T, int G>
union alignas(16) RnnTiledSmem {
  using S = RnnTiledShape<T, G>;
  struct {
    T w[2][S::ROWS][S::LD];
    T h[2][S::BATCH][S::LD];
  } stage;
  T part[S::KSPLIT][G][S::BATCH][S::UNITS];  // k-slice partial sums [slice][gate][batch column][unit]
};

// KV consecutive elements row[k..]: zeros for a missing row (nullptr) and past H.
// VEC: one 16-byte load (H % KV == 0 and 16-byte aligned rows, checked on the host).
template <typename T, bool VEC>
__device__ __forceinline__ Vec16<T> load_k_vec(const T* row, int k, int H) {
  if constexpr (VEC) {
    if (row != nullptr && k < H) return *reinterpret_cast<const Vec16<T>*>(row + k);
    return Vec16<T>{};
  } else {
    Vec16<T> r;
#pragma unroll
    for (int e = 0; e < Vec16<T>::N; ++e) r.v[e] = row != nullptr && k + e < H ? row[k + e] : T(0);
    return r;
  }
}

// h_prev [B, H] (nullptr: zero state), R = W_hh [G*H, H]; cell finishes every (b, j).
template <typename T, bool VEC, class Cell>
__global__ void __launch_bounds__(RNN_TILED_THREADS)
    rnn_step_fwd_tiled(int B, int H, const T* __restrict__ h_prev, const T* __restrict__ R, Cell cell) {
  constexpr int G = Cell::GATES;
  using S = RnnTiledShape<T, G>;
  __shared__ RnnTiledSmem<T, G> sm;
  const int tid = threadIdx.x;
  const int unit_tiles = (H + S::UNITS - 1) / S::UNITS;
  const int j0 = static_cast<int>(blockIdx.x % unit_tiles) * S::UNITS;
  const int b0 = static_cast<int>(blockIdx.x / unit_tiles) * S::BATCH;

  // multiply role: k-slice ks, unit u, batch columns bg + BATCH_GROUPS * bi
  const int ks = tid / (S::UNITS * S::BATCH_GROUPS), u = tid % S::UNITS, bg = tid / S::UNITS % S::BATCH_GROUPS;
  T acc[G][S::COLS] = {};  // [gate][bi]

  if (h_prev != nullptr) {  // else the recurrent term is zero (t = 0 without h0)
    // staging role: vectors tid + i * RNN_TILED_THREADS of the chunk, all at k offset fetch_k
    const int fetch_k = tid % S::ROW_VECS * S::KV;
    const T* w_src[S::W_FETCH];
    const T* h_src[S::H_FETCH];
#pragma unroll
    for (int i = 0; i < S::W_FETCH; ++i) {
      const int lr = (tid + i * RNN_TILED_THREADS) / S::ROW_VECS, j = j0 + lr % S::UNITS;
      w_src[i] = j < H ? R + ((int64_t)(lr / S::UNITS) * H + j) * H : nullptr;
    }
#pragma unroll
    for (int i = 0; i < S::H_FETCH; ++i) {
      const int b = b0 + (tid + i * RNN_TILED_THREADS) / S::ROW_VECS;
      h_src[i] = b < B ? h_prev + (int64_t)b * H : nullptr;
    }
    Vec16<T> w_next[S::W_FETCH], h_next[S::H_FETCH];
    auto fetch = [&](int k0) {
#pragma unroll
      for (int i = 0; i < S::W_FETCH; ++i) w_next[i] = load_k_vec<T, VEC>(w_src[i], k0 + fetch_k, H);
#pragma unroll
      for (int i = 0; i < S::H_FETCH; ++i) h_next[i] = load_k_vec<T, VEC>(h_src[i], k0 + fetch_k, H);
    };
    auto stash = [&](int buf) {
#pragma unroll
      for (int i = 0; i < S::W_FETCH; ++i)
        *reinterpret_cast<Vec16<T>*>(&sm.stage.w[buf][(tid + i * RNN_TILED_THREADS) / S::ROW_VECS][fetch_k]) =
            w_next[i];
#pragma unroll
      for (int i = 0; i < S::H_FETCH; ++i)
        *reinterpret_cast<Vec16<T>*>(&sm.stage.h[buf][(tid + i * RNN_TILED_THREADS) / S::ROW_VECS][fetch_k]) =
            h_next[i];
    };

    const int chunks = (H + S::KC - 1) / S::KC;
    fetch(0);
    stash(0);
    __syncthreads();
    for (int c = 0; c < chunks; ++c) {
      const int buf = c & 1;
      if (c + 1 < chunks) fetch((c + 1) * S::KC);
#pragma unroll
      for (int s = 0; s < S::SLICE_VECS; ++s) {
        const int k = (ks * S::SLICE_VECS + s) * S::KV;
        Vec16<T> w[G], h[S::COLS];
#pragma unroll
        for (int g = 0; g < G; ++g) w[g] = *reinterpret_cast<const Vec16<T>*>(&sm.stage.w[buf][g * S::UNITS + u][k]);
#pragma unroll
        for (int bi = 0; bi < S::COLS; ++bi)
          h[bi] = *reinterpret_cast<const Vec16<T>*>(&sm.stage.h[buf][bg + S::BATCH_GROUPS * bi][k]);
#pragma unroll
        for (int e = 0; e < S::KV; ++e)
#pragma unroll
          for (int g = 0; g < G; ++g)
#pragma unroll
            for (int bi = 0; bi < S::COLS; ++bi) acc[g][bi] = fma(w[g].v[e], h[bi].v[e], acc[g][bi]);
      }
      // buf ^ 1 was last read in chunk c - 1, before the previous __syncthreads
      if (c + 1 < chunks) stash(buf ^ 1);
      __syncthreads();  // after the last chunk: the staging buffers are free for part
    }
  }

#pragma unroll
  for (int g = 0; g < G; ++g)
#pragma unroll
    for (int bi = 0; bi < S::COLS; ++bi) sm.part[ks][g][bg + S::BATCH_GROUPS * bi][u] = acc[g][bi];
  __syncthreads();

  // epilogue: one (unit, batch column) cell per thread
  const int eu = tid % S::UNITS, eb = tid / S::UNITS;
  const int j = j0 + eu, b = b0 + eb;
  if (j < H && b < B) {
    T rec[G];
#pragma unroll
    for (int g = 0; g < G; ++g) {
      T v = sm.part[0][g][eb][eu];
#pragma unroll
      for (int s = 1; s < S::KSPLIT; ++s) v += sm.part[s][g][eb][eu];
      rec[g] = v;
    }
    cell(rec, b, j, H);
  }
}

}  // namespace pycnnrnn::cuda

// lstm.cu — one LSTM layer (one direction), torch semantics: gate order i, f, g, o, two biases.
//
// Forward: xproj = x W_ih^T for all T steps in one SGEMM (M = T*B), then one launch per step.
// Both step kernels give each CTA a few hidden units and all four of their gates (rows g*H + j
// of W_hh), so the recurrent product R h_{t-1} and the cell update fuse into one kernel (no
// pre-activation round trip through global memory):
//  - B < 16: lstm_step_fwd (GEMV-shaped), HJ units per CTA. Each warp owns gate rows; lanes
//    stride over k and keep BB batch accumulators in registers; a warp shuffle reduces them into
//    shared memory; then HJ*BB threads apply biases, activations and the cell update.
//  - B >= 16: lstm_step_fwd_tiled (GEMM-shaped), TJ units x TB batch columns per CTA. k-chunks
//    of the W_hh rows and of h_{t-1} are staged in shared memory and each thread accumulates a
//    4 gates x 4 batch columns register tile, so h is no longer re-read for every gate row.
// Training saves the activated gates [T,B,4H] and every cell state [T,B,H].
//
// Backward: per step (t = T-1 .. 0) a fused pointwise kernel (dh = dy_t + R^T-term, dc chain,
// gate pre-activation grads dz_t, dc_{t-1}) and the recurrent dh_{t-1} = dz_t W_hh (rnn_dh.cuh
// for B <= 64, the SGEMM above); after the loop dW_ih = dz^T x, dW_hh = dz_{1..}^T h_{0..T-2} + dz_0^T h0,
// dx = dz W_ih (SGEMM) and db = column sums of dz (deterministic reduction). No atomics:
// results are bit-identical run to run.
#include <type_traits>

#include "core/errors.h"
#include "cuda/common.cuh"
#include "cuda/kernels.h"
#include "cuda/rnn_dh.cuh"

namespace pycnnrnn::cuda {
namespace {

constexpr int HJ = 4;          // hidden units per CTA
constexpr int ROWS = 4 * HJ;   // gate rows per CTA
constexpr int BB = 8;          // batch columns per register pass
constexpr int WARPS = 8;

template <typename T>
__device__ __forceinline__ T sigmoid_(T z) {
  return T(1) / (T(1) + exp(-z));
}

// The cell update of batch row b, unit j (both step kernels): z_g = rec[g] + xproj + biases,
// i, f, o = sigmoid, g = tanh, c = f c_prev + i g, h = o tanh(c); training saves the gates.
template <typename T>
__device__ __forceinline__ void lstm_cell_update(const T rec[4], int b, int j, int H, const T* __restrict__ xp,
                                                 const T* __restrict__ c_prev, const T* __restrict__ b_ih,
                                                 const T* __restrict__ b_hh, T* __restrict__ h_out,
                                                 T* __restrict__ c_out, T* __restrict__ gates) {
  const int64_t H4 = 4LL * H;
  const T* xrow = xp + (int64_t)b * H4;
  T z[4];
#pragma unroll
  for (int g = 0; g < 4; ++g) {
    const int64_t r = (int64_t)g * H + j;
    T v = rec[g] + xrow[r];
    if (b_ih) v += b_ih[r];
    if (b_hh) v += b_hh[r];
    z[g] = v;
  }
  const T ig = sigmoid_(z[0]), fg = sigmoid_(z[1]), gg = tanh(z[2]), og = sigmoid_(z[3]);
  const int64_t e = (int64_t)b * H + j;
  const T cp = c_prev ? c_prev[e] : T(0);
  const T c = fg * cp + ig * gg;
  c_out[e] = c;
  h_out[e] = og * tanh(c);
  if (gates) {
    T* gr = gates + (int64_t)b * H4;
    gr[j] = ig;
    gr[(int64_t)H + j] = fg;
    gr[2LL * H + j] = gg;
    gr[3LL * H + j] = og;
  }
}

template <typename T, bool VEC>
__global__ void __launch_bounds__(WARPS * 32)
    lstm_step_fwd(int B, int H, const T* __restrict__ xp, const T* __restrict__ h_prev,
                  const T* __restrict__ c_prev, const T* __restrict__ R, const T* __restrict__ b_ih,
                  const T* __restrict__ b_hh, T* __restrict__ h_out, T* __restrict__ c_out,
                  T* __restrict__ gates) {
  __shared__ T pre[ROWS][BB];
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int j0 = blockIdx.x * HJ;
  for (int b0 = 0; b0 < B; b0 += BB) {
    for (int lr = warp; lr < ROWS; lr += WARPS) {
      const int g = lr / HJ, j = j0 + lr % HJ;
      T acc[BB];
#pragma unroll
      for (int bb = 0; bb < BB; ++bb) acc[bb] = T(0);
      if (j < H && h_prev != nullptr) {
        const T* rrow = R + ((int64_t)g * H + j) * H;
        const T* hb = h_prev + (int64_t)b0 * H;
        if constexpr (VEC) {
          // float4 along k: R row and h rows are 16-byte aligned, H % 4 == 0
          const float4* r4 = reinterpret_cast<const float4*>(rrow);
          const int H4v = H >> 2;
          const int nb = min(BB, B - b0);
#pragma unroll 2
          for (int k4 = lane; k4 < H4v; k4 += 32) {
            const float4 r = __ldg(r4 + k4);
#pragma unroll
            for (int bb = 0; bb < BB; ++bb) {
              if (bb < nb) {
                const float4 h = *reinterpret_cast<const float4*>(hb + (int64_t)bb * H + 4 * k4);
                T v = acc[bb];
                v = fma(r.x, h.x, v);
                v = fma(r.y, h.y, v);
                v = fma(r.z, h.z, v);
                v = fma(r.w, h.w, v);
                acc[bb] = v;
              }
            }
          }
        } else {
          if (b0 + BB <= B) {
            for (int k = lane; k < H; k += 32) {
              const T r = __ldg(rrow + k);
#pragma unroll
              for (int bb = 0; bb < BB; ++bb) acc[bb] += r * hb[(int64_t)bb * H + k];
            }
          } else {
            for (int k = lane; k < H; k += 32) {
              const T r = __ldg(rrow + k);
#pragma unroll
              for (int bb = 0; bb < BB; ++bb)
                if (b0 + bb < B) acc[bb] += r * hb[(int64_t)bb * H + k];
            }
          }
        }
      }
#pragma unroll
      for (int bb = 0; bb < BB; ++bb) {
        T v = acc[bb];
#pragma unroll
        for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
        acc[bb] = v;
      }
      if (lane == 0) {
#pragma unroll
        for (int bb = 0; bb < BB; ++bb) pre[lr][bb] = acc[bb];
      }
    }
    __syncthreads();
    if (tid < HJ * BB) {
      const int jj = tid % HJ, bb = tid / HJ;
      const int j = j0 + jj, b = b0 + bb;
      if (j < H && b < B) {
        T rec[4];
#pragma unroll
        for (int g = 0; g < 4; ++g) rec[g] = pre[g * HJ + jj][bb];
        lstm_cell_update(rec, b, j, H, xp, c_prev, b_ih, b_hh, h_out, c_out, gates);
      }
    }
    __syncthreads();
  }
}

// lstm_step_fwd_tiled: the forward step for B >= 16, a small GEMM with the cell update as its
// epilogue. (lstm_step_fwd is GEMV-shaped: every gate row re-reads the whole h tile, so at
// larger batch it is bound by L1/L2 loads.) Shapes, with KV = 16 / sizeof(T) elements per
// 16-byte vector:
//   CTA tile: TJ = 8 hidden units with all 4 gates (TROWS = 32 rows g*H + j of W_hh) x TB = 32
//     batch columns; a 1-D grid of ceil(H/TJ) * ceil(B/TB) CTAs, unit tile fastest
//     (H = 512, B = 64: 128 CTAs).
//   k loop: chunks of KC = 16 * KV k (256 bytes of a row: 64 floats, 32 doubles). Shared memory
//     holds two buffers (double buffering) of w[TROWS][LD] (row lr = g * TJ + u) and
//     h[TB][LD] (h_{t-1} rows), both row-major along k with LD = KC + KV: the 16-byte padding
//     makes the 16-byte stores of the staging and the 16-byte reads of the multiply
//     conflict-free. Each thread fetches 2 + 2 vectors of the next chunk into registers (zeros
//     past H, B or the valid units) while the current chunk is multiplied, then stores them:
//     one __syncthreads per chunk.
//   Threads: 256 = KSPLIT (4) k-slices x 64 tile threads. A tile thread owns the 4 gates of unit
//     u x the batch columns bg, bg + 8, bg + 16, bg + 24: a 4x4 register tile, fed by 4 + 4
//     16-byte shared loads per 16 * KV fmas, k ascending through its quarter of every chunk.
//   Epilogue: the k-slice partial tiles go through shared memory (part[KSPLIT][4][TB][TJ], in
//     the staging buffers), summed in slice order; then each of the 256 threads finishes one
//     (unit, batch) cell like lstm_step_fwd: biases, xproj, activations, c/h and the gates.
//   Shared memory: 34816 bytes for float and double.
constexpr int TJ = 8;                                   // hidden units per CTA
constexpr int TROWS = 4 * TJ;                           // gate rows per CTA
constexpr int TB = 32;                                  // batch columns per CTA
constexpr int TBG = TB / 4;                             // batch groups (a tile thread has 4 columns)
constexpr int KSPLIT = 4;                               // k-slices per CTA
constexpr int TILED_THREADS = KSPLIT * TJ * TBG;        // 256
static_assert(TILED_THREADS == TJ * TB, "the epilogue gives each thread one (unit, batch) cell");

template <typename T>
struct alignas(16) Vec16 {  // 16 bytes of consecutive k
  static constexpr int N = 16 / sizeof(T);
  T v[N];
};

template <typename T>
struct TiledShape {
  static constexpr int KV = Vec16<T>::N;
  static constexpr int KC = 16 * KV;                    // k per staged chunk
  static constexpr int LD = KC + KV;                    // padded row stride of the staged chunks
  static constexpr int ROW_VECS = KC / KV;              // vectors per staged row
  static constexpr int SLICE_VECS = ROW_VECS / KSPLIT;  // vectors per k-slice and chunk
  static constexpr int W_FETCH = TROWS * ROW_VECS / TILED_THREADS;  // vectors each thread stages
  static constexpr int H_FETCH = TB * ROW_VECS / TILED_THREADS;
  static_assert(TILED_THREADS % ROW_VECS == 0 && ROW_VECS % KSPLIT == 0, "staging layout");
};

template <typename T>
union alignas(16) TiledSmem {
  struct {
    T w[2][TROWS][TiledShape<T>::LD];
    T h[2][TB][TiledShape<T>::LD];
  } stage;
  T part[KSPLIT][4][TB][TJ];  // k-slice partial sums [slice][gate][batch column][unit]
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

template <typename T, bool VEC>
__global__ void __launch_bounds__(TILED_THREADS)
    lstm_step_fwd_tiled(int B, int H, const T* __restrict__ xp, const T* __restrict__ h_prev,
                        const T* __restrict__ c_prev, const T* __restrict__ R, const T* __restrict__ b_ih,
                        const T* __restrict__ b_hh, T* __restrict__ h_out, T* __restrict__ c_out,
                        T* __restrict__ gates) {
  using S = TiledShape<T>;
  __shared__ TiledSmem<T> sm;
  const int tid = threadIdx.x;
  const int unit_tiles = (H + TJ - 1) / TJ;
  const int j0 = static_cast<int>(blockIdx.x % unit_tiles) * TJ;
  const int b0 = static_cast<int>(blockIdx.x / unit_tiles) * TB;

  // multiply role: k-slice ks, unit u, batch columns bg + TBG * bi
  const int ks = tid / (TJ * TBG), u = tid % TJ, bg = tid / TJ % TBG;
  T acc[4][4] = {};  // [gate][bi]

  if (h_prev != nullptr) {  // else the recurrent term is zero (t = 0 without h0)
    // staging role: vectors tid + i * TILED_THREADS of the chunk, all at k offset fetch_k
    const int fetch_k = tid % S::ROW_VECS * S::KV;
    const T* w_src[S::W_FETCH];
    const T* h_src[S::H_FETCH];
#pragma unroll
    for (int i = 0; i < S::W_FETCH; ++i) {
      const int lr = (tid + i * TILED_THREADS) / S::ROW_VECS, j = j0 + lr % TJ;
      w_src[i] = j < H ? R + ((int64_t)(lr / TJ) * H + j) * H : nullptr;
    }
#pragma unroll
    for (int i = 0; i < S::H_FETCH; ++i) {
      const int b = b0 + (tid + i * TILED_THREADS) / S::ROW_VECS;
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
        *reinterpret_cast<Vec16<T>*>(&sm.stage.w[buf][(tid + i * TILED_THREADS) / S::ROW_VECS][fetch_k]) = w_next[i];
#pragma unroll
      for (int i = 0; i < S::H_FETCH; ++i)
        *reinterpret_cast<Vec16<T>*>(&sm.stage.h[buf][(tid + i * TILED_THREADS) / S::ROW_VECS][fetch_k]) = h_next[i];
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
        Vec16<T> w[4], h[4];
#pragma unroll
        for (int g = 0; g < 4; ++g) w[g] = *reinterpret_cast<const Vec16<T>*>(&sm.stage.w[buf][g * TJ + u][k]);
#pragma unroll
        for (int bi = 0; bi < 4; ++bi)
          h[bi] = *reinterpret_cast<const Vec16<T>*>(&sm.stage.h[buf][bg + TBG * bi][k]);
#pragma unroll
        for (int e = 0; e < S::KV; ++e)
#pragma unroll
          for (int g = 0; g < 4; ++g)
#pragma unroll
            for (int bi = 0; bi < 4; ++bi) acc[g][bi] = fma(w[g].v[e], h[bi].v[e], acc[g][bi]);
      }
      // buf ^ 1 was last read in chunk c - 1, before the previous __syncthreads
      if (c + 1 < chunks) stash(buf ^ 1);
      __syncthreads();  // after the last chunk: the staging buffers are free for part
    }
  }

#pragma unroll
  for (int g = 0; g < 4; ++g)
#pragma unroll
    for (int bi = 0; bi < 4; ++bi) sm.part[ks][g][bg + TBG * bi][u] = acc[g][bi];
  __syncthreads();

  // epilogue: one (unit, batch column) cell per thread
  const int eu = tid % TJ, eb = tid / TJ;
  const int j = j0 + eu, b = b0 + eb;
  if (j < H && b < B) {
    T rec[4];
#pragma unroll
    for (int g = 0; g < 4; ++g) {
      T v = sm.part[0][g][eb][eu];
#pragma unroll
      for (int s = 1; s < KSPLIT; ++s) v += sm.part[s][g][eb][eu];
      rec[g] = v;
    }
    lstm_cell_update(rec, b, j, H, xp, c_prev, b_ih, b_hh, h_out, c_out, gates);
  }
}

template <typename T>
__global__ void lstm_step_bwd_pointwise(int64_t B, int64_t H, const T* __restrict__ dy, T* __restrict__ dh,
                                        T* __restrict__ dc, const T* __restrict__ c_t,
                                        const T* __restrict__ c_prev, const T* __restrict__ gates,
                                        T* __restrict__ dz) {
  const int64_t n = B * H;
  for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n; e += (int64_t)gridDim.x * blockDim.x) {
    const int64_t b = e / H, j = e % H;
    const T* gr = gates + b * 4 * H;
    const T ig = gr[j], fg = gr[H + j], gg = gr[2 * H + j], og = gr[3 * H + j];
    const T dhv = dh[e] + (dy ? dy[e] : T(0));
    const T tc = tanh(c_t[e]);
    const T dcv = dc[e] + dhv * og * (T(1) - tc * tc);
    const T cp = c_prev ? c_prev[e] : T(0);
    T* zr = dz + b * 4 * H;
    zr[j] = dcv * gg * ig * (T(1) - ig);
    zr[H + j] = dcv * cp * fg * (T(1) - fg);
    zr[2 * H + j] = dcv * ig * (T(1) - gg * gg);
    zr[3 * H + j] = dhv * tc * og * (T(1) - og);
    dc[e] = dcv * fg;
  }
}

template <typename T>
void lstm_fwd_t(int dtype, int64_t T_, int64_t B, int64_t I, int64_t H, uintptr_t x, uintptr_t h0, uintptr_t c0,
                uintptr_t w_ih, uintptr_t w_hh, uintptr_t b_ih, uintptr_t b_hh, uintptr_t y, uintptr_t c_all,
                uintptr_t gates, uintptr_t xproj, uintptr_t stream) {
  cudaStream_t s = as_stream(stream);
  const int64_t H4 = 4 * H;
  // xproj[T*B, 4H] = x[T*B, I] W_ih^T
  gemm(dtype, false, true, T_ * B, H4, I, 1.0, x, I, w_ih, I, 0.0, xproj, H4, stream);
  const size_t es = sizeof(T);
  // B >= 16: the register-tiled step kernel; below, the GEMV-shaped one (fewer, fuller CTAs).
  const bool tiled = B >= 16;
  // 16-byte recurrent loads: H % (16 / sizeof(T)) == 0, W_hh, y and h0 16-byte aligned (the
  // GEMV-shaped kernel: float only)
  const bool aligned = w_hh % 16 == 0 && y % 16 == 0 && h0 % 16 == 0;
  const bool vec = tiled ? H % Vec16<T>::N == 0 && aligned : std::is_same<T, float>::value && H % 4 == 0 && aligned;
  auto kern = tiled ? (vec ? lstm_step_fwd_tiled<T, true> : lstm_step_fwd_tiled<T, false>)
                    : (vec ? lstm_step_fwd<T, true> : lstm_step_fwd<T, false>);
  const unsigned grid = static_cast<unsigned>(tiled ? ceil_div(H, TJ) * ceil_div(B, TB) : ceil_div(H, HJ));
  const unsigned threads = tiled ? TILED_THREADS : WARPS * 32;
  for (int64_t t = 0; t < T_; ++t) {
    const T* hp = t == 0 ? as_ptr<const T>(h0) : as_ptr<const T>(y + (t - 1) * B * H * es);
    const T* cp = t == 0 ? as_ptr<const T>(c0) : as_ptr<const T>(c_all + (t - 1) * B * H * es);
    T* gt = gates ? as_ptr<T>(gates + t * B * H4 * es) : nullptr;
    kern<<<grid, threads, 0, s>>>(static_cast<int>(B), static_cast<int>(H), as_ptr<const T>(xproj + t * B * H4 * es),
                                  hp, cp, as_ptr<const T>(w_hh), as_ptr<const T>(b_ih), as_ptr<const T>(b_hh),
                                  as_ptr<T>(y + t * B * H * es), as_ptr<T>(c_all + t * B * H * es), gt);
    PYC_CUDA_LAUNCH_CHECK("lstm_step_fwd");
  }
}

template <typename T>
void lstm_bwd_t(int dtype, int64_t T_, int64_t B, int64_t I, int64_t H, uintptr_t x, uintptr_t h0, uintptr_t c0,
                uintptr_t w_ih, uintptr_t w_hh, uintptr_t y, uintptr_t c_all, uintptr_t gates, uintptr_t dy,
                uintptr_t dh, uintptr_t dc, uintptr_t dx, uintptr_t dw_ih, uintptr_t dw_hh, uintptr_t db,
                uintptr_t dz, uintptr_t stream) {
  cudaStream_t s = as_stream(stream);
  const int64_t H4 = 4 * H;
  const size_t es = sizeof(T);
  const unsigned grid = grid_1d(B * H, 256, 4096);
  for (int64_t t = T_ - 1; t >= 0; --t) {
    const uintptr_t cprev = t == 0 ? c0 : c_all + (t - 1) * B * H * es;
    lstm_step_bwd_pointwise<T><<<grid, 256, 0, s>>>(
        B, H, dy ? as_ptr<const T>(dy + t * B * H * es) : nullptr, as_ptr<T>(dh), as_ptr<T>(dc),
        as_ptr<const T>(c_all + t * B * H * es), as_ptr<const T>(cprev), as_ptr<const T>(gates + t * B * H4 * es),
        as_ptr<T>(dz + t * B * H4 * es));
    PYC_CUDA_LAUNCH_CHECK("lstm_step_bwd_pointwise");
    // dh_{t-1} = dz_t [B,4H] @ W_hh [4H,H]: a dedicated kernel for small B, the SGEMM otherwise
    if (B <= 64) {
      const dim3 g2(static_cast<unsigned>(ceil_div(H, DH_COLS)), static_cast<unsigned>(ceil_div(B, DH_BB)));
      recurrent_dh_kernel<T><<<g2, DH_THREADS, 0, s>>>(static_cast<int>(B), static_cast<int>(H), static_cast<int>(H4),
                                                       as_ptr<const T>(dz + t * B * H4 * es), as_ptr<const T>(w_hh),
                                                       nullptr, as_ptr<T>(dh));
      PYC_CUDA_LAUNCH_CHECK("recurrent_dh_kernel");
    } else {
      gemm(dtype, false, false, B, H, H4, 1.0, dz + t * B * H4 * es, H4, w_hh, H, 0.0, dh, H, stream);
    }
  }
  // dW_ih [4H, I] = dz^T [4H, T*B] @ x [T*B, I]
  gemm(dtype, true, false, H4, I, T_ * B, 1.0, dz, H4, x, I, 0.0, dw_ih, I, stream);
  // dW_hh [4H, H] = dz_{1..T-1}^T y_{0..T-2} + dz_0^T h0
  double beta = 0.0;
  if (T_ > 1) {
    gemm(dtype, true, false, H4, H, (T_ - 1) * B, 1.0, dz + B * H4 * es, H4, y, H, 0.0, dw_hh, H, stream);
    beta = 1.0;
  }
  if (h0) {
    gemm(dtype, true, false, H4, H, B, 1.0, dz, H4, h0, H, beta, dw_hh, H, stream);
  } else if (T_ <= 1) {
    PYC_CUDA_CHECK(cudaMemsetAsync(as_ptr<void>(dw_hh), 0, H4 * H * es, s));
  }
  if (dx) gemm(dtype, false, false, T_ * B, I, H4, 1.0, dz, H4, w_ih, I, 0.0, dx, I, stream);
  if (db) col_sum(dtype, dz, T_ * B, H4, db, false, stream);
}

void check_lstm(int64_t T_, int64_t B, int64_t I, int64_t H) {
  PYC_CHECK(T_ >= 1 && B >= 1 && I >= 1 && H >= 1, "lstm: sizes must be positive, got T=", T_, " B=", B, " I=", I,
            " H=", H);
  PYC_CHECK(H < (1LL << 28) && B < (1LL << 30), "lstm: H or B too large");
}

}  // namespace

void lstm_fwd(int dtype, int64_t T_, int64_t B, int64_t I, int64_t H, uintptr_t x, uintptr_t h0, uintptr_t c0,
              uintptr_t w_ih, uintptr_t w_hh, uintptr_t b_ih, uintptr_t b_hh, uintptr_t y, uintptr_t c_all,
              uintptr_t gates, uintptr_t xproj, uintptr_t stream) {
  check_lstm(T_, B, I, H);
  if (dtype == kFloat32)
    lstm_fwd_t<float>(dtype, T_, B, I, H, x, h0, c0, w_ih, w_hh, b_ih, b_hh, y, c_all, gates, xproj, stream);
  else if (dtype == kFloat64)
    lstm_fwd_t<double>(dtype, T_, B, I, H, x, h0, c0, w_ih, w_hh, b_ih, b_hh, y, c_all, gates, xproj, stream);
  else
    PYC_CHECK(false, "lstm: dtype must be float32 or float64");
}

void lstm_bwd(int dtype, int64_t T_, int64_t B, int64_t I, int64_t H, uintptr_t x, uintptr_t h0, uintptr_t c0,
              uintptr_t w_ih, uintptr_t w_hh, uintptr_t y, uintptr_t c_all, uintptr_t gates, uintptr_t dy,
              uintptr_t dh, uintptr_t dc, uintptr_t dx, uintptr_t dw_ih, uintptr_t dw_hh, uintptr_t db,
              uintptr_t dz, uintptr_t stream) {
  check_lstm(T_, B, I, H);
  PYC_CHECK(gates != 0 && c_all != 0 && dh != 0 && dc != 0 && dz != 0 && dw_ih != 0 && dw_hh != 0,
            "lstm_backward: gates, c_all, dh, dc, dz, dw_ih and dw_hh are required");
  if (dtype == kFloat32)
    lstm_bwd_t<float>(dtype, T_, B, I, H, x, h0, c0, w_ih, w_hh, y, c_all, gates, dy, dh, dc, dx, dw_ih, dw_hh, db,
                      dz, stream);
  else if (dtype == kFloat64)
    lstm_bwd_t<double>(dtype, T_, B, I, H, x, h0, c0, w_ih, w_hh, y, c_all, gates, dy, dh, dc, dx, dw_ih, dw_hh,
                       db, dz, stream);
  else
    PYC_CHECK(false, "lstm: dtype must be float32 or float64");
}

}  // namespace pycnnrnn::cuda

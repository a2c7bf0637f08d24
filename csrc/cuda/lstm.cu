// lstm.cu — one LSTM layer (one direction), torch semantics: gate order i, f, g, o, two biases.
//
// Forward: xproj = x W_ih^T for all T steps in one SGEMM (M = T*B), then one launch per step.
// Both step kernels give each CTA a few hidden units and all four of their gates (rows g*H + j
// of W_hh), so the recurrent product R h_{t-1} and the cell update fuse into one kernel (no
// pre-activation round trip through global memory):
//  - B < 16: lstm_step_fwd (GEMV-shaped), HJ units per CTA. Each warp owns gate rows; lanes
//    stride over k and keep BB batch accumulators in registers; a warp shuffle reduces them into
//    shared memory; then HJ*BB threads apply biases, activations and the cell update.
//  - B >= 16: rnn_step_fwd_tiled (rnn_step_tiled.cuh, shared with gru.cu; GEMM-shaped) with
//    LstmCell as its epilogue, 8 units (32 gate rows) x 32 batch columns per CTA. k-chunks of
//    the W_hh rows and of h_{t-1} are staged in shared memory and each thread accumulates a
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
#include "cuda/rnn_step_tiled.cuh"

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

// The epilogue of the register-tiled step (rnn_step_tiled.cuh): lstm_cell_update on this
// step's tensors.
template <typename T>
struct LstmCell {
  static constexpr int GATES = 4;
  const T* xp;
  const T* c_prev;
  const T* b_ih;
  const T* b_hh;
  T* h_out;
  T* c_out;
  T* gates;
  __device__ __forceinline__ void operator()(const T rec[4], int b, int j, int H) const {
    lstm_cell_update(rec, b, j, H, xp, c_prev, b_ih, b_hh, h_out, c_out, gates);
  }
};

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
  const bool tiled = B >= RNN_TILED_MIN_BATCH;
  // 16-byte recurrent loads: H % (16 / sizeof(T)) == 0, W_hh, y and h0 16-byte aligned (the
  // GEMV-shaped kernel: float only)
  const bool aligned = w_hh % 16 == 0 && y % 16 == 0 && h0 % 16 == 0;
  const bool vec = tiled ? H % Vec16<T>::N == 0 && aligned : std::is_same<T, float>::value && H % 4 == 0 && aligned;
  using Tile = RnnTiledShape<T, LstmCell<T>::GATES>;
  auto tiled_kern = vec ? rnn_step_fwd_tiled<T, true, LstmCell<T>> : rnn_step_fwd_tiled<T, false, LstmCell<T>>;
  auto gemv_kern = lstm_step_fwd<T, false>;
  if constexpr (std::is_same<T, float>::value) {  // its float4 loads exist for float only
    if (vec) gemv_kern = lstm_step_fwd<T, true>;
  }
  const unsigned tiled_grid = static_cast<unsigned>(ceil_div(H, Tile::UNITS) * ceil_div(B, Tile::BATCH));
  const unsigned gemv_grid = static_cast<unsigned>(ceil_div(H, HJ));
  for (int64_t t = 0; t < T_; ++t) {
    const T* hp = t == 0 ? as_ptr<const T>(h0) : as_ptr<const T>(y + (t - 1) * B * H * es);
    const T* cp = t == 0 ? as_ptr<const T>(c0) : as_ptr<const T>(c_all + (t - 1) * B * H * es);
    const T* xp = as_ptr<const T>(xproj + t * B * H4 * es);
    T* ht = as_ptr<T>(y + t * B * H * es);
    T* ct = as_ptr<T>(c_all + t * B * H * es);
    T* gt = gates ? as_ptr<T>(gates + t * B * H4 * es) : nullptr;
    if (tiled) {
      const LstmCell<T> cell{xp, cp, as_ptr<const T>(b_ih), as_ptr<const T>(b_hh), ht, ct, gt};
      tiled_kern<<<tiled_grid, RNN_TILED_THREADS, 0, s>>>(static_cast<int>(B), static_cast<int>(H), hp,
                                                          as_ptr<const T>(w_hh), cell);
    } else {
      gemv_kern<<<gemv_grid, WARPS * 32, 0, s>>>(static_cast<int>(B), static_cast<int>(H), xp, hp, cp,
                                                 as_ptr<const T>(w_hh), as_ptr<const T>(b_ih), as_ptr<const T>(b_hh),
                                                 ht, ct, gt);
    }
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

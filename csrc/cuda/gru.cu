// gru.cu — one GRU layer (one direction), torch semantics: gate order r, z, n, two biases,
// n = tanh(W_in x + b_in + r * (W_hn h + b_hn)) ("linear before reset"), h' = (1-z) n + z h.
//
// Same machinery as lstm.cu: xproj = x W_ih^T over all T steps in one SGEMM, then one fused
// launch per step: the recurrent product for a CTA's hidden units and all three of their gates,
// then the cell update (gru_cell_update, one place for the formula):
//  - B < 16: gru_step_fwd (GEMV-shaped), HJ units per CTA, a warp per gate row.
//  - B >= 16: rnn_step_fwd_tiled (rnn_step_tiled.cuh, shared with lstm.cu; GEMM-shaped) with
//    GruCell as its epilogue, 16 units (48 gate rows) x 16 batch columns per CTA, each thread a
//    3 gates x 4 batch columns register tile over shared-memory k-chunks of W_hh and h_{t-1}.
// Training saves [r, z, n, W_hn h + b_hn] per step.
//
// Backward per step: a fused pointwise kernel (gate grads on the input side and the recurrent
// side, and the direct dh * z term), then dh_{t-1} = dzh_t W_hh + direct (rnn_dh.cuh at
// B <= 64, else the SGEMM); after the loop the bulk dW_ih, dW_hh, dx GEMMs and column sums for
// both biases.
#include <type_traits>

#include "core/errors.h"
#include "cuda/common.cuh"
#include "cuda/kernels.h"
#include "cuda/rnn_dh.cuh"
#include "cuda/rnn_step_tiled.cuh"

namespace pycnnrnn::cuda {
namespace {

constexpr int HJ = 4;          // hidden units per CTA
constexpr int ROWS = 3 * HJ;   // gate rows per CTA
constexpr int BB = 8;          // batch columns per register pass
constexpr int WARPS = 8;

template <typename T>
__device__ __forceinline__ T sigmoid_(T z) {
  return T(1) / (T(1) + exp(-z));
}

// The cell update of batch row b, unit j (both step kernels), rec[g] = (h_{t-1} W_hh^T)[b, g*H + j]:
// r, z = sigmoid(x_g + b_ig + rec[g] + b_hg), n = tanh(x_n + b_in + r (rec[2] + b_hn)),
// h = (1 - z) n + z h_{t-1}; training saves [r, z, n, rec[2] + b_hn].
template <typename T>
__device__ __forceinline__ void gru_cell_update(const T rec[3], int b, int j, int H, const T* __restrict__ xp,
                                                const T* __restrict__ h_prev, const T* __restrict__ b_ih,
                                                const T* __restrict__ b_hh, T* __restrict__ h_out,
                                                T* __restrict__ saved) {
  const T* xrow = xp + (int64_t)b * 3 * H;
  T hh[3], xx[3];
#pragma unroll
  for (int g = 0; g < 3; ++g) {
    const int64_t r = (int64_t)g * H + j;
    hh[g] = rec[g] + (b_hh ? b_hh[r] : T(0));
    xx[g] = xrow[r] + (b_ih ? b_ih[r] : T(0));
  }
  const T rg = sigmoid_(xx[0] + hh[0]), zg = sigmoid_(xx[1] + hh[1]);
  const T ng = tanh(xx[2] + rg * hh[2]);
  const int64_t e = (int64_t)b * H + j;
  const T hp = h_prev ? h_prev[e] : T(0);
  h_out[e] = (T(1) - zg) * ng + zg * hp;
  if (saved) {
    T* sr = saved + (int64_t)b * 4 * H;
    sr[j] = rg;
    sr[(int64_t)H + j] = zg;
    sr[2LL * H + j] = ng;
    sr[3LL * H + j] = hh[2];
  }
}

// The epilogue of the register-tiled step (rnn_step_tiled.cuh): gru_cell_update on this step's
// tensors.
template <typename T>
struct GruCell {
  static constexpr int GATES = 3;
  const T* xp;
  const T* h_prev;
  const T* b_ih;
  const T* b_hh;
  T* h_out;
  T* saved;
  __device__ __forceinline__ void operator()(const T rec[3], int b, int j, int H) const {
    gru_cell_update(rec, b, j, H, xp, h_prev, b_ih, b_hh, h_out, saved);
  }
};

template <typename T>
__global__ void __launch_bounds__(WARPS * 32)
    gru_step_fwd(int B, int H, const T* __restrict__ xp, const T* __restrict__ h_prev, const T* __restrict__ R,
                 const T* __restrict__ b_ih, const T* __restrict__ b_hh, T* __restrict__ h_out,
                 T* __restrict__ saved) {
  __shared__ T pre[ROWS][BB];
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int j0 = blockIdx.x * HJ;
  for (int b0 = 0; b0 < B; b0 += BB) {
    const int nb = min(BB, B - b0);
    for (int lr = warp; lr < ROWS; lr += WARPS) {
      const int g = lr / HJ, j = j0 + lr % HJ;
      T acc[BB];
#pragma unroll
      for (int bb = 0; bb < BB; ++bb) acc[bb] = T(0);
      if (j < H && h_prev != nullptr) {
        const T* rrow = R + ((int64_t)g * H + j) * H;
        const T* hb = h_prev + (int64_t)b0 * H;
        for (int k = lane; k < H; k += 32) {
          const T r = __ldg(rrow + k);
#pragma unroll
          for (int bb = 0; bb < BB; ++bb)
            if (bb < nb) acc[bb] += r * hb[(int64_t)bb * H + k];
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
        T rec[3];
#pragma unroll
        for (int g = 0; g < 3; ++g) rec[g] = pre[g * HJ + jj][bb];
        gru_cell_update(rec, b, j, H, xp, h_prev, b_ih, b_hh, h_out, saved);
      }
    }
    __syncthreads();
  }
}

template <typename T>
__global__ void gru_step_bwd_pointwise(int64_t B, int64_t H, const T* __restrict__ dy, const T* __restrict__ dh,
                                       const T* __restrict__ h_prev, const T* __restrict__ saved,
                                       T* __restrict__ dxg, T* __restrict__ dhg, T* __restrict__ dhd) {
  const int64_t n = B * H;
  for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n; e += (int64_t)gridDim.x * blockDim.x) {
    const int64_t b = e / H, j = e % H;
    const T* sr = saved + b * 4 * H;
    const T rg = sr[j], zg = sr[H + j], ng = sr[2 * H + j], hn = sr[3 * H + j];
    const T dht = dh[e] + (dy ? dy[e] : T(0));
    const T hp = h_prev ? h_prev[e] : T(0);
    const T dn_pre = dht * (T(1) - zg) * (T(1) - ng * ng);
    const T dz_pre = dht * (hp - ng) * zg * (T(1) - zg);
    const T dr_pre = dn_pre * hn * rg * (T(1) - rg);
    T* xr = dxg + b * 3 * H;
    T* hr = dhg + b * 3 * H;
    xr[j] = dr_pre;
    xr[H + j] = dz_pre;
    xr[2 * H + j] = dn_pre;
    hr[j] = dr_pre;
    hr[H + j] = dz_pre;
    hr[2 * H + j] = dn_pre * rg;
    dhd[e] = dht * zg;
  }
}

template <typename T>
void gru_fwd_t(int dtype, int64_t T_, int64_t B, int64_t I, int64_t H, uintptr_t x, uintptr_t h0, uintptr_t w_ih,
               uintptr_t w_hh, uintptr_t b_ih, uintptr_t b_hh, uintptr_t y, uintptr_t saved, uintptr_t xproj,
               uintptr_t stream) {
  cudaStream_t s = as_stream(stream);
  const int64_t H3 = 3 * H;
  const size_t es = sizeof(T);
  gemm(dtype, false, true, T_ * B, H3, I, 1.0, x, I, w_ih, I, 0.0, xproj, H3, stream);
  // B >= 16: the register-tiled step kernel (16-byte recurrent loads when H % (16 / sizeof(T))
  // == 0 and W_hh, y and h0 are 16-byte aligned); below, the GEMV-shaped one.
  const bool tiled = B >= RNN_TILED_MIN_BATCH;
  const bool vec = H % Vec16<T>::N == 0 && w_hh % 16 == 0 && y % 16 == 0 && h0 % 16 == 0;
  using Tile = RnnTiledShape<T, GruCell<T>::GATES>;
  auto tiled_kern = vec ? rnn_step_fwd_tiled<T, true, GruCell<T>> : rnn_step_fwd_tiled<T, false, GruCell<T>>;
  const unsigned tiled_grid = static_cast<unsigned>(ceil_div(H, Tile::UNITS) * ceil_div(B, Tile::BATCH));
  const unsigned gemv_grid = static_cast<unsigned>(ceil_div(H, HJ));
  for (int64_t t = 0; t < T_; ++t) {
    const T* hp = t == 0 ? as_ptr<const T>(h0) : as_ptr<const T>(y + (t - 1) * B * H * es);
    const T* xp = as_ptr<const T>(xproj + t * B * H3 * es);
    T* ht = as_ptr<T>(y + t * B * H * es);
    T* sv = saved ? as_ptr<T>(saved + t * B * 4 * H * es) : nullptr;
    if (tiled) {
      const GruCell<T> cell{xp, hp, as_ptr<const T>(b_ih), as_ptr<const T>(b_hh), ht, sv};
      tiled_kern<<<tiled_grid, RNN_TILED_THREADS, 0, s>>>(static_cast<int>(B), static_cast<int>(H), hp,
                                                          as_ptr<const T>(w_hh), cell);
    } else {
      gru_step_fwd<T><<<gemv_grid, WARPS * 32, 0, s>>>(static_cast<int>(B), static_cast<int>(H), xp, hp,
                                                       as_ptr<const T>(w_hh), as_ptr<const T>(b_ih),
                                                       as_ptr<const T>(b_hh), ht, sv);
    }
    PYC_CUDA_LAUNCH_CHECK("gru_step_fwd");
  }
}

template <typename T>
void gru_bwd_t(int dtype, int64_t T_, int64_t B, int64_t I, int64_t H, uintptr_t x, uintptr_t h0, uintptr_t w_ih,
               uintptr_t w_hh, uintptr_t y, uintptr_t saved, uintptr_t dy, uintptr_t dh, uintptr_t dx,
               uintptr_t dw_ih, uintptr_t dw_hh, uintptr_t db_ih, uintptr_t db_hh, uintptr_t dxg, uintptr_t dhg,
               uintptr_t dhd, uintptr_t stream) {
  cudaStream_t s = as_stream(stream);
  const int64_t H3 = 3 * H;
  const size_t es = sizeof(T);
  const unsigned grid = grid_1d(B * H, 256, 4096);
  for (int64_t t = T_ - 1; t >= 0; --t) {
    const uintptr_t hprev = t == 0 ? h0 : y + (t - 1) * B * H * es;
    gru_step_bwd_pointwise<T><<<grid, 256, 0, s>>>(
        B, H, dy ? as_ptr<const T>(dy + t * B * H * es) : nullptr, as_ptr<const T>(dh), as_ptr<const T>(hprev),
        as_ptr<const T>(saved + t * B * 4 * H * es), as_ptr<T>(dxg + t * B * H3 * es), as_ptr<T>(dhg + t * B * H3 * es),
        as_ptr<T>(dhd));
    PYC_CUDA_LAUNCH_CHECK("gru_step_bwd_pointwise");
    if (B <= 64) {
      const dim3 g2(static_cast<unsigned>(ceil_div(H, DH_COLS)), static_cast<unsigned>(ceil_div(B, DH_BB)));
      recurrent_dh_kernel<T><<<g2, DH_THREADS, 0, s>>>(static_cast<int>(B), static_cast<int>(H), static_cast<int>(H3),
                                                       as_ptr<const T>(dhg + t * B * H3 * es), as_ptr<const T>(w_hh),
                                                       as_ptr<const T>(dhd), as_ptr<T>(dh));
      PYC_CUDA_LAUNCH_CHECK("recurrent_dh_kernel");
    } else {
      PYC_CUDA_CHECK(cudaMemcpyAsync(as_ptr<void>(dh), as_ptr<const void>(dhd), B * H * es, cudaMemcpyDeviceToDevice, s));
      gemm(dtype, false, false, B, H, H3, 1.0, dhg + t * B * H3 * es, H3, w_hh, H, 1.0, dh, H, stream);
    }
  }
  gemm(dtype, true, false, H3, I, T_ * B, 1.0, dxg, H3, x, I, 0.0, dw_ih, I, stream);
  double beta = 0.0;
  if (T_ > 1) {
    gemm(dtype, true, false, H3, H, (T_ - 1) * B, 1.0, dhg + B * H3 * es, H3, y, H, 0.0, dw_hh, H, stream);
    beta = 1.0;
  }
  if (h0) {
    gemm(dtype, true, false, H3, H, B, 1.0, dhg, H3, h0, H, beta, dw_hh, H, stream);
  } else if (T_ <= 1) {
    PYC_CUDA_CHECK(cudaMemsetAsync(as_ptr<void>(dw_hh), 0, H3 * H * es, s));
  }
  if (dx) gemm(dtype, false, false, T_ * B, I, H3, 1.0, dxg, H3, w_ih, I, 0.0, dx, I, stream);
  if (db_ih) col_sum(dtype, dxg, T_ * B, H3, db_ih, false, stream);
  if (db_hh) col_sum(dtype, dhg, T_ * B, H3, db_hh, false, stream);
}

void check_gru(int64_t T_, int64_t B, int64_t I, int64_t H) {
  PYC_CHECK(T_ >= 1 && B >= 1 && I >= 1 && H >= 1, "gru: sizes must be positive, got T=", T_, " B=", B, " I=", I,
            " H=", H);
  PYC_CHECK(H < (1LL << 28) && B < (1LL << 30), "gru: H or B too large");
}

}  // namespace

void gru_fwd(int dtype, int64_t T_, int64_t B, int64_t I, int64_t H, uintptr_t x, uintptr_t h0, uintptr_t w_ih,
             uintptr_t w_hh, uintptr_t b_ih, uintptr_t b_hh, uintptr_t y, uintptr_t saved, uintptr_t xproj,
             uintptr_t stream) {
  check_gru(T_, B, I, H);
  if (dtype == kFloat32) gru_fwd_t<float>(dtype, T_, B, I, H, x, h0, w_ih, w_hh, b_ih, b_hh, y, saved, xproj, stream);
  else if (dtype == kFloat64) gru_fwd_t<double>(dtype, T_, B, I, H, x, h0, w_ih, w_hh, b_ih, b_hh, y, saved, xproj, stream);
  else PYC_CHECK(false, "gru: dtype must be float32 or float64");
}

void gru_bwd(int dtype, int64_t T_, int64_t B, int64_t I, int64_t H, uintptr_t x, uintptr_t h0, uintptr_t w_ih,
             uintptr_t w_hh, uintptr_t y, uintptr_t saved, uintptr_t dy, uintptr_t dh, uintptr_t dx, uintptr_t dw_ih,
             uintptr_t dw_hh, uintptr_t db_ih, uintptr_t db_hh, uintptr_t dxg, uintptr_t dhg, uintptr_t dhd,
             uintptr_t stream) {
  check_gru(T_, B, I, H);
  PYC_CHECK(saved != 0 && dh != 0 && dxg != 0 && dhg != 0 && dhd != 0 && dw_ih != 0 && dw_hh != 0,
            "gru_backward: saved, dh, dw_ih, dw_hh and the workspaces are required");
  if (dtype == kFloat32)
    gru_bwd_t<float>(dtype, T_, B, I, H, x, h0, w_ih, w_hh, y, saved, dy, dh, dx, dw_ih, dw_hh, db_ih, db_hh, dxg, dhg,
                     dhd, stream);
  else if (dtype == kFloat64)
    gru_bwd_t<double>(dtype, T_, B, I, H, x, h0, w_ih, w_hh, y, saved, dy, dh, dx, dw_ih, dw_hh, db_ih, db_hh, dxg,
                      dhg, dhd, stream);
  else
    PYC_CHECK(false, "gru: dtype must be float32 or float64");
}

}  // namespace pycnnrnn::cuda

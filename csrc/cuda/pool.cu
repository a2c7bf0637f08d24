// pool.cu — max_pool2d forward (with or without int64 indices) and backward on NCHW.
//
// Semantics are torch's (aten/src/ATen/native/cpu/MaxPoolKernel.cpp): implicit padding is
// -inf, the scan is row-major inside the window, an element replaces the running max when
// (val > max) || isnan(val) — ties keep the first max, the last NaN wins — and the index
// starts at the first valid (non-padding) window position. Indices are flat per (n, c) plane:
// ih * W + iw.
//
// Backward is a gather, not a scatter: each input element walks the outputs whose window
// covers it (ascending output order, the order torch's CPU loop accumulates in) and sums the
// gradients whose saved index points at it. No atomics, every element of grad_input written
// once, bit-for-bit deterministic, no zero-fill pass.
#include <algorithm>
#include <cmath>

#include <type_traits>

#include "core/errors.h"
#include "core/shapes.h"
#include "cuda/common.cuh"
#include "cuda/kernels.h"

namespace pycnnrnn::cuda {
namespace {

struct PoolGeom {
  int64_t planes;  // N * C
  int H, W, OH, OW;
  int kH, kW, sH, sW, pH, pW, dH, dW;
};

template <typename T>
__device__ __forceinline__ bool pool_better(T v, T m) {
  return (v > m) || isnan(v);
}

template <typename T, bool WITH_IDX>
__global__ void max_pool2d_fwd_generic(const T* __restrict__ x, T* __restrict__ y,
                                       int64_t* __restrict__ idx, PoolGeom g) {
  const int64_t total = g.planes * g.OH * g.OW;
  for (int64_t o = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; o < total;
       o += (int64_t)gridDim.x * blockDim.x) {
    const int ow = static_cast<int>(o % g.OW);
    const int64_t t = o / g.OW;
    const int oh = static_cast<int>(t % g.OH);
    const int64_t plane = t / g.OH;
    int ih0 = oh * g.sH - g.pH;
    int iw0 = ow * g.sW - g.pW;
    const int ih1 = min(ih0 + (g.kH - 1) * g.dH + 1, g.H);
    const int iw1 = min(iw0 + (g.kW - 1) * g.dW + 1, g.W);
    while (ih0 < 0) ih0 += g.dH;
    while (iw0 < 0) iw0 += g.dW;
    const T* xp = x + plane * (int64_t)g.H * g.W;
    int64_t best_i = (int64_t)ih0 * g.W + iw0;
    T best = -INFINITY;
    for (int ih = ih0; ih < ih1; ih += g.dH) {
      for (int iw = iw0; iw < iw1; iw += g.dW) {
        const int64_t i = (int64_t)ih * g.W + iw;
        const T v = xp[i];
        if (pool_better(v, best)) {
          best = v;
          best_i = i;
        }
      }
    }
    y[o] = best;
    if (WITH_IDX) idx[o] = best_i;
  }
}

// 2x2 stride 2, no padding, dilation 1, every window inside the input, W even, x 8-byte
// aligned: two float2 row loads per output (a warp reads 2 x 256 contiguous bytes).
template <bool WITH_IDX>
__global__ void max_pool2d_fwd_2x2(const float* __restrict__ x, float* __restrict__ y,
                                   int64_t* __restrict__ idx, PoolGeom g) {
  const int64_t total = g.planes * g.OH * g.OW;
  for (int64_t o = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; o < total;
       o += (int64_t)gridDim.x * blockDim.x) {
    const int ow = static_cast<int>(o % g.OW);
    const int64_t t = o / g.OW;
    const int oh = static_cast<int>(t % g.OH);
    const int64_t plane = t / g.OH;
    const int64_t r0 = (int64_t)(2 * oh) * g.W + 2 * ow;
    const float* xp = x + plane * (int64_t)g.H * g.W;
    const float2 a = __ldg(reinterpret_cast<const float2*>(xp + r0));
    const float2 b = __ldg(reinterpret_cast<const float2*>(xp + r0 + g.W));
    float best = a.x;
    int64_t bi = r0;
    // scanning from -inf, the first element always becomes the max (or stays -inf == a.x)
    if (pool_better(a.y, best)) { best = a.y; bi = r0 + 1; }
    if (pool_better(b.x, best)) { best = b.x; bi = r0 + g.W; }
    if (pool_better(b.y, best)) { best = b.y; bi = r0 + g.W + 1; }
    y[o] = best;
    if (WITH_IDX) idx[o] = bi;
  }
}

// Same window class, W % 4 == 0 and OW even, 16-byte aligned x: two adjacent outputs per
// thread from two float4 row loads; float2 value store and one 16-byte index store.
template <bool WITH_IDX>
__global__ void max_pool2d_fwd_2x2_pair(const float* __restrict__ x, float* __restrict__ y,
                                        int64_t* __restrict__ idx, PoolGeom g) {
  const int OW2 = g.OW >> 1;
  const int64_t total = g.planes * g.OH * OW2;
  for (int64_t o = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; o < total;
       o += (int64_t)gridDim.x * blockDim.x) {
    const int ow2 = static_cast<int>(o % OW2);
    const int64_t t = o / OW2;
    const int oh = static_cast<int>(t % g.OH);
    const int64_t plane = t / g.OH;
    const int64_t r0 = (int64_t)(2 * oh) * g.W + 4 * ow2;
    const float* xp = x + plane * (int64_t)g.H * g.W;
    const float4 a = __ldg(reinterpret_cast<const float4*>(xp + r0));
    const float4 b = __ldg(reinterpret_cast<const float4*>(xp + r0 + g.W));
    float m0 = a.x, m1 = a.z;
    int64_t i0 = r0, i1 = r0 + 2;
    if (pool_better(a.y, m0)) { m0 = a.y; i0 = r0 + 1; }
    if (pool_better(a.w, m1)) { m1 = a.w; i1 = r0 + 3; }
    if (pool_better(b.x, m0)) { m0 = b.x; i0 = r0 + g.W; }
    if (pool_better(b.z, m1)) { m1 = b.z; i1 = r0 + g.W + 2; }
    if (pool_better(b.y, m0)) { m0 = b.y; i0 = r0 + g.W + 1; }
    if (pool_better(b.w, m1)) { m1 = b.w; i1 = r0 + g.W + 3; }
    const int64_t out = (plane * g.OH + oh) * (int64_t)g.OW + 2 * ow2;
    *reinterpret_cast<float2*>(y + out) = make_float2(m0, m1);
    if (WITH_IDX) *reinterpret_cast<longlong2*>(idx + out) = make_longlong2(i0, i1);
  }
}

// Outputs o (along one axis) whose window covers input position i: o * st - pad + r * dil == i
// for some tap r in [0, k). Candidates are lo..hi; with dilation > 1 a candidate also needs
// (i + pad - o * st) % dil == 0.
__device__ __forceinline__ void covering_outputs(int i, int pad, int k, int st, int dil, int n_out, int* lo,
                                                 int* hi) {
  const int first = i + pad - (k - 1) * dil;  // o * st >= first
  *lo = first <= 0 ? 0 : (first + st - 1) / st;
  *hi = min(n_out - 1, (i + pad) / st);
}

// Overlapping (or padded, dilated) windows: each input element sums the gradients of the
// outputs whose window covers it and whose saved index points at it, in ascending output
// order like torch's CPU loop. Grid: x covers W (one input column per thread, its output
// columns decoded once), y strides over the planes * H input rows.
template <typename T>
__global__ void max_pool2d_bwd_gather(const T* __restrict__ gy, const int64_t* __restrict__ idx,
                                      T* __restrict__ gx, PoolGeom g) {
  const int iw = blockIdx.x * blockDim.x + threadIdx.x;
  if (iw >= g.W) return;
  int ow_lo, ow_hi;
  covering_outputs(iw, g.pW, g.kW, g.sW, g.dW, g.OW, &ow_lo, &ow_hi);
  const int64_t rows = g.planes * g.H;
  // (plane, ih) of this thread's row, advanced by gridDim.y rows per pass without a division
  const int step_h = static_cast<int>(gridDim.y % g.H);
  const int64_t step_planes = gridDim.y / g.H;
  int64_t plane = blockIdx.y / g.H;
  int ih = static_cast<int>(blockIdx.y % g.H);
  for (int64_t row = blockIdx.y; row < rows; row += gridDim.y) {
    int oh_lo, oh_hi;
    covering_outputs(ih, g.pH, g.kH, g.sH, g.dH, g.OH, &oh_lo, &oh_hi);
    const int64_t self = (int64_t)ih * g.W + iw;
    const int64_t obase = plane * (int64_t)g.OH * g.OW;
    T acc = T(0);
    for (int oh = oh_lo; oh <= oh_hi; ++oh) {
      if (g.dH != 1 && (ih + g.pH - oh * g.sH) % g.dH != 0) continue;
      for (int ow = ow_lo; ow <= ow_hi; ++ow) {
        if (g.dW != 1 && (iw + g.pW - ow * g.sW) % g.dW != 0) continue;
        const int64_t o = obase + (int64_t)oh * g.OW + ow;
        if (idx[o] == self) acc += gy[o];
      }
    }
    gx[row * g.W + iw] = acc;
    ih += step_h;
    plane += step_planes;
    if (ih >= g.H) {
      ih -= g.H;
      ++plane;
    }
  }
}

// Non-overlapping windows (stride == kernel, no padding or dilation, every window inside the
// input: VGG's 2x2/2): one thread per output writes its whole kH x kW window, gy where the saved
// index points and 0 elsewhere, and the threads of the last output row / column also zero the
// input rows / columns no window covers. Each input element lies in at most one window, so this
// equals the gather above, with one read of idx and gy per output and no division per element.
// Grid: x covers OW (one thread per output column), y strides over the planes * OH output rows.
template <typename T>
__global__ void max_pool2d_bwd_window(const T* __restrict__ gy, const int64_t* __restrict__ idx,
                                      T* __restrict__ gx, PoolGeom g) {
  const int ow = blockIdx.x * blockDim.x + threadIdx.x;
  if (ow >= g.OW) return;
  const int64_t out_rows = g.planes * g.OH;
  for (int64_t orow = blockIdx.y; orow < out_rows; orow += gridDim.y) {
    const int64_t plane = orow / g.OH;
    const int oh = static_cast<int>(orow - plane * g.OH);
    const int64_t o = orow * g.OW + ow;
    const int64_t target = idx[o];
    const T v = gy[o];
    T* gx_plane = gx + plane * (int64_t)g.H * g.W;
    const int ih_win = (oh + 1) * g.kH, iw_win = (ow + 1) * g.kW;  // end of this output's window
    const int ih_end = oh == g.OH - 1 ? g.H : ih_win;  // the last row / column also takes the uncovered rest
    const int iw_end = ow == g.OW - 1 ? g.W : iw_win;
    for (int ih = oh * g.kH; ih < ih_end; ++ih) {
      for (int iw = ow * g.kW; iw < iw_end; ++iw) {
        const int64_t self = (int64_t)ih * g.W + iw;
        const bool in_window = ih < ih_win && iw < iw_win;
        gx_plane[self] = (in_window && self == target) ? v : T(0);
      }
    }
  }
}

PoolGeom make_geom(int64_t planes, int64_t H, int64_t W, int64_t kH, int64_t kW, int64_t sH,
                   int64_t sW, int64_t pH, int64_t pW, int64_t dH, int64_t dW, bool ceil_mode) {
  PYC_CHECK(kH > 0 && kW > 0, "kernel_size must be positive, got (", kH, ", ", kW, ")");
  PYC_CHECK(sH > 0 && sW > 0, "stride must be positive, got (", sH, ", ", sW, ")");
  PYC_CHECK(dH > 0 && dW > 0, "dilation must be positive, got (", dH, ", ", dW, ")");
  PYC_CHECK(pH >= 0 && pW >= 0 && pH <= kH / 2 && pW <= kW / 2,
            "pad should be at most half of kernel size, got padding (", pH, ", ", pW, ")");
  PYC_CHECK(H > 0 && W > 0 && H < (1LL << 31) / 2 && W < (1LL << 31) / 2, "input H, W invalid: ", H, ", ", W);
  const int64_t OH = pool_output_size(H, kH, sH, pH, dH, ceil_mode);
  const int64_t OW = pool_output_size(W, kW, sW, pW, dW, ceil_mode);
  PYC_CHECK(OH >= 1 && OW >= 1, "Output size is too small: (", OH, ", ", OW, ")");
  PoolGeom g;
  g.planes = planes;
  g.H = (int)H; g.W = (int)W; g.OH = (int)OH; g.OW = (int)OW;
  g.kH = (int)kH; g.kW = (int)kW; g.sH = (int)sH; g.sW = (int)sW;
  g.pH = (int)pH; g.pW = (int)pW; g.dH = (int)dH; g.dW = (int)dW;
  return g;
}

template <typename T>
void pool_fwd_t(const PoolGeom& g, uintptr_t x, uintptr_t y, uintptr_t idx, cudaStream_t s) {
  const int64_t total = g.planes * g.OH * g.OW;
  if (total == 0) return;
  const int threads = 256;
  const unsigned blocks = grid_1d(total, threads);
  const bool fast = std::is_same<T, float>::value && g.kH == 2 && g.kW == 2 && g.sH == 2 &&
                    g.sW == 2 && g.pH == 0 && g.pW == 0 && g.dH == 1 && g.dW == 1 &&
                    2 * g.OH <= g.H && 2 * g.OW <= g.W && g.W % 2 == 0 && x % 8 == 0;
  if constexpr (std::is_same<T, float>::value) {
    if (fast && g.W % 4 == 0 && g.OW % 2 == 0 && x % 16 == 0 && y % 8 == 0 && idx % 16 == 0) {
      const unsigned b2 = grid_1d(total / 2, threads);
      if (idx) max_pool2d_fwd_2x2_pair<true><<<b2, threads, 0, s>>>(as_ptr<const float>(x), as_ptr<float>(y), as_ptr<int64_t>(idx), g);
      else max_pool2d_fwd_2x2_pair<false><<<b2, threads, 0, s>>>(as_ptr<const float>(x), as_ptr<float>(y), nullptr, g);
      PYC_CUDA_LAUNCH_CHECK("max_pool2d_fwd_2x2_pair");
      return;
    }
    if (fast) {
      if (idx) max_pool2d_fwd_2x2<true><<<blocks, threads, 0, s>>>(as_ptr<const float>(x), as_ptr<float>(y), as_ptr<int64_t>(idx), g);
      else max_pool2d_fwd_2x2<false><<<blocks, threads, 0, s>>>(as_ptr<const float>(x), as_ptr<float>(y), nullptr, g);
      PYC_CUDA_LAUNCH_CHECK("max_pool2d_fwd_2x2");
      return;
    }
  }
  if (idx) max_pool2d_fwd_generic<T, true><<<blocks, threads, 0, s>>>(as_ptr<const T>(x), as_ptr<T>(y), as_ptr<int64_t>(idx), g);
  else max_pool2d_fwd_generic<T, false><<<blocks, threads, 0, s>>>(as_ptr<const T>(x), as_ptr<T>(y), nullptr, g);
  PYC_CUDA_LAUNCH_CHECK("max_pool2d_fwd");
}

template <typename T>
void pool_bwd_t(const PoolGeom& g, uintptr_t gy, uintptr_t idx, uintptr_t gx, cudaStream_t s) {
  if (g.planes * g.H * g.W == 0) return;
  const bool windows_tile = g.kH == g.sH && g.kW == g.sW && g.pH == 0 && g.pW == 0 && g.dH == 1 &&
                            g.dW == 1 && (int64_t)g.OH * g.kH <= g.H && (int64_t)g.OW * g.kW <= g.W;
  if (windows_tile) {
    const int threads = std::min(256, 32 * ((g.OW + 31) / 32));
    const dim3 grid((g.OW + threads - 1) / threads, (unsigned)std::min<int64_t>(g.planes * g.OH, 65535));
    max_pool2d_bwd_window<T><<<grid, threads, 0, s>>>(as_ptr<const T>(gy), as_ptr<const int64_t>(idx), as_ptr<T>(gx), g);
    PYC_CUDA_LAUNCH_CHECK("max_pool2d_bwd_window");
    return;
  }
  const int threads = std::min(256, 32 * ((g.W + 31) / 32));
  const dim3 grid((g.W + threads - 1) / threads, (unsigned)std::min<int64_t>(g.planes * g.H, 65535));
  max_pool2d_bwd_gather<T><<<grid, threads, 0, s>>>(as_ptr<const T>(gy), as_ptr<const int64_t>(idx), as_ptr<T>(gx), g);
  PYC_CUDA_LAUNCH_CHECK("max_pool2d_bwd");
}

}  // namespace

void max_pool2d_fwd(int dtype, uintptr_t x, uintptr_t y, uintptr_t idx, int64_t planes, int64_t H, int64_t W,
                    int64_t kH, int64_t kW, int64_t sH, int64_t sW, int64_t pH, int64_t pW, int64_t dH,
                    int64_t dW, bool ceil_mode, uintptr_t stream) {
  const PoolGeom g = make_geom(planes, H, W, kH, kW, sH, sW, pH, pW, dH, dW, ceil_mode);
  if (dtype == kFloat32) pool_fwd_t<float>(g, x, y, idx, as_stream(stream));
  else if (dtype == kFloat64) pool_fwd_t<double>(g, x, y, idx, as_stream(stream));
  else PYC_CHECK(false, "max_pool2d: dtype must be float32 or float64");
}

void max_pool2d_bwd(int dtype, uintptr_t gy, uintptr_t idx, uintptr_t gx, int64_t planes, int64_t H, int64_t W,
                    int64_t kH, int64_t kW, int64_t sH, int64_t sW, int64_t pH, int64_t pW, int64_t dH,
                    int64_t dW, bool ceil_mode, uintptr_t stream) {
  const PoolGeom g = make_geom(planes, H, W, kH, kW, sH, sW, pH, pW, dH, dW, ceil_mode);
  if (dtype == kFloat32) pool_bwd_t<float>(g, gy, idx, gx, as_stream(stream));
  else if (dtype == kFloat64) pool_bwd_t<double>(g, gy, idx, gx, as_stream(stream));
  else PYC_CHECK(false, "max_pool2d_backward: dtype must be float32 or float64");
}

}  // namespace pycnnrnn::cuda

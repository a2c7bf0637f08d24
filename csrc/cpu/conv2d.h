// conv2d.h — 2-D convolution on CPU (NCHW), forward and backward, torch semantics.
//
// Shapes (batched; the Python layer turns unbatched (C, H, W) into N = 1):
//   x  [N][C][H][W]            input
//   w  [Co][C/groups][KH][KW]   weight
//   b  [Co]                     bias (optional)
//   y  [N][Co][OH][OW]          output, OH = conv_output_size(H, KH, sh, pt, pb, dh) (core/shapes.h)
//
// Padding is per side (pt, pb, pl, pr) so torch's padding='same' split is exact. padding_mode
// reflect/replicate/circular is an index remap inside the im2col packer (no padded copy).
//
// Algorithms (ConvAlgo):
//   gemm      implicit GEMM: y[n][g] = W_g[Co_g][C_g*KH*KW] x im2col(x[n][g]) through
//             gemm_provided_b (the im2col block is generated inside the engine's packing);
//             1x1 / stride 1 / unpadded runs as a plain gemm on x itself.
//   depthwise groups == C (any channel multiplier): a direct loop along W (no GEMM).
//   winograd  F(2x2, 3x3) for 3x3 / stride 1 / groups 1, any dilation: a dilated layer is
//             dh * dw dense ones on interleaved sub-grids, its phases (conv2d_winograd.cpp).
//   direct    stride 1, float32: register tiles summed straight from a padded copy of the
//             image, no im2col (conv2d_direct.h).
//   auto      depthwise when it applies; winograd where it applies and is faster (wide enough
//             channels, see conv2d_choose_algo); direct for few output channels on small maps
//             split by image over threads, and (forward calls, AVX-512) for long rows with a
//             short reduction (direct_long_rows_preferred); else gemm.
// Backward:
//   grad_input  = col2im(W_g^T x dY_g)  (any stride, dilation, padding mode: the col2im
//                 scatter goes through the same index remap, so reflect/replicate/circular
//                 halos fold back onto the input they were read from)
//   grad_weight = sum_n dY_g[n] x im2col(x[n][g])^T, images summed in order 0..N-1
//                 (deterministic, no atomics)
//   grad_bias   = sum over n, oh, ow of dY (float64 accumulation per channel)
#pragma once
#include <cstdint>
#include <memory>
#include <mutex>

#include "cpu/gemm.h"

namespace pycnnrnn {

enum class PadMode : int { zeros = 0, reflect = 1, replicate = 2, circular = 3 };
enum class ConvAlgo : int { auto_ = 0, gemm = 1, depthwise = 2, winograd = 3, direct = 4 };

struct Conv2dShape {
  int64_t N = 0, C = 0, H = 0, W = 0;  // input
  int64_t Co = 0, KH = 0, KW = 0;      // weight [Co][C/groups][KH][KW]
  int64_t groups = 1;
  int64_t sh = 1, sw = 1;                  // stride
  int64_t pt = 0, pb = 0, pl = 0, pr = 0;  // padding top/bottom/left/right
  int64_t dh = 1, dw = 1;                  // dilation
  PadMode mode = PadMode::zeros;
  int64_t OH = 0, OW = 0;  // filled by finalize()

  // Checks every invariant the kernels rely on (throws std::invalid_argument naming the
  // argument) and computes OH, OW. Python validated first; this is the second line.
  void finalize();
  int64_t Cg() const { return C / groups; }    // input channels per group
  int64_t Cog() const { return Co / groups; }  // output channels per group
  int64_t Kg() const { return Cg() * KH * KW; }  // GEMM reduction length per group
};

// Source index of padded coordinate i (may be < 0 or >= n) along a dim of size n, or -1 when
// it reads a zero. The one place the four padding modes are defined.
inline int64_t pad_source_index(int64_t i, int64_t n, PadMode mode) {
  if (i >= 0 && i < n) return i;
  switch (mode) {
    case PadMode::zeros: return -1;
    case PadMode::reflect: return i < 0 ? -i : 2 * (n - 1) - i;  // pad < n (checked)
    case PadMode::replicate: return i < 0 ? 0 : n - 1;
    case PadMode::circular: return i < 0 ? i + n : i - n;  // pad <= n (checked)
  }
  return -1;
}

// ---- the oracle: naive float64 loops, straight from the definition ----------------------
void conv2d_forward_naive(const Conv2dShape& s, const double* x, const double* w, const double* b, double* y);
// Any of gx / gw / gb may be nullptr (not computed).
void conv2d_backward_naive(const Conv2dShape& s, const double* gy, const double* x, const double* w, double* gx,
                           double* gw, double* gb);

// ---- prepared weights ---------------------------------------------------------------------
// What a forward call would otherwise derive from the weights every time, built on the first
// call that needs it and reused after: the 16 Winograd matrices U[xi] [Co][C] (16/9 of the
// weights; for 512 -> 512 3x3 writing them was half of a 14x14 layer at batch 1). The implicit
// GEMM and depthwise paths read the weights in place and need nothing. The owner guarantees the
// weights do not change while this object is used with them (pycnnrnn.functional.
// prepare_conv2d_weight keeps a read-only copy). Thread-safe.
template <typename T>
class Conv2dPrepared {
 public:
  const T* winograd_u(const Conv2dShape& s, const T* w);

 private:
  std::once_flag winograd_once_;
  std::unique_ptr<T[]> winograd_u_;
};

// ---- the fast driver ----------------------------------------------------------------------
// relu: y = max(y, 0) fused into the output stage (NaN kept), as nn.Sequential(Conv2d, ReLU) runs.
// prepared: this layer's weights' Conv2dPrepared (or nullptr: derive everything per call).
template <typename T>
void conv2d_forward(const Conv2dShape& s, const T* x, const T* w, const T* b, T* y, ConvAlgo algo = ConvAlgo::auto_,
                    bool relu = false, Conv2dPrepared<T>* prepared = nullptr);

// nn.Sequential's Conv2d (-> ReLU) -> MaxPool2d(2) (stride 2, no padding, dilation 1, floor):
// y is the pooled output, (N, Co, OH / 2, OW / 2); needs OH, OW >= 2. Where auto runs the layer
// on Winograd without dilation, each tile row's two output rows are pooled in L1 and the full
// output is never written (winograd_forward's pool); elsewhere it is, then max_pool2d_forward.
// Bit-identical to the three steps.
template <typename T>
void conv2d_forward_max_pool2x2(const Conv2dShape& s, const T* x, const T* w, const T* b, T* y, bool relu,
                                Conv2dPrepared<T>* prepared = nullptr);

template <typename T>
void conv2d_backward(const Conv2dShape& s, const T* gy, const T* x, const T* w, T* gx, T* gw, T* gb);

// Every convolution GEMM (forward, both backward products, Winograd's 16) sums in short
// float chains (GemmEpilogue::short_sums): K = 9 * C_in or the spatial size is long enough
// that plain kc = 256 chains came to 1.5-1.9x torch's error, and Winograd to 1.6-2.0x.
template <typename T>
GemmEpilogue<T> conv_gemm_options() {
  GemmEpilogue<T> o;
  o.short_sums = true;
  return o;
}

bool winograd_applies(const Conv2dShape& s);
// Float32 weights over 4 MiB: transformed per call (no Conv2dPrepared) they come from and go to
// memory (auto's unprepared-weights rule in conv2d.cpp, the fused transform in
// conv2d_winograd.cpp).
bool winograd_weights_big(const Conv2dShape& s);
// Outputs of the largest phase: ceil(OH / dh) * ceil(OW / dw) (OH * OW without dilation).
int64_t winograd_phase_outputs(const Conv2dShape& s);
// U: the layer's transformed weights from Conv2dPrepared, or nullptr (transformed here).
// pool (dilation 1): y is the 2x2, stride-2 max pool of the output, (N, Co, OH / 2, OW / 2).
template <typename T>
void winograd_forward(const Conv2dShape& s, const T* x, const T* w, const T* b, T* y, bool relu,
                      const T* U = nullptr, bool pool = false);
// grad_weight of a Winograd-shaped layer (winograd_applies) through the same transforms.
template <typename T>
void winograd_backward_weight(const Conv2dShape& s, const T* gy, const T* x, T* gw);

// Which algorithm `auto` (or a forced request) runs for this shape and dtype (is_float: float32);
// throws if a forced one does not apply.
ConvAlgo conv2d_choose_algo(const Conv2dShape& s, ConvAlgo requested, bool is_float);

}  // namespace pycnnrnn

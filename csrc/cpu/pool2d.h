// pool2d.h — 2-D max pooling (forward, backward) and max unpooling on NCHW planes.
//
// Semantics are torch's CPU kernels exactly (aten/src/ATen/native/cpu/MaxPoolKernel.cpp,
// see shared/reference/semantics.md §2):
//   - implicit -inf padding: windows are clipped to the input, the scan starts at the first
//     valid element (its index is the result for an all -inf window);
//   - scan order is row-major within the window; update when (v > max) || isnan(v):
//     ties keep the first max, NaN wins and the last NaN's index is kept;
//   - indices are int64, flat within each (n, c) plane: ih * W + iw;
//   - backward: grad_input[idx] += grad_output, sequentially per plane in output order.
// Every function takes C-contiguous arrays; `planes` = N * C. Python validated the shapes.
#pragma once
#include <cstdint>

namespace pycnnrnn {

struct Pool2dShape {
  int64_t planes;  // N * C
  int64_t H, W;    // input plane
  int64_t OH, OW;  // output plane (pool_output_size)
  int64_t kh, kw, sh, sw, ph, pw, dh, dw;
};

// x: (planes, H, W) -> y: (planes, OH, OW); idx: (planes, OH, OW) int64 or nullptr.
template <typename T>
void max_pool2d_forward(const T* x, T* y, int64_t* idx, const Pool2dShape& s);

// One output row of a 2x2, stride-2 max pool (no padding, no dilation) over two input rows:
// y[j] = max of x[2j], x[2j + 1], x[W + 2j], x[W + 2j + 1] (j < W / 2), torch's order and NaN rule
// as above. The convolutions' fused Conv2d -> ReLU -> MaxPool2d(2) (winograd_forward) pool the
// two output rows of each tile row with it while they are in L1.
template <typename T>
void max_pool2d_2x2_row(const T* x, int64_t W, T* y);
// Scalar reference (the oracle the tests compare every SIMD path with through PYCNNRNN_ISA).
template <typename T>
void max_pool2d_forward_reference(const T* x, T* y, int64_t* idx, const Pool2dShape& s);

// grad_output, indices: (planes, OH, OW) -> grad_input: (planes, H, W) (fully written).
// Like torch, an index outside [0, H*W) contributes nothing: the forward gives such indices
// to windows that lie entirely in the padding (their output is -inf).
template <typename T>
void max_pool2d_backward(const T* gy, const int64_t* idx, T* gx, const Pool2dShape& s);

// Unpool: x, idx: (planes, IH, IW) -> y: (planes, OH, OW) zero except y[idx] = x (the last
// write wins within a plane, like torch). Returns -1 or the position of the first bad index.
template <typename T>
int64_t max_unpool2d(const T* x, const int64_t* idx, T* y, int64_t planes, int64_t in_hw, int64_t out_hw);

// ---- per-ISA row kernels -------------------------------------------------------------------
// Compute outputs ow in [ow0, ow1) of output row `oh` of one plane, for "interior" columns
// whose windows lie fully inside [0, W) horizontally. Rows: the window's valid input rows are
// ih = ih0 + i * dh for i in [0, nrows). y_row / idx_row point at output column 0 of the row.
// Index codes: the kernel needs (nrows-1)*dh*W + (kw-1)*dw < 2^31 and sw <= 2^20 (checked by
// the driver). Returns the column it stopped at (ow1 when done): the driver finishes the rest.
// rows > 1: the same columns of `rows` consecutive output rows of the plane, row q from window
// row ih0 + q * sh (same nrows) into y_row / idx_row + q * ystride; the column it stops at is
// the same for every row. (Small planes: a call per row cost several times the row's own
// work, e.g. 4 outputs of an 8x8 plane.)
struct PoolRowArgs {
  const void* x;       // plane base
  void* y_row;         // output row base (column 0)
  int64_t* idx_row;    // nullptr: no indices
  int64_t W, ih0, nrows, ow0, ow1;
  int64_t kw, sw, pw, dh, dw;
  int64_t rows = 1, sh = 0, ystride = 0;
};
using PoolRowFn = int64_t (*)(const PoolRowArgs&);

// Backward of 2x2/2 (no padding, no dilation) for one output row: band = grad_input rows
// (2*oh, 2*oh+1) of the plane, starting at flat index `lo` = 2*oh*W. Writes both rows densely
// (0 + g at the argmax, +0.0 elsewhere) for full vectors of outputs starting at ow = 0, as
// long as every index lies in its own window; returns the first output column not done
// (the caller zeroes the rest of the band and scatter-adds the remaining outputs).
// stream: non-temporal stores where aligned; the caller issues the store fence (sfence)
// before other threads may read the band.
using PoolBandFn = int64_t (*)(const float* go, const int64_t* ix, float* band, int64_t W, int64_t lo, int64_t OW,
                               bool stream);

namespace pool2d_avx512 {
int64_t row_f32(const PoolRowArgs& a);
int64_t row_f64(const PoolRowArgs& a);
int64_t bwd_band_2x2_f32(const float* go, const int64_t* ix, float* band, int64_t W, int64_t lo, int64_t OW,
                         bool stream);
}  // namespace pool2d_avx512
namespace pool2d_avx2 {
int64_t row_f32(const PoolRowArgs& a);
int64_t row_f64(const PoolRowArgs& a);
}  // namespace pool2d_avx2

}  // namespace pycnnrnn

// conv2d_direct.h — direct convolution for small stride-1 layers (float32): no im2col.
//
// The image group is copied once into a padded buffer xp[ci][Hp][Wp] (any padding mode) small
// enough to stay in L1/L2, and a register tile of MR output channels x NV output vectors (16
// consecutive columns of one output row each) is summed straight from it: per reduction step
// (ci, kh, kw) the NV input vectors are loaded at the tap's shift and each meets MR broadcast
// weights, as in the GEMM micro-kernel, but no column matrix is written and read back (im2col
// and its packing were a quarter of a small-map layer's time).
#pragma once
#include <cstdint>

#include "cpu/conv2d.h"

namespace pycnnrnn {

// One output vector of 16 lanes in two 8-lane halves: lanes 0-7 read at xp offset src (+ the
// tap's shift) and stored at output offset dst, lanes 8-15 at src_hi and dst_hi (only the
// lanes in mask: a row's last piece may be partial). On AVX-512 a vector is 16 consecutive
// columns of one row (src_hi = src + 8, dst_hi = dst + 8: the tile reads src and dst only); the
// AVX2 and portable tiles take two 8-column row pieces that may lie in different rows, so an
// 8-wide map fills every lane (rows oh and oh + 1 in one vector).
struct DirectVec {
  int64_t src, dst, src_hi, dst_hi;
  uint32_t mask;
};

// A tile: for i < m output channels of a panel and the tile's vectors j,
//   y[i * ystride + dst_j + l] = bias[i] + sum_{ci < Cg, t < taps} wp[(ci * taps + t) * mr + i]
//                                                                * xp[ci * plane + toff[t] + src_j + l]
// (ReLU if asked), summed in chunks of ksub_channels input channels, each chunk's register sums
// added to y: the float chains of the GEMM path's short sums.
struct DirectTileArgs {
  const float* xp;
  int64_t plane, Cg, taps;
  const int64_t* toff;
  const float* wp;  // this panel's weights [Cg * taps][mr]
  const DirectVec* vec;
  int nv;  // vectors in this tile, 1..nv of the tile shape
  int m;   // output channels in this panel, 1..mr
  int64_t ksub_channels;
  float* y;  // output of the panel's first channel (the group's y + co0 * ystride)
  int64_t ystride;
  const float* bias;  // bias of the panel's first channel, or nullptr
  bool relu;
};

// grad_weight tile: C[i][c] += sum_p x[koff[i] + pix[p]] * dyt[p * ld + c] for the tile's
// i < m reduction indices k = ci * taps + t (rows) and its nv * 16 output channels c (columns),
// over the pixels p of one image: an outer-product GEMM whose A (the im2col of x) is read in
// place, one broadcast per (k, p), and whose B is dY transposed, dyt[p][co]. Sums run in
// register chains of at most 64 pixels, added up per image (in L1) and then to C (row stride
// ld_c): chains of 64 + P / 64 terms per image, + one per image in C.
struct DirectGwArgs {
  const float* x;       // the image group's padded input
  const int64_t* koff;  // input offsets of the tile's reduction indices (rows)
  const int64_t* pix;   // input offset of output pixel p (tap (0, 0))
  const float* dyt;     // dY^T of the tile's first output channel
  int64_t ld, P;
  int m;
  float* c;             // this tile's sums
  int64_t ld_c;
};

// Register tiles (24 accumulators): 6 channels x 4 vectors, or 8 x 3 where the channel count
// is a multiple of 8 (no padding rows: 32 channels are 4 panels of 8, not 6 of 6); AVX2 (16
// registers): 6 channels x 1 vector, its two ymm halves.
constexpr int DIRECT_MAX_NV = 4;
namespace conv_scalar {
void direct_tile(const DirectTileArgs& a, int mr);  // the portable tile (mr = 6 or 8)
}  // namespace conv_scalar
namespace conv_avx512 {
void direct_tile_6x4(const DirectTileArgs& a);
void direct_tile_8x3(const DirectTileArgs& a);
// grad_weight tiles: 6 rows x 4 vectors (64 channels), 12 x 2, 12 x 1
void direct_gw_6x4(const DirectGwArgs& a);
void direct_gw_12x2(const DirectGwArgs& a);
void direct_gw_12x1(const DirectGwArgs& a);
// dst[c * ld + r] = src[r * cols + c] (rows * cols float matrix, transposed; 16 * cols * 4 must
// fit an int32 gather offset: the grad_weight callers' images are at most 64 KiB)
void direct_transpose(const float* src, int64_t rows, int64_t cols, float* dst, int64_t ld);
}  // namespace conv_avx512
namespace conv_avx2 {
void direct_tile_6x1(const DirectTileArgs& a);  // 6 channels x one 16-lane vector (two ymm)
void direct_tile_4x1(const DirectTileArgs& a);  // 4 channels (the rest of a layer's channels)
}  // namespace conv_avx2

// float32, stride 1, a kernel larger than 1x1, rows of at least 8 output columns (the AVX-512 or
// AVX2 tiles, or the portable one on other CPUs).
bool direct_applies(const Conv2dShape& s, bool is_float);

// The padded image group is at most 64 KiB: it stays in L1/L2 while every tile reads it (where
// auto takes the direct kernel; algorithm="direct" runs any size).
bool direct_image_in_cache(const Conv2dShape& s);

// The ISA has a vector tile for the direct forward (AVX-512, AVX2; elsewhere the portable tile
// serves algorithm="direct" but is not faster than the im2col GEMM).
bool direct_vector_tile(bool is_float);

// grad_weight without im2col (DirectGwArgs; AVX-512 only: auto's choice, never forced): stride
// 1, the padded image group at most 64 KiB.
bool direct_grad_weight_applies(const Conv2dShape& s, bool is_float);
// gw [Co][C/groups][KH][KW] = sum over the batch of dY x im2col(x)^T; images split over
// image_threads (> 1: partial sums per thread, added in thread order) or the tiles split over
// the pool.
void direct_backward_weight(const Conv2dShape& s, const float* gy, const float* x, float* gw, int image_threads);

// y = conv2d(x, w) + b (relu fused). outer_threads > 1: image groups split over that many
// threads; otherwise each image group's output-channel panels split over the pool.
void direct_forward(const Conv2dShape& s, const float* x, const float* w, const float* b, float* y, bool relu,
                    int outer_threads);

}  // namespace pycnnrnn

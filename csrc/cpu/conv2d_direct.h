// conv2d_direct.h — direct convolution for small stride-1 layers (float32, AVX-512): no im2col.
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

// One output vector: 16 lanes read at xp offset src (+ the tap's shift), stored at output
// offset dst (the lanes in mask: a row's last vector may be partial).
struct DirectVec {
  int64_t src, dst;
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

// Register tiles (24 accumulators): 6 channels x 4 vectors, or 8 x 3 where the channel count
// is a multiple of 8 (no padding rows: 32 channels are 4 panels of 8, not 6 of 6).
namespace conv_avx512 {
void direct_tile_6x4(const DirectTileArgs& a);
void direct_tile_8x3(const DirectTileArgs& a);
}  // namespace conv_avx512

// float32 on the AVX-512 path, stride 1, rows of at least 12 output columns, the padded image
// group at most 64 KiB.
bool direct_applies(const Conv2dShape& s, bool is_float);

// y = conv2d(x, w) + b (relu fused). outer_threads > 1: image groups split over that many
// threads; otherwise each image group's output-channel panels split over the pool.
void direct_forward(const Conv2dShape& s, const float* x, const float* w, const float* b, float* y, bool relu,
                    int outer_threads);

}  // namespace pycnnrnn

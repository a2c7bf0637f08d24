// conv2d_depthwise.h — depthwise convolution (groups == in_channels, any channel multiplier)
// as a direct loop along W: no GEMM, no im2col. Output channel co reads input channel
// co / (Co / C) with its own KH x KW filter.
//
// float32 at stride 1 along W: each input plane is copied with its padding (any mode, through
// the remap tables) into a per-thread buffer, and a per-ISA plane kernel runs over it with no
// bounds to check. Other strides and float64 use the portable loop, whose halo columns go
// through the remap tables.
#pragma once
#include <cstdint>

#include "cpu/conv2d.h"

namespace pycnnrnn {

bool depthwise_applies(const Conv2dShape& s);

template <typename T>
void depthwise_forward(const Conv2dShape& s, const T* x, const T* w, const T* b, T* y);

// Plane kernel (float32, stride 1 along W) over a padded copy of one input plane:
//   y[oh*OW + j] = bias + sum_{kh < KH} sum_{kw < KW} w[kh*KW + kw] * xp[(oh*sh + kh*dh)*Wp + j + kw*dw]
// xp holds the padding (any mode) around the plane, and every row has at least
// DW_PLANE_SLACK readable columns past the last one an output reads: the kernels compute whole
// vectors and store only the columns < OW. Summation order per element: bias, then the taps
// in (kh, kw) order, in every ISA's kernel.
constexpr int64_t DW_PLANE_SLACK = 64;
using DwPlaneFn = void (*)(const float* xp, int64_t Wp, int64_t sh, int64_t dh, int64_t KH, const float* w, int64_t KW,
                           int64_t dw, float bias, int64_t OH, int64_t OW, float* y);
namespace conv_scalar {
void dw_plane_s1(const float* xp, int64_t Wp, int64_t sh, int64_t dh, int64_t KH, const float* w, int64_t KW,
                 int64_t dw, float bias, int64_t OH, int64_t OW, float* y);
}
namespace conv_avx2 {
void dw_plane_s1(const float* xp, int64_t Wp, int64_t sh, int64_t dh, int64_t KH, const float* w, int64_t KW,
                 int64_t dw, float bias, int64_t OH, int64_t OW, float* y);
}
namespace conv_avx512 {
void dw_plane_s1(const float* xp, int64_t Wp, int64_t sh, int64_t dh, int64_t KH, const float* w, int64_t KW,
                 int64_t dw, float bias, int64_t OH, int64_t OW, float* y);
}

}  // namespace pycnnrnn

// conv2d_depthwise.h — depthwise convolution (groups == in_channels, any channel multiplier)
// as a direct loop along W: no GEMM, no im2col. Output channel co reads input channel
// co / (Co / C) with its own KH x KW filter.
//
// Per output row the interior columns (every tap inside the input row, no remap) go to a
// per-ISA row kernel; the halo columns and the float64 path use the portable loop.
#pragma once
#include <cstdint>

#include "cpu/conv2d.h"

namespace pycnnrnn {

bool depthwise_applies(const Conv2dShape& s);

template <typename T>
void depthwise_forward(const Conv2dShape& s, const T* x, const T* w, const T* b, T* y);

// Row kernel (float32, stride-1 along W), one output row segment of n columns:
//   y[j] = bias + sum_{kh < KH, rows[kh] != nullptr} sum_{kw < KW} w[kh*KW + kw] * rows[kh][j + kw*dw]
// rows[kh] already points at the input element under output column 0 and tap kw = 0.
using DwRowFn = void (*)(const float* const* rows, int64_t KH, const float* w, int64_t KW, int64_t dw, float bias,
                         int64_t n, float* y);
namespace conv_scalar {
void dw_row_s1(const float* const* rows, int64_t KH, const float* w, int64_t KW, int64_t dw, float bias, int64_t n,
               float* y);
}
namespace conv_avx2 {
void dw_row_s1(const float* const* rows, int64_t KH, const float* w, int64_t KW, int64_t dw, float bias, int64_t n,
               float* y);
}
namespace conv_avx512 {
void dw_row_s1(const float* const* rows, int64_t KH, const float* w, int64_t KW, int64_t dw, float bias, int64_t n,
               float* y);
}

}  // namespace pycnnrnn

// shapes.h — every output-size formula of the project, in one place.
//
// These mirror PyTorch exactly (aten/src/ATen/native/Pool.h, ConvUtils.h). The Python layer
// calls the same formulas through the bindings (pycnnrnn._C.conv2d_output_size, ...) so there
// is exactly one implementation.
#pragma once
#include <cstdint>

namespace pycnnrnn {

// floor division rounding toward -inf (torch's div_rtn)
inline int64_t div_rtn(int64_t x, int64_t y) {
  int64_t q = x / y, r = x % y;
  if (r != 0 && ((r < 0) != (y < 0))) --q;
  return q;
}

// Convolution: H_out = floor((H_in + pad_l + pad_r - dil*(k-1) - 1) / stride) + 1
inline int64_t conv_output_size(int64_t in, int64_t k, int64_t stride, int64_t pad_l, int64_t pad_r,
                                int64_t dilation) {
  return div_rtn(in + pad_l + pad_r - dilation * (k - 1) - 1, stride) + 1;
}

// Max pooling (torch's pooling_output_shape_pad_lr):
//   out = div_rtn(in + pad_l + pad_r - dil*(k-1) - 1 + (ceil ? stride-1 : 0), stride) + 1
//   ceil_mode: the last window must start inside the input or the left padding.
inline int64_t pool_output_size(int64_t in, int64_t k, int64_t stride, int64_t pad, int64_t dilation,
                                bool ceil_mode) {
  int64_t out = div_rtn(in + 2 * pad - dilation * (k - 1) - 1 + (ceil_mode ? stride - 1 : 0), stride) + 1;
  if (ceil_mode && (out - 1) * stride >= in + pad) --out;
  return out;
}

// Max unpooling: H_out = (H_in - 1) * stride - 2 * pad + k
inline int64_t unpool_output_size(int64_t in, int64_t k, int64_t stride, int64_t pad) {
  return (in - 1) * stride - 2 * pad + k;
}

}  // namespace pycnnrnn

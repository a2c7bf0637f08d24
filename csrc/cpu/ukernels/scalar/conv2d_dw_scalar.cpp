// Depthwise row kernel, portable (see conv2d_depthwise.h for the contract).
#include <cstdint>

#include "cpu/conv2d_depthwise.h"

namespace pycnnrnn::conv_scalar {

void dw_row_s1(const float* const* rows, int64_t KH, const float* w, int64_t KW, int64_t dw, float bias, int64_t n,
               float* y) {
  for (int64_t j = 0; j < n; ++j) y[j] = bias;
  for (int64_t kh = 0; kh < KH; ++kh) {
    if (!rows[kh]) continue;
    for (int64_t kw = 0; kw < KW; ++kw) {
      const float wv = w[kh * KW + kw];
      const float* src = rows[kh] + kw * dw;
      for (int64_t j = 0; j < n; ++j) y[j] += wv * src[j];
    }
  }
}

}  // namespace pycnnrnn::conv_scalar

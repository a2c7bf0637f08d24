// Depthwise plane kernel, portable (see conv2d_depthwise.h for the contract).
#include <cstdint>

#include "cpu/conv2d_depthwise.h"

namespace pycnnrnn::conv_scalar {

void dw_plane_s1(const float* xp, int64_t Wp, int64_t sh, int64_t dh, int64_t KH, const float* w, int64_t KW,
                 int64_t dw, float bias, int64_t OH, int64_t OW, float* y) {
  for (int64_t oh = 0; oh < OH; ++oh) {
    float* yr = y + oh * OW;
    for (int64_t j = 0; j < OW; ++j) yr[j] = bias;
    for (int64_t kh = 0; kh < KH; ++kh)
      for (int64_t kw = 0; kw < KW; ++kw) {
        const float wv = w[kh * KW + kw];
        const float* src = xp + (oh * sh + kh * dh) * Wp + kw * dw;
        for (int64_t j = 0; j < OW; ++j) yr[j] += wv * src[j];
      }
  }
}

}  // namespace pycnnrnn::conv_scalar

// conv2d_direct_scalar.cpp — the direct convolution tile (cpu/conv2d_direct.h), portable: the
// same contract as conv2d_direct_avx512.cpp's, lane by lane (the path of CPUs without AVX-512
// when algorithm="direct" is asked for; auto keeps those on the im2col GEMM).
#include <cstdint>

#include "cpu/conv2d_direct.h"

namespace pycnnrnn::conv_scalar {

void direct_tile(const DirectTileArgs& a, int mr) {
  constexpr int L = 16;
  float acc[8][DIRECT_MAX_NV][L];
  const float* w = a.wp;
  for (int64_t c0 = 0; c0 < a.Cg; c0 += a.ksub_channels) {
    const int64_t c1 = c0 + a.ksub_channels < a.Cg ? c0 + a.ksub_channels : a.Cg;
    for (int i = 0; i < mr; ++i)
      for (int j = 0; j < a.nv; ++j)
        for (int l = 0; l < L; ++l) acc[i][j][l] = 0.f;
    for (int64_t ci = c0; ci < c1; ++ci)
      for (int64_t t = 0; t < a.taps; ++t) {
        const int64_t off = ci * a.plane + a.toff[t];
        for (int i = 0; i < mr; ++i)
          for (int j = 0; j < a.nv; ++j) {
            const float* x = a.xp + a.vec[j].src + off;
            const float* x_hi = a.xp + a.vec[j].src_hi + off;  // lanes 8-15
            for (int l = 0; l < L; ++l) acc[i][j][l] += w[i] * (l < 8 ? x[l] : x_hi[l - 8]);
          }
        w += mr;
      }
    // this chunk's sums into y (the first chunk stores, the last adds bias and ReLU)
    const bool first = c0 == 0, last = c1 == a.Cg;
    for (int i = 0; i < a.m && i < mr; ++i)
      for (int j = 0; j < a.nv; ++j)
        for (int l = 0; l < L; ++l) {
          if (!(a.vec[j].mask >> l & 1u)) continue;
          float* yp = a.y + i * a.ystride + (l < 8 ? a.vec[j].dst + l : a.vec[j].dst_hi + l - 8);
          float r = first ? acc[i][j][l] : *yp + acc[i][j][l];
          if (last) {
            if (a.bias) r += a.bias[i];
            if (a.relu && r < 0.f) r = 0.f;  // NaN kept
          }
          *yp = r;
        }
  }
}

}  // namespace pycnnrnn::conv_scalar

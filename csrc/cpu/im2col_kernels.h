// im2col_kernels.h — the im2col row copy for stride 1 along W and zero padding (every 3x3
// 'same' layer, any stride/dilation along H, any dilation along W) with vector loads, per ISA
// where it pays. The portable im2col_block in conv2d.cpp is the reference and handles
// everything else (stride along W, reflect/replicate/circular padding).
#pragma once
#include <cstdint>

namespace pycnnrnn {

struct Im2colGeometry {
  int64_t H, W, KH, KW, sh, dh, dw, pt, pl, OW;
};

// dst[(kk - k0) * ld + (p - n0)] = x_g[ci][oh * sh - pt + kh * dh][ow - pl + kw * dw], zero
// outside the input, for kk = (ci * KH + kh) * KW + kw in [k0, k0 + kc) and p = oh * OW + ow
// in [n0, n0 + nc); x_g = one image's group [C_g][H][W].
template <typename T>
using Im2colW1Fn = void (*)(const T* xg, const Im2colGeometry& g, int64_t k0, int64_t kc, int64_t n0, int64_t nc,
                            T* dst, int64_t ld);

namespace im2col_avx512 {
void im2col_w1_f32(const float* xg, const Im2colGeometry& g, int64_t k0, int64_t kc, int64_t n0, int64_t nc,
                   float* dst, int64_t ld);
void im2col_w1_f64(const double* xg, const Im2colGeometry& g, int64_t k0, int64_t kc, int64_t n0, int64_t nc,
                   double* dst, int64_t ld);
}  // namespace im2col_avx512

}  // namespace pycnnrnn

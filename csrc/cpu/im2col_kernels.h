// im2col_kernels.h — im2col from a zero-padded copy of the image (stride 1 along W, zero
// padding: every 3x3 'same' layer; any stride/dilation along H, any dilation along W). With
// the padding materialised, every output-row segment of a GEMM row is one contiguous input
// run: plain vector loads and stores, no bounds checks or lane masks (the masked-load version
// this replaces spent 30-50% of a small-map convolution in im2col). The portable
// im2col_block in conv2d.cpp is the reference and handles everything else.
#pragma once
#include <cstdint>

namespace pycnnrnn {

// The padded image xp[ci][Hp][Wp], Hp = H + pt + pb, Wp = W + pl + pr, input pixel (ih, iw)
// at xp[ci][ih + pt][iw + pl]; the rest zero.
struct PaddedGeometry {
  int64_t Hp, Wp, KH, KW, sh, dh, dw, OW;
};

// dst[(kk - k0) * ld + (p - n0)] = xp[ci][oh * sh + kh * dh][ow + kw * dw] for
// kk = (ci * KH + kh) * KW + kw in [k0, k0 + kc), p = oh * OW + ow in [n0, n0 + nc).
template <typename T>
using Im2colPaddedFn = void (*)(const T* xp, const PaddedGeometry& g, int64_t k0, int64_t kc, int64_t n0, int64_t nc,
                                T* dst, int64_t ld);

namespace im2col_avx512 {
void im2col_padded_f32(const float* xp, const PaddedGeometry& g, int64_t k0, int64_t kc, int64_t n0, int64_t nc,
                       float* dst, int64_t ld);
void im2col_padded_f64(const double* xp, const PaddedGeometry& g, int64_t k0, int64_t kc, int64_t n0, int64_t nc,
                       double* dst, int64_t ld);
}  // namespace im2col_avx512

}  // namespace pycnnrnn

// im2col_kernels.h — im2col from a zero-padded copy of the image (zero padding, stride 1 or 2
// along W: every 3x3 'same' layer and the 7x7/2 stem; any stride/dilation along H, any
// dilation along W). With the padding materialised, every output-row segment of a GEMM row is
// one input run, contiguous or every other element: plain vector loads and stores (a permute
// picks the even elements), no bounds checks (the masked-load version this replaces spent
// 30-50% of a small-map convolution in im2col). col2im, its adjoint, at stride 1 only. The
// portable im2col_block in conv2d.cpp is the reference and handles everything else.
#pragma once
#include <cstdint>

namespace pycnnrnn {

// The padded image xp[ci][Hp][Wp], Hp = H + pt + pb, Wp = W + pl + pr, input pixel (ih, iw)
// at xp[ci][ih + pt][iw + pl]; the rest zero.
struct PaddedGeometry {
  int64_t Hp, Wp, KH, KW, sh, sw, dh, dw, OW;  // sw: 1 or 2 (col2im: 1)
};

// dst[(kk - k0) * ld + (p - n0)] = xp[ci][oh * sh + kh * dh][ow * sw + kw * dw] for
// kk = (ci * KH + kh) * KW + kw in [k0, k0 + kc), p = oh * OW + ow in [n0, n0 + nc).
template <typename T>
using Im2colPaddedFn = void (*)(const T* xp, const PaddedGeometry& g, int64_t k0, int64_t kc, int64_t n0, int64_t nc,
                                T* dst, int64_t ld);

// The adjoint, for grad_input: xp[ci][oh * sh + kh * dh][ow + kw * dw] += col[kk][p - p0]
// for the rows kk of channels ci in [c0, c1) (all KH * KW taps) of a column block
// col[Kg][pc] and p in [p0, p0 + pc); taps added in kk order (deterministic).
template <typename T>
using Col2imPaddedFn = void (*)(const T* col, const PaddedGeometry& g, int64_t c0, int64_t c1, int64_t p0, int64_t pc,
                                T* xp);

namespace im2col_avx512 {
void col2im_padded_f32(const float* col, const PaddedGeometry& g, int64_t c0, int64_t c1, int64_t p0, int64_t pc,
                       float* xp);
void col2im_padded_f64(const double* col, const PaddedGeometry& g, int64_t c0, int64_t c1, int64_t p0, int64_t pc,
                       double* xp);
void im2col_padded_f32(const float* xp, const PaddedGeometry& g, int64_t k0, int64_t kc, int64_t n0, int64_t nc,
                       float* dst, int64_t ld);
void im2col_padded_f64(const double* xp, const PaddedGeometry& g, int64_t k0, int64_t kc, int64_t n0, int64_t nc,
                       double* dst, int64_t ld);
}  // namespace im2col_avx512
namespace im2col_avx2 {
void col2im_padded_f32(const float* col, const PaddedGeometry& g, int64_t c0, int64_t c1, int64_t p0, int64_t pc,
                       float* xp);
void col2im_padded_f64(const double* col, const PaddedGeometry& g, int64_t c0, int64_t c1, int64_t p0, int64_t pc,
                       double* xp);
void im2col_padded_f32(const float* xp, const PaddedGeometry& g, int64_t k0, int64_t kc, int64_t n0, int64_t nc,
                       float* dst, int64_t ld);
void im2col_padded_f64(const double* xp, const PaddedGeometry& g, int64_t k0, int64_t kc, int64_t n0, int64_t nc,
                       double* dst, int64_t ld);
}  // namespace im2col_avx2

}  // namespace pycnnrnn

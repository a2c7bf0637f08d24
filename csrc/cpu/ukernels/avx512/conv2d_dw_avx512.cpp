// Depthwise row kernel, AVX-512: 64 output columns in 4 zmm accumulators, every tap one
// broadcast weight and 4 unaligned loads; masked tail. Same summation order as the scalar
// kernel (bias, then taps in (kh, kw) order) per output element.
#include <cstdint>

#include <immintrin.h>

#include "cpu/conv2d_depthwise.h"

namespace pycnnrnn::conv_avx512 {

void dw_row_s1(const float* const* rows, int64_t KH, const float* w, int64_t KW, int64_t dw, float bias, int64_t n,
               float* y) {
  const __m512 vb = _mm512_set1_ps(bias);
  int64_t j = 0;
  for (; j + 64 <= n; j += 64) {
    __m512 a0 = vb, a1 = vb, a2 = vb, a3 = vb;
    for (int64_t kh = 0; kh < KH; ++kh) {
      if (!rows[kh]) continue;
      const float* src = rows[kh] + j;
      for (int64_t kw = 0; kw < KW; ++kw) {
        const __m512 wv = _mm512_set1_ps(w[kh * KW + kw]);
        const float* s = src + kw * dw;
        a0 = _mm512_fmadd_ps(wv, _mm512_loadu_ps(s), a0);
        a1 = _mm512_fmadd_ps(wv, _mm512_loadu_ps(s + 16), a1);
        a2 = _mm512_fmadd_ps(wv, _mm512_loadu_ps(s + 32), a2);
        a3 = _mm512_fmadd_ps(wv, _mm512_loadu_ps(s + 48), a3);
      }
    }
    _mm512_storeu_ps(y + j, a0);
    _mm512_storeu_ps(y + j + 16, a1);
    _mm512_storeu_ps(y + j + 32, a2);
    _mm512_storeu_ps(y + j + 48, a3);
  }
  for (; j < n; j += 16) {
    const int64_t r = n - j < 16 ? n - j : 16;
    const __mmask16 m = static_cast<__mmask16>((1u << r) - 1u);
    __m512 a = vb;
    for (int64_t kh = 0; kh < KH; ++kh) {
      if (!rows[kh]) continue;
      const float* src = rows[kh] + j;
      for (int64_t kw = 0; kw < KW; ++kw)
        a = _mm512_fmadd_ps(_mm512_set1_ps(w[kh * KW + kw]), _mm512_maskz_loadu_ps(m, src + kw * dw), a);
    }
    _mm512_mask_storeu_ps(y + j, m, a);
  }
}

}  // namespace pycnnrnn::conv_avx512

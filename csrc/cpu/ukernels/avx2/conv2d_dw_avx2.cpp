// Depthwise row kernel, AVX2: 32 output columns in 4 ymm accumulators; masked tail.
#include <cstdint>

#include <immintrin.h>

#include "cpu/conv2d_depthwise.h"

namespace pycnnrnn::conv_avx2 {

void dw_row_s1(const float* const* rows, int64_t KH, const float* w, int64_t KW, int64_t dw, float bias, int64_t n,
               float* y) {
  const __m256 vb = _mm256_set1_ps(bias);
  int64_t j = 0;
  for (; j + 32 <= n; j += 32) {
    __m256 a0 = vb, a1 = vb, a2 = vb, a3 = vb;
    for (int64_t kh = 0; kh < KH; ++kh) {
      if (!rows[kh]) continue;
      const float* src = rows[kh] + j;
      for (int64_t kw = 0; kw < KW; ++kw) {
        const __m256 wv = _mm256_set1_ps(w[kh * KW + kw]);
        const float* s = src + kw * dw;
        a0 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(s), a0);
        a1 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(s + 8), a1);
        a2 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(s + 16), a2);
        a3 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(s + 24), a3);
      }
    }
    _mm256_storeu_ps(y + j, a0);
    _mm256_storeu_ps(y + j + 8, a1);
    _mm256_storeu_ps(y + j + 16, a2);
    _mm256_storeu_ps(y + j + 24, a3);
  }
  for (; j < n; j += 8) {
    const int64_t r = n - j < 8 ? n - j : 8;
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(r)), idx);
    __m256 a = vb;
    for (int64_t kh = 0; kh < KH; ++kh) {
      if (!rows[kh]) continue;
      const float* src = rows[kh] + j;
      for (int64_t kw = 0; kw < KW; ++kw)
        a = _mm256_fmadd_ps(_mm256_set1_ps(w[kh * KW + kw]), _mm256_maskload_ps(src + kw * dw, m), a);
    }
    _mm256_maskstore_ps(y + j, m, a);
  }
}

}  // namespace pycnnrnn::conv_avx2

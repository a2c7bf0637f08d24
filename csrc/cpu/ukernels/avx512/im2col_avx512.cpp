// im2col from the zero-padded image and its adjoint col2im (cpu/im2col_kernels.h), AVX-512
// traits for cpu/im2col_padded.inc: 16 floats / 8 doubles a vector, k-masks for the tails.
// copy_even: d[j] = s[2 j], the even elements of two vectors' span picked by one two-source
// permute; the second load is masked to stop at s[2 L - 2], the last element a run needs.
#include <immintrin.h>

#include <cstdint>
#include <vector>

#include "cpu/im2col_kernels.h"

namespace pycnnrnn::im2col_avx512 {
namespace {

struct F32 {
  using T = float;
  static constexpr int L = 16;
  static void add(float* d, const float* s) { _mm512_storeu_ps(d, _mm512_add_ps(_mm512_loadu_ps(d), _mm512_loadu_ps(s))); }
  static void add_tail(float* d, const float* s, int64_t n) {
    const __mmask16 m = static_cast<__mmask16>((1u << n) - 1u);
    _mm512_mask_storeu_ps(d, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, d), _mm512_maskz_loadu_ps(m, s)));
  }
  static void copy(float* d, const float* s) { _mm512_storeu_ps(d, _mm512_loadu_ps(s)); }
  static void copy_tail(float* d, const float* s, int64_t n) {
    const __mmask16 m = static_cast<__mmask16>((1u << n) - 1u);
    _mm512_mask_storeu_ps(d, m, _mm512_maskz_loadu_ps(m, s));
  }
  // The even elements of s[0 .. 31] read under masks lo (s[0 .. 15]) and hi (s[16 .. 31]).
  static __m512 even(const float* s, __mmask16 lo, __mmask16 hi) {
    const __m512i idx = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    return _mm512_permutex2var_ps(_mm512_maskz_loadu_ps(lo, s), idx, _mm512_maskz_loadu_ps(hi, s + 16));
  }
  static void copy_even(float* d, const float* s) { _mm512_storeu_ps(d, even(s, 0xFFFF, 0x7FFF)); }
  static void copy_even_tail(float* d, const float* s, int64_t n) {  // n < 16: reads s[0 .. 2n - 2]
    const int64_t read = 2 * n - 1;
    const __mmask16 lo = static_cast<__mmask16>(read >= 16 ? 0xFFFFu : (1u << read) - 1u);
    const __mmask16 hi = static_cast<__mmask16>(read > 16 ? (1u << (read - 16)) - 1u : 0u);
    _mm512_mask_storeu_ps(d, static_cast<__mmask16>((1u << n) - 1u), even(s, lo, hi));
  }
};
struct F64 {
  using T = double;
  static constexpr int L = 8;
  static void add(double* d, const double* s) { _mm512_storeu_pd(d, _mm512_add_pd(_mm512_loadu_pd(d), _mm512_loadu_pd(s))); }
  static void add_tail(double* d, const double* s, int64_t n) {
    const __mmask8 m = static_cast<__mmask8>((1u << n) - 1u);
    _mm512_mask_storeu_pd(d, m, _mm512_add_pd(_mm512_maskz_loadu_pd(m, d), _mm512_maskz_loadu_pd(m, s)));
  }
  static void copy(double* d, const double* s) { _mm512_storeu_pd(d, _mm512_loadu_pd(s)); }
  static void copy_tail(double* d, const double* s, int64_t n) {
    const __mmask8 m = static_cast<__mmask8>((1u << n) - 1u);
    _mm512_mask_storeu_pd(d, m, _mm512_maskz_loadu_pd(m, s));
  }
  static __m512d even(const double* s, __mmask8 lo, __mmask8 hi) {
    const __m512i idx = _mm512_setr_epi64(0, 2, 4, 6, 8, 10, 12, 14);
    return _mm512_permutex2var_pd(_mm512_maskz_loadu_pd(lo, s), idx, _mm512_maskz_loadu_pd(hi, s + 8));
  }
  static void copy_even(double* d, const double* s) { _mm512_storeu_pd(d, even(s, 0xFF, 0x7F)); }
  static void copy_even_tail(double* d, const double* s, int64_t n) {  // n < 8: reads s[0 .. 2n - 2]
    const int64_t read = 2 * n - 1;
    const __mmask8 lo = static_cast<__mmask8>(read >= 8 ? 0xFFu : (1u << read) - 1u);
    const __mmask8 hi = static_cast<__mmask8>(read > 8 ? (1u << (read - 8)) - 1u : 0u);
    _mm512_mask_storeu_pd(d, static_cast<__mmask8>((1u << n) - 1u), even(s, lo, hi));
  }
};

}  // namespace

#include "cpu/im2col_padded.inc"

}  // namespace pycnnrnn::im2col_avx512

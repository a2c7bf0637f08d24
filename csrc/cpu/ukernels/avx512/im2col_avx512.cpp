// im2col from the zero-padded image and its adjoint col2im (cpu/im2col_kernels.h), AVX-512
// traits for cpu/im2col_padded.inc: 16 floats / 8 doubles a vector, k-masks for the tails.
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
};

}  // namespace

#include "cpu/im2col_padded.inc"

}  // namespace pycnnrnn::im2col_avx512

// im2col from the zero-padded image and its adjoint col2im (cpu/im2col_kernels.h), AVX2
// traits for cpu/im2col_padded.inc: 8 floats / 4 doubles a vector, vmaskmov for the tails.
#include <immintrin.h>

#include <cstdint>
#include <vector>

#include "cpu/im2col_kernels.h"

namespace pycnnrnn::im2col_avx2 {
namespace {

struct F32 {
  using T = float;
  static constexpr int L = 8;
  static __m256i mask(int64_t n) {  // lanes < n set
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  static void add(float* d, const float* s) { _mm256_storeu_ps(d, _mm256_add_ps(_mm256_loadu_ps(d), _mm256_loadu_ps(s))); }
  static void add_tail(float* d, const float* s, int64_t n) {
    const __m256i m = mask(n);
    _mm256_maskstore_ps(d, m, _mm256_add_ps(_mm256_maskload_ps(d, m), _mm256_maskload_ps(s, m)));
  }
  static void copy(float* d, const float* s) { _mm256_storeu_ps(d, _mm256_loadu_ps(s)); }
  static void copy_tail(float* d, const float* s, int64_t n) {
    const __m256i m = mask(n);
    _mm256_maskstore_ps(d, m, _mm256_maskload_ps(s, m));
  }
};
struct F64 {
  using T = double;
  static constexpr int L = 4;
  static __m256i mask(int64_t n) { return _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), _mm256_setr_epi64x(0, 1, 2, 3)); }
  static void add(double* d, const double* s) { _mm256_storeu_pd(d, _mm256_add_pd(_mm256_loadu_pd(d), _mm256_loadu_pd(s))); }
  static void add_tail(double* d, const double* s, int64_t n) {
    const __m256i m = mask(n);
    _mm256_maskstore_pd(d, m, _mm256_add_pd(_mm256_maskload_pd(d, m), _mm256_maskload_pd(s, m)));
  }
  static void copy(double* d, const double* s) { _mm256_storeu_pd(d, _mm256_loadu_pd(s)); }
  static void copy_tail(double* d, const double* s, int64_t n) {
    const __m256i m = mask(n);
    _mm256_maskstore_pd(d, m, _mm256_maskload_pd(s, m));
  }
};

}  // namespace

#include "cpu/im2col_padded.inc"

}  // namespace pycnnrnn::im2col_avx2

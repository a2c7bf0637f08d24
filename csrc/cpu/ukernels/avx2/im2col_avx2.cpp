// im2col from the zero-padded image and its adjoint col2im (cpu/im2col_kernels.h), AVX2
// traits for cpu/im2col_padded.inc: 8 floats / 4 doubles a vector, vmaskmov for the tails.
// copy_even: d[j] = s[2 j], the even elements of two vectors' span by an in-lane shuffle and a
// cross-lane permute; the second load is masked to stop at s[2 L - 2], the last element a run
// needs.
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
  // The even elements of s[0 .. 15] read under masks lo (s[0 .. 7]) and hi (s[8 .. 15]):
  // (s0 s2 s8 s10 | s4 s6 s12 s14), then its 64-bit lanes in the order 0, 2, 1, 3.
  static __m256 even(const float* s, __m256i lo, __m256i hi) {
    const __m256 r = _mm256_shuffle_ps(_mm256_maskload_ps(s, lo), _mm256_maskload_ps(s + 8, hi), 0x88);
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(r), 0xD8));
  }
  static void copy_even(float* d, const float* s) { _mm256_storeu_ps(d, even(s, mask(8), mask(7))); }
  static void copy_even_tail(float* d, const float* s, int64_t n) {  // n < 8: reads s[0 .. 2n - 2]
    const int64_t read = 2 * n - 1;
    _mm256_maskstore_ps(d, mask(n), even(s, mask(read < 8 ? read : 8), mask(read > 8 ? read - 8 : 0)));
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
  // (s0 s4 | s2 s6), then its 64-bit lanes in the order 0, 2, 1, 3.
  static __m256d even(const double* s, __m256i lo, __m256i hi) {
    const __m256d r = _mm256_unpacklo_pd(_mm256_maskload_pd(s, lo), _mm256_maskload_pd(s + 4, hi));
    return _mm256_permute4x64_pd(r, 0xD8);
  }
  static void copy_even(double* d, const double* s) { _mm256_storeu_pd(d, even(s, mask(4), mask(3))); }
  static void copy_even_tail(double* d, const double* s, int64_t n) {  // n < 4: reads s[0 .. 2n - 2]
    const int64_t read = 2 * n - 1;
    _mm256_maskstore_pd(d, mask(n), even(s, mask(read < 4 ? read : 4), mask(read > 4 ? read - 4 : 0)));
  }
};

}  // namespace

#include "cpu/im2col_padded.inc"

}  // namespace pycnnrnn::im2col_avx2

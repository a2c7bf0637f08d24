// Depthwise plane kernel, AVX2 (contract in conv2d_depthwise.h): the AVX-512 kernel's structure
// with chunks of 32 columns in 4 ymm per row, two rows at a time; a chunk that runs past OW
// stores through lane masks. (The AVX-512 kernel's row pair sharing its input rows at H stride 1
// is not here: it was measured on AVX-512 only.)
#include <algorithm>
#include <cstdint>

#include <immintrin.h>

#include "cpu/conv2d_depthwise.h"

namespace pycnnrnn::conv_avx2 {
namespace {

constexpr int64_t L = 8, NV = 4, CH = L * NV;  // lanes per vector, vectors per chunk, columns per chunk
static_assert(CH <= DW_PLANE_SLACK, "a chunk reads up to CH - 1 columns past the last output");

// Lanes [0, n) of one vector, n clamped to [0, L), as an all-ones-per-lane mask.
inline __m256i first_lanes(int64_t n) {
  n = std::clamp<int64_t>(n, 0, L);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// Output rows [oh, oh + R) (R = 1 or 2), columns [0, min(CH, cols)) of the chunk at x0 / y0.
template <int R>
inline void rows_chunk(const float* x0, int64_t Wp, int64_t sh, int64_t dh, int64_t KH, const float* w, int64_t KW,
                       int64_t dw, float bias, int64_t oh, int64_t cols, int64_t OW, float* y0) {
  __m256 acc[R][NV];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NV; ++v) acc[r][v] = _mm256_set1_ps(bias);
  for (int64_t kh = 0; kh < KH; ++kh)
    for (int64_t kw = 0; kw < KW; ++kw) {
      const __m256 wv = _mm256_set1_ps(w[kh * KW + kw]);
      for (int r = 0; r < R; ++r) {
        const float* s = x0 + ((oh + r) * sh + kh * dh) * Wp + kw * dw;
        for (int v = 0; v < NV; ++v) acc[r][v] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(s + v * L), acc[r][v]);
      }
    }
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NV; ++v) {
      float* yv = y0 + (oh + r) * OW + v * L;
      if (cols >= (v + 1) * L)
        _mm256_storeu_ps(yv, acc[r][v]);
      else if (cols > v * L)
        _mm256_maskstore_ps(yv, first_lanes(cols - v * L), acc[r][v]);
    }
}

}  // namespace

void dw_plane_s1(const float* xp, int64_t Wp, int64_t sh, int64_t dh, int64_t KH, const float* w, int64_t KW,
                 int64_t dw, float bias, int64_t OH, int64_t OW, float* y) {
  for (int64_t j = 0; j < OW; j += CH) {
    int64_t oh = 0;
    for (; oh + 2 <= OH; oh += 2) rows_chunk<2>(xp + j, Wp, sh, dh, KH, w, KW, dw, bias, oh, OW - j, OW, y + j);
    if (oh < OH) rows_chunk<1>(xp + j, Wp, sh, dh, KH, w, KW, dw, bias, oh, OW - j, OW, y + j);
  }
}

}  // namespace pycnnrnn::conv_avx2

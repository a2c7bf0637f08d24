// Depthwise plane kernel, AVX-512 (contract in conv2d_depthwise.h): chunks of 64 output
// columns taken down the plane two rows at a time, 8 zmm accumulators, every tap one broadcast
// weight and 4 loads per row; only the stores are masked (columns past OW). No bounds to check:
// the driver's padded copy holds the padding and the slack.
// Measured on AMD Zen 5 (N=8, C=256, 56x56, 3x3, one thread): one 16-lane vector at a time (one
// dependent chain of 9 FMAs) ran at 1.3 ns per output, 4 vectors of one row at 0.25 (64-column
// rows) but with per-tap lane masks at the row's ends (k-masks reloaded for every FMA) at 1.1.
#include <algorithm>
#include <cstdint>

#include <immintrin.h>

#include "cpu/conv2d_depthwise.h"

namespace pycnnrnn::conv_avx512 {
namespace {

constexpr int64_t L = 16, NV = 4, CH = L * NV;  // lanes per vector, vectors per chunk, columns per chunk
static_assert(CH <= DW_PLANE_SLACK, "a chunk reads up to CH - 1 columns past the last output");

// Lanes [0, n) of one vector, n clamped to [0, L), as a k-mask.
inline __mmask16 first_lanes(int64_t n) {
  n = std::clamp<int64_t>(n, 0, L);
  return static_cast<__mmask16>((1u << n) - 1u);
}

// Output rows [oh, oh + R) (R = 1 or 2), columns [0, CH) of the chunk at x0 (input) / y0 (output).
template <int R>
inline void rows_chunk(const float* x0, int64_t Wp, int64_t sh, int64_t dh, int64_t KH, const float* w, int64_t KW,
                       int64_t dw, float bias, int64_t oh, const __mmask16* store, int64_t OW, float* y0) {
  __m512 acc[R][NV];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_set1_ps(bias);
  for (int64_t kh = 0; kh < KH; ++kh)
    for (int64_t kw = 0; kw < KW; ++kw) {
      const __m512 wv = _mm512_set1_ps(w[kh * KW + kw]);
      for (int r = 0; r < R; ++r) {
        const float* s = x0 + ((oh + r) * sh + kh * dh) * Wp + kw * dw;
        for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_fmadd_ps(wv, _mm512_loadu_ps(s + v * L), acc[r][v]);
      }
    }
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NV; ++v) _mm512_mask_storeu_ps(y0 + (oh + r) * OW + v * L, store[v], acc[r][v]);
}

// Output rows oh, oh + 1 at H stride 1 and H dilation 1: their input rows overlap, so each of
// the KH + 1 input rows is loaded once (KW x 4 vectors) and feeds both rows' sums (row oh with
// tap kh = r, row oh + 1 with kh = r - 1); each output's taps still add in (kh, kw) order.
// 4 input rows instead of 6 for a 3x3 pair: N=8 C=256 56x56 one thread 5.4-5.6 -> 5.05-5.2 ms,
// two threads 2.6-2.8 -> 2.55-2.6 ms (alternating builds).
inline void row_pair_shared(const float* x0, int64_t Wp, int64_t KH, const float* w, int64_t KW, int64_t dw,
                            float bias, int64_t oh, const __mmask16* store, int64_t OW, float* y0) {
  __m512 acc[2][NV];
  for (int r = 0; r < 2; ++r)
    for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_set1_ps(bias);
  for (int64_t r = 0; r <= KH; ++r) {
    const float* src = x0 + (oh + r) * Wp;
    for (int64_t kw = 0; kw < KW; ++kw) {
      __m512 xv[NV];
      for (int v = 0; v < NV; ++v) xv[v] = _mm512_loadu_ps(src + kw * dw + v * L);
      if (r < KH) {
        const __m512 wv = _mm512_set1_ps(w[r * KW + kw]);
        for (int v = 0; v < NV; ++v) acc[0][v] = _mm512_fmadd_ps(wv, xv[v], acc[0][v]);
      }
      if (r > 0) {
        const __m512 wv = _mm512_set1_ps(w[(r - 1) * KW + kw]);
        for (int v = 0; v < NV; ++v) acc[1][v] = _mm512_fmadd_ps(wv, xv[v], acc[1][v]);
      }
    }
  }
  for (int r = 0; r < 2; ++r)
    for (int v = 0; v < NV; ++v) _mm512_mask_storeu_ps(y0 + (oh + r) * OW + v * L, store[v], acc[r][v]);
}

}  // namespace

void dw_plane_s1(const float* xp, int64_t Wp, int64_t sh, int64_t dh, int64_t KH, const float* w, int64_t KW,
                 int64_t dw, float bias, int64_t OH, int64_t OW, float* y) {
  for (int64_t j = 0; j < OW; j += CH) {
    __mmask16 store[NV];
    for (int64_t v = 0; v < NV; ++v) store[v] = first_lanes(OW - j - v * L);
    int64_t oh = 0;
    if (sh == 1 && dh == 1)
      for (; oh + 2 <= OH; oh += 2) row_pair_shared(xp + j, Wp, KH, w, KW, dw, bias, oh, store, OW, y + j);
    for (; oh + 2 <= OH; oh += 2) rows_chunk<2>(xp + j, Wp, sh, dh, KH, w, KW, dw, bias, oh, store, OW, y + j);
    if (oh < OH) rows_chunk<1>(xp + j, Wp, sh, dh, KH, w, KW, dw, bias, oh, store, OW, y + j);
  }
}

}  // namespace pycnnrnn::conv_avx512

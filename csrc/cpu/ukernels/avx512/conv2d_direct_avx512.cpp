// conv2d_direct_avx512.cpp — the direct convolution tiles (cpu/conv2d_direct.h), AVX-512.
#include <immintrin.h>

#include <cstdint>

#include "cpu/conv2d_direct.h"

// gcc 12 false positive inside _mm512_max_ps (_mm512_undefined_ps): not our variables.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace pycnnrnn::conv_avx512 {
namespace {

template <int MR, int NV>
void tile(const DirectTileArgs& a) {
  const DirectVec* v = a.vec;
  const float* src[NV];
  for (int j = 0; j < NV; ++j) src[j] = a.xp + v[j].src;
  const float* w = a.wp;
  __m512 acc[MR][NV];
  for (int64_t c0 = 0; c0 < a.Cg; c0 += a.ksub_channels) {
    const int64_t c1 = c0 + a.ksub_channels < a.Cg ? c0 + a.ksub_channels : a.Cg;
    for (int i = 0; i < MR; ++i)
      for (int j = 0; j < NV; ++j) acc[i][j] = _mm512_setzero_ps();
    for (int64_t ci = c0; ci < c1; ++ci) {
      const int64_t cbase = ci * a.plane;
      for (int64_t t = 0; t < a.taps; ++t) {
        const int64_t off = cbase + a.toff[t];
        __m512 xv[NV];
        for (int j = 0; j < NV; ++j) xv[j] = _mm512_loadu_ps(src[j] + off);
        for (int i = 0; i < MR; ++i) {
          const __m512 wv = _mm512_set1_ps(w[i]);
          for (int j = 0; j < NV; ++j) acc[i][j] = _mm512_fmadd_ps(wv, xv[j], acc[i][j]);
        }
        w += MR;
      }
    }
    // this chunk's sums into y (the first chunk stores, the last adds bias and ReLU)
    const bool first = c0 == 0, last = c1 == a.Cg;
    for (int i = 0; i < a.m && i < MR; ++i) {
      float* yr = a.y + i * a.ystride;
      for (int j = 0; j < NV; ++j) {
        const __mmask16 mk = static_cast<__mmask16>(v[j].mask);
        __m512 r = acc[i][j];
        if (!first) r = _mm512_add_ps(r, _mm512_maskz_loadu_ps(mk, yr + v[j].dst));
        if (last) {
          if (a.bias) r = _mm512_add_ps(r, _mm512_set1_ps(a.bias[i]));
          if (a.relu) r = _mm512_max_ps(_mm512_setzero_ps(), r);  // NaN kept
        }
        _mm512_mask_storeu_ps(yr + v[j].dst, mk, r);
      }
    }
  }
}

// A tile with fewer vectors (a layer's last) runs a narrower register tile.
template <int MR, int NV>
void tile_any(const DirectTileArgs& a) {
  if constexpr (NV > 1) {
    if (a.nv < NV) return tile_any<MR, NV - 1>(a);
  }
  tile<MR, NV>(a);
}

}  // namespace

void direct_tile_6x4(const DirectTileArgs& a) { tile_any<6, 4>(a); }
void direct_tile_8x3(const DirectTileArgs& a) { tile_any<8, 3>(a); }

}  // namespace pycnnrnn::conv_avx512

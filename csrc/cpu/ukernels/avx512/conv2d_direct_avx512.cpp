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

template <int MR, int NV>
void gw_tile(const DirectGwArgs& a) {
  const float* xr[MR];  // rows past m repeat the last real one (their sums are not stored)
  for (int i = 0; i < MR; ++i) xr[i] = a.x + a.koff[i < a.m ? i : a.m - 1];
  alignas(64) float img[MR][NV][16];  // this image's sums: the first chain, then the others added
  for (int64_t p0 = 0; p0 < a.P; p0 += 64) {
    const int64_t p1 = p0 + 64 < a.P ? p0 + 64 : a.P;
    __m512 acc[MR][NV];
    for (int i = 0; i < MR; ++i)
      for (int j = 0; j < NV; ++j) acc[i][j] = _mm512_setzero_ps();
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t off = a.pix[p];
      __m512 dv[NV];
      for (int j = 0; j < NV; ++j) dv[j] = _mm512_loadu_ps(a.dyt + p * a.ld + j * 16);
      for (int i = 0; i < MR; ++i) {
        const __m512 xv = _mm512_set1_ps(xr[i][off]);
        for (int j = 0; j < NV; ++j) acc[i][j] = _mm512_fmadd_ps(xv, dv[j], acc[i][j]);
      }
    }
    for (int i = 0; i < MR; ++i)
      for (int j = 0; j < NV; ++j)
        _mm512_store_ps(img[i][j], p0 == 0 ? acc[i][j] : _mm512_add_ps(_mm512_load_ps(img[i][j]), acc[i][j]));
  }
  for (int i = 0; i < a.m; ++i)  // the image's sums into the running sums
    for (int j = 0; j < NV; ++j) {
      float* cp = a.c + i * a.ld_c + j * 16;
      _mm512_storeu_ps(cp, _mm512_add_ps(_mm512_loadu_ps(cp), _mm512_load_ps(img[i][j])));
    }
}

}  // namespace

void direct_gw_6x4(const DirectGwArgs& a) { gw_tile<6, 4>(a); }
void direct_gw_12x2(const DirectGwArgs& a) { gw_tile<12, 2>(a); }
void direct_gw_12x1(const DirectGwArgs& a) { gw_tile<12, 1>(a); }

void direct_transpose(const float* src, int64_t rows, int64_t cols, float* dst, int64_t ld) {
  const __m512i idx = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                         _mm512_set1_epi32(static_cast<int>(cols)));
  for (int64_t r0 = 0; r0 < rows; r0 += 16) {
    const int64_t n = rows - r0 < 16 ? rows - r0 : 16;
    const __mmask16 mk = static_cast<__mmask16>((1u << n) - 1u);
    for (int64_t c = 0; c < cols; ++c)
      _mm512_mask_storeu_ps(dst + c * ld + r0, mk,
                            _mm512_mask_i32gather_ps(_mm512_setzero_ps(), mk, idx, src + r0 * cols + c, 4));
  }
}

void direct_tile_6x4(const DirectTileArgs& a) { tile_any<6, 4>(a); }
void direct_tile_8x3(const DirectTileArgs& a) { tile_any<8, 3>(a); }

}  // namespace pycnnrnn::conv_avx512

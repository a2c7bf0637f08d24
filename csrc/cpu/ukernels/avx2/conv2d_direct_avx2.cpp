// conv2d_direct_avx2.cpp — the direct convolution tiles (cpu/conv2d_direct.h), AVX2: each
// 16-lane output vector of the driver is two ymm halves (8-column row pieces, read at src and
// src_hi, possibly from different rows), so a tile of 6 output channels x one vector holds 12
// accumulators (16 registers in all).
#include <immintrin.h>

#include <cstdint>

#include "cpu/conv2d_direct.h"

namespace pycnnrnn::conv_avx2 {
namespace {

// Lanes of half h (0: lanes 0-7, 1: lanes 8-15) of a 16-lane mask.
inline __m256i half_mask(uint32_t mask, int h) {
  const __m256i bits = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
  const __m256i m = _mm256_set1_epi32(static_cast<int>((mask >> (8 * h)) & 0xffu));
  return _mm256_cmpeq_epi32(_mm256_and_si256(m, bits), bits);
}

// MR output channels x one 16-lane vector (two ymm): the AVX-512 tile's sums, lane for lane.
template <int MR>
void tile(const DirectTileArgs& a) {
  const DirectVec& v = a.vec[0];
  const float* src = a.xp + v.src;
  const float* src_hi = a.xp + v.src_hi;
  const float* w = a.wp;
  const bool full = v.mask == 0xffffu;
  const __m256i mk0 = half_mask(v.mask, 0), mk1 = half_mask(v.mask, 1);
  __m256 acc[MR][2];
  for (int64_t c0 = 0; c0 < a.Cg; c0 += a.ksub_channels) {
    const int64_t c1 = c0 + a.ksub_channels < a.Cg ? c0 + a.ksub_channels : a.Cg;
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
    for (int64_t ci = c0; ci < c1; ++ci) {
      const int64_t cbase = ci * a.plane;
      for (int64_t t = 0; t < a.taps; ++t) {
        const int64_t off = cbase + a.toff[t];
        const __m256 x0 = _mm256_loadu_ps(src + off), x1 = _mm256_loadu_ps(src_hi + off);
#pragma GCC unroll 8
        for (int i = 0; i < MR; ++i) {
          const __m256 wv = _mm256_broadcast_ss(w + i);
          acc[i][0] = _mm256_fmadd_ps(wv, x0, acc[i][0]);
          acc[i][1] = _mm256_fmadd_ps(wv, x1, acc[i][1]);
        }
        w += MR;
      }
    }
    // this chunk's sums into y (the first chunk stores, the last adds bias and ReLU)
    const bool first = c0 == 0, last = c1 == a.Cg;
    // (constant trip counts: indexed by a run-time row, GCC kept acc in memory and stored all
    // 12 accumulators on every step of the loop above)
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      if (i >= a.m) break;
#pragma GCC unroll 2
      for (int h = 0; h < 2; ++h) {
        float* yr = a.y + i * a.ystride + (h ? v.dst_hi : v.dst);
        const __m256i mk = h ? mk1 : mk0;
        __m256 r = acc[i][h];
        if (!first) r = _mm256_add_ps(r, full ? _mm256_loadu_ps(yr) : _mm256_maskload_ps(yr, mk));
        if (last) {
          if (a.bias) r = _mm256_add_ps(r, _mm256_set1_ps(a.bias[i]));
          if (a.relu) r = _mm256_max_ps(_mm256_setzero_ps(), r);  // NaN kept
        }
        if (full)
          _mm256_storeu_ps(yr, r);
        else
          _mm256_maskstore_ps(yr, mk, r);
      }
    }
  }
}

}  // namespace

void direct_tile_6x1(const DirectTileArgs& a) { tile<6>(a); }
void direct_tile_4x1(const DirectTileArgs& a) { tile<4>(a); }

}  // namespace pycnnrnn::conv_avx2

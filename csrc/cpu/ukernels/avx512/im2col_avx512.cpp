// im2col for stride 1 along W, zero padding (any stride/dilation along H, any dilation along
// W), AVX-512: every output-row segment is copied
// in chunks of one vector; a masked load reads only the lanes whose input column exists
// (masked-off lanes neither fault nor read) and a masked store writes only the segment, so
// the zero halo costs nothing extra. Same result as im2col_block in conv2d.cpp (a copy).
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "cpu/im2col_kernels.h"

namespace pycnnrnn::im2col_avx512 {
namespace {

struct F32 {
  using T = float;
  using V = __m512;
  static constexpr int L = 16;
  static V loadz(uint32_t m, const float* p) { return _mm512_maskz_loadu_ps(static_cast<__mmask16>(m), p); }
  static void store(uint32_t m, float* p, V v) { _mm512_mask_storeu_ps(p, static_cast<__mmask16>(m), v); }
  static V zero() { return _mm512_setzero_ps(); }
};
struct F64 {
  using T = double;
  using V = __m512d;
  static constexpr int L = 8;
  static V loadz(uint32_t m, const double* p) { return _mm512_maskz_loadu_pd(static_cast<__mmask8>(m), p); }
  static void store(uint32_t m, double* p, V v) { _mm512_mask_storeu_pd(p, static_cast<__mmask8>(m), v); }
  static V zero() { return _mm512_setzero_pd(); }
};

// Lanes [b - j0, e - j0) of a chunk starting at j0 (empty when e <= b).
inline uint32_t lanes(int64_t j0, int64_t b, int64_t e) {
  return e > b ? ((e - b >= 32 ? ~0u : (1u << (e - b)) - 1u) << (b - j0)) : 0u;
}

// One output-row piece of the column range: columns [ow, ow + run) of output row oh, at
// column p - n0 of dst.
struct Segment {
  int64_t oh, ow, run, dcol;
};

template <class K>
void im2col_w1(const typename K::T* xg, int64_t H, int64_t W, int64_t KH, int64_t KW, int64_t sh, int64_t dh,
               int64_t dw, int64_t pt, int64_t pl, int64_t OW, int64_t k0, int64_t kc, int64_t n0, int64_t nc,
               typename K::T* dst, int64_t ld) {
  using T = typename K::T;
  // The row pieces are the same for every kk: listed once (no divisions in the kk loop).
  thread_local std::vector<Segment> segs;
  segs.clear();
  for (int64_t p = n0, oh = n0 / OW, ow = n0 % OW; p < n0 + nc; ow = 0, ++oh) {
    const int64_t run = std::min(OW - ow, n0 + nc - p);
    segs.push_back({oh, ow, run, p - n0});
    p += run;
  }
  int64_t ci = k0 / (KH * KW), kh = (k0 / KW) % KH, kw = k0 % KW;
  for (int64_t kk = k0; kk < k0 + kc; ++kk) {
    const int64_t off = kw * dw - pl;  // input column of output column ow is ow + off
    // output columns whose input column lies inside the row: [lo, hi)
    const int64_t lo = std::max<int64_t>(0, -off), hi = std::min<int64_t>(OW, W - off);
    const T* xc = xg + ci * H * W;
    T* d = dst + (kk - k0) * ld;
    for (const Segment& sg : segs) {
      const int64_t ih = sg.oh * sh - pt + kh * dh;
      const bool inside = ih >= 0 && ih < H;
      const T* src = inside ? xc + ih * W + off : xc;  // read only through in-row lanes
      const int64_t end = sg.ow + sg.run;
      for (int64_t j0 = sg.ow; j0 < end; j0 += K::L) {
        const int64_t j1 = std::min<int64_t>(j0 + K::L, end);
        const typename K::V v =
            inside ? K::loadz(lanes(j0, std::max(j0, lo), std::min(j1, hi)), src + j0) : K::zero();
        K::store(lanes(j0, j0, j1), d + sg.dcol + (j0 - sg.ow), v);
      }
    }
    if (++kw == KW) {
      kw = 0;
      if (++kh == KH) kh = 0, ++ci;
    }
  }
}

}  // namespace

void im2col_w1_f32(const float* xg, const Im2colGeometry& g, int64_t k0, int64_t kc, int64_t n0, int64_t nc,
                   float* dst, int64_t ld) {
  im2col_w1<F32>(xg, g.H, g.W, g.KH, g.KW, g.sh, g.dh, g.dw, g.pt, g.pl, g.OW, k0, kc, n0, nc, dst, ld);
}
void im2col_w1_f64(const double* xg, const Im2colGeometry& g, int64_t k0, int64_t kc, int64_t n0, int64_t nc,
                   double* dst, int64_t ld) {
  im2col_w1<F64>(xg, g.H, g.W, g.KH, g.KW, g.sh, g.dh, g.dw, g.pt, g.pl, g.OW, k0, kc, n0, nc, dst, ld);
}

}  // namespace pycnnrnn::im2col_avx512

// im2col from the zero-padded image (cpu/im2col_kernels.h), AVX-512: each output-row segment
// of a GEMM row is a contiguous run of the padded input row, copied one vector at a time
// (a masked load/store only for a run's last partial vector). Same result as im2col_block in
// conv2d.cpp (a copy).
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "cpu/im2col_kernels.h"

namespace pycnnrnn::im2col_avx512 {
namespace {

struct F32 {
  using T = float;
  static constexpr int L = 16;
  static void copy(float* d, const float* s) { _mm512_storeu_ps(d, _mm512_loadu_ps(s)); }
  static void copy_tail(float* d, const float* s, int64_t n) {
    const __mmask16 m = static_cast<__mmask16>((1u << n) - 1u);
    _mm512_mask_storeu_ps(d, m, _mm512_maskz_loadu_ps(m, s));
  }
};
struct F64 {
  using T = double;
  static constexpr int L = 8;
  static void copy(double* d, const double* s) { _mm512_storeu_pd(d, _mm512_loadu_pd(s)); }
  static void copy_tail(double* d, const double* s, int64_t n) {
    const __mmask8 m = static_cast<__mmask8>((1u << n) - 1u);
    _mm512_mask_storeu_pd(d, m, _mm512_maskz_loadu_pd(m, s));
  }
};

// One output-row piece of the column range: `run` columns starting at column p - n0 of dst,
// read from padded offset src (= oh * sh * Wp + ow) of the tap's base.
struct Segment {
  int64_t dcol, src, run;
};

template <class K>
void im2col_padded(const typename K::T* xp, const PaddedGeometry& g, int64_t k0, int64_t kc, int64_t n0, int64_t nc,
                   typename K::T* dst, int64_t ld) {
  using T = typename K::T;
  constexpr int64_t L = K::L;
  thread_local std::vector<Segment> tl_segs;
  std::vector<Segment>& segs = tl_segs;  // one TLS lookup per call
  segs.clear();
  // the same for every kk: listed once (no divisions in the kk loop)
  for (int64_t p = n0, oh = n0 / g.OW, ow = n0 % g.OW; p < n0 + nc; ow = 0, ++oh) {
    const int64_t run = std::min(g.OW - ow, n0 + nc - p);
    segs.push_back({p - n0, oh * g.sh * g.Wp + ow, run});
    p += run;
  }
  const Segment* const sbeg = segs.data();
  const Segment* const send = sbeg + segs.size();
  const int64_t plane = g.Hp * g.Wp;
  int64_t ci = k0 / (g.KH * g.KW), kh = (k0 / g.KW) % g.KH, kw = k0 % g.KW;
  for (int64_t kk = k0; kk < k0 + kc; ++kk) {
    const T* base = xp + ci * plane + kh * g.dh * g.Wp + kw * g.dw;
    T* d = dst + (kk - k0) * ld;
    for (const Segment* sg = sbeg; sg != send; ++sg) {
      const T* s = base + sg->src;
      T* dd = d + sg->dcol;
      int64_t j = 0;
      for (; j + L <= sg->run; j += L) K::copy(dd + j, s + j);
      if (j < sg->run) K::copy_tail(dd + j, s + j, sg->run - j);
    }
    if (++kw == g.KW) {
      kw = 0;
      if (++kh == g.KH) kh = 0, ++ci;
    }
  }
}

}  // namespace

void im2col_padded_f32(const float* xp, const PaddedGeometry& g, int64_t k0, int64_t kc, int64_t n0, int64_t nc,
                       float* dst, int64_t ld) {
  im2col_padded<F32>(xp, g, k0, kc, n0, nc, dst, ld);
}
void im2col_padded_f64(const double* xp, const PaddedGeometry& g, int64_t k0, int64_t kc, int64_t n0, int64_t nc,
                       double* dst, int64_t ld) {
  im2col_padded<F64>(xp, g, k0, kc, n0, nc, dst, ld);
}

}  // namespace pycnnrnn::im2col_avx512

// im2col from the zero-padded image and its adjoint col2im into a padded gradient
// (cpu/im2col_kernels.h), AVX-512: each output-row segment of a GEMM row is a contiguous run
// of a padded row, copied (or added) one vector at a time (masked only for a run's last
// partial vector). im2col is the same copy as im2col_block in conv2d.cpp.
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

// One output-row piece of the column range: `run` columns starting at column p - n0 of dst,
// read from padded offset src (= oh * sh * Wp + ow) of the tap's base.
struct Segment {
  int64_t dcol, src, run;
};

// The row pieces of columns [n0, n0 + nc): the same for every kk, so listed once per call
// (no divisions in the kk loops). Thread-local storage, valid until the next call.
const std::vector<Segment>& segments(const PaddedGeometry& g, int64_t n0, int64_t nc) {
  thread_local std::vector<Segment> tl_segs;
  std::vector<Segment>& segs = tl_segs;  // one TLS lookup per call
  segs.clear();
  for (int64_t p = n0, oh = n0 / g.OW, ow = n0 % g.OW; p < n0 + nc; ow = 0, ++oh) {
    const int64_t run = std::min(g.OW - ow, n0 + nc - p);
    segs.push_back({p - n0, oh * g.sh * g.Wp + ow, run});
    p += run;
  }
  return segs;
}

template <class K>
void im2col_padded(const typename K::T* xp, const PaddedGeometry& g, int64_t k0, int64_t kc, int64_t n0, int64_t nc,
                   typename K::T* dst, int64_t ld) {
  using T = typename K::T;
  constexpr int64_t L = K::L;
  const std::vector<Segment>& segs = segments(g, n0, nc);
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

template <class K>
void col2im_padded(const typename K::T* col, const PaddedGeometry& g, int64_t c0, int64_t c1, int64_t p0, int64_t pc,
                   typename K::T* xp) {
  using T = typename K::T;
  constexpr int64_t L = K::L;
  const std::vector<Segment>& segs = segments(g, p0, pc);
  const Segment* const sbeg = segs.data();
  const Segment* const send = sbeg + segs.size();
  const int64_t plane = g.Hp * g.Wp;
  for (int64_t ci = c0; ci < c1; ++ci)
    for (int64_t kh = 0; kh < g.KH; ++kh)
      for (int64_t kw = 0; kw < g.KW; ++kw) {
        T* base = xp + ci * plane + kh * g.dh * g.Wp + kw * g.dw;
        const T* c = col + ((ci * g.KH + kh) * g.KW + kw) * pc;
        for (const Segment* sg = sbeg; sg != send; ++sg) {
          T* d = base + sg->src;
          const T* cs = c + sg->dcol;
          int64_t j = 0;
          for (; j + L <= sg->run; j += L) K::add(d + j, cs + j);
          if (j < sg->run) K::add_tail(d + j, cs + j, sg->run - j);
        }
      }
}

}  // namespace

void col2im_padded_f32(const float* col, const PaddedGeometry& g, int64_t c0, int64_t c1, int64_t p0, int64_t pc,
                       float* xp) {
  col2im_padded<F32>(col, g, c0, c1, p0, pc, xp);
}
void col2im_padded_f64(const double* col, const PaddedGeometry& g, int64_t c0, int64_t c1, int64_t p0, int64_t pc,
                       double* xp) {
  col2im_padded<F64>(col, g, c0, c1, p0, pc, xp);
}

void im2col_padded_f32(const float* xp, const PaddedGeometry& g, int64_t k0, int64_t kc, int64_t n0, int64_t nc,
                       float* dst, int64_t ld) {
  im2col_padded<F32>(xp, g, k0, kc, n0, nc, dst, ld);
}
void im2col_padded_f64(const double* xp, const PaddedGeometry& g, int64_t k0, int64_t kc, int64_t n0, int64_t nc,
                       double* dst, int64_t ld) {
  im2col_padded<F64>(xp, g, k0, kc, n0, nc, dst, ld);
}

}  // namespace pycnnrnn::im2col_avx512

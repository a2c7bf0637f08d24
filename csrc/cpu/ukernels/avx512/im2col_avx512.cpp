// im2col for stride 1 along W, zero padding (any stride/dilation along H, any dilation along
// W), AVX-512: the destination row is written one vector at a time; each vector is gathered
// with one masked load per output row it spans (two for 8-wide maps), reading only the lanes
// whose input column exists (masked-off lanes neither fault nor read), so the zero halo
// costs nothing extra. Same result as im2col_block in conv2d.cpp (a copy).
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
  static V load_into(V v, uint32_t m, const float* p) {
    return _mm512_mask_loadu_ps(v, static_cast<__mmask16>(m), p);
  }
  static void store(uint32_t m, float* p, V v) { _mm512_mask_storeu_ps(p, static_cast<__mmask16>(m), v); }
  static V zero() { return _mm512_setzero_ps(); }
};
struct F64 {
  using T = double;
  using V = __m512d;
  static constexpr int L = 8;
  static V load_into(V v, uint32_t m, const double* p) {
    return _mm512_mask_loadu_pd(v, static_cast<__mmask8>(m), p);
  }
  static void store(uint32_t m, double* p, V v) { _mm512_mask_storeu_pd(p, static_cast<__mmask8>(m), v); }
  static V zero() { return _mm512_setzero_pd(); }
};

// Lane bits [b, e) (empty when e <= b); at most 16 lanes.
inline uint32_t lanes(int64_t b, int64_t e) {
  return e > b ? ((1u << (e - b)) - 1u) << b : 0u;
}

// The column range [n0, n0 + nc) cut into vectors of L lanes (chunk c = columns
// n0 + c * L ...), each vector into pieces that lie on one output row: lanes [lane0, lane1)
// hold columns ow0 .. ow0 + lane1 - lane0 - 1 of output row oh. The same for every kk, so it
// is listed once per call; with 8-wide rows one vector is filled by two masked loads.
struct Piece {
  int64_t chunk, lane0, lane1, oh, ow0;
};

template <class K>
void im2col_w1(const typename K::T* xg, int64_t H, int64_t W, int64_t KH, int64_t KW, int64_t sh, int64_t dh,
               int64_t dw, int64_t pt, int64_t pl, int64_t OW, int64_t k0, int64_t kc, int64_t n0, int64_t nc,
               typename K::T* dst, int64_t ld) {
  using T = typename K::T;
  constexpr int64_t L = K::L;
  thread_local std::vector<Piece> tl_pieces;
  thread_local std::vector<uint32_t> tl_masks;
  std::vector<Piece>& pieces = tl_pieces;  // one TLS lookup per call, not per use
  std::vector<uint32_t>& masks = tl_masks;  // [piece][kw]: lanes whose input column exists
  pieces.clear();
  masks.clear();
  for (int64_t p = n0; p < n0 + nc;) {
    const int64_t oh = p / OW, ow = p % OW, lane = (p - n0) % L;
    const int64_t n = std::min({OW - ow, L - lane, n0 + nc - p});
    pieces.push_back({(p - n0) / L, lane, lane + n, oh, ow});
    for (int64_t kw = 0; kw < KW; ++kw) {
      const int64_t off = kw * dw - pl;  // input column of output column ow is ow + off
      const int64_t lo = std::max<int64_t>(ow, -off), hi = std::min<int64_t>(ow + n, W - off);
      masks.push_back(lanes(lane + (lo - ow), lane + (hi - ow)));
    }
    p += n;
  }
  const int64_t nchunks = (nc + L - 1) / L, tail = nc - (nchunks - 1) * L;
  int64_t ci = k0 / (KH * KW), kh = (k0 / KW) % KH, kw = k0 % KW;
  for (int64_t kk = k0; kk < k0 + kc; ++kk) {
    const T* xc = xg + ci * H * W + (kw * dw - pl);
    T* d = dst + (kk - k0) * ld;
    const Piece* pc = pieces.data();
    const Piece* const pend = pc + pieces.size();
    const uint32_t* m = masks.data() + kw;
    for (int64_t c = 0; c < nchunks; ++c) {
      typename K::V v = K::zero();
      for (; pc != pend && pc->chunk == c; ++pc, m += KW) {
        const int64_t ih = pc->oh * sh - pt + kh * dh;
        // lane l reads input column ow0 + (l - lane0) + off of row ih
        if (ih >= 0 && ih < H) v = K::load_into(v, *m, xc + ih * W + pc->ow0 - pc->lane0);
      }
      K::store(c + 1 < nchunks ? lanes(0, L) : lanes(0, tail), d + c * L, v);
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

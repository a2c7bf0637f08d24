// conv2d_depthwise.cpp — the depthwise driver (see conv2d_depthwise.h).
#include "cpu/conv2d_depthwise.h"

#include <algorithm>
#include <type_traits>
#include <vector>

#include "core/dispatch.h"
#include "core/thread_pool.h"

namespace pycnnrnn {

bool depthwise_applies(const Conv2dShape& s) { return s.groups == s.C && s.groups > 1; }

namespace {

DwPlaneFn dw_plane_kernel() {
#if PYCNNRNN_HAVE_X86
  static const DwPlaneFn table[3] = {conv_scalar::dw_plane_s1, conv_avx2::dw_plane_s1, conv_avx512::dw_plane_s1};
#else
  static const DwPlaneFn table[3] = {conv_scalar::dw_plane_s1, conv_scalar::dw_plane_s1, conv_scalar::dw_plane_s1};
#endif
  return pick(table);
}

// Outputs from this size on (the caches cannot hold them) have the next plane's input and
// output lines fetched while a plane is computed (its output with write intent: the stores'
// line reads were the plane kernel's stalls). Intel Xeon, N=8, 2 threads, one process
// alternating, 11 rounds, time against fetching the input only: C=128 112x112 0.77x, C=256
// 56x56 0.97x; smaller outputs fetch nothing (the bursts of fetches stalled the core for lines
// the hardware brings anyway): N=1 C=256 56x56 0.88x, N=8 C=512 14x14 even. (AVX2 on Zen 3 had
// N=8 C=256 56x56 2.66 -> 2.4 ms from the input's fetch.)
constexpr int64_t DW_FETCH_MIN_OUTPUT_BYTES = int64_t(8) << 20;

}  // namespace

// y[n][co][oh][ow] = b[co] + sum_{kh, kw} w[co][0][kh][kw] * xpad[n][co / mult][oh*sh + kh*dh][ow*sw + kw*dw]
// Summation order per element: bias, then taps in (kh, kw) order (the same in every path).
template <typename T>
void depthwise_forward(const Conv2dShape& s, const T* x, const T* w, const T* b, T* y) {
  const int64_t mult = s.Co / s.C, KHW = s.KH * s.KW;
  // remap tables: ih_tab[kh][oh], iw_tab[kw][ow] (-1: zero padding)
  std::vector<int64_t> ih_tab(static_cast<size_t>(s.KH * s.OH)), iw_tab(static_cast<size_t>(s.KW * s.OW));
  for (int64_t kh = 0; kh < s.KH; ++kh)
    for (int64_t oh = 0; oh < s.OH; ++oh)
      ih_tab[kh * s.OH + oh] = pad_source_index(oh * s.sh - s.pt + kh * s.dh, s.H, s.mode);
  // interior columns [lo, hi): every tap's raw column index is inside [0, W)
  int64_t lo = s.OW, hi = 0;
  for (int64_t ow = 0; ow < s.OW; ++ow) {
    bool inside = true;
    for (int64_t kw = 0; kw < s.KW; ++kw) {
      const int64_t raw = ow * s.sw - s.pl + kw * s.dw;
      iw_tab[kw * s.OW + ow] = pad_source_index(raw, s.W, s.mode);
      inside = inside && raw >= 0 && raw < s.W;
    }
    if (inside) {
      lo = std::min(lo, ow);
      hi = std::max(hi, ow + 1);
    }
  }
  if (lo >= hi) lo = hi = 0;
  // float32 at stride 1 along W: each input plane copied with its padding into xp (Hp x Wp),
  // then the plane kernel. The copy's rows and columns come from the same remap tables.
  const DwPlaneFn plane_fn = std::is_same<T, float>::value && s.sw == 1 ? dw_plane_kernel() : nullptr;
  const int64_t Hp = (s.OH - 1) * s.sh + (s.KH - 1) * s.dh + 1, Wused = (s.OW - 1) + (s.KW - 1) * s.dw + 1;
  const int64_t Wp = Wused + DW_PLANE_SLACK;
  std::vector<int64_t> xp_col(static_cast<size_t>(plane_fn ? Wp : 0), -1);  // input column of xp column c, -1: 0
  for (int64_t c = 0; c < (plane_fn ? Wused : 0); ++c) xp_col[c] = pad_source_index(c - s.pl, s.W, s.mode);
  const int64_t in0 = std::min(s.pl, Wused), in1 = std::max(in0, std::min(s.pl + s.W, Wused));  // xp columns of the row

  const bool fetch_next = s.N * s.Co * s.OH * s.OW * int64_t(sizeof(T)) >= DW_FETCH_MIN_OUTPUT_BYTES;
  // grain: about 2^18 multiply-adds per thread, so tiny calls stay on the calling thread
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 18) / std::max<int64_t>(1, s.OH * s.OW * s.KH * s.KW));
  parallel_for(s.N * s.Co, grain, [&](int64_t q0, int64_t q1) {
    std::vector<const T*> rows(static_cast<size_t>(s.KH));
    std::vector<T> xp(static_cast<size_t>(plane_fn ? Hp * Wp : 0));
    const T* xp_of = nullptr;  // the input plane now in xp (channel multipliers > 1 share it)
    for (int64_t q = q0; q < q1; ++q) {
      const int64_t n = q / s.Co, co = q % s.Co;
      const T* xc = x + (n * s.C + co / mult) * s.H * s.W;
      const T* wc = w + co * KHW;
      const T bias = b ? b[co] : T(0);
      T* yc = y + q * s.OH * s.OW;
      if (plane_fn) {
        if (xp_of != xc) {
          for (int64_t r = 0; r < Hp; ++r) {  // columns past Wused stay zero
            T* dst = xp.data() + r * Wp;
            const int64_t ih = pad_source_index(r - s.pt, s.H, s.mode);
            if (ih < 0) {
              std::fill(dst, dst + Wused, T(0));
              continue;
            }
            const T* src = xc + ih * s.W;
            for (int64_t c = 0; c < in0; ++c) dst[c] = xp_col[c] < 0 ? T(0) : src[xp_col[c]];
            std::copy(src + in0 - s.pl, src + in1 - s.pl, dst + in0);
            for (int64_t c = in1; c < Wused; ++c) dst[c] = xp_col[c] < 0 ? T(0) : src[xp_col[c]];
          }
          xp_of = xc;
        }
        if (fetch_next && q + 1 < q1) {  // (DW_FETCH_MIN_OUTPUT_BYTES)
          const int64_t qn = q + 1;
          const char* nx = reinterpret_cast<const char*>(x + ((qn / s.Co) * s.C + (qn % s.Co) / mult) * s.H * s.W);
          const char* ny = reinterpret_cast<const char*>(y + qn * s.OH * s.OW);
          const int64_t in_bytes = s.H * s.W * static_cast<int64_t>(sizeof(T));
          const int64_t out_bytes = s.OH * s.OW * static_cast<int64_t>(sizeof(T));
          for (int64_t off = 0; off < in_bytes; off += 64) __builtin_prefetch(nx + off);
          for (int64_t off = 0; off < out_bytes; off += 64) __builtin_prefetch(ny + off, 1);
        }
        if constexpr (std::is_same<T, float>::value)
          plane_fn(xp.data(), Wp, s.sh, s.dh, s.KH, wc, s.KW, s.dw, bias, s.OH, s.OW, yc);
        continue;
      }
      for (int64_t oh = 0; oh < s.OH; ++oh) {
        for (int64_t kh = 0; kh < s.KH; ++kh) {
          const int64_t ih = ih_tab[kh * s.OH + oh];
          rows[kh] = ih < 0 ? nullptr : xc + ih * s.W;
        }
        T* yr = yc + oh * s.OW;
        auto halo = [&](int64_t ow) {  // any column, through the remap tables
          T acc = bias;
          for (int64_t kh = 0; kh < s.KH; ++kh) {
            if (!rows[kh]) continue;
            for (int64_t kw = 0; kw < s.KW; ++kw) {
              const int64_t iw = iw_tab[kw * s.OW + ow];
              if (iw >= 0) acc += wc[kh * s.KW + kw] * rows[kh][iw];
            }
          }
          yr[ow] = acc;
        };
        for (int64_t ow = 0; ow < lo; ++ow) halo(ow);
        for (int64_t ow = lo; ow < hi; ++ow) {  // interior: every tap inside the row
          T acc = bias;
          for (int64_t kh = 0; kh < s.KH; ++kh) {
            if (!rows[kh]) continue;
            const T* src = rows[kh] + ow * s.sw - s.pl;
            for (int64_t kw = 0; kw < s.KW; ++kw) acc += wc[kh * s.KW + kw] * src[kw * s.dw];
          }
          yr[ow] = acc;
        }
        for (int64_t ow = hi; ow < s.OW; ++ow) halo(ow);
      }
    }
  });
}

template void depthwise_forward<float>(const Conv2dShape&, const float*, const float*, const float*, float*);
template void depthwise_forward<double>(const Conv2dShape&, const double*, const double*, const double*, double*);

}  // namespace pycnnrnn

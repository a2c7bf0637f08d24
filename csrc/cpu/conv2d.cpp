// conv2d.cpp — 2-D convolution: the naive float64 oracle first, then the fast driver.
//
// See conv2d.h for shapes and the algorithm map. Index conventions used throughout:
//   p  = oh * OW + ow                       output pixel (GEMM column)
//   kk = (ci * KH + kh) * KW + kw           GEMM reduction index within a group
//   padded input coordinate of (oh, kh) = oh * sh - pt + kh * dh, read through
//   pad_source_index() (the one definition of zeros/reflect/replicate/circular).
#include "cpu/conv2d.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <type_traits>
#include <vector>

#include "core/block_cache.h"
#include "core/dispatch.h"
#include "core/errors.h"
#include "core/shapes.h"
#include "core/thread_pool.h"
#include "cpu/conv2d_depthwise.h"
#include "cpu/conv2d_direct.h"
#include "cpu/elementwise.h"
#include "cpu/gemm.h"
#include "cpu/im2col_kernels.h"
#include "cpu/pool2d.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace pycnnrnn {

// auto picks Winograd F(2x2, 3x3) by channel count and map size (see winograd_preferred).
constexpr int64_t WINOGRAD_MIN_CHANNELS = 32;        // maps of 20x20 outputs and more
constexpr int64_t WINOGRAD_MIN_CHANNELS_SMALL = 64;  // maps of 12x12 up to 20x20 outputs
constexpr int64_t WINOGRAD_MIN_OUTPUTS = 12 * 12, WINOGRAD_SMALL_OUTPUTS = 20 * 20;
constexpr int64_t WINOGRAD_GRAD_WEIGHT_MIN_OUTPUTS = 16 * 16;  // see conv2d_backward

void Conv2dShape::finalize() {
  PYC_CHECK(N >= 0, "input batch size must be >= 0, got ", N);
  PYC_CHECK(C > 0 && H > 0 && W > 0, "input must have non-zero C, H, W, got (", C, ", ", H, ", ", W, ")");
  PYC_CHECK(groups > 0, "groups must be a positive integer, got ", groups);
  PYC_CHECK(Co > 0 && KH > 0 && KW > 0, "weight must have non-zero out_channels and kernel size, got (", Co,
            ", ", KH, ", ", KW, ")");
  PYC_CHECK(C % groups == 0, "in_channels (", C, ") must be divisible by groups (", groups, ")");
  PYC_CHECK(Co % groups == 0, "out_channels (", Co, ") must be divisible by groups (", groups, ")");
  PYC_CHECK(sh > 0 && sw > 0, "stride must be positive, got (", sh, ", ", sw, ")");
  PYC_CHECK(dh > 0 && dw > 0, "dilation must be positive, got (", dh, ", ", dw, ")");
  PYC_CHECK(pt >= 0 && pb >= 0 && pl >= 0 && pr >= 0, "padding must be non-negative");
  // Bounds that keep every size formula below free of int64 overflow (all products < 2^62).
  constexpr int64_t kMax = int64_t{1} << 31;
  PYC_CHECK(sh < kMax && sw < kMax && dh < kMax && dw < kMax && pt < kMax && pb < kMax && pl < kMax && pr < kMax,
            "stride, padding and dilation must each be < 2^31, got stride (", sh, ", ", sw, "), padding (", pt,
            ", ", pb, ", ", pl, ", ", pr, "), dilation (", dh, ", ", dw, ")");
  PYC_CHECK(H < kMax && W < kMax && KH < kMax && KW < kMax, "input and kernel height/width must be < 2^31, got (",
            H, ", ", W, ") and (", KH, ", ", KW, ")");
  if (mode == PadMode::reflect)
    PYC_CHECK(pt < H && pb < H && pl < W && pr < W, "padding_mode='reflect' needs padding < input size, got ",
              "padding (", pt, ", ", pb, ", ", pl, ", ", pr, ") for input (", H, ", ", W, ")");
  if (mode == PadMode::circular)
    PYC_CHECK(pt <= H && pb <= H && pl <= W && pr <= W,
              "padding_mode='circular' needs padding <= input size, got padding (", pt, ", ", pb, ", ", pl, ", ",
              pr, ") for input (", H, ", ", W, ")");
  const int64_t eh = dh * (KH - 1) + 1, ew = dw * (KW - 1) + 1;
  PYC_CHECK(H + pt + pb >= eh && W + pl + pr >= ew, "padded input size (", H + pt + pb, " x ", W + pl + pr,
            ") is smaller than the dilated kernel (", eh, " x ", ew, ")");
  OH = conv_output_size(H, KH, sh, pt, pb, dh);
  OW = conv_output_size(W, KW, sw, pl, pr, dw);
  checked_numel({N, Co, OH, OW}, "conv2d output");
  checked_numel({N, C, H, W}, "conv2d input");
  checked_numel({Co, Cg(), KH, KW}, "conv2d weight");
}

// ======================= the oracle (float64, straight from the definition) ================

// y[n][co][oh][ow] = b[co] + sum_{ci, kh, kw} w[co][ci][kh][kw] * xpad[n][g*Cg+ci][oh*sh+kh*dh][ow*sw+kw*dw]
void conv2d_forward_naive(const Conv2dShape& s, const double* x, const double* w, const double* b, double* y) {
  const int64_t Cg = s.Cg(), Cog = s.Cog();
  for (int64_t n = 0; n < s.N; ++n)
    for (int64_t co = 0; co < s.Co; ++co) {
      const int64_t g = co / Cog;
      for (int64_t oh = 0; oh < s.OH; ++oh)
        for (int64_t ow = 0; ow < s.OW; ++ow) {
          double acc = b ? b[co] : 0.0;
          for (int64_t ci = 0; ci < Cg; ++ci)
            for (int64_t kh = 0; kh < s.KH; ++kh)
              for (int64_t kw = 0; kw < s.KW; ++kw) {
                const int64_t ih = pad_source_index(oh * s.sh - s.pt + kh * s.dh, s.H, s.mode);
                const int64_t iw = pad_source_index(ow * s.sw - s.pl + kw * s.dw, s.W, s.mode);
                if (ih < 0 || iw < 0) continue;
                acc += w[((co * Cg + ci) * s.KH + kh) * s.KW + kw] *
                       x[((n * s.C + g * Cg + ci) * s.H + ih) * s.W + iw];
              }
          y[((n * s.Co + co) * s.OH + oh) * s.OW + ow] = acc;
        }
    }
}

// The adjoint of the loop above: every product's partial derivatives scattered back.
void conv2d_backward_naive(const Conv2dShape& s, const double* gy, const double* x, const double* w, double* gx,
                           double* gw, double* gb) {
  const int64_t Cg = s.Cg(), Cog = s.Cog();
  if (gx) std::fill(gx, gx + s.N * s.C * s.H * s.W, 0.0);
  if (gw) std::fill(gw, gw + s.Co * Cg * s.KH * s.KW, 0.0);
  if (gb) std::fill(gb, gb + s.Co, 0.0);
  for (int64_t n = 0; n < s.N; ++n)
    for (int64_t co = 0; co < s.Co; ++co) {
      const int64_t g = co / Cog;
      for (int64_t oh = 0; oh < s.OH; ++oh)
        for (int64_t ow = 0; ow < s.OW; ++ow) {
          const double d = gy[((n * s.Co + co) * s.OH + oh) * s.OW + ow];
          if (gb) gb[co] += d;
          for (int64_t ci = 0; ci < Cg; ++ci)
            for (int64_t kh = 0; kh < s.KH; ++kh)
              for (int64_t kw = 0; kw < s.KW; ++kw) {
                const int64_t ih = pad_source_index(oh * s.sh - s.pt + kh * s.dh, s.H, s.mode);
                const int64_t iw = pad_source_index(ow * s.sw - s.pl + kw * s.dw, s.W, s.mode);
                if (ih < 0 || iw < 0) continue;
                const int64_t wi = ((co * Cg + ci) * s.KH + kh) * s.KW + kw;
                const int64_t xi = ((n * s.C + g * Cg + ci) * s.H + ih) * s.W + iw;
                if (gx) gx[xi] += d * w[wi];
                if (gw) gw[wi] += d * x[xi];
              }
        }
    }
}

// ======================= the fast driver ====================================================
namespace {

// Index remap tables and interior ranges for one shape (shared by im2col and col2im).
//   ih_tab[kh][oh] = pad_source_index(oh*sh - pt + kh*dh, H)   (-1: zero padding)
//   iw_tab[kw][ow] likewise; ow in [ow_lo[kw], ow_hi[kw]) reads inside the row without remap.
struct ConvIndex {
  std::vector<int64_t> ih_tab, iw_tab, ow_lo, ow_hi;
  explicit ConvIndex(const Conv2dShape& s)
      : ih_tab(static_cast<size_t>(s.KH * s.OH)),
        iw_tab(static_cast<size_t>(s.KW * s.OW)),
        ow_lo(static_cast<size_t>(s.KW)),
        ow_hi(static_cast<size_t>(s.KW)) {
    for (int64_t kh = 0; kh < s.KH; ++kh)
      for (int64_t oh = 0; oh < s.OH; ++oh)
        ih_tab[kh * s.OH + oh] = pad_source_index(oh * s.sh - s.pt + kh * s.dh, s.H, s.mode);
    for (int64_t kw = 0; kw < s.KW; ++kw) {
      int64_t lo = s.OW, hi = 0;
      for (int64_t ow = 0; ow < s.OW; ++ow) {
        const int64_t raw = ow * s.sw - s.pl + kw * s.dw;
        iw_tab[kw * s.OW + ow] = pad_source_index(raw, s.W, s.mode);
        if (raw >= 0 && raw < s.W) {
          lo = std::min(lo, ow);
          hi = std::max(hi, ow + 1);
        }
      }
      ow_lo[kw] = lo < hi ? lo : 0;
      ow_hi[kw] = lo < hi ? hi : 0;
    }
  }
};

// d[j] = src[2 * j] for j < n (a stride-2 output row: a 7x7/2 stem). SSE2 (the x86-64
// baseline): two loads and one shuffle per 4 floats while the pair's last element, src[2j + 7]
// (one past the last it needs), stays within src[2(n - 1)]: j + 5 <= n. The loop one element
// at a time was 40% of the stem's time.
template <typename T>
void copy_stride2(const T* src, T* d, int64_t n) {
  int64_t j = 0;
#if defined(__SSE2__)
  if constexpr (std::is_same<T, float>::value)
    for (; j + 5 <= n; j += 4)
      _mm_storeu_ps(d + j, _mm_shuffle_ps(_mm_loadu_ps(src + 2 * j), _mm_loadu_ps(src + 2 * j + 4), 0x88));
#endif
  for (; j < n; ++j) d[j] = src[2 * j];
}

// dst[kk - k0][p - n0] = xpad_g[ci][oh*sh - pt + kh*dh][ow*sw - pl + kw*dw]
// for kk in [k0, k0+kc), p in [n0, n0+nc); xg = one image's group [Cg][H][W].
// The reference loop for every case (the fast path is ImageCols below).
template <typename T>
void im2col_block(const Conv2dShape& s, const ConvIndex& ix, const T* xg, int64_t k0, int64_t kc, int64_t n0,
                  int64_t nc, T* dst, int64_t ld) {
  // (ci, kh, kw) of kk and (oh, ow) of n0 counted, not divided, per row (the engine asks for
  // one 64-column panel at a time)
  int64_t ci = k0 / (s.KH * s.KW), kh = (k0 / s.KW) % s.KH, kw = k0 % s.KW;
  const int64_t oh0 = n0 / s.OW, ow0 = n0 % s.OW;
  for (int64_t kk = k0; kk < k0 + kc; ++kk) {
    const T* xc = xg + ci * s.H * s.W;
    const int64_t* ihm = ix.ih_tab.data() + kh * s.OH;
    const int64_t* iwm = ix.iw_tab.data() + kw * s.OW;
    const int64_t lo = ix.ow_lo[kw], hi = ix.ow_hi[kw], off = kw * s.dw - s.pl;
    T* d = dst + (kk - k0) * ld;
    int64_t p = n0, oh = oh0, ow = ow0;
    const int64_t pend = n0 + nc;
    while (p < pend) {
      const int64_t run = std::min(s.OW - ow, pend - p);  // ow .. ow+run-1 on output row oh
      const int64_t ih = ihm[oh];
      if (ih < 0) {
        std::fill(d, d + run, T(0));
      } else {
        const T* row = xc + ih * s.W;
        const int64_t a = std::max(ow, std::min(lo, ow + run)), b = std::max(a, std::min(hi, ow + run));
        for (int64_t j = ow; j < a; ++j) {  // left halo: remap
          const int64_t iw = iwm[j];
          d[j - ow] = iw < 0 ? T(0) : row[iw];
        }
        if (s.sw == 1) {
          const T* src = row + off;
          if (b > a) std::memcpy(d + (a - ow), src + a, static_cast<size_t>(b - a) * sizeof(T));
        } else if (s.sw == 2) {
          if (b > a) copy_stride2(row + a * 2 + off, d + (a - ow), b - a);
        } else {
          for (int64_t j = a; j < b; ++j) d[j - ow] = row[j * s.sw + off];
        }
        for (int64_t j = b; j < ow + run; ++j) {  // right halo: remap
          const int64_t iw = iwm[j];
          d[j - ow] = iw < 0 ? T(0) : row[iw];
        }
      }
      d += run;
      p += run;
      ow = 0;
      ++oh;
    }
    if (++kw == s.KW) {
      kw = 0;
      if (++kh == s.KH) kh = 0, ++ci;
    }
  }
}

// The padded-copy im2col and col2im (cpu/im2col_kernels.h) of the active ISA; nullptr where
// there are none (the reference loops then run).
template <typename T>
struct PaddedKernels {
  Im2colPaddedFn<T> im2col = nullptr;
  Col2imPaddedFn<T> col2im = nullptr;
};
template <typename T>
PaddedKernels<T> padded_kernels();
template <>
PaddedKernels<float> padded_kernels<float>() {
#if PYCNNRNN_HAVE_X86
  if (active_isa() == Isa::avx512) return {im2col_avx512::im2col_padded_f32, im2col_avx512::col2im_padded_f32};
  if (active_isa() == Isa::avx2) return {im2col_avx2::im2col_padded_f32, im2col_avx2::col2im_padded_f32};
#endif
  return {};
}
template <>
PaddedKernels<double> padded_kernels<double>() {
#if PYCNNRNN_HAVE_X86
  if (active_isa() == Isa::avx512) return {im2col_avx512::im2col_padded_f64, im2col_avx512::col2im_padded_f64};
  if (active_isa() == Isa::avx2) return {im2col_avx2::im2col_padded_f64, im2col_avx2::col2im_padded_f64};
#endif
  return {};
}

// Largest padded image group the fast path copies (bigger ones take the reference loop). The
// engine asks for one 64-column panel at a time, so even on big maps the reference loop's runs
// are short (memcpy calls of 64 columns or less): with 4 MiB here 64->64@224 (13 MB padded) took
// it, 11.9 ms at N=1 through algorithm="gemm", 11.0 ms through the padded copy.
constexpr int64_t PADDED_IMAGE_MAX_BYTES = int64_t(32) << 20;

// The padded image group [Cg][H+pt+pb][W+pl+pr] and the taps the kernels read from it.
PaddedGeometry padded_geometry(const Conv2dShape& s) {
  return PaddedGeometry{s.H + s.pt + s.pb, s.W + s.pl + s.pr, s.KH, s.KW, s.sh, s.sw, s.dh, s.dw, s.OW};
}

// Bytes of one padded image group [Cg][Hp][Wp].
template <typename T>
int64_t padded_image_bytes(const Conv2dShape& s) {
  const PaddedGeometry g = padded_geometry(s);
  return s.Cg() * g.Hp * g.Wp * int64_t(sizeof(T));
}

// Zero padding, a small enough image group and stride 1 along W (the adjoint col2im) or 1 or 2
// (im2col): the padded-copy path applies.
template <typename T>
bool padded_path_applies(const Conv2dShape& s, bool col2im) {
  return (s.sw == 1 || (s.sw == 2 && !col2im)) && s.mode == PadMode::zeros &&
         padded_image_bytes<T>(s) <= PADDED_IMAGE_MAX_BYTES;
}

// im2col blocks of one image group at a time. Where the padded path applies and the ISA has
// the kernel: set_image() copies the group into a zero-padded buffer [Cg][H+pt+pb][W+pl+pr] once
// (a ninth of the column matrix or less), and every block is then contiguous runs of it.
// Otherwise the reference im2col_block. `slot` picks the calling thread's buffer, so nested
// users (grad_input through the forward path inside conv2d_backward) keep their own.
// operator() may run on several threads at once (the engine's M split), after set_image.
// With images > 1 (groups == 1 only), set_images() takes that many consecutive images of the
// batch and the columns are theirs side by side: column i * P + p is pixel p of image i.
template <typename T>
class ImageCols {
 public:
  ImageCols(const Conv2dShape& s, const ConvIndex& ix, int slot, int64_t images = 1) : s_(s), ix_(ix) {
    if (padded_path_applies<T>(s, /*col2im=*/false)) kernel_ = padded_kernels<T>().im2col;
    if (kernel_) {
      g_ = padded_geometry(s);
      thread_local PadBuffer bufs[2];
      buf_ = &bufs[slot];
      // The border is written only here: a buffer last laid out the same way keeps its zeros.
      const int64_t layout[6] = {s.Cg(), g_.Hp, g_.Wp, s.pt, s.pl, images};
      if (!std::equal(layout, layout + 6, buf_->layout)) {
        buf_->data.assign(static_cast<size_t>(images * s.Cg() * g_.Hp * g_.Wp), T(0));
        std::copy(layout, layout + 6, buf_->layout);
      }
    }
  }

  // The padded copy xp[ci][pt + ih][pl + iw] = xg[ci][ih][iw] (interior rows only).
  void set_image(const T* xg) { set_images(xg, 1); }
  // count <= images consecutive images from x (image stride C * H * W).
  void set_images(const T* x, int64_t count) {
    xg_ = x;
    if (!kernel_) return;
    for (int64_t i = 0; i < count; ++i) {
      T* xp = buf_->data.data() + i * s_.Cg() * g_.Hp * g_.Wp;
      for (int64_t ci = 0; ci < s_.Cg(); ++ci)
        for (int64_t ih = 0; ih < s_.H; ++ih) {
          const T* src = x + ((i * s_.C + ci) * s_.H + ih) * s_.W;
          std::copy(src, src + s_.W, xp + (ci * g_.Hp + s_.pt + ih) * g_.Wp + s_.pl);
        }
    }
  }

  // Columns [n0, n0 + nc), split where they cross from one image to the next.
  void operator()(int64_t k0, int64_t kc, int64_t n0, int64_t nc, T* dst, int64_t ld) const {
    const int64_t P = s_.OH * s_.OW;
    for (int64_t n = n0; n < n0 + nc;) {
      const int64_t i = n / P, p0 = n - i * P, pc = std::min(n0 + nc - n, P - p0);
      if (kernel_)
        kernel_(buf_->data.data() + i * s_.Cg() * g_.Hp * g_.Wp, g_, k0, kc, p0, pc, dst + (n - n0), ld);
      else
        im2col_block(s_, ix_, xg_ + i * s_.C * s_.H * s_.W, k0, kc, p0, pc, dst + (n - n0), ld);
      n += pc;
    }
  }

 private:
  struct PadBuffer {
    std::vector<T> data;
    int64_t layout[6] = {-1, -1, -1, -1, -1, -1};  // Cg, Hp, Wp, pt, pl, images of the zero border
  };
  const Conv2dShape& s_;
  const ConvIndex& ix_;
  Im2colPaddedFn<T> kernel_ = nullptr;
  PaddedGeometry g_{};
  PadBuffer* buf_ = nullptr;
  const T* xg_ = nullptr;
};

// The adjoint of im2col_block over full rows kk in [0, Kg) and columns p in [p0, p0+pc),
// restricted to input channels [c0, c1): dxg[ci][ih][iw] += col[kk][p - p0].
// Every element is summed in the fixed order (kh, kw, p), whatever the thread split over ci,
// in float64 (a padding-mode fold can land many terms on one edge pixel), rounded once.
template <typename T>
void col2im_channels(const Conv2dShape& s, const ConvIndex& ix, const T* col, int64_t p0, int64_t pc, int64_t c0,
                     int64_t c1, T* dxg) {
  thread_local std::vector<double> acc;
  acc.resize(static_cast<size_t>(s.H * s.W));
  for (int64_t ci = c0; ci < c1; ++ci) {
    T* xc = dxg + ci * s.H * s.W;
    std::copy(xc, xc + s.H * s.W, acc.begin());
    for (int64_t kh = 0; kh < s.KH; ++kh)
      for (int64_t kw = 0; kw < s.KW; ++kw) {
        const T* c = col + ((ci * s.KH + kh) * s.KW + kw) * pc;
        const int64_t* ihm = ix.ih_tab.data() + kh * s.OH;
        const int64_t* iwm = ix.iw_tab.data() + kw * s.OW;
        int64_t p = p0, oh = p0 / s.OW, ow = p0 % s.OW;
        while (p < p0 + pc) {
          const int64_t run = std::min(s.OW - ow, p0 + pc - p);
          const int64_t ih = ihm[oh];
          if (ih >= 0) {
            double* row = acc.data() + ih * s.W;
            for (int64_t j = 0; j < run; ++j) {
              const int64_t iw = iwm[ow + j];
              if (iw >= 0) row[iw] += static_cast<double>(c[p - p0 + j]);
            }
          }
          p += run;
          ow = 0;
          ++oh;
        }
      }
    for (int64_t e = 0; e < s.H * s.W; ++e) xc[e] = static_cast<T>(acc[e]);
  }
}

// col2im of column blocks into one image group's grad_input dx_g[Cg][H][W]. Where the padded
// path applies and the ISA has the kernel: the blocks are added into a zero-padded buffer in
// T (at most KH * KW terms per element, so no float64 needed) whose interior finish() copies
// out. Otherwise the reference col2im_channels (float64 sums, for the remap modes' folds)
// straight into dx_g, which begin() zeroes. add() may run on several threads at once for
// disjoint channel ranges.
template <typename T>
class ImageGrad {
 public:
  ImageGrad(const Conv2dShape& s, const ConvIndex& ix) : s_(s), ix_(ix) {
    if (padded_path_applies<T>(s, /*col2im=*/true)) kernel_ = padded_kernels<T>().col2im;
    if (kernel_) {
      g_ = padded_geometry(s);
      thread_local std::vector<T> tl_buf;
      buf_ = &tl_buf;
      if (static_cast<int64_t>(buf_->size()) < s.Cg() * g_.Hp * g_.Wp)
        buf_->resize(static_cast<size_t>(s.Cg() * g_.Hp * g_.Wp));
    }
  }

  void begin(T* dxg) {
    dxg_ = dxg;
    if (kernel_)
      std::fill(buf_->data(), buf_->data() + s_.Cg() * g_.Hp * g_.Wp, T(0));
    else
      std::fill(dxg, dxg + s_.Cg() * s_.H * s_.W, T(0));
  }

  // dx_g += col2im of col[Kg][pc] (columns [p0, p0 + pc)), channels [c0, c1)
  void add(const T* col, int64_t p0, int64_t pc, int64_t c0, int64_t c1) const {
    if (kernel_)
      kernel_(col, g_, c0, c1, p0, pc, buf_->data());
    else
      col2im_channels(s_, ix_, col, p0, pc, c0, c1, dxg_);
  }

  void finish() const {
    if (!kernel_) return;
    for (int64_t ci = 0; ci < s_.Cg(); ++ci)
      for (int64_t ih = 0; ih < s_.H; ++ih) {
        const T* row = buf_->data() + (ci * g_.Hp + s_.pt + ih) * g_.Wp + s_.pl;
        std::copy(row, row + s_.W, dxg_ + (ci * s_.H + ih) * s_.W);
      }
  }

 private:
  const Conv2dShape& s_;
  const ConvIndex& ix_;
  Col2imPaddedFn<T> kernel_ = nullptr;
  PaddedGeometry g_{};
  std::vector<T>* buf_ = nullptr;
  T* dxg_ = nullptr;
};

bool is_pointwise(const Conv2dShape& s) {  // 1x1, stride 1, no padding: im2col(x) == x
  return s.KH == 1 && s.KW == 1 && s.sh == 1 && s.sw == 1 && s.pt == 0 && s.pb == 0 && s.pl == 0 && s.pr == 0;
}

// Columns per chunk of a materialised column buffer [Kg][pc] (about 4 MiB of float).
int64_t chunk_cols(const Conv2dShape& s) {
  const int64_t P = s.OH * s.OW;
  return std::max<int64_t>(1, std::min<int64_t>(P, (int64_t(1) << 20) / std::max<int64_t>(1, s.Kg())));
}

int work_threads(const Conv2dShape& s);
int batch_threads(const Conv2dShape& s);

// Threads that each take whole (image, group) jobs (1: one job at a time, threaded inside).
// groups > 1: many small GEMMs -> (n, g) pairs in parallel, one thread each; groups == 1:
// images split over threads when the batch splits evenly (batch_threads).
int outer_threads(const Conv2dShape& s) {
  return s.groups > 1 ? static_cast<int>(std::min<int64_t>(work_threads(s), s.N * s.groups)) : batch_threads(s);
}

// Maps smaller than one 64-column B panel (7x7: 49 columns, a quarter of the panel padding;
// 4x4: a narrow 16-column tile) go through the GEMM several images at a time, about this many
// columns side by side. Measured on 2 threads, same runs: 512->512 3x3 at 7x7, N=8, 8.0-8.3 ->
// 6.7-7.5 ms; 64->64 at 4x4, N=64, 0.45 -> 0.40 ms; an 8x8 map (64 columns) gained nothing.
constexpr int64_t CONV_GROUP_COLUMNS = 256;

template <typename T>
void forward_gemm(const Conv2dShape& s, const T* x, const T* w, const T* b, T* y, bool relu = false) {
  const int64_t Cg = s.Cg(), Cog = s.Cog(), Kg = s.Kg(), P = s.OH * s.OW, HW = s.H * s.W;
  const ConvIndex ix(s);
  const bool pointwise = is_pointwise(s);
  const int64_t jobs = s.N * s.groups;
  const int outer = outer_threads(s);
  // groups == 1 and P < 64: the images a thread takes go through the GEMM `group` at a time
  // (their columns side by side, the product into a scratch copied out per image), the padded
  // copies of a group within the padded path's size limit. The k loop of every output is the
  // same as one image at a time: bit-identical results.
  int64_t group = 1;
  if (s.groups == 1 && !pointwise && P > 0 && 4 * P < CONV_GROUP_COLUMNS)
    group = std::min({(s.N + outer - 1) / outer, CONV_GROUP_COLUMNS / P,
                      std::max<int64_t>(1, PADDED_IMAGE_MAX_BYTES / padded_image_bytes<T>(s))});
  if (group > 1) {
    auto images = [&](int64_t n0, int64_t n1, int inner) {
      thread_local std::vector<T> prod;  // [Co][count * P]
      if (static_cast<int64_t>(prod.size()) < s.Co * group * P) prod.resize(static_cast<size_t>(s.Co * group * P));
      ImageCols<T> cols(s, ix, 0, group);
      GemmEpilogue<T> ep = conv_gemm_options<T>();
      ep.relu = relu;
      if (b) ep.bias = b, ep.bias_kind = BiasKind::row;
      for (int64_t n = n0; n < n1; n += group) {
        const int64_t count = std::min(group, n1 - n), cols_n = count * P;
        cols.set_images(x + n * s.C * HW, count);
        BlockProvider<T> prov = [&cols](int64_t k0, int64_t kc, int64_t c0, int64_t nc, T* dst, int64_t ld) {
          cols(k0, kc, c0, nc, dst, ld);
        };
        // prod[Co][count * P] = W[Co][Kg] x im2col(x[n .. n + count))[Kg][count * P]
        gemm_provided_b<T>(false, s.Co, cols_n, Kg, T(1), w, Kg, prov, T(0), prod.data(), cols_n, ep, inner);
        for (int64_t i = 0; i < count; ++i)
          for (int64_t co = 0; co < s.Co; ++co)
            std::memcpy(y + ((n + i) * s.Co + co) * P, prod.data() + co * cols_n + i * P, sizeof(T) * P);
      }
    };
    if (outer > 1)
      parallel_run(outer, [&](int tid, int nt) {
        int64_t n0, n1;
        split_range(s.N, tid, nt, 1, &n0, &n1);
        images(n0, n1, 1);
      });
    else
      images(0, s.N, 0);
    return;
  }
  // The weights W_g [Cog][Kg] are the GEMM's row-major A: the micro-kernel reads them in
  // place (no per-call packing pass; for 512->512 3x3 that pass was 19% of the layer).
  auto one = [&](int64_t job, int inner) {
    const int64_t n = job / s.groups, g = job % s.groups;
    const T* wg = w + g * Cog * Kg;
    const T* xg = x + (n * s.C + g * Cg) * HW;
    T* yg = y + (n * s.Co + g * Cog) * P;
    GemmEpilogue<T> ep = conv_gemm_options<T>();
    ep.relu = relu;
    if (b) {
      ep.bias = b + g * Cog;
      ep.bias_kind = BiasKind::row;
    }
    if (pointwise) {
      // y_g[Cog][HW] = W_g[Cog][Cg] x x_g[Cg][HW]
      gemm<T>(false, false, Cog, P, Cg, T(1), wg, Kg, xg, HW, T(0), yg, P, ep, inner);
    } else {
      // y_g[Cog][P] = W_g[Cog][Kg] x im2col(x_g)[Kg][P]
      ImageCols<T> cols(s, ix, 0);
      cols.set_image(xg);
      BlockProvider<T> prov = [&cols](int64_t k0, int64_t kc, int64_t n0, int64_t nc, T* dst, int64_t ld) {
        cols(k0, kc, n0, nc, dst, ld);
      };
      gemm_provided_b<T>(false, Cog, P, Kg, T(1), wg, Kg, prov, T(0), yg, P, ep, inner);
    }
  };
  if (outer > 1) {
    parallel_run(outer, [&](int tid, int nt) {
      int64_t j0, j1;
      split_range(jobs, tid, nt, 1, &j0, &j1);
      for (int64_t j = j0; j < j1; ++j) one(j, 1);
    });
  } else {
    for (int64_t j = 0; j < jobs; ++j) one(j, 0);
  }
}

template <typename T>
void backward_bias(const Conv2dShape& s, const T* gy, T* gb) {
  const int64_t P = s.OH * s.OW;
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 16) / std::max<int64_t>(1, s.N * P));
  parallel_for(s.Co, grain, [&](int64_t c0, int64_t c1) {
    for (int64_t co = c0; co < c1; ++co) {
      // 16 running sums in T over blocks of 64 elements (4 terms per chain: independent,
      // vectorisable adds), each block's sums added pairwise in float64 and then to a float64
      // total: well inside torch's error, without a float64 conversion per element. (Blocks of
      // 128 left an 8x8 map's 64 elements to the one-at-a-time float64 tail, and the block's
      // 16 sums went one after the other: 5% of a small layer's backward.)
      double acc = 0.0;
      for (int64_t n = 0; n < s.N; ++n) {
        const T* r = gy + (n * s.Co + co) * P;
        int64_t p = 0;
        for (; p + 64 <= P; p += 64) {
          T part[16] = {};
          for (int64_t q = p; q < p + 64; q += 16)
            for (int j = 0; j < 16; ++j) part[j] += r[q + j];
          double d[16];
          for (int j = 0; j < 16; ++j) d[j] = static_cast<double>(part[j]);
          for (int w = 8; w >= 1; w /= 2)
            for (int j = 0; j < w; ++j) d[j] += d[j + w];
          acc += d[0];
        }
        for (; p < P; ++p) acc += static_cast<double>(r[p]);
      }
      gb[co] = static_cast<T>(acc);
    }
  });
}

// Threads worth waking for the whole call: about 2^18 multiply-adds per thread at least (the
// GEMM engine's grain), so tiny convolutions never pay the pool's wake-up.
int work_threads(const Conv2dShape& s) {
  const double macs = static_cast<double>(s.N) * s.Co * s.OH * s.OW * s.Kg();
  return static_cast<int>(std::max(1.0, std::min<double>(get_num_threads(), macs / (1 << 18))));
}

// Threads for splitting the batch: every thread takes whole images (one parallel region,
// private buffers, single-threaded GEMMs) when the batch splits evenly enough; otherwise 1
// (images in sequence, each GEMM threaded by the engine).
int batch_threads(const Conv2dShape& s) {
  const int nt = work_threads(s);
  if (nt <= 1 || s.N < nt) return 1;
  return (s.N % nt == 0 || s.N >= 4 * nt) ? nt : 1;
}

// grad_input: dx_g = col2im(W_g^T[Kg][Cog] x dY_g[Cog][P]), in column chunks.
// Images are independent (disjoint dx), so the batch split needs no reduction.
template <typename T>
void backward_data_gemm(const Conv2dShape& s, const T* gy, const T* w, T* gx) {
  const int64_t Cg = s.Cg(), Cog = s.Cog(), Kg = s.Kg(), P = s.OH * s.OW, HW = s.H * s.W;
  const bool pointwise = is_pointwise(s);
  const ConvIndex ix(s);
  const int64_t pc_max = chunk_cols(s);
  // W_g^T packed once per call, not once per image (it was 16% of a 32->64 layer at 8x8)
  std::vector<PackedA<T>> wt;
  if (!pointwise)
    for (int64_t g = 0; g < s.groups; ++g) wt.push_back(pack_a<T>(true, Kg, Cog, w + g * Cog * Kg, Kg));
  // images [n0, n1); inner = engine threads per GEMM (1 inside a batch split)
  auto images = [&](int64_t n0, int64_t n1, int inner) {
    if (pointwise) {  // dx_g[Cg][HW] = W_g^T x dY_g
      for (int64_t n = n0; n < n1; ++n)
        for (int64_t g = 0; g < s.groups; ++g)
          gemm<T>(true, false, Cg, P, Cog, T(1), w + g * Cog * Kg, Kg, gy + (n * s.Co + g * Cog) * P, P, T(0),
                  gx + (n * s.C + g * Cg) * HW, HW, conv_gemm_options<T>(), inner);
      return;
    }
    std::vector<T> col(static_cast<size_t>(Kg * pc_max));
    ImageGrad<T> grad(s, ix);
    for (int64_t n = n0; n < n1; ++n)
      for (int64_t g = 0; g < s.groups; ++g) {
        const T* dyg = gy + (n * s.Co + g * Cog) * P;
        grad.begin(gx + (n * s.C + g * Cg) * HW);
        for (int64_t p0 = 0; p0 < P; p0 += pc_max) {
          const int64_t pc = std::min(pc_max, P - p0);
          // col[Kg][pc] = W_g^T x dY_g[:, p0:p0+pc]
          gemm_packed_a<T>(wt[static_cast<size_t>(g)], false, pc, T(1), dyg + p0, P, T(0), col.data(), pc,
                           conv_gemm_options<T>(), inner);
          if (inner == 1)
            grad.add(col.data(), p0, pc, 0, Cg);
          else
            parallel_for(Cg, 1, [&](int64_t c0, int64_t c1) { grad.add(col.data(), p0, pc, c0, c1); });
        }
        grad.finish();
      }
  };
  const int bt = batch_threads(s);
  if (bt > 1) {
    parallel_run(bt, [&](int tid, int nt) {
      int64_t n0, n1;
      split_range(s.N, tid, nt, 1, &n0, &n1);
      images(n0, n1, 1);
    });
  } else {
    images(0, s.N, work_threads(s) == 1 ? 1 : 0);  // tiny: no pool regions at all
  }
}

// grad_weight: dW_g[Cog][Kg] = sum_n dY_g[n][Cog][P] x im2col(x[n]_g)[Kg][P]^T, summed
// image by image in order. With a batch split, thread t sums its own images into a
// private partial (thread 0 into gw), then gw += partial_1 + ... + partial_{nt-1} in that
// order: deterministic for a given thread count, no atomics.
template <typename T>
void backward_weight_gemm(const Conv2dShape& s, const T* gy, const T* x, T* gw) {
  const int64_t Cg = s.Cg(), Cog = s.Cog(), Kg = s.Kg(), P = s.OH * s.OW, HW = s.H * s.W, WN = s.Co * Kg;
  const bool pointwise = is_pointwise(s);
  const ConvIndex ix(s);
  const int64_t pc_max = chunk_cols(s);
  // Each image's dW_g goes into its own buffer (beta = 0, then the chunks) and is added to the
  // running sum once: the float sums then carry about 64 + P/64 + N terms per element instead
  // of the N * P / 64 partial sums a running beta = 1 accumulation over all images adds.
  // Non-pointwise: dW_g^T [Kg][Cog] = sum im2col [Kg][pc] x dY^T [pc][Cog], so the big column
  // buffer is the GEMM's row-major A (read in place) and only dY is packed (transposed); one
  // transpose into dW per group at the end. Pointwise: dW_g [Cog][Cg] = dY_g x x_g^T directly.
  // Maps of at most 128 outputs (groups == 1): `group` images at a time, their columns side by
  // side (about CONV_GROUP_COLUMNS), so each GEMM sums over group * P pixels instead of P (an
  // 8x8 map's 64 were a C tile round trip every 64 steps plus a per-image sum). Its float chains
  // are the same short sums; per element about 64 + group * P / 64 + N / group terms instead
  // of 64 + P / 64 + N. Measured (N=64 unless said, 2 threads, one process, image by image /
  // grouped, median of 9 ratios): 32->64@8 1.13x, 64->64@8 1.11x, 64->128@4 1.81x, N=8
  // 128->128@8 1.02x.
  int64_t group = 1;
  if (s.groups == 1 && !pointwise && P > 0 && 2 * P <= CONV_GROUP_COLUMNS)
    group = std::min(CONV_GROUP_COLUMNS / P, std::max<int64_t>(1, PADDED_IMAGE_MAX_BYTES / padded_image_bytes<T>(s)));
  const int64_t chunk = group > 1 ? group * P : pc_max;  // columns per GEMM
  auto images = [&](int64_t n0, int64_t n1, int inner, T* dw) {
    std::vector<T> col(pointwise ? 0 : static_cast<size_t>(Kg * chunk));
    std::vector<T> dys(group > 1 ? static_cast<size_t>(Cog * group * P) : 0);
    std::vector<T> sum(static_cast<size_t>(Kg * Cog)), one(n1 - n0 > 1 ? static_cast<size_t>(Kg * Cog) : 0);
    ImageCols<T> cols(s, ix, 1, group);
    for (int64_t g = 0; g < s.groups; ++g) {
      T* gwg = dw + g * Cog * Kg;
      for (int64_t n = n0; n < n1; n += group) {
        const int64_t count = std::min(group, n1 - n), cols_n = count * P;
        T* dst = n == n0 ? sum.data() : one.data();
        const T* dyg = gy + (n * s.Co + g * Cog) * P;
        const T* xg = x + (n * s.C + g * Cg) * HW;
        if (pointwise) {
          gemm<T>(false, true, Cog, Cg, P, T(1), dyg, P, xg, HW, T(0), dst, Kg, conv_gemm_options<T>(), inner);
        } else {
          // dY of the `count` images side by side [Cog][count * P] (one image: in place)
          const T* dyc = dyg;
          int64_t ldy = P;
          if (count > 1) {
            for (int64_t i = 0; i < count; ++i)
              for (int64_t co = 0; co < Cog; ++co)
                std::memcpy(dys.data() + co * cols_n + i * P, dyg + (i * s.Co + co) * P, sizeof(T) * P);
            dyc = dys.data(), ldy = cols_n;
          }
          cols.set_images(xg, count);
          for (int64_t p0 = 0; p0 < cols_n; p0 += chunk) {
            const int64_t pc = std::min(chunk, cols_n - p0);
            if (inner == 1)
              cols(0, Kg, p0, pc, col.data(), pc);
            else
              parallel_for(Kg, 1, [&](int64_t k0, int64_t k1) { cols(k0, k1 - k0, p0, pc, col.data() + k0 * pc, pc); });
            gemm<T>(false, true, Kg, Cog, pc, T(1), col.data(), pc, dyc + p0, ldy, p0 == 0 ? T(0) : T(1), dst, Cog,
                    conv_gemm_options<T>(), inner);
          }
        }
        if (n != n0)
          for (size_t e = 0; e < sum.size(); ++e) sum[e] += one[e];
      }
      if (pointwise) {
        std::copy(sum.begin(), sum.end(), gwg);
      } else {  // gwg[co][k] = sum[k][co], in 16 x 16 blocks
        for (int64_t c0 = 0; c0 < Cog; c0 += 16)
          for (int64_t k0 = 0; k0 < Kg; k0 += 16)
            for (int64_t co = c0; co < std::min(Cog, c0 + 16); ++co)
              for (int64_t k = k0; k < std::min(Kg, k0 + 16); ++k) gwg[co * Kg + k] = sum[k * Cog + co];
      }
    }
  };
  const int bt = batch_threads(s);
  if (bt <= 1) {
    images(0, s.N, work_threads(s) == 1 ? 1 : 0, gw);  // tiny: no pool regions at all
    return;
  }
  std::vector<T> partial(static_cast<size_t>((bt - 1) * WN));
  parallel_run(bt, [&](int tid, int nt) {
    int64_t n0, n1;
    split_range(s.N, tid, nt, 1, &n0, &n1);
    images(n0, n1, 1, tid == 0 ? gw : partial.data() + (tid - 1) * WN);
  });
  parallel_for(WN, 4096, [&](int64_t e0, int64_t e1) {
    for (int t = 1; t < bt; ++t) {
      const T* pp = partial.data() + (t - 1) * WN;
      for (int64_t e = e0; e < e1; ++e) gw[e] += pp[e];
    }
  });
}

}  // namespace

// auto: Winograd only where its float32 error stays within twice torch's against float64
// WITHOUT the tests' absolute floor. With short GEMM sums (conv_gemm_options) the measured
// max-error ratio to torch on VGG-like layers (post-ReLU input, He weights, 3 seeds) is
// 0.7-1.2x for C_in = 64, 128, 256 and 512 (it was 1.6-2.0x with kc = 256 chains), so the
// channel count no longer limits it. Speed against the GEMM path (with the vector im2col),
// same run, time ratio GEMM / Winograd: 256@28 1.5-1.6, 512@14 1.1-1.4, 64@56 1.3, 128@16
// 1.2, 64@16 1.06, but 32@16 0.84, 512@7 0.57 and 0.62-0.69 on 8x8 maps at 32-64 channels:
// on small maps the transforms cost more than the 2.25x fewer multiplies save.
// A dilated layer is judged by one phase's map (winograd_phase_outputs): that is what the
// tiles cover.
bool winograd_preferred(const Conv2dShape& s) {
  if (!winograd_applies(s)) return false;
  const int64_t outputs = winograd_phase_outputs(s), channels = std::min(s.C, s.Co);
  if (outputs < WINOGRAD_MIN_OUTPUTS) return false;
  return channels >= (outputs < WINOGRAD_SMALL_OUTPUTS ? WINOGRAD_MIN_CHANNELS_SMALL : WINOGRAD_MIN_CHANNELS);
}

// auto takes the direct kernel (conv2d_direct.h) where it applies to a batch split over threads
// with at most 32 output channels and rows of at most 32: there im2col's copy feeds too few
// output channels to pay for itself. Measured (ms, im2col GEMM / direct, same runs, N=64):
// 3->16@32 0.40/0.33, 16->32@16 0.74/0.62, 32->16@16 0.96/0.64, 32->32@16 1.51/1.21, 5x5
// 16->16@24 2.75/2.26; neutral or worse: 16->16@32 1.76/1.81, 64->64@14 4.45/4.59, 8->8@64
// 2.73/2.81, and single images (the direct kernel then splits output channels, not images).
// AVX2 (Zen 3, min of 25, three alternating runs, im2col GEMM / direct): 3->16@32 1.43-1.62 /
// 0.93-0.98, 16->32@16 1.71-2.11 / 1.58-1.74, 32->16@16 2.32-2.46 / 1.63-1.71, 32->32@16
// 3.69-6.06 / 2.67-3.09; N=8 16->16@24 even. Only where the ISA has a vector tile
// (direct_vector_tile).
//
// AVX2's row pieces (conv2d_direct.h) fill every lane of 8x8 and 24-wide maps, and there the
// direct kernel also wins at 64 and 128 output channels. Measured (Zen 3, N=64, 2 threads, min
// of 21, two runs, im2col GEMM / direct): 32->64@8 1.35-1.37 / 1.23-1.25, 64->32@8 (grad_input's
// forward route of the former) 1.79-1.98 / 1.30-1.33, 64->64@8 2.95-3.08 / 2.32-2.53,
// 128->128@8 8.1-11.0 / 7.4-7.5, 16->64@16 2.2 / 1.9, 32->64@16 5.8-5.9 / 5.7-5.7; N=8
// 128->128@8 1.0-1.2 / 1.0-1.1; 64->256@8 and 128->256@8 even within noise, and N=8 64->64@12
// (a row and a half-empty piece) worse, 0.73-0.95 / 0.95-1.13.
bool direct_preferred(const Conv2dShape& s, bool is_float) {
  if (!(direct_vector_tile(is_float) && direct_applies(s, is_float) && direct_image_in_cache(s) &&
        s.groups == 1 && s.OW <= 32 && batch_threads(s) > 1))
    return false;
  if (active_isa() == Isa::avx512) return s.Co <= 32 && s.OW >= 12;  // 16-lane rows: 8-11 wide ones half idle
  return s.Co <= 32 || (s.Co <= 128 && s.OW % 8 == 0);
}

// grad_weight: the direct kernel (no im2col, conv2d_direct.h) for 36 to 320 reduction rows
// (C_in * KH * KW) and at most 64 output channels. Measured (ms, im2col GEMM / direct, same
// runs, N=64): 16->32@16 0.88/0.68, 32->64@8 0.88/0.67, 8->16@32 1.12/1.00, 5x5 16->16@16
// 1.36/1.08, N=8 16->16@24 0.22/0.14; worse with 27 rows (3->32@32 0.83/0.90); even from 576
// rows (64->64@14 0.58/0.60). AVX-512 only: an AVX2 tile (6 rows x 16 channels in two ymm)
// was no faster than the im2col GEMM on Zen 3 (N=64 32->64@8 2.2-2.3 vs 1.8-2.3 ms, 8->16@32
// 2.5-3.0 vs 2.1-2.5).
bool direct_grad_weight_preferred(const Conv2dShape& s, bool is_float) {
  return s.N > 0 && s.Kg() >= 36 && s.Kg() <= 320 && s.Cog() <= 64 && direct_grad_weight_applies(s, is_float);
}

ConvAlgo conv2d_choose_algo(const Conv2dShape& s, ConvAlgo requested, bool is_float) {
  switch (requested) {
    case ConvAlgo::auto_:
      if (depthwise_applies(s)) return ConvAlgo::depthwise;
      if (winograd_preferred(s)) return ConvAlgo::winograd;
      return direct_preferred(s, is_float) ? ConvAlgo::direct : ConvAlgo::gemm;
    case ConvAlgo::gemm: return ConvAlgo::gemm;
    case ConvAlgo::direct:
      PYC_CHECK(direct_applies(s, is_float), "algorithm='direct' needs float32, stride 1, a kernel larger than ",
                "1x1 and output rows of at least 8; got stride (", s.sh, ", ", s.sw, "), kernel (", s.KH, ", ", s.KW,
                "), output width ", s.OW, is_float ? "" : ", float64");
      return ConvAlgo::direct;
    case ConvAlgo::depthwise:
      PYC_CHECK(depthwise_applies(s), "algorithm='depthwise' needs groups == in_channels (got groups=", s.groups,
                ", in_channels=", s.C, ")");
      return ConvAlgo::depthwise;
    case ConvAlgo::winograd:
      PYC_CHECK(winograd_applies(s), "algorithm='winograd' needs a 3x3 kernel, stride 1 and groups 1, ",
                "got kernel (", s.KH, ", ", s.KW, "), stride (", s.sh, ", ", s.sw, "), groups ", s.groups);
      return ConvAlgo::winograd;
  }
  throw std::invalid_argument("algorithm: unknown value");
}

// Without prepared weights Winograd transforms them on every call (16/9 of the weights written).
// Where the weights are large (from memory, not cache) and the batch has few outputs per weight,
// that costs more than the 2.25x fewer multiplies save, and auto takes the GEMM instead.
// Measured on AMD Zen 5 (2 threads, median of 9, ms, GEMM / Winograd, AVX-512 transform of
// 16 filters in registers): 512->512@14 N=1 2.40 / 2.09, N=2 5.50 / 4.09, 1024->1024@14 9.59 /
// 9.58, 512->512@20 4.71 / 3.24; below 14x14 the GEMM: 512->512@13 2.08 / 2.22, @12 1.74 /
// 1.89, 1024->512@12 3.64 / 4.47 (256->256@12, weights in cache: 0.46 / 0.44). AVX2 and scalar
// builds transpose the taps with scalar loads and keep the earlier threshold (512->512@14 N=1
// 2.69 / 3.18, N=2 4.72 / 4.64, N=3 7.9 / 6.0). Outputs: N x one phase's map.
constexpr int64_t WINOGRAD_UNPREPARED_MIN_OUTPUTS = 14 * 14, WINOGRAD_UNPREPARED_MIN_OUTPUTS_SLOW = 300;
bool winograd_per_call_transform_too_costly(const Conv2dShape& s) {
  const int64_t min_outputs =
      active_isa() == Isa::avx512 ? WINOGRAD_UNPREPARED_MIN_OUTPUTS : WINOGRAD_UNPREPARED_MIN_OUTPUTS_SLOW;
  return winograd_weights_big(s) && s.N * winograd_phase_outputs(s) < min_outputs;
}

// Long output rows (at least 112 columns) and a short reduction (144 to 1600 steps) where
// Winograd does not apply: the direct kernel reads the image where it lies while the im2col
// GEMM writes and reads every column. AVX-512 (its 8- and 6-channel tiles), at least 16 output
// channels. Forward calls only: grad_input's forward route keeps its own choice (and its
// col2im path). Measured on AMD Zen 5 (2 threads, median of 7, ms, GEMM / direct): 5x5
// 64->64@112 6.83 / 6.01, 7x7 32->32@112 3.92 / 2.86 (N=8 32.4 / 22.9), 5x5 64->96@112 N=2
// 19.1 / 17.8, 3x3 16->16@224 0.93 / 0.65 (N=4 4.01 / 2.88); outside it slower: 3->64@224
// (27 steps) 1.00 / 1.26, N=8 7.95 / 14.2; 5x5 at 56x56 0.93x; 24->24@112 (216 steps) 0.96x.
bool direct_long_rows_preferred(const Conv2dShape& s, bool is_float) {
  return active_isa() == Isa::avx512 && direct_applies(s, is_float) && s.groups == 1 && s.OW >= 112 &&
         s.Cog() >= 16 && s.Kg() >= 144 && s.Kg() <= 1600;
}

// The algorithm conv2d_forward runs: conv2d_choose_algo's, then auto's choices that depend on
// prepared weights and the ISA.
template <typename T>
ConvAlgo forward_algo(const Conv2dShape& s, ConvAlgo algo, const Conv2dPrepared<T>* prepared) {
  ConvAlgo chosen = conv2d_choose_algo(s, algo, std::is_same<T, float>::value);
  if (chosen == ConvAlgo::winograd && algo == ConvAlgo::auto_ && !prepared && winograd_per_call_transform_too_costly(s))
    chosen = ConvAlgo::gemm;
  if (chosen == ConvAlgo::gemm && algo == ConvAlgo::auto_ &&
      direct_long_rows_preferred(s, std::is_same<T, float>::value))
    chosen = ConvAlgo::direct;
  return chosen;
}

template <typename T>
void conv2d_forward(const Conv2dShape& s, const T* x, const T* w, const T* b, T* y, ConvAlgo algo, bool relu,
                    Conv2dPrepared<T>* prepared) {
  if (s.N == 0) return;
  switch (forward_algo(s, algo, prepared)) {
    case ConvAlgo::depthwise: {
      depthwise_forward(s, x, w, b, y);
      if (relu) relu_inplace(y, s.N * s.Co * s.OH * s.OW);
      return;
    }
    case ConvAlgo::winograd:
      winograd_forward(s, x, w, b, y, relu, prepared ? prepared->winograd_u(s, w) : nullptr);
      return;
    case ConvAlgo::direct:
      if constexpr (std::is_same<T, float>::value) direct_forward(s, x, w, b, y, relu, outer_threads(s));
      return;
    default: forward_gemm(s, x, w, b, y, relu); return;
  }
}

template <typename T>
void conv2d_forward_max_pool2x2(const Conv2dShape& s, const T* x, const T* w, const T* b, T* y, bool relu,
                                Conv2dPrepared<T>* prepared) {
  PYC_CHECK(s.OH >= 2 && s.OW >= 2, "conv2d_forward_max_pool2x2: the convolution's output (", s.OH, "x", s.OW,
            ") is smaller than the 2x2 pool window");
  if (s.N == 0) return;
  if (s.dh == 1 && s.dw == 1 && forward_algo(s, ConvAlgo::auto_, prepared) == ConvAlgo::winograd) {
    winograd_forward(s, x, w, b, y, relu, prepared ? prepared->winograd_u(s, w) : nullptr, /*pool=*/true);
    return;
  }
  BlockArray<T> full(static_cast<size_t>(s.N * s.Co * s.OH * s.OW));  // fully written
  conv2d_forward(s, x, w, b, full.data(), ConvAlgo::auto_, relu, prepared);
  const Pool2dShape pool{s.N * s.Co, s.OH, s.OW, s.OH / 2, s.OW / 2, 2, 2, 2, 2, 0, 0, 1, 1};
  max_pool2d_forward(full.data(), y, nullptr, pool);
}

namespace {

// grad_input for stride 1, zero padding: the forward convolution of dY with the flipped,
// transposed weights W'_g[ci][co][kh][kw] = W_g[co][ci][KH-1-kh][KW-1-kw] and padding
// d*(K-1) - p per side (output size H x W). Reuses the fast forward path (implicit GEMM or
// the depthwise kernel when C == Co == groups).
bool backward_data_as_forward_applies(const Conv2dShape& s) {
  const int64_t eh = s.dh * (s.KH - 1), ew = s.dw * (s.KW - 1);
  return s.sh == 1 && s.sw == 1 && s.mode == PadMode::zeros && s.pt <= eh && s.pb <= eh && s.pl <= ew &&
         s.pr <= ew && !is_pointwise(s);
}

// The forward convolution backward_data_as_forward runs: dY [N][Co][OH][OW] in, dX out.
Conv2dShape backward_data_shape(const Conv2dShape& s) {
  Conv2dShape t;
  t.N = s.N, t.C = s.Co, t.H = s.OH, t.W = s.OW;
  t.Co = s.C, t.KH = s.KH, t.KW = s.KW, t.groups = s.groups;
  t.dh = s.dh, t.dw = s.dw;
  t.pt = s.dh * (s.KH - 1) - s.pt, t.pb = s.dh * (s.KH - 1) - s.pb;
  t.pl = s.dw * (s.KW - 1) - s.pl, t.pr = s.dw * (s.KW - 1) - s.pr;
  t.finalize();  // t.OH == s.H, t.OW == s.W
  return t;
}

// Either route computes the same products. As a forward convolution the GEMM has only C_g
// rows against 9 * C_og reduction steps and im2col copies 9 * C_og values per pixel; through
// col2im it has 9 * C_g rows and col2im adds 9 * C_g values per pixel (one vector per output
// row segment: short rows cost more). Measured N=64 (ms, forward route / col2im): 3->16@32
// 0.99/0.56, 8->32@16 0.70/0.44, 16->64@16 1.81/1.34, 16->32@32 3.57/2.83, 3->64@224 (N=8)
// 31.8/10.9; even 16->32@16 0.89/0.87, 32->128@8 1.68/1.62; worse 32->64@8 0.82/1.09. Winograd
// and depthwise keep the forward route.
// forward_algo: auto's algorithm for the forward route (backward_data_shape(s)), chosen once by
// the caller and passed to both this test and backward_data_as_forward: auto's choice reads
// the thread count, and choosing twice while another Python thread changed it ran the forward
// route on the im2col GEMM, a result that no thread count gives.
template <typename T>
bool backward_data_via_col2im(const Conv2dShape& s, ConvAlgo forward_algo) {
  if (!backward_data_as_forward_applies(s)) return true;
  const int64_t cg = s.Cg(), cog = s.Cog();
  if (cg >= cog || !(cg <= 8 || cog >= 4 * cg || s.OW >= 32)) return false;
  if (!padded_path_applies<T>(s, /*col2im=*/true) || !padded_kernels<T>().col2im) return false;
  return forward_algo == ConvAlgo::gemm;
}

template <typename T>
void backward_data_as_forward(const Conv2dShape& s, const T* gy, const T* w, T* gx, ConvAlgo algo) {
  const int64_t Cg = s.Cg(), Cog = s.Cog(), KHW = s.KH * s.KW;
  std::vector<T> wt(static_cast<size_t>(s.C * Cog * KHW));  // [C][Cog][KH][KW]
  for (int64_t g = 0; g < s.groups; ++g)
    for (int64_t co = 0; co < Cog; ++co)
      for (int64_t ci = 0; ci < Cg; ++ci) {
        const T* src = w + ((g * Cog + co) * Cg + ci) * KHW;
        T* dst = wt.data() + ((g * Cg + ci) * Cog + co) * KHW;
        for (int64_t k = 0; k < KHW; ++k) dst[k] = src[KHW - 1 - k];
      }
  conv2d_forward(backward_data_shape(s), gy, wt.data(), static_cast<const T*>(nullptr), gx, algo);
}

}  // namespace

template <typename T>
void conv2d_backward(const Conv2dShape& s, const T* gy, const T* x, const T* w, T* gx, T* gw, T* gb) {
  if (gb) backward_bias(s, gy, gb);
  if (gw) {
    // Winograd's grad_weight is accurate (max error below torch's) but not zero-exact: a tap
    // whose products are all zero comes out as +-1e-10-sized rounding residue of G^T M G
    // instead of 0, which Adam turns into a full-size step. Kept to maps of at least 16x16
    // outputs, where it pays (VGG layers); small maps take the zero-exact GEMM path.
    if (winograd_preferred(s) && s.N > 0 && winograd_phase_outputs(s) >= WINOGRAD_GRAD_WEIGHT_MIN_OUTPUTS)
      winograd_backward_weight(s, gy, x, gw);
    else if (direct_grad_weight_preferred(s, std::is_same<T, float>::value)) {
      // (images split only when the batch splits evenly over threads: with groups the (n, g)
      // jobs of outer_threads would leave a thread without images)
      if constexpr (std::is_same<T, float>::value) direct_backward_weight(s, gy, x, gw, batch_threads(s));
    } else
      backward_weight_gemm(s, gy, x, gw);
  }
  if (gx && s.N > 0) {
    const ConvAlgo forward_algo =
        backward_data_as_forward_applies(s)
            ? conv2d_choose_algo(backward_data_shape(s), ConvAlgo::auto_, std::is_same<T, float>::value)
            : ConvAlgo::gemm;
    if (backward_data_via_col2im<T>(s, forward_algo))
      backward_data_gemm(s, gy, w, gx);
    else
      backward_data_as_forward(s, gy, w, gx, forward_algo);
  }
}

template void conv2d_forward_max_pool2x2<float>(const Conv2dShape&, const float*, const float*, const float*,
                                                float*, bool, Conv2dPrepared<float>*);
template void conv2d_forward_max_pool2x2<double>(const Conv2dShape&, const double*, const double*, const double*,
                                                 double*, bool, Conv2dPrepared<double>*);
template void conv2d_forward<float>(const Conv2dShape&, const float*, const float*, const float*, float*, ConvAlgo,
                                    bool, Conv2dPrepared<float>*);
template void conv2d_forward<double>(const Conv2dShape&, const double*, const double*, const double*, double*,
                                     ConvAlgo, bool, Conv2dPrepared<double>*);
template void conv2d_backward<float>(const Conv2dShape&, const float*, const float*, const float*, float*, float*,
                                     float*);
template void conv2d_backward<double>(const Conv2dShape&, const double*, const double*, const double*, double*,
                                      double*, double*);

}  // namespace pycnnrnn

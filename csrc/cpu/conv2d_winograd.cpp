// conv2d_winograd.cpp — Winograd F(2x2, 3x3) forward and grad_weight for 3x3, stride 1,
// dilation 1, groups 1 (Lavin & Gray, CVPR 2016). Any per-side padding and any padding mode (the input tiles are
// gathered through pad_source_index, like im2col).
//
//   Y_tile(2x2) = A^T [ (G g G^T) .* (B^T d B) ] A        d: 4x4 input tile, g: 3x3 filter
//
//   G = [ 1    0    0  ]   B^T = [ 1  0 -1  0 ]   A^T = [ 1  1  1  0 ]
//       [ 1/2  1/2  1/2]         [ 0  1  1  0 ]         [ 0  1 -1 -1 ]
//       [ 1/2 -1/2  1/2]         [ 0 -1  1  0 ]
//       [ 0    0    1  ]         [ 0  1  0 -1 ]
//
// Tile (th, tw) produces output rows 2th..2th+1, cols 2tw..2tw+1 and reads padded input rows
// 2th + i - pt, cols 2tw + j - pl (i, j < 4). Shapes per image, for a chunk of tile rows:
//   U[16][Co][C]   transformed weights (once per call)
//   V[16][C][tc]   transformed input tiles, tc = tiles in the chunk
//   M[16][Co][tc]  = U[xi] x V[xi]   (16 independent GEMMs on the engine)
//   y              = A^T M A + bias, clipped at the bottom/right edge
// 2.25x fewer multiplies than direct. The transforms live in cpu/winograd_transforms.inc,
// built per ISA; with short GEMM sums the float32 error is within torch's (see the tests).
#include <algorithm>
#include <memory>
#include <vector>

#include "core/dispatch.h"
#include "core/thread_pool.h"
#include "cpu/conv2d.h"
#include "cpu/gemm.h"
#include "cpu/winograd_kernels.h"

namespace pycnnrnn {

bool winograd_applies(const Conv2dShape& s) {
  return s.KH == 3 && s.KW == 3 && s.sh == 1 && s.sw == 1 && s.dh == 1 && s.dw == 1 && s.groups == 1;
}

namespace {

// Grow-only scratch per thread and slot (pool threads are persistent): no page faults and no
// zero-fill on every call. Contents are garbage on entry; callers write before reading.
template <typename T>
T* scratch(int slot, int64_t n) {
  thread_local std::vector<T> bufs[3];
  std::vector<T>& v = bufs[slot];
  if (static_cast<int64_t>(v.size()) < n) {
    v.clear();
    v.shrink_to_fit();
    v.resize(static_cast<size_t>(n));
  }
  return v.data();
}

// The transforms for the active ISA (cpu/winograd_transforms.inc).
template <typename T>
WinogradKernels<T> make_kernels(Isa isa);
template <>
WinogradKernels<float> make_kernels<float>(Isa isa) {
#if PYCNNRNN_HAVE_X86
  if (isa == Isa::avx512) return winograd_avx512::kernels_f32();
  if (isa == Isa::avx2) return winograd_avx2::kernels_f32();
#endif
  (void)isa;
  return winograd_scalar::kernels_f32();
}
template <>
WinogradKernels<double> make_kernels<double>(Isa isa) {
#if PYCNNRNN_HAVE_X86
  if (isa == Isa::avx512) return winograd_avx512::kernels_f64();
  if (isa == Isa::avx2) return winograd_avx2::kernels_f64();
#endif
  (void)isa;
  return winograd_scalar::kernels_f64();
}
template <typename T>
const WinogradKernels<T>& kernels() {
  static const WinogradKernels<T> k = make_kernels<T>(active_isa());
  return k;
}

// U[xi][co][ci] = (G g G^T)[xi / 4][xi % 4] for g = w[co][ci], in blocks of
// WINOGRAD_WEIGHT_BLOCK input channels.
template <typename T>
void transform_weights(const Conv2dShape& s, const T* w, T* U) {
  const int64_t CoC = s.Co * s.C;
  const auto weights = kernels<T>().weights;
  parallel_for(s.Co, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t co = c0; co < c1; ++co)
      for (int64_t cb = 0; cb < s.C; cb += WINOGRAD_WEIGHT_BLOCK) {
        const int64_t nb = std::min<int64_t>(WINOGRAD_WEIGHT_BLOCK, s.C - cb);
        weights(w + (co * s.C + cb) * 9, nb, U + co * s.C + cb, CoC);
      }
  });
}

// V[xi][ci][t - t0] for tiles of rows [th0, th1) of one image xn [C][H][W].
template <typename T>
void transform_input(const Conv2dShape& s, const T* xn, int64_t TW, int64_t th0, int64_t th1, T* V, int64_t tc) {
  const int64_t PW = 2 * TW + 2;  // padded columns needed per tile row
  const int64_t plane = s.C * tc;
  const auto input_row = kernels<T>().input_row;
  parallel_for(s.C, 1, [&](int64_t c0, int64_t c1) {
    std::vector<T> buf(static_cast<size_t>(4 * PW + 4 * (TW + 1)));
    const T* r[4] = {buf.data(), buf.data() + PW, buf.data() + 2 * PW, buf.data() + 3 * PW};
    T* scratch = buf.data() + 4 * PW;
    for (int64_t ci = c0; ci < c1; ++ci) {
      const T* xc = xn + ci * s.H * s.W;
      for (int64_t th = th0; th < th1; ++th) {
        // the 4 padded input rows of this tile row, columns c = 0 .. PW-1 <-> input col c - pl
        for (int i = 0; i < 4; ++i) {
          const int64_t ih = pad_source_index(2 * th + i - s.pt, s.H, s.mode);
          T* d = buf.data() + i * PW;
          if (ih < 0) {
            std::fill(d, d + PW, T(0));
            continue;
          }
          const T* row = xc + ih * s.W;
          const int64_t lo = std::min<int64_t>(PW, std::max<int64_t>(0, s.pl)),
                        hi = std::max<int64_t>(lo, std::min<int64_t>(PW, s.W + s.pl));
          for (int64_t c = 0; c < lo; ++c) {
            const int64_t iw = pad_source_index(c - s.pl, s.W, s.mode);
            d[c] = iw < 0 ? T(0) : row[iw];
          }
          std::copy(row + lo - s.pl, row + hi - s.pl, d + lo);
          for (int64_t c = hi; c < PW; ++c) {
            const int64_t iw = pad_source_index(c - s.pl, s.W, s.mode);
            d[c] = iw < 0 ? T(0) : row[iw];
          }
        }
        const int64_t tb = (th - th0) * TW;  // first tile of this row in the chunk
        input_row(r, TW, V + ci * tc + tb, plane, scratch);
      }
    }
  });
}

// y[co][2th + a][2tw + b] = (A^T M A)[a][b] + bias[co] (then max(., 0) if relu), clipped to OH x OW.
template <typename T>
void transform_output(const Conv2dShape& s, const T* M, int64_t TW, int64_t th0, int64_t th1, int64_t tc,
                      const T* b, bool relu, T* yn) {
  const int64_t plane = s.Co * tc;
  const auto output_row = kernels<T>().output_row;
  parallel_for(s.Co, 1, [&](int64_t c0, int64_t c1) {
    std::vector<T> scratch(static_cast<size_t>(8 * TW));
    for (int64_t co = c0; co < c1; ++co) {
      const T bias = b ? b[co] : T(0);
      for (int64_t th = th0; th < th1; ++th) {
        T* out0 = yn + (co * s.OH + 2 * th) * s.OW;
        T* out1 = 2 * th + 1 < s.OH ? out0 + s.OW : nullptr;
        output_row(M + co * tc + (th - th0) * TW, plane, TW, bias, relu, out0, out1, s.OW, scratch.data());
      }
    }
  });
}

}  // namespace

template <typename T>
void winograd_forward(const Conv2dShape& s, const T* x, const T* w, const T* b, T* y, bool relu) {
  const int64_t TH = (s.OH + 1) / 2, TW = (s.OW + 1) / 2;
  const int nt = get_num_threads();
  // The 16 transformed weight matrices U[xi] [Co][C], once for all images and chunks; the
  // GEMMs read them in place as their row-major A.
  std::unique_ptr<T[]> U(new T[static_cast<size_t>(16 * s.Co * s.C)]);  // fully written below
  transform_weights(s, w, U.get());
  auto gemms = [&](const T* V, T* M, int64_t tc, int64_t x0, int64_t x1) {
    for (int64_t xi = x0; xi < x1; ++xi)  // M[xi][Co][tc] = U[xi][Co][C] x V[xi][C][tc]
      gemm<T>(false, false, s.Co, tc, s.C, T(1), U.get() + xi * s.Co * s.C, s.C, V + xi * s.C * tc, tc, T(0),
              M + xi * s.Co * tc, tc, conv_gemm_options<T>(), 1);
  };
  // Chunks of tile rows. Wide images: each thread runs whole chunks end to end (transform,
  // 16 GEMMs, output transform) in private, L2-sized buffers: one parallel region per call.
  const int64_t rows_l2 = std::max<int64_t>(1, (192 + TW - 1) / TW);  // ~192 tiles per chunk
  const int64_t chunks_per_image = (TH + rows_l2 - 1) / rows_l2;
  if (s.N * chunks_per_image >= 4 * nt) {
    const int64_t tc_max = rows_l2 * TW, total = s.N * chunks_per_image;
    parallel_run(nt, [&](int tid, int nthr) {
      T* V = scratch<T>(0, 16 * s.C * tc_max);
      T* M = scratch<T>(1, 16 * s.Co * tc_max);
      int64_t q0, q1;
      split_range(total, tid, nthr, 1, &q0, &q1);
      for (int64_t q = q0; q < q1; ++q) {
        const int64_t n = q / chunks_per_image, th0 = (q % chunks_per_image) * rows_l2;
        const int64_t th1 = std::min(TH, th0 + rows_l2), tc = (th1 - th0) * TW;
        transform_input(s, x + n * s.C * s.H * s.W, TW, th0, th1, V, tc);  // nested: runs serially
        gemms(V, M, tc, 0, 16);
        transform_output(s, M, TW, th0, th1, tc, b, relu, y + n * s.Co * s.OH * s.OW);
      }
    });
    return;
  }
  // Small images: one chunk of up to ~256 tiles at a time, the 16 GEMMs split over threads.
  const int64_t rows = std::min<int64_t>(TH, std::max<int64_t>(1, (256 + TW - 1) / TW));
  const int64_t tc_max = rows * TW;
  std::unique_ptr<T[]> V(new T[static_cast<size_t>(16 * s.C * tc_max)]);
  std::unique_ptr<T[]> M(new T[static_cast<size_t>(16 * s.Co * tc_max)]);
  for (int64_t n = 0; n < s.N; ++n) {
    const T* xn = x + n * s.C * s.H * s.W;
    T* yn = y + n * s.Co * s.OH * s.OW;
    for (int64_t th0 = 0; th0 < TH; th0 += rows) {
      const int64_t th1 = std::min(TH, th0 + rows), tc = (th1 - th0) * TW;
      transform_input(s, xn, TW, th0, th1, V.get(), tc);
      parallel_run(nt, [&](int tid, int nthr) {
        int64_t x0, x1;
        split_range(16, tid, nthr, 1, &x0, &x1);
        gemms(V.get(), M.get(), tc, x0, x1);
      });
      transform_output(s, M.get(), TW, th0, th1, tc, b, relu, yn);
    }
  }
}

// ---- grad_weight ---------------------------------------------------------------------------
// y_tile = A^T [U .* V] A is linear in U = G g G^T, so for a loss with output gradient dY:
//   dL/dU = sum over tiles of (A dY_tile A^T) .* V,     dL/dg = G^T (dL/dU) G
// i.e. 16 GEMMs M[xi][Co][C] += Z[xi][Co][t] x V[xi][C][t]^T over all tiles t of all images
// (Z = A dY A^T of the 2x2 output-gradient tiles, zero past the output edge; V as in the
// forward), then a 4x4 -> 3x3 transform per (co, ci): 2.25x fewer multiplies than im2col.
//   A = [ 1  0 ]    (rows of A: the 4x4 <- 2x2 transform of the output gradient)
//       [ 1  1 ]
//       [ 1 -1 ]
//       [ 0 -1 ]
namespace {

// Z[xi][co][t] for the tiles of rows [th0, th1) of one image's output gradient gyn.
template <typename T>
void transform_output_grad(const Conv2dShape& s, const T* gyn, int64_t TW, int64_t th0, int64_t th1, T* Z,
                           int64_t tc) {
  const int64_t plane = s.Co * tc;
  const auto output_grad_row = kernels<T>().output_grad_row;
  parallel_for(s.Co, 1, [&](int64_t c0, int64_t c1) {
    std::vector<T> scratch(static_cast<size_t>(6 * TW));
    for (int64_t co = c0; co < c1; ++co)
      for (int64_t th = th0; th < th1; ++th) {
        const T* r0 = gyn + (co * s.OH + 2 * th) * s.OW;
        const T* r1 = 2 * th + 1 < s.OH ? r0 + s.OW : nullptr;
        output_grad_row(r0, r1, s.OW, TW, Z + co * tc + (th - th0) * TW, plane, scratch.data());
      }
  });
}

}  // namespace

template <typename T>
void winograd_backward_weight(const Conv2dShape& s, const T* gy, const T* x, T* gw) {
  const int64_t TH = (s.OH + 1) / 2, TW = (s.OW + 1) / 2, CoC = s.Co * s.C;
  const int64_t rows = std::max<int64_t>(1, (192 + TW - 1) / TW);  // ~192 tiles per chunk
  const int64_t tc_max = std::min(TH, rows) * TW;
  std::unique_ptr<T[]> V(new T[static_cast<size_t>(16 * s.C * tc_max)]);
  std::unique_ptr<T[]> Z(new T[static_cast<size_t>(16 * s.Co * tc_max)]);
  std::unique_ptr<T[]> M(new T[static_cast<size_t>(16 * CoC)]);
  bool first = true;
  for (int64_t n = 0; n < s.N; ++n)
    for (int64_t th0 = 0; th0 < TH; th0 += rows) {
      const int64_t th1 = std::min(TH, th0 + rows), tc = (th1 - th0) * TW;
      transform_input(s, x + n * s.C * s.H * s.W, TW, th0, th1, V.get(), tc);
      transform_output_grad(s, gy + n * s.Co * s.OH * s.OW, TW, th0, th1, Z.get(), tc);
      // The 16 products split over threads, each single-threaded: every M[xi] sums its tiles
      // in the same order whatever the thread count.
      parallel_for(16, 1, [&](int64_t x0, int64_t x1) {
        for (int64_t xi = x0; xi < x1; ++xi)
          gemm<T>(false, true, s.Co, s.C, tc, T(1), Z.get() + xi * s.Co * tc, tc, V.get() + xi * s.C * tc, tc,
                  first ? T(0) : T(1), M.get() + xi * CoC, s.C, conv_gemm_options<T>(), 1);
      });
      first = false;
    }
  // gw[co][ci] = G^T M[.][co][ci] G (rows of G^T: (1 .5 .5 0), (0 .5 -.5 0), (0 .5 .5 1))
  parallel_for(CoC, 1024, [&](int64_t e0, int64_t e1) {
    for (int64_t e = e0; e < e1; ++e) {
      T m[4][4], t[3][4];
      for (int xi = 0; xi < 16; ++xi) m[xi / 4][xi % 4] = M[xi * CoC + e];
      for (int j = 0; j < 4; ++j) {  // G^T m
        t[0][j] = m[0][j] + T(0.5) * (m[1][j] + m[2][j]);
        t[1][j] = T(0.5) * (m[1][j] - m[2][j]);
        t[2][j] = T(0.5) * (m[1][j] + m[2][j]) + m[3][j];
      }
      T* g = gw + e * 9;
      for (int i = 0; i < 3; ++i) {  // (G^T m) G
        g[i * 3 + 0] = t[i][0] + T(0.5) * (t[i][1] + t[i][2]);
        g[i * 3 + 1] = T(0.5) * (t[i][1] - t[i][2]);
        g[i * 3 + 2] = T(0.5) * (t[i][1] + t[i][2]) + t[i][3];
      }
    }
  });
}

template void winograd_backward_weight<float>(const Conv2dShape&, const float*, const float*, float*);
template void winograd_backward_weight<double>(const Conv2dShape&, const double*, const double*, double*);

template void winograd_forward<float>(const Conv2dShape&, const float*, const float*, const float*, float*, bool);
template void winograd_forward<double>(const Conv2dShape&, const double*, const double*, const double*, double*,
                                       bool);

}  // namespace pycnnrnn

// conv2d_winograd.cpp — Winograd F(2x2, 3x3) forward for 3x3, stride 1, dilation 1, groups 1
// (Lavin & Gray, CVPR 2016). Any per-side padding and any padding mode (the input tiles are
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
// 2.25x fewer multiplies than direct; float32 error about 2x direct (see the tests' gate).
#include <algorithm>
#include <memory>
#include <vector>

#include "core/thread_pool.h"
#include "cpu/conv2d.h"
#include "cpu/gemm.h"

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

// U[xi][co][ci] = (G g G^T)[xi / 4][xi % 4] for g = w[co][ci]. Computed for blocks of 64 ci
// into a local [16][64] tile, then written out as 16 contiguous runs (16 planes 1 MiB apart
// written element by element would thrash L1 sets).
template <typename T>
void transform_weights(const Conv2dShape& s, const T* w, T* U) {
  const int64_t CoC = s.Co * s.C;
  constexpr int64_t CB = 64;
  parallel_for(s.Co, 1, [&](int64_t c0, int64_t c1) {
    T tile[16][CB];
    for (int64_t co = c0; co < c1; ++co)
      for (int64_t cb = 0; cb < s.C; cb += CB) {
        const int64_t nb = std::min<int64_t>(CB, s.C - cb);
        for (int64_t q = 0; q < nb; ++q) {
          const T* g = w + (co * s.C + cb + q) * 9;
          T t[4][3];  // G g
          for (int j = 0; j < 3; ++j) {
            t[0][j] = g[j];
            t[1][j] = T(0.5) * (g[j] + g[3 + j] + g[6 + j]);
            t[2][j] = T(0.5) * (g[j] - g[3 + j] + g[6 + j]);
            t[3][j] = g[6 + j];
          }
          for (int i = 0; i < 4; ++i) {  // (G g) G^T
            tile[i * 4 + 0][q] = t[i][0];
            tile[i * 4 + 1][q] = T(0.5) * (t[i][0] + t[i][1] + t[i][2]);
            tile[i * 4 + 2][q] = T(0.5) * (t[i][0] - t[i][1] + t[i][2]);
            tile[i * 4 + 3][q] = t[i][2];
          }
        }
        for (int xi = 0; xi < 16; ++xi) std::copy(tile[xi], tile[xi] + nb, U + xi * CoC + co * s.C + cb);
      }
  });
}

// V[xi][ci][t - t0] for tiles of rows [th0, th1) of one image xn [C][H][W].
template <typename T>
void transform_input(const Conv2dShape& s, const T* xn, int64_t TW, int64_t th0, int64_t th1, T* V, int64_t tc) {
  const int64_t PW = 2 * TW + 2;  // padded columns needed per tile row
  const int64_t plane = s.C * tc;
  parallel_for(s.C, 1, [&](int64_t c0, int64_t c1) {
    std::vector<T> buf(static_cast<size_t>(8 * PW));
    T* r[4] = {buf.data(), buf.data() + PW, buf.data() + 2 * PW, buf.data() + 3 * PW};
    T* e = buf.data() + 4 * PW;  // one vertical combination at a time
    for (int64_t ci = c0; ci < c1; ++ci) {
      const T* xc = xn + ci * s.H * s.W;
      for (int64_t th = th0; th < th1; ++th) {
        // the 4 padded input rows of this tile row, columns c = 0 .. PW-1 <-> input col c - pl
        for (int i = 0; i < 4; ++i) {
          const int64_t ih = pad_source_index(2 * th + i - s.pt, s.H, s.mode);
          T* d = r[i];
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
          for (int64_t c = lo; c < hi; ++c) d[c] = row[c - s.pl];
          for (int64_t c = hi; c < PW; ++c) {
            const int64_t iw = pad_source_index(c - s.pl, s.W, s.mode);
            d[c] = iw < 0 ? T(0) : row[iw];
          }
        }
        const int64_t tb = (th - th0) * TW;  // first tile of this row in the chunk
        for (int i = 0; i < 4; ++i) {
          // e = row i of B^T d (vertical), then (e) B horizontally
          switch (i) {
            case 0: for (int64_t c = 0; c < PW; ++c) e[c] = r[0][c] - r[2][c]; break;
            case 1: for (int64_t c = 0; c < PW; ++c) e[c] = r[1][c] + r[2][c]; break;
            case 2: for (int64_t c = 0; c < PW; ++c) e[c] = r[2][c] - r[1][c]; break;
            default: for (int64_t c = 0; c < PW; ++c) e[c] = r[1][c] - r[3][c]; break;
          }
          T* v0 = V + (i * 4 + 0) * plane + ci * tc + tb;
          T* v1 = V + (i * 4 + 1) * plane + ci * tc + tb;
          T* v2 = V + (i * 4 + 2) * plane + ci * tc + tb;
          T* v3 = V + (i * 4 + 3) * plane + ci * tc + tb;
          for (int64_t tw = 0; tw < TW; ++tw) {
            const T* q = e + 2 * tw;
            v0[tw] = q[0] - q[2];
            v1[tw] = q[1] + q[2];
            v2[tw] = q[2] - q[1];
            v3[tw] = q[1] - q[3];
          }
        }
      }
    }
  });
}

// y[co][2th + a][2tw + b] = (A^T M A)[a][b] + bias[co], clipped to OH x OW.
template <typename T>
void transform_output(const Conv2dShape& s, const T* M, int64_t TW, int64_t th0, int64_t th1, int64_t tc,
                      const T* b, T* yn) {
  const int64_t plane = s.Co * tc;
  const int64_t full = s.OW / 2;  // tiles whose two output columns are both inside
  parallel_for(s.Co, 1, [&](int64_t c0, int64_t c1) {
    std::vector<T> buf(static_cast<size_t>(4 * TW));
    T* __restrict o00 = buf.data();
    T* __restrict o01 = o00 + TW;
    T* __restrict o10 = o01 + TW;
    T* __restrict o11 = o10 + TW;
    for (int64_t co = c0; co < c1; ++co) {
      const T bias = b ? b[co] : T(0);
      for (int64_t th = th0; th < th1; ++th) {
        const T* __restrict m = M + co * tc + (th - th0) * TW;  // m[xi * plane + tw]
        // structure-of-arrays over the tiles of this row: contiguous loads, vectorisable
        for (int64_t tw = 0; tw < TW; ++tw) {
          // rows of A^T M (written out so the loop over tw vectorises)
          const T a00 = m[0 * plane + tw] + m[4 * plane + tw] + m[8 * plane + tw];
          const T a01 = m[1 * plane + tw] + m[5 * plane + tw] + m[9 * plane + tw];
          const T a02 = m[2 * plane + tw] + m[6 * plane + tw] + m[10 * plane + tw];
          const T a03 = m[3 * plane + tw] + m[7 * plane + tw] + m[11 * plane + tw];
          const T a10 = m[4 * plane + tw] - m[8 * plane + tw] - m[12 * plane + tw];
          const T a11 = m[5 * plane + tw] - m[9 * plane + tw] - m[13 * plane + tw];
          const T a12 = m[6 * plane + tw] - m[10 * plane + tw] - m[14 * plane + tw];
          const T a13 = m[7 * plane + tw] - m[11 * plane + tw] - m[15 * plane + tw];
          const T a0[4] = {a00, a01, a02, a03}, a1[4] = {a10, a11, a12, a13};
          o00[tw] = a0[0] + a0[1] + a0[2] + bias;
          o01[tw] = a0[1] - a0[2] - a0[3] + bias;
          o10[tw] = a1[0] + a1[1] + a1[2] + bias;
          o11[tw] = a1[1] - a1[2] - a1[3] + bias;
        }
        T* out0 = yn + (co * s.OH + 2 * th) * s.OW;
        for (int64_t tw = 0; tw < full; ++tw) {
          out0[2 * tw] = o00[tw];
          out0[2 * tw + 1] = o01[tw];
        }
        if (full < TW) out0[2 * full] = o00[full];  // odd OW: last column
        if (2 * th + 1 < s.OH) {
          T* out1 = out0 + s.OW;
          for (int64_t tw = 0; tw < full; ++tw) {
            out1[2 * tw] = o10[tw];
            out1[2 * tw + 1] = o11[tw];
          }
          if (full < TW) out1[2 * full] = o10[full];
        }
      }
    }
  });
}

}  // namespace

template <typename T>
void winograd_forward(const Conv2dShape& s, const T* x, const T* w, const T* b, T* y) {
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
        transform_output(s, M, TW, th0, th1, tc, b, y + n * s.Co * s.OH * s.OW);
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
      transform_output(s, M.get(), TW, th0, th1, tc, b, yn);
    }
  }
}

template void winograd_forward<float>(const Conv2dShape&, const float*, const float*, const float*, float*);
template void winograd_forward<double>(const Conv2dShape&, const double*, const double*, const double*, double*);

}  // namespace pycnnrnn

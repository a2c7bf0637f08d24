// conv2d_winograd.cpp — Winograd F(2x2, 3x3) forward and grad_weight for 3x3, stride 1,
// groups 1, any dilation (Lavin & Gray, CVPR 2016). Any per-side padding and any padding mode
// (the input tiles are gathered through pad_source_index, like im2col).
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
//
// Dilation (dh, dw) splits the layer into dh * dw independent dilation-1 layers, its phases:
// output rows a, a + dh, a + 2 dh, ... read only the padded input rows a + dh * j (j = m + kh
// for output m of the phase), so phase (a, b) is a dense 3x3 convolution of the sub-grid
//   x_ab[j][k] = padded x[a + dh * j][b + dw * k]
// with the same weights, and Winograd tiles each phase on its own: tile (th, tw) of phase
// (a, b) reads padded rows a + dh (2 th + i), columns b + dw (2 tw + j), and writes output rows
// a + dh (2 th + u), columns b + dw (2 tw + v). A unit of work takes one row phase a with all
// its column phases side by side in one row of tiles (ColumnPlan): each padded input row is
// fetched once, each output row written whole, and the transforms run over full-length rows.
// Dilation 1 is the single phase (0, 0).
#include <algorithm>
#include <memory>
#include <type_traits>
#include <vector>

#include "core/block_cache.h"
#include "core/dispatch.h"
#include "core/errors.h"
#include "core/thread_pool.h"
#include "cpu/conv2d.h"
#include "cpu/gemm.h"
#include "cpu/pool2d.h"
#include "cpu/winograd_kernels.h"

namespace pycnnrnn {

bool winograd_applies(const Conv2dShape& s) {
  return s.KH == 3 && s.KW == 3 && s.sh == 1 && s.sw == 1 && s.groups == 1;
}

namespace {

// Outputs p, p + d, p + 2d, ... below O (one axis of a phase, see the top of the file).
int64_t phase_outputs(int64_t O, int64_t d, int64_t p) { return (O - p + d - 1) / d; }

}  // namespace

bool winograd_weights_big(const Conv2dShape& s) {
  return s.Co * s.Cg() * s.KH * s.KW * int64_t(sizeof(float)) > (int64_t{4} << 20);
}

int64_t winograd_phase_outputs(const Conv2dShape& s) {
  return phase_outputs(s.OH, s.dh, 0) * phase_outputs(s.OW, s.dw, 0);
}

namespace {

// The phases of one axis (output size O, dilation d): outputs p, p + d, p + 2d, ... (see the
// top of the file); dilation 1 has the single phase p = 0.
struct AxisPhase {
  int64_t p;        // first output
  int64_t outputs;  // ceil((O - p) / d)
  int64_t tiles;    // (outputs + 1) / 2
};

std::vector<AxisPhase> axis_phases(int64_t O, int64_t d) {
  std::vector<AxisPhase> out;
  for (int64_t p = 0; p < std::min(d, O); ++p) {
    const int64_t outputs = phase_outputs(O, d, p);
    out.push_back({p, outputs, (outputs + 1) / 2});
  }
  return out;
}

// The column phases, laid side by side in every tile row: phase b's padded columns follow
// phase b-1's, so the transforms see one row of row_tiles tiles in which the tile straddling
// two phases is junk, computed and never used (one tile in ~2 OW / dw). Dilation 1 is one
// phase of (OW + 1) / 2 tiles and no junk.
struct ColumnPlan {
  std::vector<AxisPhase> cols;
  std::vector<int64_t> first_tile;  // of column phase b within a tile row
  int64_t row_tiles = 0;            // tiles per tile row, junk included
  int64_t span = 0;                 // padded input columns 0 .. span-1 the tiles read
  explicit ColumnPlan(const Conv2dShape& s) : cols(axis_phases(s.OW, s.dw)) {
    int64_t next = 0;
    for (const AxisPhase& c : cols) {
      first_tile.push_back(next);
      row_tiles = next + c.tiles;
      next = row_tiles + 1;  // the junk tile
      span = std::max(span, c.p + s.dw * (2 * c.tiles + 1) + 1);
    }
  }
};

// A unit of work: tile rows [th0, th1) of row phase `row` of image n, every column phase.
struct Chunk {
  int64_t n;
  const AxisPhase* row;
  int64_t th0, th1;
};

// Every image's row phases cut into chunks of about target_tiles tiles (whole tile rows), in
// image, phase, row order.
std::vector<Chunk> chunks(const Conv2dShape& s, const std::vector<AxisPhase>& rows, int64_t row_tiles,
                          int64_t target_tiles) {
  std::vector<Chunk> out;
  const int64_t per_chunk = std::max<int64_t>(1, (target_tiles + row_tiles - 1) / row_tiles);
  for (int64_t n = 0; n < s.N; ++n)
    for (const AxisPhase& r : rows)
      for (int64_t th0 = 0; th0 < r.tiles; th0 += per_chunk)
        out.push_back({n, &r, th0, std::min(r.tiles, th0 + per_chunk)});
  return out;
}

int64_t chunk_tiles(const Chunk& c, int64_t row_tiles) { return (c.th1 - c.th0) * row_tiles; }

// Consecutive chunks [first, last) that share one set of 16 GEMMs, their tiles side by side.
struct Run {
  int64_t first, last, tiles;
};

// Chunks [q0, q1) in runs of at most max_tiles tiles: a small map's chunks (a 14x14 map is one
// chunk of 49 tiles, a quarter of a 64-column panel padding) go through the GEMMs several images
// at a time. A chunk larger than that is a run of its own.
constexpr int64_t RUN_MAX_TILES = 256;
std::vector<Run> runs(const std::vector<Chunk>& cs, int64_t q0, int64_t q1, int64_t row_tiles, int64_t max_tiles) {
  std::vector<Run> out;
  for (int64_t q = q0; q < q1; ++q) {
    const int64_t t = chunk_tiles(cs[q], row_tiles);
    if (!out.empty() && out.back().tiles + t <= max_tiles) {
      out.back().last = q + 1;
      out.back().tiles += t;
    } else {
      out.push_back({q, q + 1, t});
    }
  }
  return out;
}

// Runs of the few-images path (winograd_forward): from 256 input channels up to 1024 tiles, so
// that a 56x56 image (784 tiles) or four 28x28 ones are one run: fewer, longer GEMMs (fewer
// calls and narrow last panels, U[xi] read once), while V and M (16 x C and 16 x Co floats a
// tile) outgrow L2; the balance was measured, not modelled. One process alternating, runs of
// up to 256 / 1024 tiles (whole-layer U or, one run, the fused transform), ms, N=1:
// 256->256@56 5.30 / 4.92, 256->256@48 4.05 / 3.70, 384->384@40 6.17 / 5.45, 512->512@56 19.4 /
// 17.7, 256->512@56 9.72 / 9.43; 512->512@28 N=2 10.3 / 9.4, N=4 19.9 / 18.5; 256->256@28 N=4
// 5.93 / 5.11; AVX2 and float64 -1..+6%. With 128 channels they were mixed: 128->256@56 2.44 ->
// 2.70-2.82 ms (runs of 512-1024), 128->128@56 +1-5%. (Many images, or big maps in many chunks,
// take the path above.)
int64_t few_images_run_tiles(const Conv2dShape& s) { return s.C >= 256 ? 4 * RUN_MAX_TILES : RUN_MAX_TILES; }

int64_t max_run_tiles(const std::vector<Run>& rs) {
  int64_t m = 0;
  for (const Run& r : rs) m = std::max(m, r.tiles);
  return m;
}

int64_t max_chunk_rows(const std::vector<Chunk>& cs) {
  int64_t m = 0;
  for (const Chunk& c : cs) m = std::max(m, c.th1 - c.th0);
  return m;
}

// Source of padded coordinate i along a dim of size n padded by (lo, hi): pad_source_index,
// and -1 (a zero) past the padded extent, where a tile cut by the output edge may read.
int64_t tile_source_index(int64_t i, int64_t n, int64_t lo, int64_t hi, PadMode mode) {
  return i < -lo || i >= n + hi ? -1 : pad_source_index(i, n, mode);
}

// Fetches [p, p + bytes) into L1 ahead of use.
void prefetch_range(const void* p, int64_t bytes) {
  const char* c = static_cast<const char*>(p);
  for (int64_t o = 0; o < bytes; o += 64) __builtin_prefetch(c + o, 0, 3);
}

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

constexpr int64_t WEIGHT_PREFETCH_BLOCKS = 2;  // how far ahead transform_weight_rows fetches w

// U[xi - x0][co - co0][ci] (planes ldu apart) = (G g G^T)[xi / 4][xi % 4] for g = w[co][ci],
// rows co in [co0, co1), x0 <= xi < x1: the rows' filters are contiguous in w, taken
// WINOGRAD_WEIGHT_BLOCK at a time.
template <typename T>
void transform_weight_rows(const Conv2dShape& s, const T* w, int64_t co0, int64_t co1, int x0, int x1, T* U,
                           int64_t ldu) {
  const auto weights = kernels<T>().weights;
  const int64_t filters = (co1 - co0) * s.C;
  const T* g = w + co0 * s.C * 9;
  // The filters of blocks ahead fetched in software: from memory (each layer's weights in a
  // VGG16 forward) one core's loads alone read w at ~9 GB/s (the 512->512 fused transform 1.0 ->
  // 0.39 ms per thread, one core, microbenchmark; 512->512@14 N=1 call 2.26 -> 1.88 ms from
  // memory, 1.87 -> 1.70 ms from the L3, same process, alternating).
  const int64_t block_bytes = WINOGRAD_WEIGHT_BLOCK * 9 * int64_t(sizeof(T));
  const char* end = reinterpret_cast<const char*>(g + filters * 9);
  for (int64_t f = 0; f < filters; f += WINOGRAD_WEIGHT_BLOCK) {
    const char* ahead = reinterpret_cast<const char*>(g + f * 9) + WEIGHT_PREFETCH_BLOCKS * block_bytes;
    for (int64_t o = 0; o < block_bytes && ahead + o < end; o += 64) __builtin_prefetch(ahead + o, 0, 3);
    weights(g + f * 9, std::min<int64_t>(WINOGRAD_WEIGHT_BLOCK, filters - f), U + f, ldu, x0, x1);
  }
}

// U[xi][co][ci] for the whole layer.
template <typename T>
void transform_weights(const Conv2dShape& s, const T* w, T* U) {
  parallel_for(s.Co, 1,
               [&](int64_t c0, int64_t c1) { transform_weight_rows(s, w, c0, c1, 0, 16, U + c0 * s.C, s.Co * s.C); });
}

// V[xi][ci][t] for the tiles t of rows [th0, th1) of row phase `row` of one image xn [C][H][W]
// (t = (th - th0) * row_tiles + first_tile[b] + tw).
template <typename T>
void transform_input(const Conv2dShape& s, const ColumnPlan& cp, const AxisPhase& row, const T* xn, int64_t th0,
                     int64_t th1, T* V, int64_t tc) {
  const int64_t plane = s.C * tc, span = cp.span, dw = s.dw;
  const int64_t PW = 2 * cp.row_tiles + 2;  // columns of a tile row (all phases)
  // padded column c <-> input column c - pl; [lo, hi) lie inside the input
  const int64_t lo = std::min(span, s.pl), hi = std::max(lo, std::min(span, s.W + s.pl));
  const auto& K = kernels<T>();
  parallel_for(s.C, 1, [&](int64_t c0, int64_t c1) {
    // 4 padded row slots (span columns), then (dw > 1) 4 slots of the phases' columns side by
    // side, then the transform's scratch. Phase row k = 2 th + i lives in slot k % 4: tile row
    // th + 1 reuses th's last two rows, so each input row is copied once per channel, not twice
    // (prepared VGG layers, Zen 5, interleaved in one process: 1.01x at 64@224, 1.02x at 128@112,
    // 1.05x at 256@56, 1.01x at 512@28; N=8 1.01x at 64@224, 1.025x at 256@56).
    std::vector<T> buf(static_cast<size_t>(4 * span + (dw > 1 ? 4 * PW : 0) + 4 * (cp.row_tiles + 1)));
    T* padded = buf.data();
    T* phase_rows = padded + 4 * span;
    T* scratch = phase_rows + (dw > 1 ? 4 * PW : 0);
    // The chunk's input rows of a channel are one contiguous range of its plane, fetched one
    // channel ahead: rows of 64 channels 200 KB apart defeated the hardware prefetcher (64->64@224
    // N=8 49.2 -> 45.3 ms, N=1 6.38 -> 5.72 ms, same process, alternating).
    const int64_t r_first = std::max<int64_t>(0, row.p - s.pt + s.dh * 2 * th0);
    const int64_t r_last = std::min<int64_t>(s.H - 1, row.p - s.pt + s.dh * (2 * th1 + 1));
    const int64_t rows_bytes = std::max<int64_t>(0, r_last - r_first + 1) * s.W * int64_t(sizeof(T));
    for (int64_t ci = c0; ci < c1; ++ci) {
      const T* xc = xn + ci * s.H * s.W;
      if (ci + 1 < c1) prefetch_range(xc + (s.H + r_first) * s.W, rows_bytes);
      for (int64_t th = th0; th < th1; ++th) {
        const T* r[4];
        for (int i = 0; i < 4; ++i) {  // padded rows row.p + dh (2 th + i)
          const int64_t slot = (2 * th + i) % 4;
          T* d = padded + slot * span;
          r[i] = dw > 1 ? phase_rows + slot * PW : d;
          if (th > th0 && i < 2) continue;  // filled as rows 2 and 3 of tile row th - 1
          const int64_t ih = tile_source_index(row.p - s.pt + s.dh * (2 * th + i), s.H, s.pt, s.pb, s.mode);
          if (ih < 0) {
            std::fill(d, d + span, T(0));
          } else {
            const T* src = xc + ih * s.W;
            for (int64_t c = 0; c < lo; ++c) {
              const int64_t iw = tile_source_index(c - s.pl, s.W, s.pl, s.pr, s.mode);
              d[c] = iw < 0 ? T(0) : src[iw];
            }
            std::copy(src + lo - s.pl, src + hi - s.pl, d + lo);
            for (int64_t c = hi; c < span; ++c) {
              const int64_t iw = tile_source_index(c - s.pl, s.W, s.pl, s.pr, s.mode);
              d[c] = iw < 0 ? T(0) : src[iw];
            }
          }
          if (dw > 1)  // phase b's columns col.p + dw * c (c < 2 tiles + 2) from column 2 first_tile[b]
            for (size_t b = 0; b < cp.cols.size(); ++b)
              K.strided_copy(d + cp.cols[b].p, dw, 2 * cp.cols[b].tiles + 2, phase_rows + slot * PW + 2 * cp.first_tile[b]);
        }
        K.input_row(r, cp.row_tiles, V + ci * tc + (th - th0) * cp.row_tiles, plane, scratch);
      }
    }
  });
}

// Output rows row.p + dh (2 th + u), u < 2, of the chunk's tiles: y[co][.][col.p + dw (2 tw + v)]
// = (A^T M A)[u][v] + bias[co] (then max(., 0) if relu), clipped to the output.
// pool (dilation 1 only): y is the 2x2, stride-2 max pool of that output, (OH / 2) x (OW / 2) a
// channel: each tile row's two output rows go to L1 and pooled row th is taken from them there
// (a last tile row with one output row has no pooled row: floor).
template <typename T>
void transform_output(const Conv2dShape& s, const ColumnPlan& cp, const AxisPhase& row, const T* M, int64_t th0,
                      int64_t th1, int64_t tc, const T* b, bool relu, bool pool, T* yn) {
  const int64_t plane = s.Co * tc, dw = s.dw, OWt = 2 * cp.row_tiles;  // columns of a tile row
  const auto& K = kernels<T>();
  parallel_for(s.Co, 1, [&](int64_t c0, int64_t c1) {
    // the transform's scratch, then (dw > 1) the two rows of all phases side by side, or (pool)
    // the two output rows
    std::vector<T> buf(static_cast<size_t>(8 * cp.row_tiles + (dw > 1 ? 2 * OWt : 0) + (pool ? 2 * s.OW : 0)));
    T* scratch = buf.data();
    T* phase_out[2] = {scratch + 8 * cp.row_tiles, scratch + 8 * cp.row_tiles + OWt};
    T* pool_rows = scratch + 8 * cp.row_tiles;  // (pool, dw == 1) rows 2 th and 2 th + 1
    const int64_t m_bytes = (th1 - th0) * cp.row_tiles * int64_t(sizeof(T));  // one channel's row of M[xi]
    for (int64_t co = c0; co < c1; ++co) {
      const T bias = b ? b[co] : T(0);
      if (co + 1 < c1)  // the next channel's 16 rows of M, one plane apart (512->512@14 N=8: 1.05x)
        for (int xi = 0; xi < 16; ++xi) prefetch_range(M + xi * plane + (co + 1) * tc, m_bytes);
      for (int64_t th = th0; th < th1; ++th) {
        if (pool) {
          if (2 * th + 1 >= row.outputs) continue;
          K.output_row(M + co * tc + (th - th0) * cp.row_tiles, plane, cp.row_tiles, bias, relu, pool_rows,
                       pool_rows + s.OW, s.OW, scratch);
          max_pool2d_2x2_row(pool_rows, s.OW, yn + (co * (s.OH / 2) + th) * (s.OW / 2));
          continue;
        }
        T* out[2] = {yn + (co * s.OH + row.p + s.dh * 2 * th) * s.OW, nullptr};
        if (2 * th + 1 < row.outputs) out[1] = out[0] + s.dh * s.OW;
        const T* m = M + co * tc + (th - th0) * cp.row_tiles;
        if (dw == 1) {
          K.output_row(m, plane, cp.row_tiles, bias, relu, out[0], out[1], s.OW, scratch);
          continue;
        }
        K.output_row(m, plane, cp.row_tiles, bias, relu, phase_out[0], out[1] ? phase_out[1] : nullptr, OWt, scratch);
        for (int u = 0; u < 2; ++u) {
          if (!out[u]) continue;
          const T* o = phase_out[u];  // phase b's outputs from column 2 first_tile[b]
          if (dw == 2 && cp.cols.size() == 2) {  // out[2k] = phase 0, out[2k + 1] = phase 1
            K.interleave(o, o + 2 * cp.first_tile[1], cp.cols[1].outputs, out[u]);
            if (cp.cols[0].outputs > cp.cols[1].outputs) out[u][s.OW - 1] = o[cp.cols[0].outputs - 1];
            continue;
          }
          for (size_t ph = 0; ph < cp.cols.size(); ++ph)
            for (int64_t k = 0; k < cp.cols[ph].outputs; ++k)
              out[u][cp.cols[ph].p + dw * k] = o[2 * cp.first_tile[ph] + k];
        }
      }
    }
  });
}

}  // namespace

template <typename T>
const T* Conv2dPrepared<T>::winograd_u(const Conv2dShape& s, const T* w) {
  std::call_once(winograd_once_, [&] {
    winograd_u_.reset(new T[static_cast<size_t>(16 * s.Co * s.C)]);
    transform_weights(s, w, winograd_u_.get());
  });
  return winograd_u_.get();
}
template class Conv2dPrepared<float>;
template class Conv2dPrepared<double>;

namespace {

int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// Output-channel blocks of the fused path (winograd_forward): at most GEMM_FEW_ROWS rows, a
// multiple of the register tile's, and none of the few rows gemm() runs on its small-M path
// (other sums than the whole-layer GEMMs'); 0 if no block size fits.
int64_t fused_block_rows(int64_t Co, int64_t tile_rows) {
  for (int64_t rows = GEMM_FEW_ROWS / tile_rows * tile_rows; rows >= 4 * tile_rows; rows -= tile_rows)
    if (Co % rows == 0 || !gemm_small_m(Co % rows)) return rows;
  return 0;
}

// Without Conv2dPrepared, float32 on AVX-512 and the call's tiles in a single run (one image up
// to 28x28, or 56x56 from 256 channels; up to five 14x14 ones), where the whole layer's U would
// serve one set of GEMMs: writing U (16/9 of the weights) to memory and reading it back costs
// more than every thread transforming the weights for its own tile positions. Same process,
// alternating, ms, whole-layer U / fused: N=1 512->512@14 1.87 / 1.70 (prepared 1.47),
// 512->512@28 5.33 / 4.86 (weights from memory 5.51 / 5.14), 256->512@28 2.72 / 2.71, N=4
// 512->512@14 6.62 / 6.16, VGG16 N=1 61.4 / 58.3; with small weights too (runs of up to 1024
// tiles): 256->256@56 5.29 / 4.92, 256->256@20 0.87 / 0.78, 256->256@28 N=4 5.45 / 5.11,
// 128->128@28 0.470 / 0.451. Over several runs the fused path transforms the weights once per
// run: N=2 512->512@28 (runs of 256) 10.7 / 10.4 but 256->512@28 5.24 / 5.34, N=4 20.8 / 20.9;
// kept on U there.
bool winograd_fused_weights(bool is_float, size_t runs) {
  return is_float && active_isa() == Isa::avx512 && runs == 1;
}

}  // namespace

template <typename T>
void winograd_forward(const Conv2dShape& s, const T* x, const T* w, const T* b, T* y, bool relu, const T* U,
                      bool pool) {
  PYC_CHECK(!pool || (s.dh == 1 && s.dw == 1), "winograd_forward: the fused max pool needs dilation 1");
  const int64_t y_image = pool ? s.Co * (s.OH / 2) * (s.OW / 2) : s.Co * s.OH * s.OW;  // y's elements per image
  const int nt = get_num_threads();
  const ColumnPlan cp(s);
  const std::vector<AxisPhase> rows = axis_phases(s.OH, s.dh);
  // The 16 transformed weight matrices U[xi] [Co][C], once for all images, phases and chunks
  // (or once for the layer's lifetime: Conv2dPrepared); the GEMMs read them in place as their
  // row-major A. (The fused path below transforms them block by block instead.)
  BlockArray<T> U_call;
  auto whole_layer_u = [&] {
    if (U) return;
    U_call = BlockArray<T>(static_cast<size_t>(16 * s.Co * s.C));  // fully written below
    transform_weights(s, w, U_call.data());
    U = U_call.data();
  };
  auto gemms = [&](const T* V, T* M, int64_t tc, int64_t x0, int64_t x1) {
    for (int64_t xi = x0; xi < x1; ++xi)  // M[xi][Co][tc] = U[xi][Co][C] x V[xi][C][tc]
      gemm<T>(false, false, s.Co, tc, s.C, T(1), U + xi * s.Co * s.C, s.C, V + xi * s.C * tc, tc, T(0),
              M + xi * s.Co * tc, tc, conv_gemm_options<T>(), 1);
  };
  // One run of chunks: each chunk's input tiles at its offset in V [16][C][ld], then
  // products(V, M, tc, ld) fills M [16][Co][ld] for the run's tc tiles, then each chunk's output
  // tiles from its offset in M. Rows wider than tc (ld > tc) have their padding columns zeroed:
  // the GEMMs read them, their outputs are never used. (Every output's sum is the same whatever
  // the run: the k loop does not depend on tc.)
  auto run_chunks = [&](const std::vector<Chunk>& work, const Run& r, T* V, T* M, int64_t ld, const auto& products) {
    const int64_t tc = r.tiles;
    for (int64_t q = r.first, off = 0; q < r.last; off += chunk_tiles(work[q], cp.row_tiles), ++q) {
      const Chunk& c = work[q];
      transform_input(s, cp, *c.row, x + c.n * s.C * s.H * s.W, c.th0, c.th1, V + off, ld);
    }
    if (ld > tc)
      for (int64_t i = 0; i < 16 * s.C; ++i) std::fill(V + i * ld + tc, V + (i + 1) * ld, T(0));
    products(V, M, tc, ld);
    for (int64_t q = r.first, off = 0; q < r.last; off += chunk_tiles(work[q], cp.row_tiles), ++q) {
      const Chunk& c = work[q];
      transform_output(s, cp, *c.row, M + off, c.th0, c.th1, ld, b, relu, pool, y + c.n * y_image);
    }
  };
  // Many chunks (~192 tiles each): each thread runs whole chunks end to end (transform, 16
  // GEMMs, output transform) in private, L2-sized buffers: one parallel region per call.
  const std::vector<Chunk> work = chunks(s, rows, cp.row_tiles, 192);
  if (static_cast<int64_t>(work.size()) >= 4 * nt) {
    whole_layer_u();
    parallel_run(nt, [&](int tid, int nthr) {
      int64_t q0, q1;
      split_range(static_cast<int64_t>(work.size()), tid, nthr, 1, &q0, &q1);
      for (const Run& r : runs(work, q0, q1, cp.row_tiles, RUN_MAX_TILES))  // (nested regions run serially)
        run_chunks(work, r, scratch<T>(0, 16 * s.C * r.tiles), scratch<T>(1, 16 * s.Co * r.tiles), r.tiles,
                   [&](const T* V, T* M, int64_t tc, int64_t) { gemms(V, M, tc, 0, 16); });
    });
    return;
  }
  // Few images: chunks of ~256 tiles in runs (few_images_run_tiles), one at a time, the tile
  // positions xi (their GEMMs) split over threads.
  const std::vector<Chunk> few = chunks(s, rows, cp.row_tiles, 256);
  const std::vector<Run> all = runs(few, 0, static_cast<int64_t>(few.size()), cp.row_tiles, few_images_run_tiles(s));
  const int64_t tc_max = max_run_tiles(all);
  const GemmTile tile = gemm_tile<T>();
  const int64_t block_rows = fused_block_rows(s.Co, tile.rows);
  if (!U && block_rows > 0 && winograd_fused_weights(std::is_same<T, float>::value, all.size())) {
    // Each thread walks the output channels in blocks of block_rows: it transforms the block's
    // weights for its own xi only into an L2-sized buffer (every thread reads and transposes
    // all of the block's filters) and runs its GEMMs on it at once. The whole layer's U,
    // written to memory and read back, took ~0.45 ms of a 2 ms 512->512@14 call. V's rows are
    // padded to whole GEMM panels, which the GEMM then reads where they lie (a block's GEMM
    // has few rows).
    auto fused_products = [&](const T* V, T* M, int64_t tc, int64_t ld) {
      const int64_t whole = tc / tile.cols * tile.cols;  // columns in whole panels, then one narrower
      parallel_run(nt, [&](int tid, int nthr) {
        int64_t x0, x1;
        split_range(16, tid, nthr, 1, &x0, &x1);
        if (x0 >= x1) return;
        T* Ub = scratch<T>(0, (x1 - x0) * block_rows * s.C);  // U[xi - x0][mb][C] of the block
        for (int64_t b0 = 0; b0 < s.Co; b0 += block_rows) {
          const int64_t b1 = std::min(s.Co, b0 + block_rows), mb = b1 - b0;
          transform_weight_rows(s, w, b0, b1, static_cast<int>(x0), static_cast<int>(x1), Ub, mb * s.C);
          for (int64_t xi = x0; xi < x1; ++xi) {  // M[xi][b0:b1] (mb x ld) = U[xi] (mb x C) x V[xi] (C x ld)
            const T* A = Ub + (xi - x0) * mb * s.C;
            const T* B = V + xi * s.C * ld;
            T* Cm = M + (xi * s.Co + b0) * ld;
            if (whole > 0)
              gemm<T>(false, false, mb, whole, s.C, T(1), A, s.C, B, ld, T(0), Cm, ld, conv_gemm_options<T>(), 1);
            if (ld > whole)
              gemm<T>(false, false, mb, ld - whole, s.C, T(1), A, s.C, B + whole, ld, T(0), Cm + whole, ld,
                      conv_gemm_options<T>(), 1);
          }
        }
      });
    };
    const int64_t ld_max = round_up(tc_max, tile.vector_cols);
    BlockArray<T> V(static_cast<size_t>(16 * s.C * ld_max)), M(static_cast<size_t>(16 * s.Co * ld_max));
    for (const Run& r : all)
      run_chunks(few, r, V.data(), M.data(), round_up(r.tiles, tile.vector_cols), fused_products);
    return;
  }
  whole_layer_u();
  BlockArray<T> V(static_cast<size_t>(16 * s.C * tc_max)), M(static_cast<size_t>(16 * s.Co * tc_max));
  for (const Run& r : all)
    run_chunks(few, r, V.data(), M.data(), r.tiles, [&](const T* Vr, T* Mr, int64_t tc, int64_t) {
      parallel_run(nt, [&](int tid, int nthr) {
        int64_t g0, g1;
        split_range(16, tid, nthr, 1, &g0, &g1);
        gemms(Vr, Mr, tc, g0, g1);
      });
    });
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

// Z[xi][co][t] for the tiles of rows [th0, th1) of row phase `row` of one image's output
// gradient gyn (t as in transform_input).
template <typename T>
void transform_output_grad(const Conv2dShape& s, const ColumnPlan& cp, const AxisPhase& row, const T* gyn,
                           int64_t th0, int64_t th1, T* Z, int64_t tc) {
  const int64_t plane = s.Co * tc, dw = s.dw, OWt = 2 * cp.row_tiles;  // columns of a tile row
  const auto& K = kernels<T>();
  parallel_for(s.Co, 1, [&](int64_t c0, int64_t c1) {
    // the transform's scratch, then (dw > 1) the two rows with all phases side by side, zero
    // past each phase's outputs (so the junk tiles' Z is 0)
    std::vector<T> buf(static_cast<size_t>(6 * cp.row_tiles + (dw > 1 ? 2 * OWt : 0)));
    T* scratch = buf.data();
    T* phase_rows[2] = {scratch + 6 * cp.row_tiles, scratch + 6 * cp.row_tiles + OWt};
    // the chunk's output-gradient rows of a channel, fetched one channel ahead (as the input's)
    const int64_t r_first = row.p + s.dh * 2 * th0, r_last = std::min<int64_t>(s.OH - 1, row.p + s.dh * (2 * th1 - 1));
    const int64_t rows_bytes = (r_last - r_first + 1) * s.OW * int64_t(sizeof(T));
    for (int64_t co = c0; co < c1; ++co) {
      if (co + 1 < c1) prefetch_range(gyn + ((co + 1) * s.OH + r_first) * s.OW, rows_bytes);
      for (int64_t th = th0; th < th1; ++th) {
        const T* src[2] = {gyn + (co * s.OH + row.p + s.dh * 2 * th) * s.OW, nullptr};
        if (2 * th + 1 < row.outputs) src[1] = src[0] + s.dh * s.OW;
        T* z = Z + co * tc + (th - th0) * cp.row_tiles;
        if (dw == 1) {
          K.output_grad_row(src[0], src[1], s.OW, cp.row_tiles, z, plane, scratch);
          continue;
        }
        for (int u = 0; u < 2; ++u) {
          if (!src[u]) continue;
          T* d = phase_rows[u];
          std::fill(d, d + OWt, T(0));
          for (size_t ph = 0; ph < cp.cols.size(); ++ph)
            K.strided_copy(src[u] + cp.cols[ph].p, dw, cp.cols[ph].outputs, d + 2 * cp.first_tile[ph]);
        }
        K.output_grad_row(phase_rows[0], src[1] ? phase_rows[1] : nullptr, OWt, cp.row_tiles, z, plane, scratch);
      }
    }
  });
}

}  // namespace

template <typename T>
void winograd_backward_weight(const Conv2dShape& s, const T* gy, const T* x, T* gw) {
  const int64_t CoC = s.Co * s.C;
  const ColumnPlan cp(s);
  const std::vector<AxisPhase> rows = axis_phases(s.OH, s.dh);
  const std::vector<Chunk> work = chunks(s, rows, cp.row_tiles, 192);  // ~192 tiles per chunk
  const int64_t tc_max = max_chunk_rows(work) * cp.row_tiles;
  BlockArray<T> V(static_cast<size_t>(16 * s.C * tc_max)), Z(static_cast<size_t>(16 * s.Co * tc_max));
  BlockArray<T> M(static_cast<size_t>(16 * CoC));
  bool first = true;
  for (const Chunk& c : work) {
    const int64_t tc = (c.th1 - c.th0) * cp.row_tiles;
    transform_input(s, cp, *c.row, x + c.n * s.C * s.H * s.W, c.th0, c.th1, V.data(), tc);
    transform_output_grad(s, cp, *c.row, gy + c.n * s.Co * s.OH * s.OW, c.th0, c.th1, Z.data(), tc);
    // The 16 products split over threads, each single-threaded: every M[xi] sums its tiles
    // in the same order whatever the thread count.
    parallel_for(16, 1, [&](int64_t x0, int64_t x1) {
      for (int64_t xi = x0; xi < x1; ++xi)
        gemm<T>(false, true, s.Co, s.C, tc, T(1), Z.data() + xi * s.Co * tc, tc, V.data() + xi * s.C * tc, tc,
                first ? T(0) : T(1), M.data() + xi * CoC, s.C, conv_gemm_options<T>(), 1);
    });
    first = false;
  }
  // gw[co][ci] = G^T M[.][co][ci] G (rows of G^T: (1 .5 .5 0), (0 .5 -.5 0), (0 .5 .5 1))
  parallel_for(CoC, 1024, [&](int64_t e0, int64_t e1) {
    for (int64_t e = e0; e < e1; ++e) {
      T m[4][4], t[3][4];
      for (int xi = 0; xi < 16; ++xi) m[xi / 4][xi % 4] = M.data()[xi * CoC + e];
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

template void winograd_forward<float>(const Conv2dShape&, const float*, const float*, const float*, float*, bool,
                                      const float*, bool);
template void winograd_forward<double>(const Conv2dShape&, const double*, const double*, const double*, double*,
                                       bool, const double*, bool);

}  // namespace pycnnrnn

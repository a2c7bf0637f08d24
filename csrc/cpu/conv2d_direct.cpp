// conv2d_direct.cpp — the direct convolution driver (see conv2d_direct.h).
#include "cpu/conv2d_direct.h"

#include <algorithm>
#include <vector>

#include "core/dispatch.h"
#include "core/thread_pool.h"

namespace pycnnrnn {

namespace {

// auto's direct layers and the grad_weight kernel: the padded image group stays in L1/L2 while
// every tile reads it (and fits the grad_weight transpose's int32 gather offsets).
constexpr int64_t DIRECT_MAX_IMAGE_BYTES = 64 << 10;
constexpr int64_t DIRECT_MIN_OW = 8;  // narrower rows leave too many of a vector's lanes idle

// Input channels per register-sum chunk: the reduction split evenly into chains of at most
// 128 steps (each chunk's sums are added to the output: a C tile round trip per chunk)
int64_t ksub_channels(const Conv2dShape& s) {
  const int64_t chunks = (s.Kg() + 127) / 128;
  return (s.Cg() + chunks - 1) / chunks;
}

// The padded image group xp[ci][Hp][Wp]; elems: + SLACK for a full 16-lane load at the largest
// shift.
struct Padded {
  static constexpr int64_t SLACK = 16 + 16;
  int64_t Hp, Wp, plane, elems;
  explicit Padded(const Conv2dShape& s)
      : Hp(s.H + s.pt + s.pb), Wp(s.W + s.pl + s.pr), plane(Hp * Wp), elems(s.Cg() * plane + SLACK) {}
};

// xp[ci][r][c] = x_g[ci][src(r - pt)][src(c - pl)] (zero where the padding mode says so)
// for channels [ci0, ci1), every element of their planes written
void pad_image(const Conv2dShape& s, const Padded& pd, const std::vector<int64_t>& col_src, const float* xg,
               float* xp, int64_t ci0, int64_t ci1) {
  for (int64_t ci = ci0; ci < ci1; ++ci)
    for (int64_t r = 0; r < pd.Hp; ++r) {
      float* d = xp + ci * pd.plane + r * pd.Wp;
      const int64_t ih = pad_source_index(r - s.pt, s.H, s.mode);
      if (ih < 0) {
        std::fill(d, d + pd.Wp, 0.f);
        continue;
      }
      const float* row = xg + (ci * s.H + ih) * s.W;
      for (int64_t c = 0; c < s.pl; ++c) d[c] = col_src[c] < 0 ? 0.f : row[col_src[c]];
      std::copy(row, row + s.W, d + s.pl);
      for (int64_t c = s.pl + s.W; c < pd.Wp; ++c) d[c] = col_src[c] < 0 ? 0.f : row[col_src[c]];
    }
}

// xp offset of tap t = kh * KW + kw under output (0, 0): kh * dh rows and kw * dw columns on
std::vector<int64_t> tap_offsets(const Conv2dShape& s, const Padded& pd) {
  std::vector<int64_t> toff(static_cast<size_t>(s.KH * s.KW));
  for (int64_t t = 0; t < s.KH * s.KW; ++t)
    toff[static_cast<size_t>(t)] = (t / s.KW) * s.dh * pd.Wp + (t % s.KW) * s.dw;
  return toff;
}

std::vector<int64_t> column_sources(const Conv2dShape& s, const Padded& pd) {
  std::vector<int64_t> col_src(static_cast<size_t>(pd.Wp));
  for (int64_t c = 0; c < pd.Wp; ++c) col_src[static_cast<size_t>(c)] = pad_source_index(c - s.pl, s.W, s.mode);
  return col_src;
}

// Output vectors, rows top to bottom (src in xp, dst in the output plane). AVX-512
// (row_pieces false): 16 columns of one row at a time. Otherwise each row is cut into pieces of
// 8 columns (the last one partial) and consecutive pieces pair up into the two halves of a
// vector, across rows: OW = 8 puts two rows in a vector, OW = 24 a row and a third.
std::vector<DirectVec> output_vectors(const Conv2dShape& s, const Padded& pd, bool row_pieces) {
  std::vector<DirectVec> vec;
  if (!row_pieces) {
    for (int64_t oh = 0; oh < s.OH; ++oh)
      for (int64_t ow = 0; ow < s.OW; ow += 16) {
        const int64_t n = std::min<int64_t>(16, s.OW - ow);
        const int64_t src = oh * pd.Wp + ow, dst = oh * s.OW + ow;
        vec.push_back({src, dst, src + 8, dst + 8, static_cast<uint32_t>((1u << n) - 1u)});
      }
    return vec;
  }
  bool half_open = false;  // the last vector's lanes 8-15 are still free
  for (int64_t oh = 0; oh < s.OH; ++oh)
    for (int64_t ow = 0; ow < s.OW; ow += 8) {
      const int64_t src = oh * pd.Wp + ow, dst = oh * s.OW + ow;
      const uint32_t lanes = (1u << std::min<int64_t>(8, s.OW - ow)) - 1u;
      if (half_open) {
        DirectVec& v = vec.back();
        v.src_hi = src, v.dst_hi = dst, v.mask |= lanes << 8;
      } else {
        vec.push_back({src, dst, src, dst, lanes});  // (an unused high half reads the low one's)
      }
      half_open = !half_open;
    }
  return vec;
}

// Output-channel panels of the direct forward: channels [co0, co0 + mr) (the last may be
// partial), weights at wofs in the packed wp. AVX-512 (fixed mr: 6, or 8 when it divides the
// channels): equal panels. AVX2 and portable (fixed_mr 0): panels of 6 with 4-channel panels
// for the rest, so a remainder of 2 costs no third of a tile: 32 channels are 6+6+6+6+4+4, not
// 5 x 6 + 2 (a 2-row panel took a full panel's time: N=64 16->32 at 16x16 ran as long as 16->36),
// 16 are 6+6+4, 13 are 6+4+4 (a padding row), 8 are 4+4. Against equal panels of 6, N=64, 2
// threads, interleaved in one process (median of 9 ratios): 16->32@16 1.037x, 32->16@16 1.043x,
// 3->16@32 1.058x, 32->64@8 1.014x, 64->32@8 1.048x.
struct Panel {
  int64_t co0;
  int mr;
  int64_t wofs;
};

std::vector<Panel> panel_plan(int64_t Cog, int fixed_mr, int64_t Kg) {
  std::vector<Panel> plan;
  int64_t wofs = 0;
  for (int64_t co0 = 0; co0 < Cog;) {
    const int64_t rest = Cog - co0;
    int mr = fixed_mr;
    if (!mr) mr = rest <= 4 || rest == 7 || rest == 8 ? 4 : 6;  // 7 and 8: 4 + 4; 5: a padding row
    plan.push_back({co0, mr, wofs});
    co0 += mr;
    wofs += mr * Kg;
  }
  return plan;
}

bool avx512_float(bool is_float) {
#if PYCNNRNN_HAVE_X86
  return is_float && active_isa() == Isa::avx512;
#else
  (void)is_float;
  return false;
#endif
}

// What both direct kernels need: stride 1, a kernel larger than 1x1.
bool direct_stride_and_kernel(const Conv2dShape& s) { return s.sh == 1 && s.sw == 1 && !(s.KH == 1 && s.KW == 1); }

// The padded image buffer of the calling thread, at least `elems` floats; the slack past the
// planes (read by a full vector at the largest shift, its lanes not stored) zeroed. Kept from
// call to call: a fresh 13 MB buffer per 64->64@224 call was page faults and a zero fill on one
// thread before the tiles started.
float* padded_buffer(const Padded& pd) {
  thread_local std::vector<float> buf;
  if (buf.size() < static_cast<size_t>(pd.elems)) buf.assign(static_cast<size_t>(pd.elems), 0.f);
  std::fill(buf.begin() + (pd.elems - Padded::SLACK), buf.begin() + pd.elems, 0.f);
  return buf.data();
}

}  // namespace

bool direct_applies(const Conv2dShape& s, bool is_float) {
  return is_float && s.OW >= DIRECT_MIN_OW && direct_stride_and_kernel(s);
}

bool direct_image_in_cache(const Conv2dShape& s) {
  return Padded(s).elems * int64_t(sizeof(float)) <= DIRECT_MAX_IMAGE_BYTES;
}

bool direct_vector_tile(bool is_float) {
#if PYCNNRNN_HAVE_X86
  return is_float && (active_isa() == Isa::avx512 || active_isa() == Isa::avx2);
#else
  (void)is_float;
  return false;
#endif
}

bool direct_grad_weight_applies(const Conv2dShape& s, bool is_float) {
  return avx512_float(is_float) && direct_stride_and_kernel(s) && direct_image_in_cache(s);
}

void direct_forward(const Conv2dShape& s, const float* x, const float* w, const float* b, float* y, bool relu,
                    int outer_threads) {
  const int64_t Cg = s.Cg(), Cog = s.Cog(), taps = s.KH * s.KW, Kg = s.Kg(), HW = s.H * s.W, P = s.OH * s.OW;
  const Padded pd(s);
  const bool avx512 = active_isa() == Isa::avx512, wide8 = avx512 && Cog % 8 == 0;
  const int nv = avx512 ? (wide8 ? 3 : 4) : 1;
  const std::vector<Panel> panel = panel_plan(Cog, avx512 ? (wide8 ? 8 : 6) : 0, Kg);
  const int64_t panels = static_cast<int64_t>(panel.size());
  int64_t rows = 0;  // channels of all panels, padding rows included
  for (const Panel& pn : panel) rows += pn.mr;
  auto tile = [&](const DirectTileArgs& a, int mr) {
#if PYCNNRNN_HAVE_X86
    if (avx512) return wide8 ? conv_avx512::direct_tile_8x3(a) : conv_avx512::direct_tile_6x4(a);
    if (active_isa() == Isa::avx2) return mr == 6 ? conv_avx2::direct_tile_6x1(a) : conv_avx2::direct_tile_4x1(a);
#endif
    conv_scalar::direct_tile(a, mr);
  };
  // wp[g][panel p: Kg x mr_p at p.wofs][k][i] = w[g][p.co0 + i][k] (zero rows past Cog): the
  // tile's broadcasts
  std::vector<float> wp(static_cast<size_t>(s.groups * rows * Kg), 0.f);
  for (int64_t g = 0; g < s.groups; ++g)
    for (const Panel& pn : panel)
      for (int64_t i = 0; i < pn.mr && pn.co0 + i < Cog; ++i)
        for (int64_t k = 0; k < Kg; ++k)
          wp[static_cast<size_t>(g * rows * Kg + pn.wofs + k * pn.mr + i)] = w[(g * Cog + pn.co0 + i) * Kg + k];
  const std::vector<int64_t> toff = tap_offsets(s, pd);
  const std::vector<int64_t> col_src = column_sources(s, pd);
  const std::vector<DirectVec> vec = output_vectors(s, pd, active_isa() != Isa::avx512);
  const int64_t nvec = static_cast<int64_t>(vec.size()), ksub = ksub_channels(s);
  auto pad = [&](const float* xg, float* xp, int64_t ci0, int64_t ci1) { pad_image(s, pd, col_src, xg, xp, ci0, ci1); };
  // panels [p0, p1) of image group (n, g), every tile of vectors
  auto run = [&](const float* xp, int64_t n, int64_t g, int64_t p0, int64_t p1) {
    float* yg = y + (n * s.Co + g * Cog) * P;
    DirectTileArgs a{};
    a.xp = xp, a.plane = pd.plane, a.Cg = Cg, a.taps = taps, a.toff = toff.data();
    a.ksub_channels = ksub, a.ystride = P, a.relu = relu;
    for (int64_t j0 = 0; j0 < nvec; j0 += nv) {
      a.vec = vec.data() + j0;
      a.nv = static_cast<int>(std::min<int64_t>(nv, nvec - j0));
      for (int64_t p = p0; p < p1; ++p) {
        const Panel& pn = panel[static_cast<size_t>(p)];
        a.wp = wp.data() + g * rows * Kg + pn.wofs;
        a.m = static_cast<int>(std::min<int64_t>(pn.mr, Cog - pn.co0));
        a.y = yg + pn.co0 * P;
        a.bias = b ? b + g * Cog + pn.co0 : nullptr;
        tile(a, pn.mr);
      }
    }
  };
  const int64_t jobs = s.N * s.groups;
  if (outer_threads > 1) {  // whole image groups per thread
    parallel_run(outer_threads, [&](int tid, int nt) {
      int64_t j0, j1;
      split_range(jobs, tid, nt, 1, &j0, &j1);
      if (j0 >= j1) return;
      float* xp = padded_buffer(pd);
      for (int64_t j = j0; j < j1; ++j) {
        pad(x + (j / s.groups * s.C + j % s.groups * Cg) * HW, xp, 0, Cg);
        run(xp, j / s.groups, j % s.groups, 0, panels);
      }
    });
    return;
  }
  // one image group at a time: its channels padded, then its panels, each split over the threads
  float* xp = padded_buffer(pd);
  const int nt = static_cast<int>(std::min<int64_t>(get_num_threads(), panels));
  for (int64_t j = 0; j < jobs; ++j) {
    const int64_t n = j / s.groups, g = j % s.groups;
    const float* xg = x + (n * s.C + g * Cg) * HW;
    if (nt <= 1) {
      pad(xg, xp, 0, Cg);
      run(xp, n, g, 0, panels);
      continue;
    }
    parallel_run(nt, [&](int tid, int nth) {
      int64_t c0, c1;
      split_range(Cg, tid, nth, 1, &c0, &c1);
      if (c0 < c1) pad(xg, xp, c0, c1);
    });
    parallel_run(nt, [&](int tid, int nth) {
      int64_t p0, p1;
      split_range(panels, tid, nth, 1, &p0, &p1);
      if (p0 < p1) run(xp, n, g, p0, p1);
    });
  }
}

void direct_backward_weight(const Conv2dShape& s, const float* gy, const float* x, float* gw, int image_threads) {
  const int64_t Cg = s.Cg(), Cog = s.Cog(), taps = s.KH * s.KW, Kg = s.Kg(), HW = s.H * s.W, P = s.OH * s.OW;
  const Padded pd(s);
  // tile shape by channel count: nv vectors of 16 output channels x mr reduction rows
  const int nv = Cog > 32 ? 4 : Cog > 16 ? 2 : 1, mr = nv == 4 ? 6 : 12;
  void (*tile)(const DirectGwArgs&) =
      nv == 4 ? conv_avx512::direct_gw_6x4 : nv == 2 ? conv_avx512::direct_gw_12x2 : conv_avx512::direct_gw_12x1;
  const int64_t cw = 16 * nv, cblocks = (Cog + cw - 1) / cw, ld = cblocks * cw;  // dY^T row: Cog padded
  const int64_t kpanels = (Kg + mr - 1) / mr;
  // koff[k]: input offset of reduction index k = ci * taps + t; pix[p]: of output pixel p
  const std::vector<int64_t> toff = tap_offsets(s, pd);
  std::vector<int64_t> koff(static_cast<size_t>(Kg)), pix(static_cast<size_t>(P));
  for (int64_t k = 0; k < Kg; ++k)
    koff[static_cast<size_t>(k)] = (k / taps) * pd.plane + toff[static_cast<size_t>(k % taps)];
  for (int64_t p = 0; p < P; ++p) pix[static_cast<size_t>(p)] = (p / s.OW) * pd.Wp + p % s.OW;
  const std::vector<int64_t> col_src = column_sources(s, pd);
  const int64_t sums = s.groups * Kg * ld;  // C[g][k][co] of one partial buffer

  // images [n0, n1), k panels [k0, k1) of every group, added into c[g][k][co]
  auto run = [&](int64_t n0, int64_t n1, int64_t k0, int64_t k1, float* c) {
    std::vector<float> xp(static_cast<size_t>(pd.elems), 0.f), dyt(static_cast<size_t>(P * ld), 0.f);
    DirectGwArgs a{};
    a.x = xp.data(), a.pix = pix.data(), a.ld = ld, a.P = P, a.ld_c = ld;
    for (int64_t g = 0; g < s.groups; ++g)
      for (int64_t n = n0; n < n1; ++n) {
        pad_image(s, pd, col_src, x + (n * s.C + g * Cg) * HW, xp.data(), 0, Cg);
        conv_avx512::direct_transpose(gy + (n * s.Co + g * Cog) * P, Cog, P, dyt.data(), ld);  // dyt[p][co]
        for (int64_t kp = k0; kp < k1; ++kp)
          for (int64_t cb = 0; cb < cblocks; ++cb) {
            a.koff = koff.data() + kp * mr;
            a.m = static_cast<int>(std::min<int64_t>(mr, Kg - kp * mr));
            a.dyt = dyt.data() + cb * cw;
            a.c = c + (g * Kg + kp * mr) * ld + cb * cw;
            tile(a);
          }
      }
  };
  // gw[g][co][k] = sum over the partial buffers, in order, of c[g][k][co]
  auto finish = [&](const std::vector<std::vector<float>>& parts) {
    for (int64_t g = 0; g < s.groups; ++g)
      for (int64_t co = 0; co < Cog; ++co)
        for (int64_t k = 0; k < Kg; ++k) {
          float total = 0.f;
          for (const std::vector<float>& c : parts) total += c[static_cast<size_t>((g * Kg + k) * ld + co)];
          gw[(g * Cog + co) * Kg + k] = total;
        }
  };
  if (image_threads > 1) {  // images split: one partial buffer per thread, added in thread order
    std::vector<std::vector<float>> parts(static_cast<size_t>(image_threads));
    parallel_run(image_threads, [&](int tid, int nt) {
      int64_t n0, n1;
      split_range(s.N, tid, nt, 1, &n0, &n1);
      parts[static_cast<size_t>(tid)].assign(static_cast<size_t>(sums), 0.f);
      run(n0, n1, 0, kpanels, parts[static_cast<size_t>(tid)].data());
    });
    finish(parts);
    return;
  }
  std::vector<std::vector<float>> parts(1, std::vector<float>(static_cast<size_t>(sums), 0.f));
  const int nt = static_cast<int>(std::min<int64_t>(get_num_threads(), kpanels));
  parallel_run(nt, [&](int tid, int nth) {  // k panels split: each thread writes only its own rows
    int64_t k0, k1;
    split_range(kpanels, tid, nth, 1, &k0, &k1);
    if (k0 < k1) run(0, s.N, k0, k1, parts[0].data());
  });
  finish(parts);
}

}  // namespace pycnnrnn

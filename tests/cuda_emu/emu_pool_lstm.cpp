#include "cuda_emu.h"
#include "cuda/rnn_dh.cuh"
#include "cuda/rnn_step_tiled.cuh"
#include <cstdio>
#include <random>
#include <limits>
namespace pycnnrnn::cuda {
#include "pool_kernels.inc"
#include "lstm_kernels.inc"
}
using namespace pycnnrnn::cuda;
std::mt19937 rng(5);
int fails = 0;

int pool_out(int in, int k, int s, int p, int d, bool ceil) {
  int num = in + 2 * p - d * (k - 1) - 1 + (ceil ? s - 1 : 0);
  int out = (num >= 0 ? num / s : -((-num + s - 1) / s)) + 1;
  if (ceil && (out - 1) * s >= in + p) --out;
  return out;
}

void test_pool(int planes, int H, int W, int k, int s, int p, int d, bool ceil, int path) {
  PoolGeom g{planes, H, W, pool_out(H, k, s, p, d, ceil), pool_out(W, k, s, p, d, ceil), k, k, s, s, p, p, d, d};
  std::vector<float> x(planes * H * W);
  std::uniform_int_distribution<int> ui(-3, 3);
  for (auto& v : x) { int r = ui(rng); v = r == 3 && rng() % 4 == 0 ? NAN : (r == -3 && rng() % 3 == 0 ? -INFINITY : (float)r); }
  int64_t no = (int64_t)planes * g.OH * g.OW;
  std::vector<float> y1(no), y2(no, 7.f);
  std::vector<int64_t> i1(no), i2(no, -1);
  emu_launch({3, 1, 1}, 64, [&] { max_pool2d_fwd_generic<float, true>(x.data(), y1.data(), i1.data(), g); });
  if (path == 1) emu_launch({3, 1, 1}, 64, [&] { max_pool2d_fwd_2x2<true>(x.data(), y2.data(), i2.data(), g); });
  else if (path == 2) emu_launch({3, 1, 1}, 64, [&] { max_pool2d_fwd_2x2_pair<true>(x.data(), y2.data(), i2.data(), g); });
  else { y2 = y1; i2 = i1; }
  // naive torch-CPU reference for the generic path
  bool bad = false;
  for (int pl = 0; pl < planes; ++pl) for (int oh = 0; oh < g.OH; ++oh) for (int ow = 0; ow < g.OW; ++ow) {
    int ih0 = oh * s - p, iw0 = ow * s - p;
    int ih1 = std::min(ih0 + (k - 1) * d + 1, H), iw1 = std::min(iw0 + (k - 1) * d + 1, W);
    while (ih0 < 0) ih0 += d; while (iw0 < 0) iw0 += d;
    int64_t mi = ih0 * W + iw0; float mv = -INFINITY;
    for (int ih = ih0; ih < ih1; ih += d) for (int iw = iw0; iw < iw1; iw += d) {
      float v = x[(int64_t)pl * H * W + ih * W + iw];
      if (v > mv || std::isnan(v)) { mv = v; mi = ih * W + iw; }
    }
    int64_t o = ((int64_t)pl * g.OH + oh) * g.OW + ow;
    auto same = [&](float a) { return (std::isnan(a) && std::isnan(mv)) || a == mv; };
    if (!same(y1[o]) || i1[o] != mi || !same(y2[o]) || i2[o] != mi) bad = true;
  }
  // backward: gather vs naive scatter
  std::vector<float> gy(no), gx(planes * H * W, NAN), ref(planes * H * W, 0.f);
  for (auto& v : gy) v = (float)(rng() % 1000) / 100.f;
  for (int64_t o = 0; o < no; ++o) ref[(o / (g.OH * g.OW)) * H * W + i1[o]] += gy[o];
  emu_launch({(unsigned)((W + 31) / 32), 5, 1}, 32, [&] { max_pool2d_bwd_gather<float>(gy.data(), i1.data(), gx.data(), g); });
  for (size_t e = 0; e < gx.size(); ++e) if (!(gx[e] == ref[e])) bad = true;
  if (k == s && p == 0 && d == 1 && g.OH * k <= H && g.OW * k <= W) {  // the non-overlapping window path
    std::fill(gx.begin(), gx.end(), NAN);
    emu_launch({(unsigned)((g.OW + 31) / 32), 3, 1}, 32, [&] { max_pool2d_bwd_window<float>(gy.data(), i1.data(), gx.data(), g); });
    for (size_t e = 0; e < gx.size(); ++e) if (!(gx[e] == ref[e])) bad = true;
  }
  printf("%s pool path%d %dx%dx%d k%d s%d p%d d%d ceil%d\n", bad ? "FAIL" : "ok  ", path, planes, H, W, k, s, p, d, ceil);
  fails += bad;
}

// ---- LSTM: emulated forward/backward vs double naive forward + finite differences
struct Lstm { int T, B, I, H; std::vector<double> x, h0, c0, wih, whh, bih, bhh; };
double sig(double z) { return 1 / (1 + std::exp(-z)); }
// returns loss = sum(gy*y) + sum(ghn*hn) + sum(gcn*cn) and fills y (and every c_t, the activated gates)
double fwd64(const Lstm& m, const std::vector<double>& gy, const std::vector<double>& ghn, const std::vector<double>& gcn,
             std::vector<double>* yout = nullptr, std::vector<double>* call = nullptr,
             std::vector<double>* gates = nullptr) {
  int T = m.T, B = m.B, I = m.I, H = m.H;
  std::vector<double> h = m.h0, c = m.c0, y(T * B * H);
  if (call) call->resize(T * B * H);
  if (gates) gates->resize(T * B * 4 * H);
  for (int t = 0; t < T; ++t) {
    std::vector<double> hn(B * H), cn(B * H);
    for (int b = 0; b < B; ++b) for (int j = 0; j < H; ++j) {
      double z[4];
      for (int g = 0; g < 4; ++g) {
        int r = g * H + j; double v = m.bih[r] + m.bhh[r];
        for (int i = 0; i < I; ++i) v += m.wih[r * I + i] * m.x[(t * B + b) * I + i];
        for (int k = 0; k < H; ++k) v += m.whh[r * H + k] * h[b * H + k];
        z[g] = v;
      }
      double ig = sig(z[0]), fg = sig(z[1]), gg = std::tanh(z[2]), og = sig(z[3]);
      cn[b * H + j] = fg * c[b * H + j] + ig * gg;
      hn[b * H + j] = og * std::tanh(cn[b * H + j]);
      if (call) (*call)[(t * B + b) * H + j] = cn[b * H + j];
      if (gates) {
        double* gr = gates->data() + (t * B + b) * 4 * H;
        gr[j] = ig; gr[H + j] = fg; gr[2 * H + j] = gg; gr[3 * H + j] = og;
      }
    }
    h = hn; c = cn;
    for (int e = 0; e < B * H; ++e) y[t * B * H + e] = h[e];
  }
  double L = 0;
  for (size_t e = 0; e < y.size(); ++e) L += gy[e] * y[e];
  for (int e = 0; e < B * H; ++e) L += ghn[e] * h[e] + gcn[e] * c[e];
  if (yout) *yout = y;
  return L;
}

template <bool VEC>
void test_lstm(int T, int B, int I, int H) {
  std::normal_distribution<double> nd(0, 0.5);
  Lstm m{T, B, I, H};
  auto fill = [&](std::vector<double>& v, size_t n) { v.resize(n); for (auto& e : v) e = nd(rng); };
  fill(m.x, T * B * I); fill(m.h0, B * H); fill(m.c0, B * H); fill(m.wih, 4 * H * I); fill(m.whh, 4 * H * H);
  fill(m.bih, 4 * H); fill(m.bhh, 4 * H);
  std::vector<double> gy, ghn, gcn; fill(gy, T * B * H); fill(ghn, B * H); fill(gcn, B * H);
  std::vector<double> yref; fwd64(m, gy, ghn, gcn, &yref);
  auto f32 = [](const std::vector<double>& v) { return std::vector<float>(v.begin(), v.end()); };
  auto x = f32(m.x), h0 = f32(m.h0), c0 = f32(m.c0), wih = f32(m.wih), whh = f32(m.whh), bih = f32(m.bih), bhh = f32(m.bhh);
  int H4 = 4 * H;
  std::vector<float> xproj(T * B * H4), y(T * B * H, NAN), call(T * B * H, NAN), gates(T * B * H4, NAN);
  for (int r = 0; r < T * B; ++r) for (int n = 0; n < H4; ++n) { double a = 0; for (int i = 0; i < I; ++i) a += (double)x[r * I + i] * wih[n * I + i]; xproj[r * H4 + n] = a; }
  for (int t = 0; t < T; ++t) {
    const float* hp = t == 0 ? h0.data() : y.data() + (t - 1) * B * H;
    const float* cp = t == 0 ? c0.data() : call.data() + (t - 1) * B * H;
    emu_launch({(unsigned)((H + HJ - 1) / HJ), 1, 1}, WARPS * 32, [&] {
      lstm_step_fwd<float, VEC>(B, H, xproj.data() + t * B * H4, hp, cp, whh.data(), bih.data(), bhh.data(),
                                y.data() + t * B * H, call.data() + t * B * H, gates.data() + t * B * H4); });
  }
  double ey = 0; for (size_t e = 0; e < y.size(); ++e) ey = std::max(ey, std::isnan(y[e]) ? 1e30 : std::fabs(y[e] - yref[e]));
  // backward, mirroring lstm_bwd_t
  std::vector<float> dh(B * H), dc(B * H), dz(T * B * H4, NAN), dyf = f32(gy);
  for (int e = 0; e < B * H; ++e) { dh[e] = ghn[e]; dc[e] = gcn[e]; }
  for (int t = T - 1; t >= 0; --t) {
    const float* cprev = t == 0 ? c0.data() : call.data() + (t - 1) * B * H;
    emu_launch({2, 1, 1}, 32, [&] { lstm_step_bwd_pointwise<float>(B, H, dyf.data() + t * B * H, dh.data(), dc.data(),
                                     call.data() + t * B * H, cprev, gates.data() + t * B * H4, dz.data() + t * B * H4); });
    emu_launch({(unsigned)((H + DH_COLS - 1) / DH_COLS), (unsigned)((B + DH_BB - 1) / DH_BB), 1}, DH_THREADS, [&] {
      recurrent_dh_kernel<float>(B, H, H4, dz.data() + t * B * H4, whh.data(), nullptr, dh.data()); });
  }
  std::vector<double> dwih(H4 * I, 0), dwhh(H4 * H, 0), db(H4, 0), dx(T * B * I, 0);
  for (int t = 0; t < T; ++t) for (int b = 0; b < B; ++b) for (int n = 0; n < H4; ++n) {
    double g = dz[(t * B + b) * H4 + n]; db[n] += g;
    for (int i = 0; i < I; ++i) { dwih[n * I + i] += g * x[(t * B + b) * I + i]; dx[(t * B + b) * I + i] += g * wih[n * I + i]; }
    for (int k = 0; k < H; ++k) dwhh[n * H + k] += g * (t == 0 ? h0[b * H + k] : y[((t - 1) * B + b) * H + k]);
  }
  // finite differences on a sample of entries
  double worst = 0;
  auto fd = [&](std::vector<double>& p, size_t idx, double analytic) {
    double eps = 1e-5, s = p[idx];
    p[idx] = s + eps; double lp = fwd64(m, gy, ghn, gcn);
    p[idx] = s - eps; double lm = fwd64(m, gy, ghn, gcn);
    p[idx] = s;
    double num = (lp - lm) / (2 * eps);
    worst = std::max(worst, std::fabs(num - analytic) / (1 + std::fabs(num)));
  };
  for (int k = 0; k < 6; ++k) {
    size_t a = rng() % m.wih.size(), b2 = rng() % m.whh.size(), c = rng() % m.bih.size(), d = rng() % m.x.size(), e = rng() % m.h0.size();
    fd(m.wih, a, dwih[a]); fd(m.whh, b2, dwhh[b2]); fd(m.bih, c, db[c]); fd(m.bhh, c, db[c]); fd(m.x, d, dx[d]);
    fd(m.h0, e, dh[e]); fd(m.c0, e, dc[e]);
  }
  bool bad = ey > 1e-5 || worst > 1e-4;
  printf("%s lstm VEC%d T%d B%d I%d H%d: fwd max err %.1e, grad vs finite diff %.1e\n", bad ? "FAIL" : "ok  ", VEC, T, B, I, H, ey, worst);
  fails += bad;
}

// The register-tiled forward step (B >= 16) vs the float64 forward, in float and double, for
// tails in H (units per CTA, k-chunks), B (batch tile) and every optional input missing.
template <typename T, bool VEC>
void test_lstm_tiled(int T_, int B, int I, int H, bool with_h0, bool with_c0, bool with_bias, bool save_gates) {
  std::normal_distribution<double> nd(0, 0.5);
  Lstm m{T_, B, I, H};
  auto fill = [&](std::vector<double>& v, size_t n, bool present = true) {
    v.assign(n, 0.0);
    if (present) for (auto& e : v) e = nd(rng);
  };
  fill(m.x, T_ * B * I); fill(m.h0, B * H, with_h0); fill(m.c0, B * H, with_c0); fill(m.wih, 4 * H * I);
  fill(m.whh, 4 * H * H); fill(m.bih, 4 * H, with_bias); fill(m.bhh, 4 * H, with_bias);
  std::vector<double> yref, cref, gref, none(T_ * B * H, 0.0), none_n(B * H, 0.0);
  fwd64(m, none, none_n, none_n, &yref, &cref, &gref);
  auto cast = [](const std::vector<double>& v) { return std::vector<T>(v.begin(), v.end()); };
  auto x = cast(m.x), h0 = cast(m.h0), c0 = cast(m.c0), wih = cast(m.wih), whh = cast(m.whh), bih = cast(m.bih),
       bhh = cast(m.bhh);
  int H4 = 4 * H;
  std::vector<T> xproj(T_ * B * H4), y(T_ * B * H, NAN), call(T_ * B * H, NAN), gates(T_ * B * H4, NAN);
  for (int r = 0; r < T_ * B; ++r) for (int n = 0; n < H4; ++n) {
    double a = 0; for (int i = 0; i < I; ++i) a += (double)x[r * I + i] * wih[n * I + i]; xproj[r * H4 + n] = (T)a;
  }
  using Tile = RnnTiledShape<T, 4>;
  const unsigned grid = (unsigned)(((H + Tile::UNITS - 1) / Tile::UNITS) * ((B + Tile::BATCH - 1) / Tile::BATCH));
  for (int t = 0; t < T_; ++t) {
    const T* hp = t > 0 ? y.data() + (t - 1) * B * H : with_h0 ? h0.data() : nullptr;
    const T* cp = t > 0 ? call.data() + (t - 1) * B * H : with_c0 ? c0.data() : nullptr;
    const LstmCell<T> cell{xproj.data() + t * B * H4, cp, with_bias ? bih.data() : nullptr,
                           with_bias ? bhh.data() : nullptr, y.data() + t * B * H, call.data() + t * B * H,
                           save_gates ? gates.data() + t * B * H4 : nullptr};
    emu_launch({grid, 1, 1}, RNN_TILED_THREADS, [&] { rnn_step_fwd_tiled<T, VEC>(B, H, hp, whh.data(), cell); });
  }
  auto max_err = [](const std::vector<T>& got, const std::vector<double>& ref) {
    double e = 0;
    for (size_t i = 0; i < got.size(); ++i)
      e = std::max(e, std::isnan(got[i]) ? 1e30 : std::fabs(got[i] - ref[i]) / (1 + std::fabs(ref[i])));
    return e;
  };
  const double ey = max_err(y, yref), ec = max_err(call, cref);
  double eg = 0;
  if (save_gates) eg = max_err(gates, gref);
  else for (T v : gates) if (!std::isnan(v)) eg = 1e30;  // gates == nullptr: nothing written
  const double tol = sizeof(T) == 4 ? 1e-5 : 1e-12;
  bool bad = !(ey <= tol && ec <= tol && eg <= tol);
  printf("%s lstm tiled %s VEC%d T%d B%d I%d H%d h0%d c0%d bias%d gates%d: max err y %.1e c %.1e gates %.1e\n",
         bad ? "FAIL" : "ok  ", sizeof(T) == 4 ? "f32" : "f64", VEC, T_, B, I, H, with_h0, with_c0, with_bias,
         save_gates, ey, ec, eg);
  fails += bad;
}

int main() {
  test_pool(3, 8, 8, 2, 2, 0, 1, false, 2);
  test_pool(3, 8, 10, 2, 2, 0, 1, false, 1);
  test_pool(2, 9, 12, 2, 2, 0, 1, false, 2);
  test_pool(2, 9, 7, 2, 2, 0, 1, true, 0);
  test_pool(2, 13, 11, 3, 2, 1, 1, true, 0);
  test_pool(2, 17, 15, 3, 1, 1, 2, true, 0);
  test_pool(2, 10, 12, 3, 3, 1, 2, false, 0);
  test_pool(2, 9, 7, 2, 2, 0, 1, false, 0);  // window path with an uncovered row and column
  test_pool(2, 10, 11, 3, 3, 0, 1, false, 0);
  test_pool(1, 5, 81, 2, 2, 0, 1, false, 0);  // two blocks across OW
  test_pool(2, 6, 6, 3, 3, 0, 1, true, 0);
  test_lstm<true>(3, 2, 5, 8);
  test_lstm<false>(3, 2, 5, 7);
  test_lstm<true>(2, 9, 3, 12);
  test_lstm<false>(4, 10, 3, 6);
  test_lstm<true>(2, 17, 2, 36);
  // tiled step: (T, B, I, H, with h0, with c0, with biases, saves gates)
  test_lstm_tiled<float, false>(2, 17, 3, 12, true, true, true, true);
  test_lstm_tiled<float, true>(2, 40, 5, 36, false, true, false, true);
  test_lstm_tiled<float, true>(3, 64, 4, 8, true, false, true, false);
  test_lstm_tiled<float, false>(2, 33, 3, 100, false, false, false, true);  // 2 k-chunks, the 2nd partial
  test_lstm_tiled<float, true>(2, 20, 2, 136, true, true, true, true);      // 3 k-chunks
  test_lstm_tiled<float, true>(2, 16, 3, 64, true, true, true, true);       // exactly one chunk, one unit tile row
  test_lstm_tiled<double, true>(2, 17, 3, 36, true, true, true, true);      // 2 k-chunks (32 doubles each)
  test_lstm_tiled<double, false>(2, 35, 4, 37, false, true, true, false);
  test_lstm_tiled<double, true>(3, 64, 2, 70, true, false, false, true);
  printf("%d failures\n", fails);
  return fails;
}

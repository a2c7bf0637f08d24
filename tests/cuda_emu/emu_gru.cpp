// GRU kernels under host emulation: forward vs a float64 reference, backward vs finite differences.
#include "cuda_emu.h"
#include "cuda/rnn_dh.cuh"
#include "cuda/rnn_step_tiled.cuh"
#include <cstdio>
#include <random>
namespace pycnnrnn::cuda {
#include "gru_kernels.inc"
}
using namespace pycnnrnn::cuda;
std::mt19937 rng(9);
int fails = 0;
struct Gru { int T, B, I, H; std::vector<double> x, h0, wih, whh, bih, bhh; };
double sig(double z) { return 1 / (1 + std::exp(-z)); }
// returns loss = sum(gy*y) + sum(ghn*hn) and fills y (and the saved [r, z, n, W_hn h + b_hn])
double fwd64(const Gru& m, const std::vector<double>& gy, const std::vector<double>& ghn, std::vector<double>* yout = nullptr,
             std::vector<double>* saved = nullptr) {
  int T = m.T, B = m.B, I = m.I, H = m.H;
  std::vector<double> h = m.h0, y(T * B * H);
  if (saved) saved->resize(T * B * 4 * H);
  for (int t = 0; t < T; ++t) {
    std::vector<double> hn(B * H);
    for (int b = 0; b < B; ++b) for (int j = 0; j < H; ++j) {
      double xs[3], hs[3];
      for (int g = 0; g < 3; ++g) {
        int r = g * H + j; xs[g] = m.bih[r]; hs[g] = m.bhh[r];
        for (int i = 0; i < I; ++i) xs[g] += m.wih[r * I + i] * m.x[(t * B + b) * I + i];
        for (int k = 0; k < H; ++k) hs[g] += m.whh[r * H + k] * h[b * H + k];
      }
      double rg = sig(xs[0] + hs[0]), zg = sig(xs[1] + hs[1]), ng = std::tanh(xs[2] + rg * hs[2]);
      hn[b * H + j] = (1 - zg) * ng + zg * h[b * H + j];
      if (saved) {
        double* sr = saved->data() + (t * B + b) * 4 * H;
        sr[j] = rg; sr[H + j] = zg; sr[2 * H + j] = ng; sr[3 * H + j] = hs[2];
      }
    }
    h = hn;
    for (int e = 0; e < B * H; ++e) y[t * B * H + e] = h[e];
  }
  double L = 0;
  for (size_t e = 0; e < y.size(); ++e) L += gy[e] * y[e];
  for (int e = 0; e < B * H; ++e) L += ghn[e] * h[e];
  if (yout) *yout = y;
  return L;
}
void test_gru(int T, int B, int I, int H) {
  std::normal_distribution<double> nd(0, 0.5);
  Gru m{T, B, I, H};
  auto fill = [&](std::vector<double>& v, size_t n) { v.resize(n); for (auto& e : v) e = nd(rng); };
  fill(m.x, T * B * I); fill(m.h0, B * H); fill(m.wih, 3 * H * I); fill(m.whh, 3 * H * H); fill(m.bih, 3 * H); fill(m.bhh, 3 * H);
  std::vector<double> gy, ghn; fill(gy, T * B * H); fill(ghn, B * H);
  std::vector<double> yref; fwd64(m, gy, ghn, &yref);
  auto f32 = [](const std::vector<double>& v) { return std::vector<float>(v.begin(), v.end()); };
  auto x = f32(m.x), h0 = f32(m.h0), wih = f32(m.wih), whh = f32(m.whh), bih = f32(m.bih), bhh = f32(m.bhh);
  int H3 = 3 * H;
  std::vector<float> xproj(T * B * H3), y(T * B * H, NAN), saved(T * B * 4 * H, NAN);
  for (int r = 0; r < T * B; ++r) for (int n = 0; n < H3; ++n) { double a = 0; for (int i = 0; i < I; ++i) a += (double)x[r * I + i] * wih[n * I + i]; xproj[r * H3 + n] = a; }
  for (int t = 0; t < T; ++t) {
    const float* hp = t == 0 ? h0.data() : y.data() + (t - 1) * B * H;
    emu_launch({(unsigned)((H + HJ - 1) / HJ), 1, 1}, WARPS * 32, [&] {
      gru_step_fwd<float>(B, H, xproj.data() + t * B * H3, hp, whh.data(), bih.data(), bhh.data(), y.data() + t * B * H,
                          saved.data() + t * B * 4 * H); });
  }
  double ey = 0; for (size_t e = 0; e < y.size(); ++e) ey = std::max(ey, std::isnan(y[e]) ? 1e30 : std::fabs(y[e] - yref[e]));
  std::vector<float> dh(B * H), dhd(B * H), dxg(T * B * H3, NAN), dhg(T * B * H3, NAN), dyf = f32(gy);
  for (int e = 0; e < B * H; ++e) dh[e] = ghn[e];
  for (int t = T - 1; t >= 0; --t) {
    const float* hp = t == 0 ? h0.data() : y.data() + (t - 1) * B * H;
    emu_launch({2, 1, 1}, 32, [&] { gru_step_bwd_pointwise<float>(B, H, dyf.data() + t * B * H, dh.data(), hp,
                                     saved.data() + t * B * 4 * H, dxg.data() + t * B * H3, dhg.data() + t * B * H3, dhd.data()); });
    emu_launch({(unsigned)((H + DH_COLS - 1) / DH_COLS), (unsigned)((B + DH_BB - 1) / DH_BB), 1}, DH_THREADS, [&] {
      recurrent_dh_kernel<float>(B, H, H3, dhg.data() + t * B * H3, whh.data(), dhd.data(), dh.data()); });
  }
  std::vector<double> dwih(H3 * I, 0), dwhh(H3 * H, 0), dbi(H3, 0), dbh(H3, 0), dx(T * B * I, 0);
  for (int t = 0; t < T; ++t) for (int b = 0; b < B; ++b) for (int n = 0; n < H3; ++n) {
    double gx = dxg[(t * B + b) * H3 + n], gh = dhg[(t * B + b) * H3 + n]; dbi[n] += gx; dbh[n] += gh;
    for (int i = 0; i < I; ++i) { dwih[n * I + i] += gx * x[(t * B + b) * I + i]; dx[(t * B + b) * I + i] += gx * wih[n * I + i]; }
    for (int k = 0; k < H; ++k) dwhh[n * H + k] += gh * (t == 0 ? h0[b * H + k] : y[((t - 1) * B + b) * H + k]);
  }
  double worst = 0;
  auto fd = [&](std::vector<double>& p, size_t idx, double analytic) {
    double eps = 1e-5, s = p[idx];
    p[idx] = s + eps; double lp = fwd64(m, gy, ghn);
    p[idx] = s - eps; double lm = fwd64(m, gy, ghn);
    p[idx] = s;
    double num = (lp - lm) / (2 * eps);
    worst = std::max(worst, std::fabs(num - analytic) / (1 + std::fabs(num)));
  };
  for (int k = 0; k < 8; ++k) {
    size_t a = rng() % m.wih.size(), b2 = rng() % m.whh.size(), c = rng() % m.bih.size(), d = rng() % m.x.size(), e = rng() % m.h0.size();
    fd(m.wih, a, dwih[a]); fd(m.whh, b2, dwhh[b2]); fd(m.bih, c, dbi[c]); fd(m.bhh, c, dbh[c]); fd(m.x, d, dx[d]); fd(m.h0, e, dh[e]);
  }
  bool bad = ey > 1e-5 || worst > 1e-4;
  printf("%s gru T%d B%d I%d H%d: fwd max err %.1e, grad vs finite diff %.1e\n", bad ? "FAIL" : "ok  ", T, B, I, H, ey, worst);
  fails += bad;
}
// The register-tiled forward step (B >= 16, rnn_step_tiled.cuh with GruCell) vs the float64
// forward, in float and double, for tails in H (units per CTA, k-chunks), B (batch tile) and
// every optional input missing.
template <typename T, bool VEC>
void test_gru_tiled(int T_, int B, int I, int H, bool with_h0, bool with_bias, bool save) {
  std::normal_distribution<double> nd(0, 0.5);
  Gru m{T_, B, I, H};
  auto fill = [&](std::vector<double>& v, size_t n, bool present = true) {
    v.assign(n, 0.0);
    if (present) for (auto& e : v) e = nd(rng);
  };
  fill(m.x, T_ * B * I); fill(m.h0, B * H, with_h0); fill(m.wih, 3 * H * I); fill(m.whh, 3 * H * H);
  fill(m.bih, 3 * H, with_bias); fill(m.bhh, 3 * H, with_bias);
  std::vector<double> yref, sref, none(T_ * B * H, 0.0), none_n(B * H, 0.0);
  fwd64(m, none, none_n, &yref, &sref);
  auto cast = [](const std::vector<double>& v) { return std::vector<T>(v.begin(), v.end()); };
  auto x = cast(m.x), h0 = cast(m.h0), wih = cast(m.wih), whh = cast(m.whh), bih = cast(m.bih), bhh = cast(m.bhh);
  int H3 = 3 * H;
  std::vector<T> xproj(T_ * B * H3), y(T_ * B * H, NAN), saved(T_ * B * 4 * H, NAN);
  for (int r = 0; r < T_ * B; ++r) for (int n = 0; n < H3; ++n) {
    double a = 0; for (int i = 0; i < I; ++i) a += (double)x[r * I + i] * wih[n * I + i]; xproj[r * H3 + n] = (T)a;
  }
  using Tile = RnnTiledShape<T, 3>;
  const unsigned grid = (unsigned)(((H + Tile::UNITS - 1) / Tile::UNITS) * ((B + Tile::BATCH - 1) / Tile::BATCH));
  for (int t = 0; t < T_; ++t) {
    const T* hp = t > 0 ? y.data() + (t - 1) * B * H : with_h0 ? h0.data() : nullptr;
    const GruCell<T> cell{xproj.data() + t * B * H3, hp, with_bias ? bih.data() : nullptr,
                          with_bias ? bhh.data() : nullptr, y.data() + t * B * H,
                          save ? saved.data() + t * B * 4 * H : nullptr};
    emu_launch({grid, 1, 1}, RNN_TILED_THREADS, [&] { rnn_step_fwd_tiled<T, VEC>(B, H, hp, whh.data(), cell); });
  }
  auto max_err = [](const std::vector<T>& got, const std::vector<double>& ref) {
    double e = 0;
    for (size_t i = 0; i < got.size(); ++i)
      e = std::max(e, std::isnan(got[i]) ? 1e30 : std::fabs(got[i] - ref[i]) / (1 + std::fabs(ref[i])));
    return e;
  };
  const double ey = max_err(y, yref);
  double es = 0;
  if (save) es = max_err(saved, sref);
  else for (T v : saved) if (!std::isnan(v)) es = 1e30;  // saved == nullptr: nothing written
  const double tol = sizeof(T) == 4 ? 1e-5 : 1e-12;
  bool bad = !(ey <= tol && es <= tol);
  printf("%s gru tiled %s VEC%d T%d B%d I%d H%d h0%d bias%d saved%d: max err y %.1e saved %.1e\n", bad ? "FAIL" : "ok  ",
         sizeof(T) == 4 ? "f32" : "f64", VEC, T_, B, I, H, with_h0, with_bias, save, ey, es);
  fails += bad;
}

int main() {
  test_gru(3, 2, 5, 8);
  test_gru(2, 9, 3, 7);
  test_gru(4, 3, 4, 36);
  // tiled step: (T, B, I, H, with h0, with biases, saves [r, z, n, W_hn h + b_hn])
  test_gru_tiled<float, false>(2, 17, 3, 12, true, true, true);
  test_gru_tiled<float, true>(2, 40, 5, 36, false, false, true);
  test_gru_tiled<float, true>(3, 64, 4, 8, true, true, false);
  test_gru_tiled<float, false>(2, 33, 3, 100, false, true, true);  // 2 k-chunks, the 2nd partial
  test_gru_tiled<float, true>(2, 20, 2, 136, true, true, true);    // 3 k-chunks
  test_gru_tiled<float, true>(2, 16, 3, 64, true, false, true);    // exactly one chunk, one batch tile
  test_gru_tiled<double, true>(2, 17, 3, 36, true, true, true);    // 2 k-chunks (32 doubles each)
  test_gru_tiled<double, false>(2, 35, 4, 37, false, true, false);
  test_gru_tiled<double, true>(3, 64, 2, 70, true, false, true);
  printf("%d failures\n", fails);
  return fails;
}

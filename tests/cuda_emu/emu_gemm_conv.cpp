#include "cuda_emu.h"
#include <cstdio>
#include <random>
#include "cuda/kernels.h"
namespace pycnnrnn::cuda {
inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
#include "gemm_kernels.inc"
#include "conv_kernels.inc"
}
using namespace pycnnrnn::cuda;
std::mt19937 rng(3);
std::normal_distribution<float> nd;

template <bool TA, bool TB, bool VA, bool VB>
int test_sgemm(int64_t M, int64_t N, int64_t K, float beta) {
  std::vector<float> A(M * K), B(K * N), C(M * N), C0;
  for (auto& v : A) v = nd(rng);
  for (auto& v : B) v = nd(rng);
  for (auto& v : C) v = nd(rng);
  C0 = C;
  int64_t lda = TA ? M : K, ldb = TB ? K : N;
  dim3_ grid{(unsigned)ceil_div(N, 128), (unsigned)ceil_div(M, 128), 1};
  emu_launch(grid, 256, [&] { sgemm_128x128<TA, TB, VA, VB>(M, N, K, 0.5f, A.data(), lda, B.data(), ldb, beta, C.data(), N); });
  double maxe = 0;
  for (int64_t i = 0; i < M; ++i) for (int64_t j = 0; j < N; ++j) {
    double acc = 0;
    for (int64_t k = 0; k < K; ++k) acc += (double)(TA ? A[k * M + i] : A[i * K + k]) * (TB ? B[j * K + k] : B[k * N + j]);
    double ref = 0.5 * acc + beta * C0[i * N + j];
    maxe = std::max(maxe, std::isnan(C[i * N + j]) ? 1e30 : std::fabs(C[i * N + j] - ref) / (1 + std::fabs(ref)));
  }
  bool bad = maxe > 1e-4;
  printf("%s sgemm TA%d TB%d VA%d VB%d %lldx%lldx%lld err %.2e\n", bad ? "FAIL" : "ok  ", TA, TB, VA, VB, (long long)M, (long long)N, (long long)K, maxe);
  return bad;
}

template <class TL>
int test_conv(int N, int C, int K, int H, int W, int R, int S, int st, int pd, int dl, int groups, int64_t splits) {
  ConvShape cs{N, C, H, W, K, R, S, 0, 0, st, st, pd, pd, dl, dl, groups};
  cs.P = (H + 2 * pd - dl * (R - 1) - 1) / st + 1;
  cs.Q = (W + 2 * pd - dl * (S - 1) - 1) / st + 1;
  int P = cs.P, Q = cs.Q, Cg = C / groups, Kg = K / groups;
  std::vector<float> x(N * C * H * W), w(K * Cg * R * S), b(K), dy(N * K * P * Q);
  for (auto* v : {&x, &w, &b, &dy}) for (auto& e : *v) e = nd(rng);
  std::vector<double> y(N * K * P * Q), dx(x.size(), 0), dw(w.size(), 0);
  for (int n = 0; n < N; ++n) for (int k = 0; k < K; ++k) for (int p = 0; p < P; ++p) for (int q = 0; q < Q; ++q) {
    int g = k / Kg; double acc = b[k];
    for (int c = 0; c < Cg; ++c) for (int r = 0; r < R; ++r) for (int s = 0; s < S; ++s) {
      int ih = p * st - pd + r * dl, iw = q * st - pd + s * dl;
      if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
      size_t xi = ((size_t)(n * C + g * Cg + c) * H + ih) * W + iw, wi = ((size_t)(k * Cg + c) * R + r) * S + s;
      double g_ = dy[((n * K + k) * P + p) * Q + q];
      acc += (double)x[xi] * w[wi]; dx[xi] += g_ * w[wi]; dw[wi] += g_ * x[xi];
    }
    y[((n * K + k) * P + p) * Q + q] = acc;
  }
  Geo geo = make_geo(cs);
  std::vector<float> y2(y.size(), NAN), dx2(dx.size(), NAN), ws(splits * w.size(), NAN), dw2(w.size());
  auto run = [&](auto op, int64_t spl, int64_t kchunk) {
    dim3_ grid{(unsigned)ceil_div(op.N(), TL::BN), (unsigned)ceil_div(op.M(), TL::BM), (unsigned)(groups * spl)};
    emu_launch(grid, 256, [&] { igemm<decltype(op), float, TL>(op, kchunk); });
  };
  FpropOp<float> f{geo, x.data(), w.data(), b.data(), y2.data()};
  run(f, 1, f.Kd());
  DgradOp<float> d{geo, dy.data(), w.data(), dx2.data()};
  run(d, 1, d.Kd());
  WgradOp<float> wo{geo, dy.data(), x.data(), ws.data()};
  int64_t kchunk = std::max<int64_t>(ceil_div(ceil_div(wo.Kd(), splits), 16) * 16, 16);
  run(wo, splits, kchunk);
  for (size_t e = 0; e < w.size(); ++e) { float s = ws[e]; for (int k = 1; k < splits; ++k) s += ws[k * w.size() + e]; dw2[e] = s; }
  auto cmp = [&](const std::vector<float>& a, const std::vector<double>& r) {
    double m = 0; for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::isnan(a[i]) ? 1e30 : std::fabs(a[i] - r[i]) / (1 + std::fabs(r[i]))); return m; };
  double e1 = cmp(y2, y), e2 = cmp(dx2, dx), e3 = cmp(dw2, dw);
  bool bad = e1 > 1e-4 || e2 > 1e-4 || e3 > 1e-4;
  printf("%s conv BM%d N%d C%d K%d %dx%d k%dx%d s%d p%d d%d g%d splits%lld: fprop %.1e dgrad %.1e wgrad %.1e\n", bad ? "FAIL" : "ok  ", TL::BM, N, C, K, H, W, R, S, st, pd, dl, groups, (long long)splits, e1, e2, e3);
  return bad;
}

int main() {
  int fails = 0;
  fails += test_sgemm<false, false, true, true>(130, 260, 36, 0.f);
  fails += test_sgemm<false, false, false, false>(131, 129, 37, 1.5f);
  fails += test_sgemm<false, true, true, true>(129, 140, 20, 0.f);
  fails += test_sgemm<false, true, false, false>(70, 133, 13, -1.f);
  fails += test_sgemm<true, false, true, true>(132, 136, 24, 0.f);
  fails += test_sgemm<true, false, false, false>(135, 131, 11, 0.f);
  fails += test_sgemm<true, false, true, false>(132, 131, 11, 0.f);
  fails += test_sgemm<false, false, true, false>(5, 3, 12, 0.f);
  fails += test_conv<SmallTile>(2, 6, 9, 9, 8, 3, 3, 1, 1, 1, 3, 3);
  fails += test_conv<SmallTile>(1, 4, 70, 11, 9, 3, 2, 2, 1, 2, 1, 2);
  fails += test_conv<LargeTile>(1, 16, 130, 12, 13, 3, 3, 1, 1, 1, 1, 2);
  fails += test_conv<LargeTile>(2, 140, 8, 7, 9, 3, 3, 2, 1, 1, 1, 1);
  fails += test_conv<LargeTile>(1, 20, 136, 6, 7, 3, 3, 1, 2, 2, 2, 3);
  for (int it = 0; it < 16; ++it) {  // random small shapes through both tiles
    int groups = 1 + rng() % 3, C = groups * (1 + rng() % 4), K = groups * (1 + rng() % 5);
    int H = 4 + rng() % 8, W = 4 + rng() % 8, R = 1 + rng() % 3, S = 1 + rng() % 3;
    int st = 1 + rng() % 3, pd = rng() % 2, dl = 1 + rng() % 2, N = 1 + rng() % 2;
    if (H + 2 * pd - dl * (R - 1) - 1 < 0 || W + 2 * pd - dl * (S - 1) - 1 < 0) continue;
    fails += (it & 1) ? test_conv<LargeTile>(N, C, K, H, W, R, S, st, pd, dl, groups, 1 + rng() % 3)
                      : test_conv<SmallTile>(N, C, K, H, W, R, S, st, pd, dl, groups, 1 + rng() % 3);
  }
  printf("%d failures\n", fails);
  return fails;
}

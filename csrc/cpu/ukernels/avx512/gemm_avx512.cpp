// gemm_avx512.cpp — AVX-512 GEMM micro-kernels (float 6x64, double 6x32: 24 zmm accumulators,
// NV vector loads + MR broadcasts feed MR*NV FMAs per k). Edges: k-masked loads/stores.
// Compiled with -mavx512f/bw/dq/vl -mfma; everything lives in pycnnrnn::gemm_avx512.
#include <algorithm>
#include <cstdint>

#include <immintrin.h>

#include "cpu/gemm_ukernel.h"

// gcc 12 false positives inside _mm512_max_p[sd] / _mm512_reduce_add_p[sd]
// (_mm512_undefined_*): not our variables.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

namespace pycnnrnn {
namespace gemm_avx512 {
namespace {

struct F32 {
  using T = float;
  using V = __m512;
  using M = uint32_t;
  static constexpr int L = 16;
  static V zero() { return _mm512_setzero_ps(); }
  static V load(const T* p) { return _mm512_loadu_ps(p); }
  static V loadm(uint32_t m, const T* p) { return _mm512_maskz_loadu_ps(static_cast<__mmask16>(m), p); }
  static void store(T* p, V v) { _mm512_storeu_ps(p, v); }
  static void storem(T* p, uint32_t m, V v) { _mm512_mask_storeu_ps(p, static_cast<__mmask16>(m), v); }
  static V set1(T x) { return _mm512_set1_ps(x); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
  // max(0, v): MAXPS returns the second operand when either is NaN -> NaN is kept.
  static V relu(V v) { return _mm512_max_ps(_mm512_setzero_ps(), v); }
  static uint32_t mask(int n) { return n >= 16 ? 0xFFFFu : ((1u << n) - 1u); }
  static T hsum(V v) { return _mm512_reduce_add_ps(v); }
  // out[i] = the sum of v[i]'s lanes, 16 vectors at once: a tree of halving shuffles and adds
  // (45 instructions instead of 16 reductions of ~9), pairing vectors as it halves the lanes.
  // After the four levels lane 4k + r holds vector 4r + k.
  static void lane_sums(const V v[16], T out[16]) {
    V a[8], b[4], c[2];
    for (int i = 0; i < 8; ++i)  // 256-bit halves: [v(2i) 8 sums | v(2i+1) 8 sums]
      a[i] = _mm512_add_ps(_mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                           _mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], _MM_SHUFFLE(3, 2, 3, 2)));
    for (int i = 0; i < 4; ++i)  // 128-bit quarters: v(4i) .. v(4i+3), 4 sums each
      b[i] = _mm512_add_ps(_mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], _MM_SHUFFLE(2, 0, 2, 0)),
                           _mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], _MM_SHUFFLE(3, 1, 3, 1)));
    for (int i = 0; i < 2; ++i)  // quarter k: 2 sums of v(8i + k), 2 of v(8i + 4 + k)
      c[i] = _mm512_add_ps(_mm512_shuffle_ps(b[2 * i], b[2 * i + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                           _mm512_shuffle_ps(b[2 * i], b[2 * i + 1], _MM_SHUFFLE(3, 2, 3, 2)));
    const V d = _mm512_add_ps(_mm512_shuffle_ps(c[0], c[1], _MM_SHUFFLE(2, 0, 2, 0)),
                              _mm512_shuffle_ps(c[0], c[1], _MM_SHUFFLE(3, 1, 3, 1)));
    alignas(64) T lanes[16];
    _mm512_store_ps(lanes, d);
    for (int p = 0; p < 16; ++p) out[(p & 3) * 4 + (p >> 2)] = lanes[p];
  }
};

struct F64 {
  using T = double;
  using V = __m512d;
  using M = uint32_t;
  static constexpr int L = 8;
  static V zero() { return _mm512_setzero_pd(); }
  static V load(const T* p) { return _mm512_loadu_pd(p); }
  static V loadm(uint32_t m, const T* p) { return _mm512_maskz_loadu_pd(static_cast<__mmask8>(m), p); }
  static void store(T* p, V v) { _mm512_storeu_pd(p, v); }
  static void storem(T* p, uint32_t m, V v) { _mm512_mask_storeu_pd(p, static_cast<__mmask8>(m), v); }
  static V set1(T x) { return _mm512_set1_pd(x); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_pd(a, b, c); }
  static V mul(V a, V b) { return _mm512_mul_pd(a, b); }
  static V add(V a, V b) { return _mm512_add_pd(a, b); }
  static V relu(V v) { return _mm512_max_pd(_mm512_setzero_pd(), v); }
  static uint32_t mask(int n) { return n >= 8 ? 0xFFu : ((1u << n) - 1u); }
  static T hsum(V v) { return _mm512_reduce_add_pd(v); }
  static void lane_sums(const V v[8], T out[8]) {
    for (int i = 0; i < 8; ++i) out[i] = hsum(v[i]);
  }
};

#include "cpu/gemm_ukr.inc"

void ukr_f32(int64_t kc, const float* a, int64_t lda, const float* b, int64_t bs, float* c, int64_t ldc, int m, int n,
             const UkrParams<float>* p) {
  ukr_any_n<F32, 6, 4>(kc, a, lda, b, bs, c, ldc, m, n, p);
}
void ukr_f64(int64_t kc, const double* a, int64_t lda, const double* b, int64_t bs, double* c, int64_t ldc, int m,
             int n,
             const UkrParams<double>* p) {
  ukr_any_n<F64, 6, 4>(kc, a, lda, b, bs, c, ldc, m, n, p);
}


#include "cpu/gemm_smallm.inc"

// ---- transposed-B packer -----------------------------------------------------------------
// 16 x 16 blocks: 16 rows of B^T (16 panel columns) x 16 k, transposed in registers (64
// shuffles per 256 elements); the k tail and partial column groups use masked gathers (element
// by element where 16 rows' offsets overflow the gather's int32 indices).

// r[i][j] -> r[j][i] for a 16 x 16 float block held in 16 zmm.
inline void transpose16(__m512 r[16]) {
  __m512 t[16], u[16];
  for (int p = 0; p < 8; ++p) {
    t[2 * p] = _mm512_unpacklo_ps(r[2 * p], r[2 * p + 1]);
    t[2 * p + 1] = _mm512_unpackhi_ps(r[2 * p], r[2 * p + 1]);
  }
  for (int q = 0; q < 4; ++q) {  // u[4q + c], 128-bit lane L: column 4L + c, rows 4q..4q+3
    const __m512d a0 = _mm512_castps_pd(t[4 * q]), a1 = _mm512_castps_pd(t[4 * q + 1]);
    const __m512d a2 = _mm512_castps_pd(t[4 * q + 2]), a3 = _mm512_castps_pd(t[4 * q + 3]);
    u[4 * q + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(a0, a2));
    u[4 * q + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a0, a2));
    u[4 * q + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(a1, a3));
    u[4 * q + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(a1, a3));
  }
  for (int c = 0; c < 4; ++c) {  // gather 128-bit lanes: column j = 4L + c
    const __m512 v = _mm512_shuffle_f32x4(u[c], u[4 + c], 0x88), v2 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0xdd);
    const __m512 w = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0x88);
    const __m512 w2 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0xdd);
    r[c] = _mm512_shuffle_f32x4(v, w, 0x88);
    r[8 + c] = _mm512_shuffle_f32x4(v, w, 0xdd);
    r[4 + c] = _mm512_shuffle_f32x4(v2, w2, 0x88);
    r[12 + c] = _mm512_shuffle_f32x4(v2, w2, 0xdd);
  }
}

void pack_bt_f32(const float* Bt, int64_t ldb, int64_t kc, int64_t nc, int NR, float* dst, int64_t ld) {
  const bool gather = ldb <= (int64_t(1) << 31) / 16;
  const __m512i idx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                         _mm512_set1_epi32(gather ? static_cast<int>(ldb) : 0));
  const int64_t kv = kc / 16 * 16;
  for (int64_t q = 0; q < nc; q += NR) {
    float* d = dst + q / NR * kc * ld;
    for (int v = 0; v < NR / 16; ++v) {
      const int64_t lanes = std::min<int64_t>(16, std::max<int64_t>(0, nc - q - v * 16));
      const __mmask16 mk = static_cast<__mmask16>(F32::mask(static_cast<int>(lanes)));
      const float* base = Bt + (q + v * 16) * ldb;
      float* dv = d + v * 16;
      if (lanes == 0) {  // columns past nc: zeros (a zero-mask gather per row cost 20+ cycles)
        for (int64_t k = 0; k < kc; ++k) _mm512_storeu_ps(dv + k * ld, _mm512_setzero_ps());
        continue;
      }
      int64_t k = 0;
      if (lanes == 16) {
        for (; k < kv; k += 16) {
          __m512 r[16];
          for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_ps(base + i * ldb + k);
          transpose16(r);
          for (int j = 0; j < 16; ++j) _mm512_storeu_ps(dv + (k + j) * ld, r[j]);
        }
      }
      for (; k < kc; ++k) {
        if (gather) {
          _mm512_storeu_ps(dv + k * ld, _mm512_mask_i32gather_ps(_mm512_setzero_ps(), mk, idx, base + k, 4));
        } else {
          for (int j = 0; j < 16; ++j) dv[k * ld + j] = j < lanes ? base[j * ldb + k] : 0.f;
        }
      }
    }
  }
}

void pack_bt_f64(const double* Bt, int64_t ldb, int64_t kc, int64_t nc, int NR, double* dst, int64_t ld) {
  const bool gather = ldb <= (int64_t(1) << 31) / 8;
  const __m256i idx = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                                         _mm256_set1_epi32(gather ? static_cast<int>(ldb) : 0));
  for (int64_t q = 0; q < nc; q += NR) {
    double* d = dst + q / NR * kc * ld;
    for (int v = 0; v < NR / 8; ++v) {
      const int64_t lanes = std::min<int64_t>(8, std::max<int64_t>(0, nc - q - v * 8));
      const __mmask8 mk = static_cast<__mmask8>(F64::mask(static_cast<int>(lanes)));
      const double* base = Bt + (q + v * 8) * ldb;
      double* dv = d + v * 8;
      if (lanes == 0) {
        for (int64_t k = 0; k < kc; ++k) _mm512_storeu_pd(dv + k * ld, _mm512_setzero_pd());
        continue;
      }
      for (int64_t k = 0; k < kc; ++k) {
        if (gather) {
          _mm512_storeu_pd(dv + k * ld, _mm512_mask_i32gather_pd(_mm512_setzero_pd(), mk, idx, base + k, 8));
        } else {
          for (int j = 0; j < 8; ++j) dv[k * ld + j] = j < lanes ? base[j * ldb + k] : 0.0;
        }
      }
    }
  }
}

}  // namespace

// kc: A micro-panel 6 x 256 floats = 6 KiB stays in L1; B block 256 x 512 floats = 512 KiB,
// half of a 1 MiB L2 (AMD Zen 5, 2 threads, interleaved in one process: 2048^3 at 456 GFLOP/s
// with 1 MiB blocks, 473 with 512 KiB, 1024^3 and 512^3 and VGG16 unchanged).
UkrInfo<float> info_f32() { return {6, 64, 16, 256, 144, 512, ukr_f32, smallm_n_f32, smallm_t_f32, pack_bt_f32}; }
UkrInfo<double> info_f64() { return {6, 32, 8, 256, 144, 512, ukr_f64, smallm_n_f64, smallm_t_f64, pack_bt_f64}; }

}  // namespace gemm_avx512
}  // namespace pycnnrnn

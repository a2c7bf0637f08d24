#include <immintrin.h>

#include <cstdint>

#include "cpu/roofline.h"

namespace pycnnrnn::roofline_avx512 {

double fma_loop(int64_t iters) {
  // 12 independent zmm FMA chains (latency 4 x 2 pipes needs >= 8).
  __m512 acc[12];
  for (auto& v : acc) v = _mm512_set1_ps(1.0f);
  const __m512 x = _mm512_set1_ps(1.0000001f), y = _mm512_set1_ps(1e-7f);
  for (int64_t i = 0; i < iters; ++i)
    for (int j = 0; j < 12; ++j) acc[j] = _mm512_fmadd_ps(acc[j], x, y);
  __m512 s = acc[0];
  for (int j = 1; j < 12; ++j) s = _mm512_add_ps(s, acc[j]);
  alignas(64) float out[16];
  _mm512_store_ps(out, s);
  volatile float sink = out[0];
  (void)sink;
  return 2.0 * 16 * 12 * static_cast<double>(iters);
}

}  // namespace pycnnrnn::roofline_avx512

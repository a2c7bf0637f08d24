#include <immintrin.h>

#include <cstdint>

#include "cpu/roofline.h"

namespace pycnnrnn::roofline_avx2 {

double fma_loop(int64_t iters) {
  // 12 independent ymm FMA chains hide the 4-cycle latency on 2 FMA pipes.
  __m256 acc[12];
  for (auto& v : acc) v = _mm256_set1_ps(1.0f);
  const __m256 x = _mm256_set1_ps(1.0000001f), y = _mm256_set1_ps(1e-7f);
  for (int64_t i = 0; i < iters; ++i)
    for (int j = 0; j < 12; ++j) acc[j] = _mm256_fmadd_ps(acc[j], x, y);
  __m256 s = acc[0];
  for (int j = 1; j < 12; ++j) s = _mm256_add_ps(s, acc[j]);
  alignas(32) float out[8];
  _mm256_store_ps(out, s);
  volatile float sink = out[0];
  (void)sink;
  return 2.0 * 8 * 12 * static_cast<double>(iters);
}

}  // namespace pycnnrnn::roofline_avx2

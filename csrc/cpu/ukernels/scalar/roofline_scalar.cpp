#include <cmath>
#include <cstdint>

#include "cpu/roofline.h"

namespace pycnnrnn::roofline_scalar {

double fma_loop(int64_t iters) {
  // 8 independent chains; the compiler may vectorise, which is fine for a ceiling.
  float a[8] = {1, 1, 1, 1, 1, 1, 1, 1};
  const float x = 1.0000001f, y = 1e-7f;
  for (int64_t i = 0; i < iters; ++i)
    for (int j = 0; j < 8; ++j) a[j] = a[j] * x + y;
  volatile float sink = a[0] + a[1] + a[2] + a[3] + a[4] + a[5] + a[6] + a[7];
  (void)sink;
  return 2.0 * 8 * static_cast<double>(iters);
}

}  // namespace pycnnrnn::roofline_scalar

// winograd_avx512.cpp — the Winograd transforms of cpu/winograd_transforms.inc built for avx512.
#include <immintrin.h>

#include <cstdint>

#include "cpu/winograd_kernels.h"

namespace pycnnrnn {
namespace winograd_avx512 {
#include "cpu/winograd_transforms.inc"
}  // namespace winograd_avx512
}  // namespace pycnnrnn

// winograd_avx2.cpp — the Winograd transforms of cpu/winograd_transforms.inc built for avx2.
#include <cstdint>

#include "cpu/winograd_kernels.h"

namespace pycnnrnn {
namespace winograd_avx2 {
#include "cpu/winograd_transforms.inc"
}  // namespace winograd_avx2
}  // namespace pycnnrnn

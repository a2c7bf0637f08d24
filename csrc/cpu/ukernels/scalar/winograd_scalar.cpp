// winograd_scalar.cpp — the Winograd transforms of cpu/winograd_transforms.inc built for scalar.
#include <cstdint>

#include "cpu/winograd_kernels.h"

namespace pycnnrnn {
namespace winograd_scalar {
#include "cpu/winograd_transforms.inc"
}  // namespace winograd_scalar
}  // namespace pycnnrnn

// elementwise.h — the ReLU pieces the fused paths need outside the GEMM epilogue, threaded
// over the pool. Plain loops the compiler turns into vector selects (this library builds at
// -O3; a branch per element cost ~7 cycles on random signs: 1 MiB of gradient took 0.55 ms).
#pragma once
#include <cstdint>

namespace pycnnrnn {

// y = max(y, 0) in place; NaN stays NaN (torch.relu).
template <typename T>
void relu_inplace(T* y, int64_t n);

// out = grad where output > 0, else 0: torch's threshold_backward(grad, output, 0), under
// which a NaN output passes its gradient. out may not alias the inputs.
template <typename T>
void relu_backward(const T* grad, const T* output, T* out, int64_t n);

}  // namespace pycnnrnn

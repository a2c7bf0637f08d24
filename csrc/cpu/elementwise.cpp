// elementwise.cpp — see elementwise.h.
#include "cpu/elementwise.h"

#include "core/thread_pool.h"

namespace pycnnrnn {

namespace {
constexpr int64_t kGrain = int64_t{1} << 15;  // elements a thread is worth waking for

// Range loops on __restrict pointers, every load unconditional: GCC turns them into vector
// selects (with the gradient read inside the branch it kept a branch per element).
template <typename T>
void relu_inplace_range(T* __restrict y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = y[i] < T(0) ? T(0) : y[i];  // NaN < 0 is false: kept
}
template <typename T>
void relu_backward_range(const T* __restrict grad, const T* __restrict output, T* __restrict out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const T g = grad[i];  // read unconditionally: the select then needs no branch
    out[i] = output[i] <= T(0) ? T(0) : g;  // NaN <= 0 is false: passes
  }
}
}  // namespace

template <typename T>
void relu_inplace(T* y, int64_t n) {
  parallel_for(n, kGrain, [=](int64_t i0, int64_t i1) { relu_inplace_range(y + i0, i1 - i0); });
}

template <typename T>
void relu_backward(const T* grad, const T* output, T* out, int64_t n) {
  parallel_for(n, kGrain,
               [=](int64_t i0, int64_t i1) { relu_backward_range(grad + i0, output + i0, out + i0, i1 - i0); });
}

template void relu_inplace<float>(float*, int64_t);
template void relu_inplace<double>(double*, int64_t);
template void relu_backward<float>(const float*, const float*, float*, int64_t);
template void relu_backward<double>(const double*, const double*, double*, int64_t);

}  // namespace pycnnrnn

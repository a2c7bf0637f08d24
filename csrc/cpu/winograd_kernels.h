// winograd_kernels.h — the Winograd F(2x2, 3x3) transforms (cpu/winograd_transforms.inc)
// compiled once per ISA, so the compiler vectorises them at that ISA's width. Plain data and
// declarations only (included by translation units built with different -m flags).
#pragma once
#include <cstdint>

namespace pycnnrnn {

// Largest filter block weights() takes at once.
constexpr int64_t WINOGRAD_WEIGHT_BLOCK = 64;

template <typename T>
struct WinogradKernels {
  // u[(xi - x0) * ldu + q] = (G g_q G^T)[xi / 4][xi % 4], x0 <= xi < x1, for the nb <=
  // WINOGRAD_WEIGHT_BLOCK 3x3 filters g_q = g[q * 9 .. q * 9 + 8].
  void (*weights)(const T* g, int64_t nb, T* u, int64_t ldu, int x0, int x1);
  // One tile row of one channel: r[0..3] are the 4 padded input rows (2 * TW + 2 columns);
  // v[xi * plane + tw] = (B^T d B)[xi / 4][xi % 4] of tile tw. scratch: 4 * (TW + 1).
  void (*input_row)(const T* const r[4], int64_t TW, T* v, int64_t plane, T* scratch);
  // One tile row of one output channel: m[xi * plane + tw] -> out0 (output row 2 th) and out1
  // (row 2 th + 1, nullptr when it lies past the output), OW columns: (A^T M A) + bias, then
  // max(., 0) keeping NaN if relu.
  // scratch: 8 * TW elements.
  void (*output_row)(const T* m, int64_t plane, int64_t TW, T bias, bool relu, T* out0, T* out1, int64_t OW,
                     T* scratch);
  // grad_weight: Z[xi * plane + tw] = (A dY A^T)[xi / 4][xi % 4] for the 2x2 output-gradient
  // tiles of output rows r0 (2 th) and r1 (2 th + 1, nullptr past the output), OW columns
  // (zero past them). scratch: 6 * TW elements.
  void (*output_grad_row)(const T* r0, const T* r1, int64_t OW, int64_t TW, T* z, int64_t plane, T* scratch);
  // Dilated layers' phases: dst[j] = src[stride * j], j < n (a phase's columns of a row), and
  // out[2k] = even[k], out[2k + 1] = odd[k], k < n (two column phases back into one row).
  void (*strided_copy)(const T* src, int64_t stride, int64_t n, T* dst);
  void (*interleave)(const T* even, const T* odd, int64_t n, T* out);
};

namespace winograd_avx512 {
WinogradKernels<float> kernels_f32();
WinogradKernels<double> kernels_f64();
}  // namespace winograd_avx512
namespace winograd_avx2 {
WinogradKernels<float> kernels_f32();
WinogradKernels<double> kernels_f64();
}  // namespace winograd_avx2
namespace winograd_scalar {
WinogradKernels<float> kernels_f32();
WinogradKernels<double> kernels_f64();
}  // namespace winograd_scalar

}  // namespace pycnnrnn

// common.cuh — shared helpers for the CUDA kernels: error checking, stream casts, ceil-div.
//
// Every CUDA runtime call and every launch is checked; a failure becomes std::runtime_error
// (pybind11 -> RuntimeError). Never exit(), never a device-wide synchronisation, never an
// allocation: callers pass every buffer (outputs and workspaces).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>

namespace pycnnrnn::cuda {

inline void throw_cuda(cudaError_t err, const char* what, const char* file, int line) {
  cudaGetLastError();  // clear a non-sticky error so the next call starts clean
  throw std::runtime_error(std::string("pycnnrnn CUDA error in ") + what + " (" + file + ":" +
                           std::to_string(line) + "): " + cudaGetErrorName(err) + ": " +
                           cudaGetErrorString(err));
}

#define PYC_CUDA_CHECK(expr)                                                        \
  do {                                                                              \
    cudaError_t pyc_err_ = (expr);                                                  \
    if (pyc_err_ != cudaSuccess) ::pycnnrnn::cuda::throw_cuda(pyc_err_, #expr, __FILE__, __LINE__); \
  } while (0)

// After a <<<>>> launch: configuration errors surface here (asynchronous faults surface at
// the next synchronising call of whoever waits on the stream, i.e. torch).
#define PYC_CUDA_LAUNCH_CHECK(name)                                                 \
  do {                                                                              \
    cudaError_t pyc_err_ = cudaGetLastError();                                      \
    if (pyc_err_ != cudaSuccess) ::pycnnrnn::cuda::throw_cuda(pyc_err_, name, __FILE__, __LINE__); \
  } while (0)

inline cudaStream_t as_stream(uintptr_t s) { return reinterpret_cast<cudaStream_t>(s); }

template <typename T>
inline T* as_ptr(uintptr_t p) {
  return reinterpret_cast<T*>(p);
}

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Grid sizes are capped; kernels use grid-stride loops where the element count can exceed it.
inline unsigned grid_1d(int64_t n, int threads, int64_t cap = 65535LL * 32) {
  int64_t g = ceil_div(n, threads);
  if (g < 1) g = 1;
  if (g > cap) g = cap;
  return static_cast<unsigned>(g);
}

}  // namespace pycnnrnn::cuda

// device.cu — the device query behind pycnnrnn.cuda_available().
//
// Never fails for lack of a GPU or driver: any error (cudaErrorInsufficientDriver,
// cudaErrorNoDevice, ...) counts as zero devices and the sticky error is cleared.
#include <cuda_runtime.h>

#include <string>

#include "cuda/device.h"

namespace pycnnrnn::cuda {

int device_count() {
  int n = 0;
  cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) {
    cudaGetLastError();  // clear
    return 0;
  }
  return n;
}

std::string device_name(int device) {
  cudaDeviceProp prop;
  if (cudaGetDeviceProperties(&prop, device) != cudaSuccess) {
    cudaGetLastError();
    return "";
  }
  return std::string(prop.name) + " (sm_" + std::to_string(prop.major) + std::to_string(prop.minor) + ")";
}

int runtime_version() {
  int v = 0;
  cudaRuntimeGetVersion(&v);
  return v;
}

}  // namespace pycnnrnn::cuda

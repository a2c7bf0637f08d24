// device.h — CUDA device queries (host code; callable without a GPU).
#pragma once
#include <string>

namespace pycnnrnn::cuda {
int device_count();              // 0 when there is no usable device or driver
std::string device_name(int device);
int runtime_version();           // CUDA runtime the extension was linked with
}  // namespace pycnnrnn::cuda

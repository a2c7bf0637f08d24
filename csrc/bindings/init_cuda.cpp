// init_cuda.cpp — CUDA entry points (only when built with the CUDA backend).
#include <pybind11/pybind11.h>

#ifdef PYCNNRNN_WITH_CUDA
#include "cuda/device.h"
#endif

namespace py = pybind11;

namespace pycnnrnn {

void init_cuda(py::module_& m) {
#ifdef PYCNNRNN_WITH_CUDA
  m.def("cuda_device_count", &cuda::device_count, py::call_guard<py::gil_scoped_release>());
  m.def("cuda_device_name", &cuda::device_name, py::arg("device") = 0);
  m.def("cuda_runtime_version", &cuda::runtime_version);
#else
  m.def("cuda_device_count", [] { return 0; });
#endif
}

}  // namespace pycnnrnn

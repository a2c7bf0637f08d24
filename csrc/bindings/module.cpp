// module.cpp — the only PYBIND11_MODULE. Each operator binds itself in init_<op>.cpp.
#include <pybind11/pybind11.h>

namespace py = pybind11;

namespace pycnnrnn {
void init_core(py::module_& m);
void init_gemm(py::module_& m);
void init_pool2d(py::module_& m);
void init_conv2d(py::module_& m);
void init_rnn(py::module_& m);
void init_cuda(py::module_& m);
}  // namespace pycnnrnn

PYBIND11_MODULE(_C, m) {
  m.doc() = "pycnnrnn C++ kernels (internal; use pycnnrnn.functional)";
  pycnnrnn::init_core(m);
  pycnnrnn::init_gemm(m);
  pycnnrnn::init_pool2d(m);
  pycnnrnn::init_conv2d(m);
  pycnnrnn::init_rnn(m);
  pycnnrnn::init_cuda(m);
}

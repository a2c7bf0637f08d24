// init_gemm.cpp — bindings for the gemm operator (filled in by its issue).
#include <pybind11/pybind11.h>

namespace py = pybind11;

namespace pycnnrnn {
void init_gemm(py::module_& m) { (void)m; }
}  // namespace pycnnrnn

// init_pool2d.cpp — bindings for the pool2d operator (filled in by its issue).
#include <pybind11/pybind11.h>

namespace py = pybind11;

namespace pycnnrnn {
void init_pool2d(py::module_& m) { (void)m; }
}  // namespace pycnnrnn

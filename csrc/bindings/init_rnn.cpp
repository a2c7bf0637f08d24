// init_rnn.cpp — bindings for the rnn operator (filled in by its issue).
#include <pybind11/pybind11.h>

namespace py = pybind11;

namespace pycnnrnn {
void init_rnn(py::module_& m) { (void)m; }
}  // namespace pycnnrnn

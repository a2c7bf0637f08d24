// init_core.cpp — version, ISA, threads, the roofline probe and the shared shape formulas.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "bindings/numpy_args.h"
#include "core/block_cache.h"
#include "core/dispatch.h"
#include "core/shapes.h"
#include "core/thread_pool.h"
#include "cpu/roofline.h"

namespace py = pybind11;

namespace pycnnrnn {

void init_core(py::module_& m) {
#ifdef PYCNNRNN_VERSION
  m.attr("__version__") = PYCNNRNN_VERSION;
#endif
  m.def("cpu_isa", [] { return std::string(isa_name(active_isa())); },
        "The CPU instruction-set path in use: 'avx512', 'avx2' or 'scalar'.");
  m.def("detected_isa", [] { return std::string(isa_name(detected_isa())); },
        "The best path this CPU supports (before PYCNNRNN_ISA lowers it).");
  m.def("get_num_threads", &get_num_threads);
  m.def("set_num_threads", [](int n) {
    if (n < 1) throw std::invalid_argument("set_num_threads: n must be >= 1, got " + std::to_string(n));
    py::gil_scoped_release nogil;
    set_num_threads(n);
  });
  m.def("default_num_threads", &default_num_threads);
  m.def(
      "_parallel_parts",
      [](int nt) {
        std::vector<std::pair<int, int>> seen(static_cast<size_t>(std::max(nt, 1)), {-1, -1});
        {
          py::gil_scoped_release nogil;
          parallel_run(nt, [&](int tid, int n) { seen[static_cast<size_t>(tid)] = {tid, n}; });
        }
        return seen;
      },
      py::arg("nthreads"), "Test hook: the (tid, nthreads) every part of parallel_run(nthreads) received.");
  m.def("use_openmp_runtime", &use_openmp_runtime, py::arg("library"),
        "Run parallel regions on the already-loaded OpenMP runtime at `library` (torch's), or on "
        "pycnnrnn's own pool with ''. False when that library is not loaded or lacks GOMP_parallel.");
  m.def("using_openmp_runtime", &using_openmp_runtime);
  m.def("measure_fma_peak_gflops", &measure_fma_peak_gflops, py::arg("iters") = 20000000,
        py::call_guard<py::gil_scoped_release>());
  m.def("measure_copy_bandwidth_gbs", &measure_copy_bandwidth_gbs, py::arg("bytes") = int64_t(256) << 20,
        py::arg("passes") = 5, py::call_guard<py::gil_scoped_release>());
  m.def("conv_output_size", &conv_output_size, py::arg("size"), py::arg("kernel"), py::arg("stride"),
        py::arg("pad_l"), py::arg("pad_r"), py::arg("dilation"));
  m.def("pool_output_size", &pool_output_size, py::arg("size"), py::arg("kernel"), py::arg("stride"),
        py::arg("pad"), py::arg("dilation"), py::arg("ceil_mode"));
  m.def("unpool_output_size", &unpool_output_size, py::arg("size"), py::arg("kernel"), py::arg("stride"),
        py::arg("pad"));
  m.def(
      "empty",
      [](const std::vector<py::ssize_t>& shape, const py::dtype& dtype) -> py::array {
        for (py::ssize_t d : shape)
          if (d < 0) throw std::invalid_argument(concat("empty: negative dimension in shape, got ", d));
        if (dtype.is(py::dtype::of<float>())) return empty_array<float>(shape);
        if (dtype.is(py::dtype::of<double>())) return empty_array<double>(shape);
        if (dtype.is(py::dtype::of<int64_t>())) return empty_array<int64_t>(shape);
        throw std::invalid_argument(concat("empty: dtype must be float32, float64 or int64, got ",
                                           std::string(py::str(dtype))));
      },
      py::arg("shape"), py::arg("dtype"),
      "An uninitialised C-contiguous array like numpy.empty, its memory from the output block cache\n"
      "(what the ops' Python layer allocates for outputs and workspaces).");
  m.def("block_cache_bytes", &block_cache_bytes,
        "Bytes of freed large output blocks held for reuse (at most BLOCK_CACHE_MAX_BYTES).");
  m.def("block_cache_clear", &block_cache_clear, "Return every cached free output block to the system.");
  m.attr("BLOCK_CACHE_MIN_BYTES") = BLOCK_CACHE_MIN_BYTES;
  m.attr("BLOCK_CACHE_MAX_BYTES") = BLOCK_CACHE_MAX_BYTES;
#ifdef PYCNNRNN_WITH_CUDA
  m.attr("built_with_cuda") = true;
#else
  m.attr("built_with_cuda") = false;
#endif
}

}  // namespace pycnnrnn

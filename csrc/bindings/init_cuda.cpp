// init_cuda.cpp — CUDA entry points (only when built with the CUDA backend).
//
// Everything here takes integers: device pointers (torch's data_ptr()), sizes, a dtype code
// (0 float32, 1 float64) and the stream handle (torch.cuda.current_stream().cuda_stream).
// pycnnrnn/cuda.py validates tensors and allocates every output and workspace; these
// functions only launch (GIL released), never synchronise, never allocate.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <tuple>

#include "core/shapes.h"

#ifdef PYCNNRNN_WITH_CUDA
#include "cuda/device.h"
#include "cuda/kernels.h"
#endif

namespace py = pybind11;

namespace pycnnrnn {

void init_cuda(py::module_& m) {
  using namespace pybind11::literals;
#ifdef PYCNNRNN_WITH_CUDA
  using u = uintptr_t;
  using i64 = int64_t;
  auto nogil = py::call_guard<py::gil_scoped_release>();
  m.def("cuda_device_count", &cuda::device_count, nogil);
  m.def("cuda_device_name", &cuda::device_name, py::arg("device") = 0);
  m.def("cuda_runtime_version", &cuda::runtime_version);

  m.def("cuda_max_pool2d_fwd", &cuda::max_pool2d_fwd, nogil, "dtype"_a, "x"_a, "y"_a, "idx"_a, "planes"_a, "H"_a,
        "W"_a, "kH"_a, "kW"_a, "sH"_a, "sW"_a, "pH"_a, "pW"_a, "dH"_a, "dW"_a, "ceil_mode"_a, "stream"_a);
  m.def("cuda_max_pool2d_bwd", &cuda::max_pool2d_bwd, nogil, "dtype"_a, "gy"_a, "idx"_a, "gx"_a, "planes"_a, "H"_a,
        "W"_a, "kH"_a, "kW"_a, "sH"_a, "sW"_a, "pH"_a, "pW"_a, "dH"_a, "dW"_a, "ceil_mode"_a, "stream"_a);
  m.def("cuda_gemm", &cuda::gemm, nogil, "dtype"_a, "trans_a"_a, "trans_b"_a, "M"_a, "N"_a, "K"_a, "alpha"_a, "A"_a,
        "lda"_a, "B"_a, "ldb"_a, "beta"_a, "C"_a, "ldc"_a, "stream"_a);
  m.def("cuda_col_sum", &cuda::col_sum, nogil, "dtype"_a, "X"_a, "rows"_a, "cols"_a, "out"_a, "accumulate"_a,
        "stream"_a);
  m.def("cuda_lstm_fwd", &cuda::lstm_fwd, nogil, "dtype"_a, "T"_a, "B"_a, "I"_a, "H"_a, "x"_a, "h0"_a, "c0"_a,
        "w_ih"_a, "w_hh"_a, "b_ih"_a, "b_hh"_a, "y"_a, "c_all"_a, "gates"_a, "xproj"_a, "stream"_a);
  m.def("cuda_lstm_bwd", &cuda::lstm_bwd, nogil, "dtype"_a, "T"_a, "B"_a, "I"_a, "H"_a, "x"_a, "h0"_a, "c0"_a,
        "w_ih"_a, "w_hh"_a, "y"_a, "c_all"_a, "gates"_a, "dy"_a, "dh"_a, "dc"_a, "dx"_a, "dw_ih"_a, "dw_hh"_a,
        "db"_a, "dz"_a, "stream"_a);

  m.def("cuda_gru_fwd", &cuda::gru_fwd, nogil, "dtype"_a, "T"_a, "B"_a, "I"_a, "H"_a, "x"_a, "h0"_a, "w_ih"_a,
        "w_hh"_a, "b_ih"_a, "b_hh"_a, "y"_a, "saved"_a, "xproj"_a, "stream"_a);
  m.def("cuda_gru_bwd", &cuda::gru_bwd, nogil, "dtype"_a, "T"_a, "B"_a, "I"_a, "H"_a, "x"_a, "h0"_a, "w_ih"_a,
        "w_hh"_a, "y"_a, "saved"_a, "dy"_a, "dh"_a, "dx"_a, "dw_ih"_a, "dw_hh"_a, "db_ih"_a, "db_hh"_a, "dxg"_a,
        "dhg"_a, "dhd"_a, "stream"_a);

  // conv: geometry tuple (N, C, H, W, K, R, S, sh, sw, ph, pw, dh, dw, groups)
  using Geo = std::tuple<i64, i64, i64, i64, i64, i64, i64, i64, i64, i64, i64, i64, i64, i64>;
  auto shape = [](const Geo& g) {
    return cuda::conv_shape(std::get<0>(g), std::get<1>(g), std::get<2>(g), std::get<3>(g), std::get<4>(g),
                            std::get<5>(g), std::get<6>(g), std::get<7>(g), std::get<8>(g), std::get<9>(g),
                            std::get<10>(g), std::get<11>(g), std::get<12>(g), std::get<13>(g));
  };
  m.def("cuda_conv2d_out_hw", [shape](const Geo& g) {
    auto cs = shape(g);
    return std::make_tuple(cs.P, cs.Q);
  });
  m.def("cuda_conv2d_wgrad_splits", [shape](const Geo& g) { return cuda::conv2d_wgrad_splits(shape(g)); });
  m.def(
      "cuda_conv2d_fwd",
      [shape](int dtype, const Geo& g, u x, u w, u b, u y, u s) { cuda::conv2d_fwd(dtype, shape(g), x, w, b, y, s); },
      nogil);
  m.def(
      "cuda_conv2d_bwd_data",
      [shape](int dtype, const Geo& g, u dy, u w, u dx, u s) { cuda::conv2d_bwd_data(dtype, shape(g), dy, w, dx, s); },
      nogil);
  m.def(
      "cuda_conv2d_bwd_weight",
      [shape](int dtype, const Geo& g, u dy, u x, u dw, u ws, i64 splits, u s) {
        cuda::conv2d_bwd_weight(dtype, shape(g), dy, x, dw, ws, splits, s);
      },
      nogil);
  m.def(
      "cuda_conv2d_bwd_bias",
      [shape](int dtype, const Geo& g, u dy, u db, u s) { cuda::conv2d_bwd_bias(dtype, shape(g), dy, db, s); },
      nogil);
#else
  m.def("cuda_device_count", [] { return 0; });
#endif
  // shape helper (host-only, also without CUDA): torch's max-pool output size
  m.def("cuda_pool_output_size", &pool_output_size, "in"_a = 0, "k"_a = 1, "stride"_a = 1, "pad"_a = 0,
        "dilation"_a = 1, "ceil_mode"_a = false);
}

}  // namespace pycnnrnn

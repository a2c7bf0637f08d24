// init_conv2d.cpp — bindings for conv2d (forward, backward, and the float64 oracle).
//
// pycnnrnn/ops/conv2d.py validates and normalises (batched NCHW, C-contiguous, aligned, one
// dtype, per-side padding); these functions re-check what the kernels rely on, allocate the
// outputs with the GIL held, then run the kernel with the GIL released.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <cstring>
#include <type_traits>

#include "bindings/numpy_args.h"
#include "cpu/conv2d.h"

namespace py = pybind11;

namespace pycnnrnn {
namespace {

using I2 = std::array<int64_t, 2>;
using I4 = std::array<int64_t, 4>;

// Shape from the arrays' dims and the normalised arguments; finalize() checks it.
Conv2dShape make_shape(const py::array& x, const py::array& w, I2 stride, I4 pad, I2 dil, int64_t groups,
                       int mode) {
  if (x.ndim() != 4) throw std::invalid_argument(concat("input must be 4-D (N, C, H, W), got ", x.ndim(), "-D"));
  if (w.ndim() != 4) throw std::invalid_argument(concat("weight must be 4-D, got ", w.ndim(), "-D"));
  if (mode < 0 || mode > 3) throw std::invalid_argument(concat("padding_mode: unknown code ", mode));
  Conv2dShape s;
  s.N = x.shape(0), s.C = x.shape(1), s.H = x.shape(2), s.W = x.shape(3);
  s.Co = w.shape(0), s.KH = w.shape(2), s.KW = w.shape(3);
  s.groups = groups;
  s.sh = stride[0], s.sw = stride[1];
  s.pt = pad[0], s.pb = pad[1], s.pl = pad[2], s.pr = pad[3];
  s.dh = dil[0], s.dw = dil[1];
  s.mode = static_cast<PadMode>(mode);
  PYC_CHECK(groups > 0, "groups must be a positive integer, got ", groups);
  PYC_CHECK(s.C % groups == 0 && w.shape(1) * groups == s.C, "weight must have shape (out_channels, ",
            "in_channels/groups, kH, kW) = (", s.Co, ", ", s.C / groups, ", ", s.KH, ", ", s.KW, "), got ",
            shape_str(w));
  s.finalize();
  return s;
}

// The C++ half of pycnnrnn.functional.PreparedConv2dWeight: the read-only weight array it was
// made for (kept alive here) and the derived weights, built on first use (Conv2dPrepared).
struct PreparedConv2d {
  py::array weight;
  std::unique_ptr<Conv2dPrepared<float>> f32 = std::make_unique<Conv2dPrepared<float>>();
  std::unique_ptr<Conv2dPrepared<double>> f64 = std::make_unique<Conv2dPrepared<double>>();

  explicit PreparedConv2d(py::array w) : weight(std::move(w)) { check_prepared_snapshot(weight, 4); }
  template <typename T>
  Conv2dPrepared<T>* get();
};
template <>
Conv2dPrepared<float>* PreparedConv2d::get<float>() {
  return f32.get();
}
template <>
Conv2dPrepared<double>* PreparedConv2d::get<double>() {
  return f64.get();
}

template <typename T>
py::array forward_impl(const py::array& x, const py::array& w, const py::object& b, const Conv2dShape& s,
                       ConvAlgo algo, bool relu, const py::object& prepared, bool max_pool2x2) {
  const T* xp = in_ptr<T>(x, "input", 4);
  const T* wp = in_ptr<T>(w, "weight", 4);
  const T* bp = opt_in_ptr<T>(b, "bias", 1);
  if (bp) check_shape(as_array(b, "bias"), "bias", {s.Co});
  Conv2dPrepared<T>* prep = nullptr;
  if (!prepared.is_none()) {
    PreparedConv2d& p = prepared.cast<PreparedConv2d&>();
    if (!is_snapshot(p.weight, w))  // the derived weights are built once, for the first shape they meet
      throw std::invalid_argument("prepared: made for a different weight array than the one passed");
    prep = p.get<T>();
  }
  conv2d_choose_algo(s, algo, std::is_same<T, float>::value);  // a forced algorithm that does not apply raises here
  // (conv2d_forward_max_pool2x2 checks the output against the 2x2 window)
  PYC_CHECK(!max_pool2x2 || algo == ConvAlgo::auto_, "max_pool2x2: only with algorithm='auto'");
  py::array_t<T> y = max_pool2x2 ? empty_array<T>({s.N, s.Co, s.OH / 2, s.OW / 2})
                                 : empty_array<T>({s.N, s.Co, s.OH, s.OW});
  T* yp = y.mutable_data();
  {
    py::gil_scoped_release nogil;
    if (max_pool2x2)
      conv2d_forward_max_pool2x2<T>(s, xp, wp, bp, yp, relu, prep);
    else
      conv2d_forward<T>(s, xp, wp, bp, yp, algo, relu, prep);
  }
  return std::move(y);
}

template <typename T>
py::tuple backward_impl(const py::array& gy, const py::array& x, const py::array& w, const Conv2dShape& s,
                        std::array<bool, 3> mask) {
  const T* gyp = in_ptr<T>(gy, "grad_output", 4);
  check_shape(gy, "grad_output", {s.N, s.Co, s.OH, s.OW});
  const T* xp = in_ptr<T>(x, "input", 4);
  const T* wp = in_ptr<T>(w, "weight", 4);
  py::object gx = py::none(), gw = py::none(), gb = py::none();
  T *gxp = nullptr, *gwp = nullptr, *gbp = nullptr;
  if (mask[0]) {
    auto a = empty_array<T>({s.N, s.C, s.H, s.W});
    gxp = a.mutable_data();
    gx = std::move(a);
  }
  if (mask[1]) {
    auto a = empty_array<T>({s.Co, s.Cg(), s.KH, s.KW});
    gwp = a.mutable_data();
    gw = std::move(a);
  }
  if (mask[2]) {
    auto a = empty_array<T>({s.Co});
    gbp = a.mutable_data();
    gb = std::move(a);
  }
  {
    py::gil_scoped_release nogil;
    conv2d_backward<T>(s, gyp, xp, wp, gxp, gwp, gbp);
  }
  return py::make_tuple(gx, gw, gb);
}

}  // namespace

void init_conv2d(py::module_& m) {
  py::class_<PreparedConv2d>(m, "Conv2dPrepared",
                             "Derived weights of one conv2d weight array, built on first use (use\n"
                             "pycnnrnn.functional.prepare_conv2d_weight).")
      .def(py::init<py::array>(), py::arg("weight"))
      .def_readonly("weight", &PreparedConv2d::weight);
  m.def(
      "conv2d_forward",
      [](const py::array& x, const py::array& w, const py::object& b, I2 stride, I4 pad, I2 dil, int64_t groups,
         int mode, int algo, bool relu, const py::object& prepared, bool max_pool2x2) -> py::array {
        const Conv2dShape s = make_shape(x, w, stride, pad, dil, groups, mode);
        if (algo < 0 || algo > 4) throw std::invalid_argument(concat("algorithm: unknown code ", algo));
        const auto a = static_cast<ConvAlgo>(algo);
        if (is_f64(x)) return forward_impl<double>(x, w, b, s, a, relu, prepared, max_pool2x2);
        return forward_impl<float>(x, w, b, s, a, relu, prepared, max_pool2x2);
      },
      py::arg("input"), py::arg("weight"), py::arg("bias"), py::arg("stride"), py::arg("padding"),
      py::arg("dilation"), py::arg("groups"), py::arg("padding_mode"), py::arg("algorithm"), py::arg("relu") = false,
      py::arg("prepared") = py::none(), py::arg("max_pool2x2") = false,
      "Batched conv2d forward (relu: max(y, 0) fused); padding = (top, bottom, left, right);\n"
      "prepared: a Conv2dPrepared made for this very weight array, or None; max_pool2x2: return\n"
      "max_pool2d(y, 2) instead of y (algorithm 'auto' only). Use pycnnrnn.functional.conv2d.");
  m.def(
      "conv2d_backward",
      [](const py::array& gy, const py::array& x, const py::array& w, I2 stride, I4 pad, I2 dil, int64_t groups,
         int mode, std::array<bool, 3> mask) -> py::tuple {
        const Conv2dShape s = make_shape(x, w, stride, pad, dil, groups, mode);
        if (is_f64(x)) return backward_impl<double>(gy, x, w, s, mask);
        return backward_impl<float>(gy, x, w, s, mask);
      },
      py::arg("grad_output"), py::arg("input"), py::arg("weight"), py::arg("stride"), py::arg("padding"),
      py::arg("dilation"), py::arg("groups"), py::arg("padding_mode"), py::arg("output_mask"),
      "Batched conv2d backward -> (grad_input, grad_weight, grad_bias), None where masked off.");
  m.def(
      "conv2d_forward_naive",
      [](const py::array& x, const py::array& w, const py::object& b, I2 stride, I4 pad, I2 dil, int64_t groups,
         int mode) -> py::array {
        const Conv2dShape s = make_shape(x, w, stride, pad, dil, groups, mode);
        const double* xp = in_ptr<double>(x, "input", 4);
        const double* wp = in_ptr<double>(w, "weight", 4);
        const double* bp = opt_in_ptr<double>(b, "bias", 1);
        if (bp) check_shape(as_array(b, "bias"), "bias", {s.Co});
        auto y = empty_array<double>({s.N, s.Co, s.OH, s.OW});
        double* yp = y.mutable_data();
        py::gil_scoped_release nogil;
        conv2d_forward_naive(s, xp, wp, bp, yp);
        return std::move(y);
      },
      "The float64 oracle: naive conv2d forward loop (tests only).");
  m.def(
      "conv2d_backward_naive",
      [](const py::array& gy, const py::array& x, const py::array& w, I2 stride, I4 pad, I2 dil, int64_t groups,
         int mode) -> py::tuple {
        const Conv2dShape s = make_shape(x, w, stride, pad, dil, groups, mode);
        const double* gyp = in_ptr<double>(gy, "grad_output", 4);
        check_shape(gy, "grad_output", {s.N, s.Co, s.OH, s.OW});
        const double* xp = in_ptr<double>(x, "input", 4);
        const double* wp = in_ptr<double>(w, "weight", 4);
        auto gx = empty_array<double>({s.N, s.C, s.H, s.W});
        auto gw = empty_array<double>({s.Co, s.Cg(), s.KH, s.KW});
        auto gb = empty_array<double>({s.Co});
        double *gxp = gx.mutable_data(), *gwp = gw.mutable_data(), *gbp = gb.mutable_data();
        {
          py::gil_scoped_release nogil;
          conv2d_backward_naive(s, gyp, xp, wp, gxp, gwp, gbp);
        }
        return py::make_tuple(gx, gw, gb);
      },
      "The float64 oracle: naive conv2d backward loops (tests only).");
}

}  // namespace pycnnrnn

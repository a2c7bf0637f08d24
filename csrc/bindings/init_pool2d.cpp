// init_pool2d.cpp — bindings for max_pool2d (forward, backward) and max_unpool2d.
//
// Python (pycnnrnn/ops/pool2d.py) validates and reshapes everything to (planes, H, W)
// C-contiguous arrays; these re-check what the C++ relies on, allocate the outputs with the
// GIL held and run the kernels with it released.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <vector>

#include "bindings/numpy_args.h"
#include "core/errors.h"
#include "core/shapes.h"
#include "core/thread_pool.h"
#include "cpu/elementwise.h"
#include "cpu/pool2d.h"

namespace py = pybind11;

namespace pycnnrnn {
namespace {

constexpr int64_t kMaxParam = (int64_t(1) << 31) - 1;

Pool2dShape make_shape(int64_t planes, int64_t H, int64_t W, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                       int64_t ph, int64_t pw, int64_t dh, int64_t dw, bool ceil_mode) {
  PYC_CHECK(planes >= 0 && H >= 1 && W >= 1, "input: expected planes >= 0 and H, W >= 1, got (", planes, ", ", H,
            ", ", W, ")");
  PYC_CHECK(kh >= 1 && kw >= 1 && kh <= kMaxParam && kw <= kMaxParam, "kernel_size must be in [1, 2**31), got (",
            kh, ", ", kw, ")");
  PYC_CHECK(sh >= 1 && sw >= 1 && sh <= kMaxParam && sw <= kMaxParam, "stride must be in [1, 2**31), got (", sh,
            ", ", sw, ")");
  PYC_CHECK(dh >= 1 && dw >= 1 && dh <= kMaxParam && dw <= kMaxParam, "dilation must be in [1, 2**31), got (", dh,
            ", ", dw, ")");
  PYC_CHECK(ph >= 0 && pw >= 0 && ph <= kh / 2 && pw <= kw / 2, "padding must be in [0, kernel_size // 2], got (",
            ph, ", ", pw, ")");
  PYC_CHECK(H <= kMaxParam && W <= kMaxParam, "input: H and W must be < 2**31, got (", H, ", ", W, ")");
  Pool2dShape s{planes, H, W, 0, 0, kh, kw, sh, sw, ph, pw, dh, dw};
  s.OH = pool_output_size(H, kh, sh, ph, dh, ceil_mode);
  s.OW = pool_output_size(W, kw, sw, pw, dw, ceil_mode);
  PYC_CHECK(s.OH >= 1 && s.OW >= 1, "Given input size: (", H, "x", W, "). Calculated output size: (", s.OH, "x",
            s.OW, "). Output size is too small");
  checked_numel({planes, s.OH, s.OW}, "max_pool2d output");
  return s;
}

template <typename T>
py::tuple forward_impl(const py::array& x, const Pool2dShape& s, bool with_idx, bool reference) {
  const T* xp = in_ptr<T>(x, "input", 3);
  check_shape(x, "input", {s.planes, s.H, s.W});
  auto y = empty_array<T>({static_cast<py::ssize_t>(s.planes), static_cast<py::ssize_t>(s.OH),
                           static_cast<py::ssize_t>(s.OW)});
  py::object idx_obj = py::none();
  int64_t* ip = nullptr;
  if (with_idx) {
    auto idx = empty_array<int64_t>({static_cast<py::ssize_t>(s.planes), static_cast<py::ssize_t>(s.OH),
                                     static_cast<py::ssize_t>(s.OW)});
    ip = idx.mutable_data();
    idx_obj = idx;
  }
  T* yp = y.mutable_data();
  {
    py::gil_scoped_release nogil;
    if (reference)
      max_pool2d_forward_reference<T>(xp, yp, ip, s);
    else
      max_pool2d_forward<T>(xp, yp, ip, s);
  }
  return py::make_tuple(y, idx_obj);
}

const int64_t* idx_ptr(const py::array& a, const char* name) {
  if (!py::isinstance<py::array_t<int64_t>>(a) || a.dtype().kind() != 'i' || a.itemsize() != 8)
    throw py::type_error(concat(name, " must be an int64 array, got dtype ", std::string(py::str(a.dtype()))));
  if (!(a.flags() & py::array::c_style)) throw std::invalid_argument(concat(name, " must be C-contiguous"));
  if (reinterpret_cast<uintptr_t>(a.data()) % 8 != 0) throw std::invalid_argument(concat(name, " must be aligned"));
  return static_cast<const int64_t*>(a.data());
}

template <typename T>
py::array backward_impl(const py::array& gy, const py::array& idx, const Pool2dShape& s) {
  const T* gp = in_ptr<T>(gy, "grad_output", 3);
  check_shape(gy, "grad_output", {s.planes, s.OH, s.OW});
  const int64_t* ip = idx_ptr(idx, "indices");
  check_shape(idx, "indices", {s.planes, s.OH, s.OW});
  auto gx = empty_array<T>({static_cast<py::ssize_t>(s.planes), static_cast<py::ssize_t>(s.H),
                            static_cast<py::ssize_t>(s.W)});
  T* gxp = gx.mutable_data();
  {
    py::gil_scoped_release nogil;
    max_pool2d_backward<T>(gp, ip, gxp, s);
  }
  return gx;
}

template <typename T>
py::array unpool_impl(const py::array& x, const py::array& idx, int64_t oh, int64_t ow) {
  const T* xp = in_ptr<T>(x, "input", 3);
  const int64_t* ip = idx_ptr(idx, "indices");
  PYC_CHECK(idx.ndim() == 3 && idx.shape(0) == x.shape(0) && idx.shape(1) == x.shape(1) &&
                idx.shape(2) == x.shape(2),
            "indices must have the shape of input ", shape_str(x), ", got ", shape_str(idx));
  PYC_CHECK(oh >= 0 && ow >= 0, "output_size must be non-negative, got (", oh, ", ", ow, ")");
  const int64_t planes = x.shape(0), in_hw = x.shape(1) * x.shape(2);
  const int64_t out_hw = checked_mul(oh, ow, "max_unpool2d output");
  checked_mul(planes, out_hw, "max_unpool2d output");
  auto y = empty_array<T>({static_cast<py::ssize_t>(planes), static_cast<py::ssize_t>(oh),
                           static_cast<py::ssize_t>(ow)});
  T* yp = y.mutable_data();
  int64_t bad;
  {
    py::gil_scoped_release nogil;
    bad = max_unpool2d<T>(xp, ip, yp, planes, in_hw, out_hw);
  }
  if (bad >= 0)
    throw std::invalid_argument(concat("indices: found an invalid max index ", ip[bad], " at flat position ", bad,
                                       " (output volumes are of size ", oh, "x", ow, ")"));
  return y;
}

// grad where output > 0, else 0 (torch's threshold_backward(grad, output, 0): a NaN output
// passes its gradient). The ReLU's backward of pycnnrnn.torch's fused Conv2d -> ReLU -> MaxPool2d,
// on the pooled gradient (cpu/elementwise.h; torch.where + le took 0.2 ms a layer there).
template <typename T>
py::array relu_backward_impl(const py::array& g, const py::array& out) {
  const T* gp = in_ptr<T>(g, "grad");
  const T* op = in_ptr<T>(out, "output");
  bool same = g.ndim() == out.ndim();
  for (py::ssize_t d = 0; same && d < g.ndim(); ++d) same = g.shape(d) == out.shape(d);
  PYC_CHECK(same, "output must have the shape of grad ", shape_str(g), ", got ", shape_str(out));
  std::vector<py::ssize_t> shape(g.shape(), g.shape() + g.ndim());
  py::array_t<T> r = empty_array<T>(shape);
  T* rp = r.mutable_data();
  const int64_t n = static_cast<int64_t>(g.size());
  {
    py::gil_scoped_release nogil;
    relu_backward(gp, op, rp, n);
  }
  return std::move(r);
}

}  // namespace

void init_pool2d(py::module_& m) {
  m.def(
      "relu_backward",
      [](const py::array& g, const py::array& out) {
        return is_f64(g) ? relu_backward_impl<double>(g, out) : relu_backward_impl<float>(g, out);
      },
      py::arg("grad"), py::arg("output"), "grad where output > 0 else 0 (NaN outputs pass, as in torch)");
  m.def(
      "max_pool2d_forward",
      [](const py::array& x, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh,
         int64_t dw, bool ceil_mode, bool return_indices, bool reference) {
        PYC_CHECK(x.ndim() == 3, "input must have 3 dimensions (planes, H, W), got ", x.ndim());
        Pool2dShape s = make_shape(x.shape(0), x.shape(1), x.shape(2), kh, kw, sh, sw, ph, pw, dh, dw, ceil_mode);
        return is_f64(x) ? forward_impl<double>(x, s, return_indices, reference)
                         : forward_impl<float>(x, s, return_indices, reference);
      },
      py::arg("input"), py::arg("kh"), py::arg("kw"), py::arg("sh"), py::arg("sw"), py::arg("ph"), py::arg("pw"),
      py::arg("dh"), py::arg("dw"), py::arg("ceil_mode"), py::arg("return_indices"), py::arg("reference") = false,
      "input (planes, H, W) -> (output (planes, OH, OW), int64 indices or None)");
  m.def(
      "max_pool2d_backward",
      [](const py::array& gy, const py::array& idx, int64_t H, int64_t W, int64_t kh, int64_t kw, int64_t sh,
         int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw, bool ceil_mode) {
        PYC_CHECK(gy.ndim() == 3, "grad_output must have 3 dimensions (planes, OH, OW), got ", gy.ndim());
        Pool2dShape s = make_shape(gy.shape(0), H, W, kh, kw, sh, sw, ph, pw, dh, dw, ceil_mode);
        return is_f64(gy) ? backward_impl<double>(gy, idx, s) : backward_impl<float>(gy, idx, s);
      },
      py::arg("grad_output"), py::arg("indices"), py::arg("H"), py::arg("W"), py::arg("kh"), py::arg("kw"),
      py::arg("sh"), py::arg("sw"), py::arg("ph"), py::arg("pw"), py::arg("dh"), py::arg("dw"), py::arg("ceil_mode"),
      "grad_output, indices (planes, OH, OW) -> grad_input (planes, H, W)");
  m.def(
      "max_unpool2d",
      [](const py::array& x, const py::array& idx, int64_t oh, int64_t ow) {
        PYC_CHECK(x.ndim() == 3, "input must have 3 dimensions (planes, H, W), got ", x.ndim());
        return is_f64(x) ? unpool_impl<double>(x, idx, oh, ow) : unpool_impl<float>(x, idx, oh, ow);
      },
      py::arg("input"), py::arg("indices"), py::arg("OH"), py::arg("OW"),
      "input, indices (planes, H, W) -> (planes, OH, OW)");
}

}  // namespace pycnnrnn

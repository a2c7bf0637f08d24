// init_rnn.cpp — bindings for the recurrent layers (one layer-direction per call).
//
// pycnnrnn/ops/rnn.py validates, normalises and allocates every array (outputs included, so
// two directions can write the two halves of one output); these functions re-check dtypes,
// shapes and contiguity, then run the whole sequence with the GIL released.
#include <string>

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include "bindings/numpy_args.h"
#include "cpu/rnn.h"

namespace py = pybind11;

namespace pycnnrnn {
namespace {

struct Dims {
  RnnMode mode;
  int64_t T, B, I, H, P, K, G;
};

RnnMode to_mode(int m) {
  PYC_CHECK(m >= 0 && m <= 3, "mode must be 0 (lstm), 1 (gru), 2 (rnn_tanh) or 3 (rnn_relu), got ", m);
  return static_cast<RnnMode>(m);
}

template <typename T>
T* opt_out_ptr(const py::object& o, const char* name, std::initializer_list<int64_t> shape) {
  if (o.is_none()) return nullptr;
  py::array a = as_array(o, name);
  check_shape(a, name, shape);
  return out_ptr<T>(a, name);
}
template <typename T>
const T* opt_in(const py::object& o, const char* name, std::initializer_list<int64_t> shape) {
  if (o.is_none()) return nullptr;
  py::array a = as_array(o, name);
  check_shape(a, name, shape);
  return in_ptr<T>(a, name);
}

// The C++ half of pycnnrnn.functional.PreparedRnnWeight: the read-only weight array it was
// made for (kept alive here) and its packed forms, built on first use (RnnPrepared).
struct PreparedRnn {
  py::array weight;
  RnnPrepared prepared;

  explicit PreparedRnn(py::array w) : weight(std::move(w)) { check_prepared_snapshot(weight, 2); }
};

// prepared (a PreparedRnn or None) checked against the weight array passed with it.
RnnPrepared* prepared_for(const py::object& prepared, const py::array& w, const char* arg, const char* weight) {
  if (prepared.is_none()) return nullptr;
  PreparedRnn& p = prepared.cast<PreparedRnn&>();
  if (!is_snapshot(p.weight, w))
    throw std::invalid_argument(std::string(arg) + ": made for a different " + weight + " array than the one passed");
  return &p.prepared;
}

// Layer from the weights; x gives T, B, I; w_hh gives H (rows / G) and K.
template <typename T>
RnnLayer<T> make_layer(int mode, bool reverse, const py::array& x, const py::array& w_ih, const py::array& w_hh,
                       const py::object& b_ih, const py::object& b_hh, const py::object& w_hr,
                       const py::object& lengths, Dims* d) {
  RnnLayer<T> L;
  L.mode = to_mode(mode);
  L.reverse = reverse;
  const int64_t G = rnn_gate_count(L.mode);
  PYC_CHECK(x.ndim() == 3, "input must have 3 dimensions (T, B, I), got ", x.ndim());
  PYC_CHECK(w_hh.ndim() == 2 && w_hh.shape(0) % G == 0 && w_hh.shape(0) > 0, "weight_hh must be (", G,
            "*hidden_size, K), got ", shape_str(w_hh));
  L.steps = x.shape(0), L.batch = x.shape(1), L.input = x.shape(2), L.hidden = w_hh.shape(0) / G;
  const int64_t K = w_hh.shape(1);
  L.proj = w_hr.is_none() ? 0 : K;
  PYC_CHECK(L.proj != 0 || K == L.hidden, "weight_hh must have ", L.hidden, " columns, got ", K);
  L.w_ih = in_ptr<T>(w_ih, "weight_ih", 2);
  check_shape(w_ih, "weight_ih", {G * L.hidden, L.input});
  L.w_hh = in_ptr<T>(w_hh, "weight_hh", 2);
  L.b_ih = opt_in<T>(b_ih, "bias_ih", {G * L.hidden});
  L.b_hh = opt_in<T>(b_hh, "bias_hh", {G * L.hidden});
  L.w_hr = opt_in<T>(w_hr, "weight_hr", {L.proj, L.hidden});
  if (!lengths.is_none()) {
    py::array l = as_array(lengths, "lengths");
    check_shape(l, "lengths", {L.batch});
    PYC_CHECK(py::isinstance<py::array_t<int64_t>>(l) && (l.flags() & py::array::c_style),
              "lengths must be a C-contiguous int64 array");
    L.lengths = static_cast<const int64_t*>(l.data());
    for (int64_t b = 0; b < L.batch; ++b)
      PYC_CHECK(L.lengths[b] >= 0 && L.lengths[b] <= L.steps, "lengths[", b, "] must be in [0, ", L.steps,
                "], got ", L.lengths[b]);
  }
  *d = Dims{L.mode, L.steps, L.batch, L.input, L.hidden, L.proj, K, G};
  return L;
}

template <typename T>
void forward_impl(int mode, bool reverse, const py::array& x, const py::object& h0, const py::object& c0,
                  const py::array& w_ih, const py::array& w_hh, const py::object& b_ih, const py::object& b_hh,
                  const py::object& w_hr, const py::object& lengths, py::array& y, int64_t y_col, py::array& hn,
                  const py::object& cn, const py::object& ws, bool naive, const py::object& prepared,
                  const py::object& prepared_ih) {
  Dims d;
  RnnLayer<T> L = make_layer<T>(mode, reverse, x, w_ih, w_hh, b_ih, b_hh, w_hr, lengths, &d);
  RnnPrepared* prep = prepared_for(prepared, w_hh, "prepared", "weight_hh");
  RnnPrepared* prep_ih = prepared_for(prepared_ih, w_ih, "prepared_ih", "weight_ih");
  if (std::is_same<T, float>::value) L.prepared = prep, L.prepared_ih = prep_ih;  // (float64: no packed kernels)
  const T* xp = in_ptr<T>(x, "input", 3);
  const bool lstm = d.mode == RnnMode::lstm;
  const T* h0p = opt_in<T>(h0, "h0", {d.B, d.K});
  const T* c0p = lstm ? opt_in<T>(c0, "c0", {d.B, d.H}) : nullptr;
  T* yp = out_ptr<T>(y, "output", 3);
  PYC_CHECK(y.shape(0) == d.T && y.shape(1) == d.B && y_col >= 0 && y_col <= y.shape(2) - d.K,
            "output must be (", d.T, ", ", d.B, ", >= output_col + ", d.K, ") with output_col = ", y_col,
            " >= 0, got ", shape_str(y));
  check_shape(hn, "h_n", {d.B, d.K});
  T* hnp = out_ptr<T>(hn, "h_n");
  T* cnp = lstm ? opt_out_ptr<T>(cn, "c_n", {d.B, d.H}) : nullptr;
  const RnnWorkspace wl = rnn_workspace_layout(d.mode, d.T, d.B, d.H, d.P);
  T* wsp = opt_out_ptr<T>(ws, "workspace", {wl.size});
  PYC_CHECK(!(naive && wsp), "the naive oracle saves no workspace");
  const int64_t ldy = y.shape(2);
  {
    py::gil_scoped_release nogil;
    if (naive)
      rnn_layer_forward_naive<T>(L, xp, h0p, c0p, yp + y_col, ldy, hnp, cnp);
    else
      rnn_layer_forward<T>(L, xp, h0p, c0p, yp + y_col, ldy, hnp, cnp, wsp);
  }
}

template <typename T>
void backward_impl(int mode, bool reverse, const py::array& x, const py::array& w_ih, const py::array& w_hh,
                   const py::object& w_hr, const py::object& lengths, const py::array& ws, const py::object& dy,
                   int64_t dy_col, const py::object& dhn, const py::object& dcn, const py::object& dx,
                   bool accumulate_dx, py::array& dw_ih, py::array& dw_hh, const py::object& db_ih,
                   const py::object& db_hh, const py::object& dw_hr, py::array& dh0, const py::object& dc0) {
  Dims d;
  RnnLayer<T> L = make_layer<T>(mode, reverse, x, w_ih, w_hh, py::none(), py::none(), w_hr, lengths, &d);
  const bool lstm = d.mode == RnnMode::lstm;
  const T* xp = in_ptr<T>(x, "input", 3);
  const RnnWorkspace wl = rnn_workspace_layout(d.mode, d.T, d.B, d.H, d.P);
  check_shape(ws, "workspace", {wl.size});
  const T* wsp = in_ptr<T>(ws, "workspace");
  const T* dyp = nullptr;
  int64_t lddy = d.K;
  if (!dy.is_none()) {
    py::array a = as_array(dy, "grad_output");
    dyp = in_ptr<T>(a, "grad_output", 3);
    PYC_CHECK(a.shape(0) == d.T && a.shape(1) == d.B && dy_col >= 0 && dy_col <= a.shape(2) - d.K,
              "grad_output must be (", d.T, ", ", d.B, ", >= grad_output_col + ", d.K, ") with grad_output_col = ",
              dy_col, " >= 0, got ", shape_str(a));
    lddy = a.shape(2);
    dyp += dy_col;
  }
  const T* dhnp = opt_in<T>(dhn, "grad_h_n", {d.B, d.K});
  const T* dcnp = lstm ? opt_in<T>(dcn, "grad_c_n", {d.B, d.H}) : nullptr;
  T* dxp = opt_out_ptr<T>(dx, "grad_input", {d.T, d.B, d.I});
  check_shape(dw_ih, "grad_weight_ih", {d.G * d.H, d.I});
  T* dw_ihp = out_ptr<T>(dw_ih, "grad_weight_ih");
  check_shape(dw_hh, "grad_weight_hh", {d.G * d.H, d.K});
  T* dw_hhp = out_ptr<T>(dw_hh, "grad_weight_hh");
  T* db_ihp = opt_out_ptr<T>(db_ih, "grad_bias_ih", {d.G * d.H});
  T* db_hhp = opt_out_ptr<T>(db_hh, "grad_bias_hh", {d.G * d.H});
  T* dw_hrp = d.P ? opt_out_ptr<T>(dw_hr, "grad_weight_hr", {d.P, d.H}) : nullptr;
  PYC_CHECK(!d.P || dw_hrp, "grad_weight_hr is required with a projection");
  check_shape(dh0, "grad_h0", {d.B, d.K});
  T* dh0p = out_ptr<T>(dh0, "grad_h0");
  T* dc0p = lstm ? opt_out_ptr<T>(dc0, "grad_c0", {d.B, d.H}) : nullptr;
  {
    py::gil_scoped_release nogil;
    rnn_layer_backward<T>(L, xp, nullptr, nullptr, wsp, dyp, lddy, dhnp, dcnp, dxp, accumulate_dx, dw_ihp, dw_hhp,
                          db_ihp, db_hhp, dw_hrp, dh0p, dc0p);
  }
}

}  // namespace

void init_rnn(py::module_& m) {
  m.def(
      "rnn_workspace_size",
      [](int mode, int64_t T, int64_t B, int64_t H, int64_t P) {
        return rnn_workspace_layout(to_mode(mode), T, B, H, P).size;
      },
      py::arg("mode"), py::arg("T"), py::arg("B"), py::arg("H"), py::arg("P"));
  m.def(
      "rnn_layer_forward",
      [](int mode, bool reverse, const py::array& x, const py::object& h0, const py::object& c0,
         const py::array& w_ih, const py::array& w_hh, const py::object& b_ih, const py::object& b_hh,
         const py::object& w_hr, const py::object& lengths, py::array& y, int64_t y_col, py::array& hn,
         const py::object& cn, const py::object& ws, bool naive, const py::object& prepared,
         const py::object& prepared_ih) {
        if (is_f64(x))
          forward_impl<double>(mode, reverse, x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths, y, y_col, hn, cn, ws,
                               naive, prepared, prepared_ih);
        else
          forward_impl<float>(mode, reverse, x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths, y, y_col, hn, cn, ws,
                              naive, prepared, prepared_ih);
      },
      py::arg("mode"), py::arg("reverse"), py::arg("x"), py::arg("h0"), py::arg("c0"), py::arg("w_ih"),
      py::arg("w_hh"), py::arg("b_ih"), py::arg("b_hh"), py::arg("w_hr"), py::arg("lengths"), py::arg("y"),
      py::arg("y_col"), py::arg("hn"), py::arg("cn"), py::arg("ws"), py::arg("naive") = false,
      py::arg("prepared") = py::none(), py::arg("prepared_ih") = py::none());
  py::class_<PreparedRnn>(m, "RnnPrepared",
                          "weight_ih or weight_hh prepared for many forward calls (pycnnrnn.functional.PreparedRnnWeight)")
      .def(py::init<py::array>(), py::arg("weight"))
      .def_readonly("weight", &PreparedRnn::weight)
      .def_property_readonly("built",
                             [](const PreparedRnn& p) {
                               return py::make_tuple(p.prepared.has_panels(), p.prepared.has_input_weights(),
                                                     p.prepared.has_recurrent_weights());
                             },
                             "(step panels built, input-projection operand built, engine step operand built)");
  m.def(
      "rnn_layer_backward",
      [](int mode, bool reverse, const py::array& x, const py::array& w_ih, const py::array& w_hh,
         const py::object& w_hr, const py::object& lengths, const py::array& ws, const py::object& dy, int64_t dy_col,
         const py::object& dhn, const py::object& dcn, const py::object& dx, bool accumulate_dx, py::array& dw_ih,
         py::array& dw_hh, const py::object& db_ih, const py::object& db_hh, const py::object& dw_hr,
         py::array& dh0, const py::object& dc0) {
        if (is_f64(x))
          backward_impl<double>(mode, reverse, x, w_ih, w_hh, w_hr, lengths, ws, dy, dy_col, dhn, dcn, dx,
                                accumulate_dx, dw_ih, dw_hh, db_ih, db_hh, dw_hr, dh0, dc0);
        else
          backward_impl<float>(mode, reverse, x, w_ih, w_hh, w_hr, lengths, ws, dy, dy_col, dhn, dcn, dx,
                               accumulate_dx, dw_ih, dw_hh, db_ih, db_hh, dw_hr, dh0, dc0);
      },
      py::arg("mode"), py::arg("reverse"), py::arg("x"), py::arg("w_ih"), py::arg("w_hh"), py::arg("w_hr"),
      py::arg("lengths"), py::arg("ws"), py::arg("dy"), py::arg("dy_col"), py::arg("dhn"), py::arg("dcn"),
      py::arg("dx"), py::arg("accumulate_dx"), py::arg("dw_ih"), py::arg("dw_hh"), py::arg("db_ih"),
      py::arg("db_hh"), py::arg("dw_hr"), py::arg("dh0"), py::arg("dc0"));
}

}  // namespace pycnnrnn

// init_gemm.cpp — bindings for the GEMM engine and Linear.
//
// Public ops (called by pycnnrnn/ops/linear.py after validation; arrays C-contiguous):
//   _C.matmul(a, b)                    (M,K)@(K,N) -> (M,N); (B,M,K)@(B,K,N) -> (B,M,N)
//   _C.linear(x, w, bias|None)         x (M,K), w (N,K) -> x @ w.T + bias   (M,N)
//   _C.linear_backward(g, x, w, need_input, need_weight, need_bias) -> (gx|None, gw|None, gb|None)
// Engine access for tests (2-D operands whose rows may be strided: the row stride becomes
// the leading dimension; C is written in place):
//   _C.gemm(a, b, c, trans_a, trans_b, alpha, beta, bias, bias_kind, relu, nthreads)
//   _C.gemm_naive(...)  same arguments, the oracle loop
//   _C.gemm_provided_b(a, b, c, ...)    B handed to the engine through a block provider
//   _C.pack_a(a, trans_a) -> PackedA;  _C.gemm_packed_a(pa, b, c, trans_b, alpha, beta, bias,
//   bias_kind, relu, nthreads, provided)
//   _C.pack_b(b, trans_b) -> PackedB;  _C.gemm_packed_b(a, pb, c, trans_a, alpha, beta, bias,
//   bias_kind, relu, nthreads)
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <atomic>
#include <cstring>
#include <string>
#include <vector>

#include "bindings/numpy_args.h"
#include "core/errors.h"
#include "core/thread_pool.h"
#include "cpu/gemm.h"

namespace py = pybind11;

namespace pycnnrnn {
namespace {

// A 2-D operand with unit column stride and a row stride >= its width (the leading dim).
template <typename T>
struct Mat {
  T* p;
  int64_t rows, cols, ld;
};

template <typename T>
Mat<T> mat2d(const py::array& a, const char* name, bool write) {
  if (!py::isinstance<py::array_t<T>>(a) || a.dtype().kind() != 'f' || a.itemsize() != sizeof(T))
    throw py::type_error(concat(name, " must be a ", dtype_name<T>(), " array, got dtype ",
                                std::string(py::str(a.dtype()))));
  PYC_CHECK(a.ndim() == 2, name, " must be 2-D, got ", a.ndim(), "-D");
  const int64_t r = a.shape(0), c = a.shape(1);
  const int64_t s0 = a.strides(0), s1 = a.strides(1), it = sizeof(T);
  PYC_CHECK(reinterpret_cast<uintptr_t>(a.data()) % alignof(T) == 0, name, " must be aligned to ", alignof(T),
            " bytes");
  const bool empty = r == 0 || c == 0;  // numpy gives empty arrays arbitrary strides
  PYC_CHECK(empty || c <= 1 || s1 == it, name, " must have unit column stride, got ", s1, " bytes");
  PYC_CHECK(empty || r <= 1 || (s0 % it == 0 && s0 / it >= c), name, " row stride must be a multiple of ", it,
            " bytes and >= its width, got ", s0, " bytes");
  const int64_t ld = empty || r <= 1 ? std::max<int64_t>(c, 1) : s0 / it;
  if (write) {
    PYC_CHECK(a.writeable(), name, " must be writeable");
    return {static_cast<T*>(const_cast<void*>(a.data())), r, c, ld};
  }
  return {static_cast<T*>(const_cast<void*>(a.data())), r, c, ld};
}

BiasKind bias_kind_of(int k) {
  PYC_CHECK(k >= 0 && k <= 2, "bias_kind", " must be 0 (none), 1 (row) or 2 (col), got ", k);
  return static_cast<BiasKind>(k);
}

// Shapes of op(A) (M x K), op(B) (K x N), C (M x N), bias; returns {M, N, K}.
template <typename T>
void check_gemm_shapes(const Mat<T>& A, bool ta, const Mat<T>& B, bool tb, const Mat<T>& C, int64_t* M, int64_t* N,
                       int64_t* K) {
  *M = ta ? A.cols : A.rows;
  *K = ta ? A.rows : A.cols;
  const int64_t kb = tb ? B.cols : B.rows;
  *N = tb ? B.rows : B.cols;
  PYC_CHECK(kb == *K, "b", " must have ", *K, " rows in op(b) (inner dimension of op(a)), got ", kb);
  PYC_CHECK(C.rows == *M && C.cols == *N, "c", " must have shape (", *M, ", ", *N, "), got (", C.rows, ", ",
            C.cols, ")");
}

template <typename T>
GemmEpilogue<T> make_ep(const py::object& bias, int bias_kind, bool relu, int64_t M, int64_t N) {
  GemmEpilogue<T> ep;
  ep.bias_kind = bias_kind_of(bias_kind);
  ep.relu = relu;
  if (ep.bias_kind != BiasKind::none) {
    PYC_CHECK(!bias.is_none(), "bias", " is required when bias_kind != 0");
    py::array b = as_array(bias, "bias");
    ep.bias = in_ptr<T>(b, "bias", 1);
    const int64_t want = ep.bias_kind == BiasKind::row ? M : N;
    check_shape(b, "bias", {want});
  }
  return ep;
}

template <typename T>
void gemm_t(const py::array& a, const py::array& b, py::array& c, bool ta, bool tb, double alpha, double beta,
            const py::object& bias, int bias_kind, bool relu, int nthreads, int which) {
  Mat<T> A = mat2d<T>(a, "a", false), B = mat2d<T>(b, "b", false), C = mat2d<T>(c, "c", true);
  int64_t M, N, K;
  check_gemm_shapes(A, ta, B, tb, C, &M, &N, &K);
  GemmEpilogue<T> ep = make_ep<T>(bias, bias_kind, relu, M, N);
  py::gil_scoped_release nogil;
  if (which == 0) {
    gemm<T>(ta, tb, M, N, K, T(alpha), A.p, A.ld, B.p, B.ld, T(beta), C.p, C.ld, ep, nthreads);
  } else if (which == 1) {
    gemm_naive<T>(ta, tb, M, N, K, T(alpha), A.p, A.ld, B.p, B.ld, T(beta), C.p, C.ld, ep);
  } else {  // provided B: the provider copies op(B) blocks (checks its block is in range)
    std::atomic<bool> bad{false};
    BlockProvider<T> prov = [&](int64_t k0, int64_t kc, int64_t n0, int64_t nc, T* dst, int64_t ld) {
      if (k0 < 0 || kc <= 0 || k0 + kc > K || n0 < 0 || nc <= 0 || n0 + nc > N || ld < nc) bad = true;
      if (bad) return;
      for (int64_t k = 0; k < kc; ++k)
        for (int64_t n = 0; n < nc; ++n)
          dst[k * ld + n] = tb ? B.p[(n0 + n) * B.ld + k0 + k] : B.p[(k0 + k) * B.ld + n0 + n];
    };
    gemm_provided_b<T>(ta, M, N, K, T(alpha), A.p, A.ld, prov, T(beta), C.p, C.ld, ep, nthreads);
    if (bad) throw std::runtime_error("gemm_provided_b asked the provider for a block out of range");
  }
}

// Bound holder of a packed A of either dtype.
struct PackedAHolder {
  bool f64 = false;
  PackedA<float> f;
  PackedA<double> d;
  int64_t M() const { return f64 ? d.M : f.M; }
  int64_t K() const { return f64 ? d.K : f.K; }
  int64_t nbytes() const { return f64 ? d.bytes() : f.bytes(); }
};

template <typename T>
void gemm_packed_t(const PackedA<T>& pa, const py::array& b, py::array& c, bool tb, double alpha, double beta,
                   const py::object& bias, int bias_kind, bool relu, int nthreads, bool provided) {
  Mat<T> B = mat2d<T>(b, "b", false), C = mat2d<T>(c, "c", true);
  const int64_t M = pa.M, K = pa.K, kb = tb ? B.cols : B.rows, N = tb ? B.rows : B.cols;
  PYC_CHECK(kb == K, "b", " must have ", K, " rows in op(b) (inner dimension of the packed a), got ", kb);
  PYC_CHECK(C.rows == M && C.cols == N, "c", " must have shape (", M, ", ", N, "), got (", C.rows, ", ", C.cols,
            ")");
  GemmEpilogue<T> ep = make_ep<T>(bias, bias_kind, relu, M, N);
  py::gil_scoped_release nogil;
  if (!provided) {
    gemm_packed_a<T>(pa, tb, N, T(alpha), B.p, B.ld, T(beta), C.p, C.ld, ep, nthreads);
  } else {
    BlockProvider<T> prov = [&](int64_t k0, int64_t kc, int64_t n0, int64_t nc, T* dst, int64_t ld) {
      for (int64_t k = 0; k < kc; ++k)
        for (int64_t n = 0; n < nc; ++n)
          dst[k * ld + n] = tb ? B.p[(n0 + n) * B.ld + k0 + k] : B.p[(k0 + k) * B.ld + n0 + n];
    };
    gemm_packed_a_provided_b<T>(pa, N, T(alpha), prov, T(beta), C.p, C.ld, ep, nthreads);
  }
}

struct PackedBHolder {
  bool f64 = false;
  PackedB<float> f;
  PackedB<double> d;
  int64_t K() const { return f64 ? d.K : f.K; }
  int64_t N() const { return f64 ? d.N : f.N; }
  int64_t nbytes() const { return f64 ? d.bytes() : f.bytes(); }
};

template <typename T>
void gemm_packed_b_t(const py::array& a, const PackedB<T>& pb, py::array& c, bool ta, double alpha, double beta,
                     const py::object& bias, int bias_kind, bool relu, int nthreads) {
  Mat<T> A = mat2d<T>(a, "a", false), C = mat2d<T>(c, "c", true);
  const int64_t M = ta ? A.cols : A.rows, ka = ta ? A.rows : A.cols, K = pb.K, N = pb.N;
  PYC_CHECK(ka == K, "a", " must have ", K, " columns in op(a) (rows of the packed b), got ", ka);
  PYC_CHECK(C.rows == M && C.cols == N, "c", " must have shape (", M, ", ", N, "), got (", C.rows, ", ", C.cols,
            ")");
  GemmEpilogue<T> ep = make_ep<T>(bias, bias_kind, relu, M, N);
  py::gil_scoped_release nogil;
  gemm_packed_b<T>(ta, M, T(alpha), A.p, A.ld, pb, T(beta), C.p, C.ld, ep, nthreads);
}

// ---- public ops --------------------------------------------------------------------------
// A 2-D operand as the engine reads it where it lies: rows of unit column stride (mat2d: C
// order, a slice of columns), or a transposed view of such (unit row stride: numpy's a.T,
// Fortran order), read as op(x) = stored^T through its row-major transpose.
template <typename T>
struct View2d {
  const T* p;
  int64_t ld;
  bool trans;
};
template <typename T>
View2d<T> view2d(const py::array& x, const char* name) {
  const bool trans = !(x.flags() & py::array::c_style) && x.ndim() == 2 && x.shape(0) > 1 && x.shape(1) > 1 &&
                     x.strides(0) == static_cast<py::ssize_t>(sizeof(T));
  const Mat<T> m = mat2d<T>(trans ? py::array(x.attr("T")) : x, name, false);
  return {m.p, m.ld, trans};
}

// 2-D a @ b with an operand that is not C-contiguous, read in place (pycnnrnn.functional.matmul
// passes such views on instead of copying them: a.T @ b was half numpy's transposing copy).
// The same sums as the contiguous copies, bit for bit: the engine packs op(A) and op(B) into
// the same panels whatever their layout. The small-M path (M <= 8) reads a row-major B and B^T
// in different orders, so there a B^T view (x @ W.T) is not given to it: C^T = W op(A)^T runs
// on the packed path, whose chains over K are the small-M path's for a row-major B (the
// contiguous copy's), and C^T is transposed into C. It used to copy W^T into rows element by
// element, every write a miss: 1x512 @ (2048x512).T took 7 ms instead of 0.03. With N <= 8 too
// both orders would be small-M ones: the copy then is a few columns.
template <typename T>
py::array matmul_views_t(const py::array& a, const py::array& b) {
  const View2d<T> A = view2d<T>(a, "a"), B = view2d<T>(b, "b");
  const int64_t M = a.shape(0), K = a.shape(1), N = b.shape(1);
  PYC_CHECK(b.shape(0) == K, "b", " must have ", K, " rows (a.shape[-1]), got ", b.shape(0));
  checked_numel({M, N}, "matmul output");
  py::array_t<T> out = empty_array<T>({M, N});
  T* pc = out.mutable_data();
  {
    py::gil_scoped_release nogil;  // (re-acquired before `out` is returned)
    const bool small_m_bt = B.trans && gemm_small_m(M) && M > 0 && K > 0 && N > 0;
    if (small_m_bt && !gemm_small_m(N)) {
      // C^T[N][M] = Bt[N][K] (the stored rows, in place) x op(A)^T[K][M]
      std::vector<T> ct(static_cast<size_t>(N * M));
      gemm<T>(false, !A.trans, N, M, K, T(1), B.p, B.ld, A.p, A.ld, T(0), ct.data(), M);
      for (int64_t m = 0; m < M; ++m)
        for (int64_t n = 0; n < N; ++n) pc[m * N + n] = ct[static_cast<size_t>(n * M + m)];
    } else {
      const T* pb = B.p;
      int64_t ldb = B.ld;
      std::vector<T> rows;  // B^T as K rows of N (at most 8) for the small-M path
      if (small_m_bt) {
        rows.resize(static_cast<size_t>(K * N));
        for (int64_t n = 0; n < N; ++n)
          for (int64_t k = 0; k < K; ++k) rows[static_cast<size_t>(k * N + n)] = B.p[n * B.ld + k];
        pb = rows.data();
        ldb = N;
      }
      gemm<T>(A.trans, B.trans && rows.empty(), M, N, K, T(1), A.p, A.ld, pb, ldb, T(0), pc,
              std::max<int64_t>(N, 1));
    }
  }
  return out;
}

template <typename T>
py::array matmul_t(const py::array& a, const py::array& b) {
  PYC_CHECK(a.ndim() == b.ndim() && (a.ndim() == 2 || a.ndim() == 3), "a, b", " must both be 2-D or both 3-D, got ",
            a.ndim(), "-D and ", b.ndim(), "-D");
  if (a.ndim() == 2 && !(a.flags() & b.flags() & py::array::c_style)) return matmul_views_t<T>(a, b);
  const bool batched = a.ndim() == 3;
  const T* pa = in_ptr<T>(a, "a");
  const T* pb = in_ptr<T>(b, "b");
  const int64_t nb = batched ? a.shape(0) : 1;
  const int d = batched ? 1 : 0;
  const int64_t M = a.shape(d), K = a.shape(d + 1), N = b.shape(d + 1);
  PYC_CHECK(b.shape(d) == K, "b", " must have ", K, " rows (a.shape[-1]), got ", b.shape(d));
  if (batched) PYC_CHECK(b.shape(0) == nb, "b", " must have batch ", nb, ", got ", b.shape(0));
  checked_numel({nb, M, N}, "matmul output");
  py::array_t<T> out = batched ? empty_array<T>({nb, M, N}) : empty_array<T>({M, N});
  T* pc = out.mutable_data();
  {
    py::gil_scoped_release nogil;
    const double work = static_cast<double>(M) * N * K;
    const int nt = get_num_threads();
    if (nb > 1 && nt > 1 && work < 4.0e6) {
      // many small products: one per thread at a time (same result: the engine's K order
      // does not depend on the thread count)
      parallel_run(nt, [&](int tid, int n) {
        int64_t b0, b1;
        split_range(nb, tid, n, 1, &b0, &b1);
        for (int64_t i = b0; i < b1; ++i)
          gemm<T>(false, false, M, N, K, T(1), pa + i * M * K, std::max<int64_t>(K, 1), pb + i * K * N,
                  std::max<int64_t>(N, 1), T(0), pc + i * M * N, std::max<int64_t>(N, 1), {}, 1);
      });
    } else {
      for (int64_t i = 0; i < nb; ++i)
        gemm<T>(false, false, M, N, K, T(1), pa + i * M * K, std::max<int64_t>(K, 1), pb + i * K * N,
                std::max<int64_t>(N, 1), T(0), pc + i * M * N, std::max<int64_t>(N, 1), {}, 0);
    }
  }
  return out;
}

template <typename T>
py::array linear_t(const py::array& x, const py::array& w, const py::object& bias) {
  const T* px = in_ptr<T>(x, "input", 2);
  const T* pw = in_ptr<T>(w, "weight", 2);
  const int64_t M = x.shape(0), K = x.shape(1), N = w.shape(0);
  PYC_CHECK(w.shape(1) == K, "weight", " must have ", K, " columns (input features), got ", w.shape(1));
  GemmEpilogue<T> ep;
  if (!bias.is_none()) {
    py::array b = as_array(bias, "bias");
    ep.bias = in_ptr<T>(b, "bias", 1);
    check_shape(b, "bias", {N});
    ep.bias_kind = BiasKind::col;
  }
  py::array_t<T> out = empty_array<T>({M, N});
  T* po = out.mutable_data();
  {
    py::gil_scoped_release nogil;
    // out (M,N) = x (M,K) @ w^T (K,N) + bias
    gemm<T>(false, true, M, N, K, T(1), px, std::max<int64_t>(K, 1), pw, std::max<int64_t>(K, 1), T(0), po,
            std::max<int64_t>(N, 1), ep, 0);
  }
  return out;
}

template <typename T>
py::tuple linear_backward_t(const py::array& g, const py::array& x, const py::array& w, bool need_x, bool need_w,
                            bool need_b) {
  const T* pg = in_ptr<T>(g, "grad_output", 2);
  const T* px = in_ptr<T>(x, "input", 2);
  const T* pw = in_ptr<T>(w, "weight", 2);
  const int64_t M = x.shape(0), K = x.shape(1), N = w.shape(0);
  check_shape(w, "weight", {N, K});
  check_shape(g, "grad_output", {M, N});
  py::object gx = py::none(), gw = py::none(), gb = py::none();
  T *pgx = nullptr, *pgw = nullptr, *pgb = nullptr;
  if (need_x) {
    auto a = empty_array<T>({M, K});
    pgx = a.mutable_data();
    gx = a;
  }
  if (need_w) {
    auto a = empty_array<T>({N, K});
    pgw = a.mutable_data();
    gw = a;
  }
  if (need_b) {
    auto a = empty_array<T>({N});
    pgb = a.mutable_data();
    gb = a;
  }
  {
    py::gil_scoped_release nogil;
    const int64_t ldk = std::max<int64_t>(K, 1), ldn = std::max<int64_t>(N, 1);
    // grad_input (M,K) = g (M,N) @ w (N,K)
    if (pgx) gemm<T>(false, false, M, K, N, T(1), pg, ldn, pw, ldk, T(0), pgx, ldk, {}, 0);
    // grad_weight (N,K) = g^T (N,M) @ x (M,K)
    if (pgw) gemm<T>(true, false, N, K, M, T(1), pg, ldn, px, ldk, T(0), pgw, ldk, {}, 0);
    // grad_bias (N) = column sums of g, accumulated in double, rows in order
    if (pgb) {
      parallel_for(N, 256, [&](int64_t n0, int64_t n1) {
        for (int64_t n = n0; n < n1; ++n) pgb[n] = T(0);
        const int64_t W = 256;
        double acc[256];
        for (int64_t c0 = n0; c0 < n1; c0 += W) {
          const int64_t c1 = std::min<int64_t>(n1, c0 + W);
          for (int64_t n = c0; n < c1; ++n) acc[n - c0] = 0.0;
          for (int64_t m = 0; m < M; ++m)
            for (int64_t n = c0; n < c1; ++n) acc[n - c0] += static_cast<double>(pg[m * N + n]);
          for (int64_t n = c0; n < c1; ++n) pgb[n] = static_cast<T>(acc[n - c0]);
        }
      });
    }
  }
  return py::make_tuple(gx, gw, gb);
}

}  // namespace

void init_gemm(py::module_& m) {
  auto gemm_any = [](int which) {
    return [which](const py::array& a, const py::array& b, py::array& c, bool ta, bool tb, double alpha, double beta,
                   const py::object& bias, int bias_kind, bool relu, int nthreads) {
      if (is_f64(c))
        gemm_t<double>(a, b, c, ta, tb, alpha, beta, bias, bias_kind, relu, nthreads, which);
      else
        gemm_t<float>(a, b, c, ta, tb, alpha, beta, bias, bias_kind, relu, nthreads, which);
    };
  };
  const char* doc = "C = alpha*op(a)@op(b) + beta*C (+bias, relu) in place; rows may be strided";
  m.def("gemm", gemm_any(0), doc, py::arg("a"), py::arg("b"), py::arg("c"), py::arg("trans_a") = false,
        py::arg("trans_b") = false, py::arg("alpha") = 1.0, py::arg("beta") = 0.0, py::arg("bias") = py::none(),
        py::arg("bias_kind") = 0, py::arg("relu") = false, py::arg("nthreads") = 0);
  m.def("gemm_naive", gemm_any(1), "the oracle triple loop, same arguments as gemm", py::arg("a"), py::arg("b"),
        py::arg("c"), py::arg("trans_a") = false, py::arg("trans_b") = false, py::arg("alpha") = 1.0,
        py::arg("beta") = 0.0, py::arg("bias") = py::none(), py::arg("bias_kind") = 0, py::arg("relu") = false,
        py::arg("nthreads") = 0);
  m.def("gemm_provided_b", gemm_any(2), "gemm with B handed over by a block provider", py::arg("a"), py::arg("b"),
        py::arg("c"), py::arg("trans_a") = false, py::arg("trans_b") = false, py::arg("alpha") = 1.0,
        py::arg("beta") = 0.0, py::arg("bias") = py::none(), py::arg("bias_kind") = 0, py::arg("relu") = false,
        py::arg("nthreads") = 0);

  py::class_<PackedAHolder>(m, "PackedA", "op(a) packed once for the engine (see cpu/gemm.h)")
      .def_property_readonly("M", &PackedAHolder::M)
      .def_property_readonly("K", &PackedAHolder::K)
      .def_property_readonly("nbytes", &PackedAHolder::nbytes)
      .def_property_readonly("dtype", [](const PackedAHolder& h) { return h.f64 ? "float64" : "float32"; });
  m.def(
      "pack_a",
      [](const py::array& a, bool ta) {
        PackedAHolder h;
        h.f64 = is_f64(a);
        if (h.f64) {
          Mat<double> A = mat2d<double>(a, "a", false);
          py::gil_scoped_release nogil;
          h.d = pack_a<double>(ta, ta ? A.cols : A.rows, ta ? A.rows : A.cols, A.p, A.ld);
        } else {
          Mat<float> A = mat2d<float>(a, "a", false);
          py::gil_scoped_release nogil;
          h.f = pack_a<float>(ta, ta ? A.cols : A.rows, ta ? A.rows : A.cols, A.p, A.ld);
        }
        return h;
      },
      py::arg("a"), py::arg("trans_a") = false);
  m.def(
      "gemm_packed_a",
      [](const PackedAHolder& pa, const py::array& b, py::array& c, bool tb, double alpha, double beta,
         const py::object& bias, int bias_kind, bool relu, int nthreads, bool provided) {
        PYC_CHECK(pa.f64 == is_f64(c), "c", " must have the packed a's dtype ", pa.f64 ? "float64" : "float32");
        if (pa.f64)
          gemm_packed_t<double>(pa.d, b, c, tb, alpha, beta, bias, bias_kind, relu, nthreads, provided);
        else
          gemm_packed_t<float>(pa.f, b, c, tb, alpha, beta, bias, bias_kind, relu, nthreads, provided);
      },
      py::arg("pa"), py::arg("b"), py::arg("c"), py::arg("trans_b") = false, py::arg("alpha") = 1.0,
      py::arg("beta") = 0.0, py::arg("bias") = py::none(), py::arg("bias_kind") = 0, py::arg("relu") = false,
      py::arg("nthreads") = 0, py::arg("provided") = false);

  py::class_<PackedBHolder>(m, "PackedB", "op(b) packed once for the engine (see cpu/gemm.h)")
      .def_property_readonly("K", &PackedBHolder::K)
      .def_property_readonly("N", &PackedBHolder::N)
      .def_property_readonly("nbytes", &PackedBHolder::nbytes)
      .def_property_readonly("dtype", [](const PackedBHolder& h) { return h.f64 ? "float64" : "float32"; });
  m.def(
      "pack_b",
      [](const py::array& b, bool tb) {
        PackedBHolder h;
        h.f64 = is_f64(b);
        if (h.f64) {
          Mat<double> B = mat2d<double>(b, "b", false);
          py::gil_scoped_release nogil;
          h.d = pack_b<double>(tb, tb ? B.cols : B.rows, tb ? B.rows : B.cols, B.p, B.ld);
        } else {
          Mat<float> B = mat2d<float>(b, "b", false);
          py::gil_scoped_release nogil;
          h.f = pack_b<float>(tb, tb ? B.cols : B.rows, tb ? B.rows : B.cols, B.p, B.ld);
        }
        return h;
      },
      py::arg("b"), py::arg("trans_b") = false);
  m.def(
      "gemm_packed_b",
      [](const py::array& a, const PackedBHolder& pb, py::array& c, bool ta, double alpha, double beta,
         const py::object& bias, int bias_kind, bool relu, int nthreads) {
        PYC_CHECK(pb.f64 == is_f64(c), "c", " must have the packed b's dtype ", pb.f64 ? "float64" : "float32");
        if (pb.f64)
          gemm_packed_b_t<double>(a, pb.d, c, ta, alpha, beta, bias, bias_kind, relu, nthreads);
        else
          gemm_packed_b_t<float>(a, pb.f, c, ta, alpha, beta, bias, bias_kind, relu, nthreads);
      },
      py::arg("a"), py::arg("pb"), py::arg("c"), py::arg("trans_a") = false, py::arg("alpha") = 1.0,
      py::arg("beta") = 0.0, py::arg("bias") = py::none(), py::arg("bias_kind") = 0, py::arg("relu") = false,
      py::arg("nthreads") = 0);

  m.def(
      "matmul", [](const py::array& a, const py::array& b) { return is_f64(a) ? matmul_t<double>(a, b) : matmul_t<float>(a, b); },
      py::arg("a"), py::arg("b"));
  m.def(
      "linear",
      [](const py::array& x, const py::array& w, const py::object& bias) {
        return is_f64(x) ? linear_t<double>(x, w, bias) : linear_t<float>(x, w, bias);
      },
      py::arg("input"), py::arg("weight"), py::arg("bias") = py::none());
  m.def(
      "linear_backward",
      [](const py::array& g, const py::array& x, const py::array& w, bool nx, bool nw, bool nb) {
        return is_f64(x) ? linear_backward_t<double>(g, x, w, nx, nw, nb) : linear_backward_t<float>(g, x, w, nx, nw, nb);
      },
      py::arg("grad_output"), py::arg("input"), py::arg("weight"), py::arg("need_input") = true,
      py::arg("need_weight") = true, py::arg("need_bias") = true);
}

}  // namespace pycnnrnn

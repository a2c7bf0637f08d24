// numpy_args.h — the bindings' second line of defence, shared by every init_<op>.cpp.
//
// The Python layer (pycnnrnn/ops/_validate.py) has already checked dtypes, shapes and values
// and made every array C-contiguous and aligned. These helpers re-check what the C++ relies
// on (dtype, contiguity, alignment, ndim, shape) and hand back raw pointers. Bind array
// arguments as py::array (not array_t, so nothing is silently cast) and call these.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/block_cache.h"
#include "core/errors.h"

namespace pycnnrnn {
namespace py = pybind11;

template <typename T>
inline const char* dtype_name() {
  return sizeof(T) == 4 ? "float32" : "float64";
}

inline std::string shape_str(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) s += (i ? ", " : "") + std::to_string(a.shape(i));
  return s + (a.ndim() == 1 ? ",)" : ")");
}

// Checks `a` is a C-contiguous, aligned array of T with `ndim` dims (ndim < 0: any).
template <typename T>
inline void check_array(const py::array& a, const char* name, int ndim = -1) {
  if (!py::isinstance<py::array_t<T>>(a) || a.dtype().kind() != 'f' || a.itemsize() != sizeof(T))
    throw py::type_error(concat(name, " must be a ", dtype_name<T>(), " array, got dtype ",
                                std::string(py::str(a.dtype()))));
  if (ndim >= 0 && a.ndim() != ndim)
    throw std::invalid_argument(concat(name, " must have ", ndim, " dimensions, got ", a.ndim()));
  if (!(a.flags() & py::array::c_style))
    throw std::invalid_argument(concat(name, " must be C-contiguous"));
  if (reinterpret_cast<uintptr_t>(a.data()) % alignof(T) != 0)
    throw std::invalid_argument(concat(name, " must be aligned to ", alignof(T), " bytes"));
}

template <typename T>
inline const T* in_ptr(const py::array& a, const char* name, int ndim = -1) {
  check_array<T>(a, name, ndim);
  return static_cast<const T*>(a.data());
}

template <typename T>
inline T* out_ptr(py::array& a, const char* name, int ndim = -1) {
  check_array<T>(a, name, ndim);
  if (!a.writeable()) throw std::invalid_argument(concat(name, " must be writeable"));
  return static_cast<T*>(a.mutable_data());
}

// An `object` argument that must be a numpy array: TypeError (never a crash) otherwise.
inline py::array as_array(const py::object& o, const char* name) {
  if (!py::isinstance<py::array>(o))
    throw py::type_error(concat(name, " must be a numpy array or None, got ",
                                std::string(py::str(py::type::of(o).attr("__name__")))));
  return py::reinterpret_borrow<py::array>(o);
}

// Optional input (None -> nullptr).
template <typename T>
inline const T* opt_in_ptr(const py::object& o, const char* name, int ndim = -1) {
  if (o.is_none()) return nullptr;
  return in_ptr<T>(as_array(o, name), name, ndim);
}

inline void check_shape(const py::array& a, const char* name, std::initializer_list<int64_t> expect) {
  bool ok = a.ndim() == static_cast<py::ssize_t>(expect.size());
  int i = 0;
  for (int64_t d : expect) {
    if (!ok) break;
    ok = a.shape(i++) == d;
  }
  if (!ok) {
    std::string e = "(";
    int j = 0;
    for (int64_t d : expect) e += (j++ ? ", " : "") + std::to_string(d);
    e += expect.size() == 1 ? ",)" : ")";
    throw std::invalid_argument(concat(name, " must have shape ", e, ", got ", shape_str(a)));
  }
}

// Allocate a C-contiguous output array of T (the GIL must be held). Its memory comes from
// core/block_cache (large outputs reuse freed blocks instead of fresh, page-faulting
// mappings); a capsule returns it when numpy frees the array.
template <typename T>
inline py::array_t<T> empty_array(const std::vector<py::ssize_t>& shape) {
  size_t n = 1;
  for (py::ssize_t d : shape) {
    if (d < 0 || (d > 0 && n > static_cast<size_t>(PTRDIFF_MAX) / sizeof(T) / static_cast<size_t>(d)))
      throw std::invalid_argument("output array too large");
    n *= static_cast<size_t>(d);
  }
  struct Owner {
    void* p;
    size_t bytes;
  };
  const size_t bytes = n * sizeof(T);
  auto* owner = new Owner{block_alloc(bytes), bytes};
  py::capsule base(owner, [](void* o) {
    auto* own = static_cast<Owner*>(o);
    block_free(own->p, own->bytes);
    delete own;
  });
  return py::array_t<T>(shape, static_cast<T*>(owner->p), base);
}

// The snapshot a prepared weight is derived from (PreparedConv2dWeight, PreparedRnnWeight): ndim
// dimensions, float32 or float64, C-contiguous, aligned and read-only (the derived forms are
// built from it once, so it must never change).
inline void check_prepared_snapshot(const py::array& w, int ndim) {
  if (w.ndim() != ndim) throw std::invalid_argument(concat("weight must be ", ndim, "-D, got ", w.ndim(), "-D"));
  if (!(w.dtype().kind() == 'f' && (w.itemsize() == 4 || w.itemsize() == 8)))
    throw py::type_error("weight must have dtype float32 or float64");
  const int flags = py::detail::array_proxy(w.ptr())->flags;
  if (!(flags & py::detail::npy_api::NPY_ARRAY_C_CONTIGUOUS_) || !(flags & py::detail::npy_api::NPY_ARRAY_ALIGNED_))
    throw std::invalid_argument("weight must be C-contiguous and aligned");
  if (flags & py::detail::npy_api::NPY_ARRAY_WRITEABLE_)
    throw std::invalid_argument("weight must be read-only (the prepared weights are derived from it once)");
}

// True when a (the weight an op was given) is the prepared snapshot w itself: same data,
// dtype and shape.
inline bool is_snapshot(const py::array& w, const py::array& a) {
  bool same = w.data() == a.data() && w.dtype().is(a.dtype()) && w.ndim() == a.ndim();
  for (py::ssize_t d = 0; same && d < a.ndim(); ++d) same = w.shape(d) == a.shape(d);
  return same;
}

// True when a is float64 (used to choose the template instance).
inline bool is_f64(const py::array& a) { return a.dtype().kind() == 'f' && a.itemsize() == 8; }

}  // namespace pycnnrnn

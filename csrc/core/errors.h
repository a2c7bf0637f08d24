// errors.h — the C++ side of the boundary contract.
//
// Kernels below bindings/ never see Python objects. They report bad arguments by throwing
// std::invalid_argument (pybind11 maps it to ValueError), impossible sizes by
// std::overflow_error (OverflowError). The message names the argument, the expected and the
// actual value. Python validates first; these checks are the second line of defence.
#pragma once
#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>

namespace pycnnrnn {

template <typename... Args>
std::string concat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}

// PYC_CHECK(cond, "weight", " must have 4 dims, got ", ndim) -> ValueError
#define PYC_CHECK(cond, ...)                                                 \
  do {                                                                       \
    if (!(cond)) throw std::invalid_argument(::pycnnrnn::concat(__VA_ARGS__)); \
  } while (0)

// a * b without signed overflow; throws OverflowError naming `what`.
inline int64_t checked_mul(int64_t a, int64_t b, const char* what) {
  int64_t r;
  if (a < 0 || b < 0 || __builtin_mul_overflow(a, b, &r))
    throw std::overflow_error(concat(what, ": size ", a, " * ", b, " overflows int64"));
  return r;
}

inline int64_t checked_numel(std::initializer_list<int64_t> dims, const char* what) {
  int64_t n = 1;
  for (int64_t d : dims) n = checked_mul(n, d, what);
  return n;
}

}  // namespace pycnnrnn

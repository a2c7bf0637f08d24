#include "core/dispatch.h"

#include <cstdlib>
#include <cstring>
#include <stdexcept>

namespace pycnnrnn {

Isa detected_isa() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("fma"))
    return Isa::avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::avx2;
#endif
  return Isa::scalar;
}

static Isa resolve() {
  Isa best = detected_isa();
  const char* env = std::getenv("PYCNNRNN_ISA");
  if (env == nullptr || *env == '\0') return best;
  Isa want;
  if (std::strcmp(env, "scalar") == 0) want = Isa::scalar;
  else if (std::strcmp(env, "avx2") == 0) want = Isa::avx2;
  else if (std::strcmp(env, "avx512") == 0) want = Isa::avx512;
  else throw std::invalid_argument(std::string("PYCNNRNN_ISA must be one of avx512, avx2, scalar; got '") + env + "'");
  // Never go above what the machine supports.
  return static_cast<int>(want) < static_cast<int>(best) ? want : best;
}

Isa active_isa() {
  static const Isa isa = resolve();
  return isa;
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::avx512: return "avx512";
    case Isa::avx2: return "avx2";
    default: return "scalar";
  }
}

}  // namespace pycnnrnn

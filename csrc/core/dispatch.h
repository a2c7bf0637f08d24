// dispatch.h — the CPU instruction set chosen once per process.
//
// Each operator keeps a small table of function pointers, one per ISA, filled from the
// translation units under cpu/ukernels/<isa>/ (each compiled with its own -m flags, each in
// its own namespace). active_isa() decides which entry runs. PYCNNRNN_ISA=avx2|scalar forces
// a lower path so the tests cover every path on one machine.
#pragma once
#include <string>

namespace pycnnrnn {

enum class Isa { scalar = 0, avx2 = 1, avx512 = 2 };

// What the CPU and OS support (cpuid + XCR0 via __builtin_cpu_supports).
Isa detected_isa();
// The path in use: detected_isa() lowered by PYCNNRNN_ISA, decided on first call.
Isa active_isa();
const char* isa_name(Isa isa);

// Select a member of a per-ISA table: T table[3] = {scalar, avx2, avx512}.
template <typename T>
inline const T& pick(const T (&table)[3]) {
  return table[static_cast<int>(active_isa())];
}

}  // namespace pycnnrnn

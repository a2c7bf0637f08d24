// rnn_avx512.cpp — the recurrent-step kernels of cpu/rnn_vec.inc with 16-float (zmm) vectors.
#include <immintrin.h>

#include <cstdint>

#include "cpu/rnn_kernels.h"

namespace pycnnrnn {
namespace rnn_avx512 {
#define RNN_VL 16
#define RNN_MRMAX 6
#include "cpu/rnn_vec.inc"
}  // namespace rnn_avx512
}  // namespace pycnnrnn

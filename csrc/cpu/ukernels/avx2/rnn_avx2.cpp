// rnn_avx2.cpp — the recurrent-step kernels of cpu/rnn_vec.inc with 8-float (ymm) vectors.
#include <immintrin.h>

#include <cstdint>

#include "cpu/rnn_kernels.h"

namespace pycnnrnn {
namespace rnn_avx2 {
#define RNN_VL 8
#define RNN_MRMAX 3
#include "cpu/rnn_vec.inc"
}  // namespace rnn_avx2
}  // namespace pycnnrnn

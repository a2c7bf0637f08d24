// roofline.h — measures this machine's two ceilings, so every benchmark can quote its
// fraction of the limit: FMA peak (GFLOP/s, all pool threads, float32) and memory bandwidth
// (GB/s, bytes read + bytes written by a large copy).
#pragma once
#include <cstdint>

namespace pycnnrnn {

// Runs `iters` rounds of independent float32 FMAs on every pool thread with the active ISA;
// returns GFLOP/s (2 flops per lane per FMA).
double measure_fma_peak_gflops(int64_t iters);
// Copies `bytes` between two buffers per pass, `passes` times, split over the pool;
// returns GB/s counting read + written bytes.
double measure_copy_bandwidth_gbs(int64_t bytes, int passes);

namespace roofline_scalar {
double fma_loop(int64_t iters);  // returns the flops done
}
namespace roofline_avx2 {
double fma_loop(int64_t iters);
}
namespace roofline_avx512 {
double fma_loop(int64_t iters);
}

}  // namespace pycnnrnn

#include "cpu/roofline.h"

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "core/dispatch.h"
#include "core/thread_pool.h"

namespace pycnnrnn {

double measure_fma_peak_gflops(int64_t iters) {
  using Loop = double (*)(int64_t);
#if PYCNNRNN_HAVE_X86
  static const Loop table[3] = {roofline_scalar::fma_loop, roofline_avx2::fma_loop, roofline_avx512::fma_loop};
#else
  static const Loop table[3] = {roofline_scalar::fma_loop, roofline_scalar::fma_loop, roofline_scalar::fma_loop};
#endif
  Loop loop = pick(table);
  int nt = get_num_threads();
  double flops[256] = {0};
  parallel_run(nt, [&](int, int) { loop(iters / 10); });  // warm up clocks
  auto t0 = std::chrono::steady_clock::now();
  parallel_run(nt, [&](int tid, int) { flops[tid & 255] = loop(iters); });
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  double total = 0;
  for (int t = 0; t < nt && t < 256; ++t) total += flops[t];
  return total / secs * 1e-9;
}

double measure_copy_bandwidth_gbs(int64_t bytes, int passes) {
  std::unique_ptr<char[]> src(new char[bytes]), dst(new char[bytes]);
  int nt = get_num_threads();
  auto pass = [&] {
    parallel_run(nt, [&](int tid, int n) {
      int64_t b, e;
      split_range(bytes, tid, n, 4096, &b, &e);
      if (b < e) std::memcpy(dst.get() + b, src.get() + b, static_cast<size_t>(e - b));
    });
  };
  std::memset(src.get(), 1, bytes);  // first touch outside the timing
  std::memset(dst.get(), 0, bytes);
  pass();
  double best = 1e30;
  for (int p = 0; p < passes; ++p) {
    auto t0 = std::chrono::steady_clock::now();
    pass();
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (s < best) best = s;
  }
  return 2.0 * static_cast<double>(bytes) / best * 1e-9;
}

}  // namespace pycnnrnn

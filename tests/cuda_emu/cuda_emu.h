#pragma once
#include <algorithm>
#include <barrier>
#include <cmath>
#include <cstdint>
#include <thread>
#include <vector>
struct dim3_ { unsigned x = 0, y = 0, z = 0; };
inline thread_local dim3_ threadIdx, blockIdx;
inline dim3_ blockDim, gridDim;
inline std::barrier<>* g_bar = nullptr;
inline std::vector<std::barrier<>*> g_warp_bar;  // one barrier per warp: shuffles are warp-level
#define __syncthreads() g_bar->arrive_and_wait()
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))
#define __restrict__
struct float4 { float x, y, z, w; };
struct float2 { float x, y; };
inline float4 make_float4(float a, float b, float c, float d) { return {a, b, c, d}; }
template <class T> T __ldg(const T* p) { return *p; }
using std::min; using std::max; using std::isnan;
inline float fmaf(float a, float b, float c) { return std::fma(a, b, c); }
template <class F> void emu_launch(dim3_ grid, unsigned threads, F f) {
  gridDim = grid; blockDim = {threads, 1, 1};
  for (unsigned z = 0; z < grid.z; ++z) for (unsigned y = 0; y < grid.y; ++y) for (unsigned x = 0; x < grid.x; ++x) {
    std::barrier<> bar(threads); g_bar = &bar;
    std::vector<std::barrier<>*> wbars;
    for (unsigned w = 0; w < (threads + 31) / 32; ++w) wbars.push_back(new std::barrier<>(std::min(32u, threads - 32 * w)));
    g_warp_bar = wbars;
    std::vector<std::thread> ts;
    for (unsigned t = 0; t < threads; ++t) ts.emplace_back([&, t] { blockIdx = {x, y, z}; threadIdx = {t, 0, 0}; f(); });
    for (auto& th : ts) th.join();
    for (auto* b : wbars) delete b;
  }
}
struct longlong2 { long long x, y; };
inline float2 make_float2(float a, float b) { return {a, b}; }
inline longlong2 make_longlong2(long long a, long long b) { return {a, b}; }
inline double g_shfl[1024];
template <class T> T __shfl_xor_sync(unsigned, T v, int off) {
  std::barrier<>* wb = g_warp_bar[threadIdx.x / 32];
  g_shfl[threadIdx.x] = v; wb->arrive_and_wait();
  T r = (T)g_shfl[threadIdx.x ^ off]; wb->arrive_and_wait();
  return r;
}
using std::exp; using std::tanh; using std::fma;

// rnn_dh.cuh — the recurrent backward product of lstm.cu and gru.cu for small batches:
//
//   dh[b, k] = add[b, k] + sum_{n < N} g[b, n] W[n, k]      g: [B, N], W = W_hh: [N, H], N = G*H
//
// At B <= 64 a 128x128 SGEMM tile would leave most of the GPU idle, and a CTA per 32 columns
// (the first version) gave only H/32 CTAs that each walked all N rows: 16 CTAs and ~100 us per
// step for H = 512 on an H100. Here a CTA owns DH_COLS = 4 consecutive k and DH_BB batch rows
// (grid: H/4 x B/8). Its 256 threads form 64 groups of 4 lanes (one k per lane, so a warp reads
// 8 rows x 16 bytes of W per load); group q sums rows n = q, q+64, ... for its DH_BB batch rows
// in registers, and the 64 partial sums of each output are added in a fixed order through
// shared memory: deterministic, no atomics. Kernel only (the launch sits in each .cu), so the
// host emulator (tests/cuda_emu) can include it.
#pragma once

namespace pycnnrnn::cuda {

constexpr int DH_COLS = 4;     // k columns per CTA (one per lane of a group)
constexpr int DH_GROUPS = 64;  // lane groups per CTA, each over every 64th row of W
constexpr int DH_BB = 8;       // batch rows per CTA
constexpr int DH_THREADS = DH_COLS * DH_GROUPS;

template <typename T>
__global__ void __launch_bounds__(DH_THREADS)
    recurrent_dh_kernel(int B, int H, int N, const T* __restrict__ g, const T* __restrict__ W,
                        const T* __restrict__ add, T* __restrict__ dh) {
  __shared__ T part[DH_GROUPS][DH_BB * DH_COLS + 1];  // +1: groups land in different banks
  const int tid = threadIdx.x, group = tid / DH_COLS, col = tid % DH_COLS;
  const int k = blockIdx.x * DH_COLS + col;
  const int b0 = blockIdx.y * DH_BB;
  const int nb = min(DH_BB, B - b0);
  T acc[DH_BB];
#pragma unroll
  for (int bb = 0; bb < DH_BB; ++bb) acc[bb] = T(0);
  if (k < H) {
    const T* gb = g + (int64_t)b0 * N;
    for (int n = group; n < N; n += DH_GROUPS) {
      const T w = __ldg(W + (int64_t)n * H + k);
#pragma unroll
      for (int bb = 0; bb < DH_BB; ++bb)
        if (bb < nb) acc[bb] = fma(gb[(int64_t)bb * N + n], w, acc[bb]);
    }
  }
#pragma unroll
  for (int bb = 0; bb < DH_BB; ++bb) part[group][bb * DH_COLS + col] = acc[bb];
  __syncthreads();
  if (tid < DH_BB * DH_COLS) {
    const int bb = tid / DH_COLS, c = tid % DH_COLS, kk = blockIdx.x * DH_COLS + c;
    if (bb < nb && kk < H) {
      T sum = part[0][tid];
#pragma unroll 8
      for (int q = 1; q < DH_GROUPS; ++q) sum += part[q][tid];
      const int64_t e = (int64_t)(b0 + bb) * H + kk;
      dh[e] = add ? add[e] + sum : sum;
    }
  }
}

}  // namespace pycnnrnn::cuda

// gemm.cu — hand-written SIMT SGEMM (no cuBLAS) and a deterministic column sum.
//
// sgemm_128x128: 128x128 CTA tile, BK = 8, 256 threads, 8x8 outputs per thread in two 4x4
// quadrants (rows ty*4 and 64+ty*4, columns tx*4 and 64+tx*4, so shared-memory reads are
// float4 and conflict-free), register-staged double buffering (the next K-slab is loaded
// from global memory into registers while the current one is multiplied out of shared
// memory; one __syncthreads per slab). Global loads are float4 when the contiguous
// dimension and leading dimension are multiples of 4 and the pointer is 16-byte aligned
// (VEC); otherwise element-wise with bounds checks. Operands are row-major:
//   NN: A [M,K], B [K,N];  NT: B stored [N,K];  TN: A stored [K,M].
// Shared tiles are stored K-major (As[k][m], Bs[k][n]); the transposing operands (A in NN/NT,
// B in NT) are written with 4 scalar stores into a row padded by 4 floats (no bank conflict).
// float64 (and TT) use a plain 16x16 shared-memory tiled kernel: correct, not tuned.
#include <type_traits>

#include "core/errors.h"
#include "cuda/common.cuh"
#include "cuda/kernels.h"

namespace pycnnrnn::cuda {
namespace {

constexpr int BM = 128, BN = 128, BK = 8, PADS = 4;

// elements (row, col .. col+3) of a row-major [rows, cols] matrix; zeros outside
template <bool VEC>
__device__ __forceinline__ float4 ld4(const float* __restrict__ p, int64_t row, int64_t col, int64_t rows,
                                      int64_t cols, int64_t ld) {
  float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
  if (row >= rows) return v;
  const float* q = p + row * ld + col;
  if (VEC) {
    if (col < cols) v = __ldg(reinterpret_cast<const float4*>(q));
  } else {
    if (col + 0 < cols) v.x = __ldg(q + 0);
    if (col + 1 < cols) v.y = __ldg(q + 1);
    if (col + 2 < cols) v.z = __ldg(q + 2);
    if (col + 3 < cols) v.w = __ldg(q + 3);
  }
  return v;
}

template <bool TA, bool TB, bool VA, bool VB>
__global__ void __launch_bounds__(256, 2)
    sgemm_128x128(int64_t M, int64_t N, int64_t K, float alpha, const float* __restrict__ A, int64_t lda,
                  const float* __restrict__ B, int64_t ldb, float beta, float* __restrict__ C, int64_t ldc) {
  __shared__ __align__(16) float As[2][BK][BM + PADS];
  __shared__ __align__(16) float Bs[2][BK][BN + PADS];
  const int tid = threadIdx.x;
  const int tx = tid & 15, ty = tid >> 4;
  const int64_t bm = (int64_t)blockIdx.y * BM, bn = (int64_t)blockIdx.x * BN;

  // per-thread load coordinates
  const int a_r = TA ? (tid >> 5) : (tid >> 1);        // TA: k row; else m row
  const int a_c = TA ? (tid & 31) * 4 : (tid & 1) * 4;  // TA: m col; else k col
  const int b_r = TB ? (tid >> 1) : (tid >> 5);        // TB: n row; else k row
  const int b_c = TB ? (tid & 1) * 4 : (tid & 31) * 4;  // TB: k col; else n col

  auto load_a = [&](int64_t k0) -> float4 {
    return TA ? ld4<VA>(A, k0 + a_r, bm + a_c, K, M, lda) : ld4<VA>(A, bm + a_r, k0 + a_c, M, K, lda);
  };
  auto load_b = [&](int64_t k0) -> float4 {
    return TB ? ld4<VB>(B, bn + b_r, k0 + b_c, N, K, ldb) : ld4<VB>(B, k0 + b_r, bn + b_c, K, N, ldb);
  };
  auto store_a = [&](int buf, float4 v) {
    if (TA) {
      *reinterpret_cast<float4*>(&As[buf][a_r][a_c]) = v;
    } else {
      As[buf][a_c + 0][a_r] = v.x;
      As[buf][a_c + 1][a_r] = v.y;
      As[buf][a_c + 2][a_r] = v.z;
      As[buf][a_c + 3][a_r] = v.w;
    }
  };
  auto store_b = [&](int buf, float4 v) {
    if (TB) {
      Bs[buf][b_c + 0][b_r] = v.x;
      Bs[buf][b_c + 1][b_r] = v.y;
      Bs[buf][b_c + 2][b_r] = v.z;
      Bs[buf][b_c + 3][b_r] = v.w;
    } else {
      *reinterpret_cast<float4*>(&Bs[buf][b_r][b_c]) = v;
    }
  };

  float acc[8][8];
#pragma unroll
  for (int i = 0; i < 8; ++i)
#pragma unroll
    for (int j = 0; j < 8; ++j) acc[i][j] = 0.f;

  const int64_t nk = (K + BK - 1) / BK;
  if (nk > 0) {
    store_a(0, load_a(0));
    store_b(0, load_b(0));
  }
  __syncthreads();
  for (int64_t kt = 0; kt < nk; ++kt) {
    const int buf = static_cast<int>(kt & 1);
    float4 na = make_float4(0.f, 0.f, 0.f, 0.f), nb = na;
    const bool more = kt + 1 < nk;
    if (more) {
      na = load_a((kt + 1) * BK);
      nb = load_b((kt + 1) * BK);
    }
#pragma unroll
    for (int k = 0; k < BK; ++k) {
      const float4 a0 = *reinterpret_cast<const float4*>(&As[buf][k][ty * 4]);
      const float4 a1 = *reinterpret_cast<const float4*>(&As[buf][k][64 + ty * 4]);
      const float4 b0 = *reinterpret_cast<const float4*>(&Bs[buf][k][tx * 4]);
      const float4 b1 = *reinterpret_cast<const float4*>(&Bs[buf][k][64 + tx * 4]);
      const float a[8] = {a0.x, a0.y, a0.z, a0.w, a1.x, a1.y, a1.z, a1.w};
      const float b[8] = {b0.x, b0.y, b0.z, b0.w, b1.x, b1.y, b1.z, b1.w};
#pragma unroll
      for (int i = 0; i < 8; ++i)
#pragma unroll
        for (int j = 0; j < 8; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
    if (more) {
      store_a(buf ^ 1, na);
      store_b(buf ^ 1, nb);
    }
    __syncthreads();
  }

#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const int64_t row = bm + (i < 4 ? ty * 4 + i : 64 + ty * 4 + (i - 4));
    if (row >= M) continue;
    float* crow = C + row * ldc;
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const int64_t col = bn + (j < 4 ? tx * 4 + j : 64 + tx * 4 + (j - 4));
      if (col < N) {
        float v = alpha * acc[i][j];
        if (beta != 0.f) v = fmaf(beta, crow[col], v);
        crow[col] = v;
      }
    }
  }
}

template <typename T>
__global__ void gemm_simple(bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T* __restrict__ A,
                            int64_t lda, const T* __restrict__ B, int64_t ldb, T beta, T* __restrict__ C,
                            int64_t ldc) {
  __shared__ T As[16][17];
  __shared__ T Bs[16][17];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t row = (int64_t)blockIdx.y * 16 + ty, col = (int64_t)blockIdx.x * 16 + tx;
  T acc = T(0);
  for (int64_t k0 = 0; k0 < K; k0 += 16) {
    {  // As[ty][tx] = op(A)[row, k0+tx]
      const int64_t k = k0 + tx;
      T v = T(0);
      if (row < M && k < K) v = ta ? A[k * lda + row] : A[row * lda + k];
      As[ty][tx] = v;
    }
    {  // Bs[ty][tx] = op(B)[k0+ty, col]
      const int64_t k = k0 + ty;
      T v = T(0);
      if (col < N && k < K) v = tb ? B[col * ldb + k] : B[k * ldb + col];
      Bs[ty][tx] = v;
    }
    __syncthreads();
#pragma unroll
    for (int k = 0; k < 16; ++k) acc += As[ty][k] * Bs[k][tx];
    __syncthreads();
  }
  if (row < M && col < N) {
    T v = alpha * acc;
    if (beta != T(0)) v += beta * C[row * ldc + col];
    C[row * ldc + col] = v;
  }
}

template <bool TA, bool TB>
void launch_sgemm(int64_t M, int64_t N, int64_t K, float alpha, uintptr_t A, int64_t lda, uintptr_t B, int64_t ldb,
                  float beta, uintptr_t C, int64_t ldc, cudaStream_t s) {
  // float4 loads need the contiguous extent and ld to be multiples of 4 and 16-byte alignment
  const int64_t a_cont = TA ? M : K, b_cont = TB ? K : N;
  const bool va = a_cont % 4 == 0 && lda % 4 == 0 && A % 16 == 0;
  const bool vb = b_cont % 4 == 0 && ldb % 4 == 0 && B % 16 == 0;
  dim3 grid(static_cast<unsigned>(ceil_div(N, BN)), static_cast<unsigned>(ceil_div(M, BM)));
  const float* a = as_ptr<const float>(A);
  const float* b = as_ptr<const float>(B);
  float* c = as_ptr<float>(C);
  if (va && vb) sgemm_128x128<TA, TB, true, true><<<grid, 256, 0, s>>>(M, N, K, alpha, a, lda, b, ldb, beta, c, ldc);
  else if (va) sgemm_128x128<TA, TB, true, false><<<grid, 256, 0, s>>>(M, N, K, alpha, a, lda, b, ldb, beta, c, ldc);
  else if (vb) sgemm_128x128<TA, TB, false, true><<<grid, 256, 0, s>>>(M, N, K, alpha, a, lda, b, ldb, beta, c, ldc);
  else sgemm_128x128<TA, TB, false, false><<<grid, 256, 0, s>>>(M, N, K, alpha, a, lda, b, ldb, beta, c, ldc);
  PYC_CUDA_LAUNCH_CHECK("sgemm_128x128");
}

template <typename T>
__global__ void col_sum_kernel(const T* __restrict__ X, int64_t rows, int64_t cols, T* __restrict__ out,
                               bool accumulate) {
  __shared__ T part[8][33];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t c = (int64_t)blockIdx.x * 32 + tx;
  T acc = T(0);
  if (c < cols)
    for (int64_t r = ty; r < rows; r += 8) acc += X[r * cols + c];
  part[ty][tx] = acc;
  __syncthreads();
  if (ty == 0 && c < cols) {
    T s = part[0][tx];
#pragma unroll
    for (int i = 1; i < 8; ++i) s += part[i][tx];
    out[c] = accumulate ? out[c] + s : s;
  }
}

}  // namespace

void gemm(int dtype, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, double alpha, uintptr_t A,
          int64_t lda, uintptr_t B, int64_t ldb, double beta, uintptr_t C, int64_t ldc, uintptr_t stream) {
  PYC_CHECK(M >= 0 && N >= 0 && K >= 0, "gemm: negative size M=", M, " N=", N, " K=", K);
  PYC_CHECK(lda >= (trans_a ? M : K) && lda >= 1, "gemm: lda=", lda, " too small");
  PYC_CHECK(ldb >= (trans_b ? K : N) && ldb >= 1, "gemm: ldb=", ldb, " too small");
  PYC_CHECK(ldc >= N && ldc >= 1, "gemm: ldc=", ldc, " too small");
  PYC_CHECK(ceil_div(M, 16) < 65536, "gemm: M=", M, " too large");
  if (M == 0 || N == 0) return;
  cudaStream_t s = as_stream(stream);
  if (dtype == kFloat32 && !(trans_a && trans_b)) {
    const float a = static_cast<float>(alpha), b = static_cast<float>(beta);
    if (!trans_a && !trans_b) launch_sgemm<false, false>(M, N, K, a, A, lda, B, ldb, b, C, ldc, s);
    else if (!trans_a) launch_sgemm<false, true>(M, N, K, a, A, lda, B, ldb, b, C, ldc, s);
    else launch_sgemm<true, false>(M, N, K, a, A, lda, B, ldb, b, C, ldc, s);
    return;
  }
  dim3 grid(static_cast<unsigned>(ceil_div(N, 16)), static_cast<unsigned>(ceil_div(M, 16)));
  dim3 block(16, 16);
  if (dtype == kFloat32)
    gemm_simple<float><<<grid, block, 0, s>>>(trans_a, trans_b, M, N, K, (float)alpha, as_ptr<const float>(A), lda,
                                              as_ptr<const float>(B), ldb, (float)beta, as_ptr<float>(C), ldc);
  else if (dtype == kFloat64)
    gemm_simple<double><<<grid, block, 0, s>>>(trans_a, trans_b, M, N, K, alpha, as_ptr<const double>(A), lda,
                                               as_ptr<const double>(B), ldb, beta, as_ptr<double>(C), ldc);
  else
    PYC_CHECK(false, "gemm: dtype must be float32 or float64");
  PYC_CUDA_LAUNCH_CHECK("gemm_simple");
}

void col_sum(int dtype, uintptr_t X, int64_t rows, int64_t cols, uintptr_t out, bool accumulate, uintptr_t stream) {
  if (cols == 0) return;
  dim3 grid(static_cast<unsigned>(ceil_div(cols, 32))), block(32, 8);
  cudaStream_t s = as_stream(stream);
  if (dtype == kFloat32)
    col_sum_kernel<float><<<grid, block, 0, s>>>(as_ptr<const float>(X), rows, cols, as_ptr<float>(out), accumulate);
  else if (dtype == kFloat64)
    col_sum_kernel<double><<<grid, block, 0, s>>>(as_ptr<const double>(X), rows, cols, as_ptr<double>(out), accumulate);
  else
    PYC_CHECK(false, "col_sum: dtype must be float32 or float64");
  PYC_CUDA_LAUNCH_CHECK("col_sum");
}

}  // namespace pycnnrnn::cuda

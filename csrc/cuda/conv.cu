// conv.cu — implicit-GEMM conv2d on NCHW: forward, backward-data, backward-weight, bias grad.
//
// One tiled kernel (igemm: 64x64 CTA tile, BK = 16, 256 threads, 4x4 outputs per thread,
// register-staged double buffering) serves all three passes; each pass is an "Op" that says
// how to fetch A(m, k) and B(k, n) on the fly (the im2col never exists in memory) and where to
// store C(m, n). Per group g (blockIdx.z):
//   fprop  M = K/g  N = N*P*Q  Kd = C/g*R*S   A = weight row, B = input patch (0 outside)
//   dgrad  M = C/g  N = N*H*W  Kd = K/g*R*S   A = weight^T,   B = dy at (h+ph-r*dh)/sh (0 if not a
//                                             whole in-range output position; any stride)
//   wgrad  M = K/g  N = C/g*R*S Kd = N*P*Q    A = dy,         B = input patch
// The column coordinate of a thread's B loads is fixed across the K loop, so its decode is
// hoisted (NState). wgrad splits Kd over blockIdx.z (split-K); each split writes its own
// slice of a caller-provided workspace and a second kernel sums the slices in a fixed order
// (deterministic, no atomics). The bias gradient is a fixed-order block reduction per channel.
// Correctness first: analytic div/mod iterators, no precomputed deltas yet.
#include <algorithm>
#include <type_traits>

#include "core/errors.h"
#include "core/shapes.h"
#include "cuda/common.cuh"
#include "cuda/kernels.h"

namespace pycnnrnn::cuda {
namespace {

constexpr int TK = 16;  // K-chunk granularity of split-K

// Division by a launch-invariant divisor for numerators < 2^31 (round-up multiplier method:
// m = ceil(2^(31+l) / d), l = ceil(log2 d); exact because n * (m*d - 2^(31+l)) < 2^(31+l)).
struct FastDiv {
  uint32_t d = 1, s = 31;
  uint64_t m = 1ULL << 31;
  FastDiv() = default;
  explicit FastDiv(uint32_t d_) : d(d_) {
    uint32_t l = 0;
    while ((1ULL << l) < d) ++l;
    s = 31 + l;
    m = ((1ULL << s) + d - 1) / d;
  }
  __host__ __device__ __forceinline__ uint32_t div(uint32_t n) const { return (uint32_t)(((uint64_t)n * m) >> s); }
};

struct Geo {  // int copies of the shape for device code
  int N, C, H, W, K, R, S, P, Q, sh, sw, ph, pw, dh, dw, groups, Cg, Kg, RS;
  FastDiv fRS, fS, fP, fQ, fPQ, fsh, fsw;
};

Geo make_geo(const ConvShape& cs) {
  Geo g;
  g.N = (int)cs.N; g.C = (int)cs.C; g.H = (int)cs.H; g.W = (int)cs.W; g.K = (int)cs.K;
  g.R = (int)cs.R; g.S = (int)cs.S; g.P = (int)cs.P; g.Q = (int)cs.Q;
  g.sh = (int)cs.sh; g.sw = (int)cs.sw; g.ph = (int)cs.ph; g.pw = (int)cs.pw;
  g.dh = (int)cs.dh; g.dw = (int)cs.dw; g.groups = (int)cs.groups;
  g.Cg = (int)(cs.C / cs.groups); g.Kg = (int)(cs.K / cs.groups); g.RS = (int)(cs.R * cs.S);
  g.fRS = FastDiv((uint32_t)g.RS); g.fS = FastDiv((uint32_t)g.S); g.fP = FastDiv((uint32_t)g.P);
  g.fQ = FastDiv((uint32_t)g.Q); g.fPQ = FastDiv((uint32_t)(g.P * g.Q)); g.fsh = FastDiv((uint32_t)g.sh);
  g.fsw = FastDiv((uint32_t)g.sw);
  return g;
}

template <typename T>
struct FpropOp {
  static constexpr bool kBAlongK = false;  // B loads: consecutive threads along n (image row)
  Geo g;
  const T* x; const T* w; const T* bias; T* y;
  struct NS { int64_t xbase; int ih0, iw0; bool ok; };
  __host__ __device__ int64_t M() const { return g.Kg; }
  __host__ __device__ int64_t N() const { return (int64_t)g.N * g.P * g.Q; }
  __host__ __device__ int64_t Kd() const { return (int64_t)g.Cg * g.RS; }
  __host__ __device__ T a(int grp, int64_t m, int64_t kk) const {
    return w[((int64_t)grp * g.Kg + m) * ((int64_t)g.Cg * g.RS) + kk];
  }
  __host__ __device__ NS nstate(int grp, int64_t n) const {
    NS s;
    s.ok = n < N();
    if (!s.ok) n = 0;
    const int q = (int)(n % g.Q);
    const int64_t t = n / g.Q;
    const int p = (int)(t % g.P);
    const int64_t nb = t / g.P;
    s.xbase = (nb * g.C + (int64_t)grp * g.Cg) * g.H * g.W;
    s.ih0 = p * g.sh - g.ph;
    s.iw0 = q * g.sw - g.pw;
    return s;
  }
  __host__ __device__ T b(int, int64_t kk, const NS& s) const {
    if (!s.ok) return T(0);
    const int c = (int)g.fRS.div((uint32_t)kk), rs = (int)kk - c * g.RS;
    const int r = (int)g.fS.div((uint32_t)rs), sx = rs - r * g.S;
    const int ih = s.ih0 + r * g.dh, iw = s.iw0 + sx * g.dw;
    if ((unsigned)ih >= (unsigned)g.H || (unsigned)iw >= (unsigned)g.W) return T(0);
    return x[s.xbase + ((int64_t)c * g.H + ih) * g.W + iw];
  }
  struct SS { int64_t base; };  // output column decoded once per epilogue column
  __host__ __device__ SS sstate(int64_t n) const {
    const int q = (int)(n % g.Q);
    const int64_t t = n / g.Q;
    const int p = (int)(t % g.P);
    const int64_t nb = t / g.P;
    return SS{nb * g.K * g.P * g.Q + (int64_t)p * g.Q + q};
  }
  __host__ __device__ void store(int grp, int, int64_t m, const SS& ss, T v) const {
    const int64_t k = (int64_t)grp * g.Kg + m;
    if (bias) v += bias[k];
    y[ss.base + k * g.P * g.Q] = v;
  }
};

template <typename T>
struct DgradOp {
  static constexpr bool kBAlongK = false;
  Geo g;
  const T* dy; const T* w; T* dx;
  struct NS { int64_t dybase; int hp, wp; bool ok; };  // hp = h + ph, wp = w + pw
  __host__ __device__ int64_t M() const { return g.Cg; }
  __host__ __device__ int64_t N() const { return (int64_t)g.N * g.H * g.W; }
  __host__ __device__ int64_t Kd() const { return (int64_t)g.Kg * g.RS; }
  __host__ __device__ T a(int grp, int64_t m, int64_t kk) const {
    const int k = (int)g.fRS.div((uint32_t)kk), rs = (int)kk - k * g.RS;
    return w[(((int64_t)grp * g.Kg + k) * g.Cg + m) * g.RS + rs];
  }
  __host__ __device__ NS nstate(int grp, int64_t n) const {
    NS s;
    s.ok = n < N();
    if (!s.ok) n = 0;
    const int wq = (int)(n % g.W);
    const int64_t t = n / g.W;
    const int h = (int)(t % g.H);
    const int64_t nb = t / g.H;
    s.dybase = (nb * g.K + (int64_t)grp * g.Kg) * g.P * g.Q;
    s.hp = h + g.ph;
    s.wp = wq + g.pw;
    return s;
  }
  __host__ __device__ T b(int, int64_t kk, const NS& s) const {
    if (!s.ok) return T(0);
    const int k = (int)g.fRS.div((uint32_t)kk), rs = (int)kk - k * g.RS;
    const int r = (int)g.fS.div((uint32_t)rs), sx = rs - r * g.S;
    const int oh_n = s.hp - r * g.dh, ow_n = s.wp - sx * g.dw;
    if (oh_n < 0 || ow_n < 0) return T(0);
    const int oh = (int)g.fsh.div((uint32_t)oh_n), ow = (int)g.fsw.div((uint32_t)ow_n);
    if (oh * g.sh != oh_n || ow * g.sw != ow_n || oh >= g.P || ow >= g.Q) return T(0);
    return dy[s.dybase + ((int64_t)k * g.P + oh) * g.Q + ow];
  }
  struct SS { int64_t base; };
  __host__ __device__ SS sstate(int64_t n) const {
    const int wq = (int)(n % g.W);
    const int64_t t = n / g.W;
    const int h = (int)(t % g.H);
    const int64_t nb = t / g.H;
    return SS{nb * g.C * g.H * g.W + (int64_t)h * g.W + wq};
  }
  __host__ __device__ void store(int grp, int, int64_t m, const SS& ss, T v) const {
    dx[ss.base + ((int64_t)grp * g.Cg + m) * g.H * g.W] = v;
  }
};

template <typename T>
struct WgradOp {
  static constexpr bool kBAlongK = true;  // B loads: consecutive threads along k = (n, p, q)
  Geo g;
  const T* dy; const T* x; T* out;  // out: dw [K, Cg*RS] or workspace [splits, K, Cg*RS]
  struct NS { int c, r, s; bool ok; };
  __host__ __device__ int64_t M() const { return g.Kg; }
  __host__ __device__ int64_t N() const { return (int64_t)g.Cg * g.RS; }
  __host__ __device__ int64_t Kd() const { return (int64_t)g.N * g.P * g.Q; }
  __host__ __device__ T a(int grp, int64_t m, int64_t kk) const {  // kk < N*P*Q < 2^31
    const int64_t PQ = (int64_t)g.P * g.Q;
    const int nb = (int)g.fPQ.div((uint32_t)kk);
    const int64_t pq = kk - nb * PQ;
    return dy[((int64_t)nb * g.K + (int64_t)grp * g.Kg + m) * PQ + pq];
  }
  __host__ __device__ NS nstate(int, int64_t n) const {
    NS s;
    s.ok = n < N();
    if (!s.ok) n = 0;
    s.c = (int)(n / g.RS);
    const int rs = (int)(n % g.RS);
    s.r = rs / g.S;
    s.s = rs % g.S;
    return s;
  }
  __host__ __device__ T b(int grp, int64_t kk, const NS& s) const {
    if (!s.ok) return T(0);
    const uint32_t t = g.fQ.div((uint32_t)kk);
    const int q = (int)kk - (int)t * g.Q;
    const int nb = (int)g.fP.div(t);
    const int p = (int)t - nb * g.P;
    const int ih = p * g.sh - g.ph + s.r * g.dh, iw = q * g.sw - g.pw + s.s * g.dw;
    if ((unsigned)ih >= (unsigned)g.H || (unsigned)iw >= (unsigned)g.W) return T(0);
    return x[(((int64_t)nb * g.C + (int64_t)grp * g.Cg + s.c) * g.H + ih) * g.W + iw];
  }
  struct SS { int64_t n; };
  __host__ __device__ SS sstate(int64_t n) const { return SS{n}; }
  __host__ __device__ void store(int grp, int split, int64_t m, const SS& ss, T v) const {
    const int64_t crs = (int64_t)g.Cg * g.RS;
    out[((int64_t)split * g.K + (int64_t)grp * g.Kg + m) * crs + ss.n] = v;
  }
};

// Tile config: BM x BN CTA tile, BK deep, RM x RN outputs per thread, 256 threads.
//   Small: 64x64x16, 4x4 per thread.   Large: 128x128x8, 8x8 per thread in two 4x4 quadrants
//   (rows ty*4 and BM/2 + ty*4) so shared-memory reads are conflict-free float4s.
template <int BM_, int BN_, int BK_, int RM_, int RN_>
struct Tile {
  static constexpr int BM = BM_, BN = BN_, BK = BK_, RM = RM_, RN = RN_;
  static constexpr int TXN = BN / RN;                  // threads along n (16)
  static constexpr int A_PER = BM * BK / 256, B_PER = BK * BN / 256;
  static constexpr int A_STEP = 256 / BK, B_STEP = 256 / BN;
  static_assert((BM / RM) * (BN / RN) == 256, "256 threads");
};
using SmallTile = Tile<64, 64, 16, 4, 4>;
using LargeTile = Tile<128, 128, 8, 8, 8>;

template <class TL>
__device__ __forceinline__ int tile_row(int ty, int i) {  // row of the thread's i-th output
  if constexpr (TL::RM == 8) return (i >> 2) * (TL::BM / 2) + ty * 4 + (i & 3);
  else return ty * TL::RM + i;
}
template <class TL>
__device__ __forceinline__ int tile_col(int tx, int j) {
  if constexpr (TL::RN == 8) return (j >> 2) * (TL::BN / 2) + tx * 4 + (j & 3);
  else return tx * TL::RN + j;
}

template <class Op, typename T, class TL>
__global__ void __launch_bounds__(256, 2) igemm(Op op, int64_t kchunk) {
  __shared__ __align__(16) T As[2][TL::BK][TL::BM + 4];
  __shared__ __align__(16) T Bs[2][TL::BK][TL::BN + 4];
  const int tid = threadIdx.x, tx = tid % TL::TXN, ty = tid / TL::TXN;
  const int grp = blockIdx.z % op.g.groups, split = blockIdx.z / op.g.groups;
  const int64_t m0 = (int64_t)blockIdx.y * TL::BM, n0 = (int64_t)blockIdx.x * TL::BN;
  const int64_t M = op.M(), Kd = op.Kd();
  const int64_t kb = (int64_t)split * kchunk, ke = min(Kd, kb + kchunk);
  // loaders: A: kk = tid % BK (contiguous along the weight row), m = tid / BK + A_STEP*i
  //          B: n = tid % BN (contiguous along the image row), kk = tid / BN + B_STEP*i
  const int a_k = tid % TL::BK, a_m = tid / TL::BK;
  // B mapping: along n (fprop/dgrad: one column per thread, its decode hoisted) or along k
  // (wgrad: consecutive threads read consecutive output positions q, so image loads coalesce)
  constexpr bool BK_MAJOR = Op::kBAlongK;
  constexpr int B_NSTEP = 256 / TL::BK;  // n stride between a thread's B columns (k-major)
  const int b_n = BK_MAJOR ? tid / TL::BK : tid % TL::BN;
  const int b_k = BK_MAJOR ? tid % TL::BK : tid / TL::BN;
  typename Op::NS ns[BK_MAJOR ? TL::B_PER : 1];
#pragma unroll
  for (int i = 0; i < (BK_MAJOR ? TL::B_PER : 1); ++i) ns[i] = op.nstate(grp, n0 + b_n + B_NSTEP * i);
  T ra[TL::A_PER], rb[TL::B_PER];
  auto load = [&](int64_t k0) {
#pragma unroll
    for (int i = 0; i < TL::A_PER; ++i) {
      const int64_t m = m0 + a_m + TL::A_STEP * i, kk = k0 + a_k;
      ra[i] = (m < M && kk < ke) ? op.a(grp, m, kk) : T(0);
    }
#pragma unroll
    for (int i = 0; i < TL::B_PER; ++i) {
      if constexpr (BK_MAJOR) {
        const int64_t kk = k0 + b_k;
        rb[i] = (kk < ke) ? op.b(grp, kk, ns[i]) : T(0);
      } else {
        const int64_t kk = k0 + b_k + TL::B_STEP * i;
        rb[i] = (kk < ke) ? op.b(grp, kk, ns[0]) : T(0);
      }
    }
  };
  auto store = [&](int buf) {
#pragma unroll
    for (int i = 0; i < TL::A_PER; ++i) As[buf][a_k][a_m + TL::A_STEP * i] = ra[i];
#pragma unroll
    for (int i = 0; i < TL::B_PER; ++i) {
      if constexpr (BK_MAJOR) Bs[buf][b_k][b_n + B_NSTEP * i] = rb[i];
      else Bs[buf][b_k + TL::B_STEP * i][b_n] = rb[i];
    }
  };
  T acc[TL::RM][TL::RN];
#pragma unroll
  for (int i = 0; i < TL::RM; ++i)
#pragma unroll
    for (int j = 0; j < TL::RN; ++j) acc[i][j] = T(0);
  const int64_t nk = ke > kb ? (ke - kb + TL::BK - 1) / TL::BK : 0;
  if (nk > 0) {
    load(kb);
    store(0);
  }
  __syncthreads();
  for (int64_t kt = 0; kt < nk; ++kt) {
    const int buf = (int)(kt & 1);
    const bool more = kt + 1 < nk;
    if (more) load(kb + (kt + 1) * TL::BK);
#pragma unroll
    for (int k = 0; k < TL::BK; ++k) {
      T a[TL::RM], b[TL::RN];
#pragma unroll
      for (int i = 0; i < TL::RM; ++i) a[i] = As[buf][k][tile_row<TL>(ty, i)];
#pragma unroll
      for (int j = 0; j < TL::RN; ++j) b[j] = Bs[buf][k][tile_col<TL>(tx, j)];
#pragma unroll
      for (int i = 0; i < TL::RM; ++i)
#pragma unroll
        for (int j = 0; j < TL::RN; ++j) acc[i][j] += a[i] * b[j];
    }
    if (more) store(buf ^ 1);
    __syncthreads();
  }
  const int64_t N = op.N();
#pragma unroll
  for (int j = 0; j < TL::RN; ++j) {
    const int64_t n = n0 + tile_col<TL>(tx, j);
    if (n >= N) continue;
    const typename Op::SS ss = op.sstate(n);
#pragma unroll
    for (int i = 0; i < TL::RM; ++i) {
      const int64_t m = m0 + tile_row<TL>(ty, i);
      if (m < M) op.store(grp, split, m, ss, acc[i][j]);
    }
  }
}

template <typename T>
__global__ void split_reduce(const T* __restrict__ ws, int64_t splits, int64_t total, T* __restrict__ out) {
  for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < total; e += (int64_t)gridDim.x * blockDim.x) {
    T s = ws[e];
    for (int64_t k = 1; k < splits; ++k) s += ws[k * total + e];
    out[e] = s;
  }
}

template <typename T>
__global__ void bias_grad_kernel(const T* __restrict__ dy, int64_t N, int64_t K, int64_t PQ, T* __restrict__ db) {
  __shared__ T part[256];
  const int64_t k = blockIdx.x;
  T acc = T(0);
  const int64_t total = N * PQ;
  for (int64_t i = threadIdx.x; i < total; i += blockDim.x) {
    const int64_t nb = i / PQ, pq = i % PQ;
    acc += dy[(nb * K + k) * PQ + pq];
  }
  part[threadIdx.x] = acc;
  __syncthreads();
  for (int st = 128; st > 0; st >>= 1) {
    if ((int)threadIdx.x < st) part[threadIdx.x] += part[threadIdx.x + st];
    __syncthreads();
  }
  if (threadIdx.x == 0) db[k] = part[0];
}

template <class Op, typename T, class TL>
void launch_tile(const Op& op, int groups, int64_t splits, int64_t kchunk, cudaStream_t s, const char* name) {
  const int64_t M = op.M(), N = op.N();
  PYC_CHECK(ceil_div(M, TL::BM) < 65536 && groups * splits < 65536, name, ": problem too large for the grid");
  dim3 grid(static_cast<unsigned>(ceil_div(N, TL::BN)), static_cast<unsigned>(ceil_div(M, TL::BM)),
            static_cast<unsigned>(groups * splits));
  igemm<Op, T, TL><<<grid, 256, 0, s>>>(op, kchunk);
  PYC_CUDA_LAUNCH_CHECK(name);
}

// The 128x128 tile when M fills it (float only: the double tile would need 64 KB of smem).
template <class Op, typename T>
bool use_large(const Op& op) {
  return std::is_same<T, float>::value && op.M() >= 128 && op.N() >= 128;
}

template <class Op, typename T>
void launch_igemm(const Op& op, int groups, int64_t splits, int64_t kchunk, cudaStream_t s, const char* name) {
  if (op.M() == 0 || op.N() == 0) return;
  if constexpr (std::is_same<T, float>::value) {
    if (use_large<Op, T>(op)) {
      launch_tile<Op, T, LargeTile>(op, groups, splits, kchunk, s, name);
      return;
    }
  }
  launch_tile<Op, T, SmallTile>(op, groups, splits, kchunk, s, name);
}

template <typename T>
void fwd_t(const ConvShape& cs, uintptr_t x, uintptr_t w, uintptr_t bias, uintptr_t y, cudaStream_t s) {
  FpropOp<T> op{make_geo(cs), as_ptr<const T>(x), as_ptr<const T>(w), as_ptr<const T>(bias), as_ptr<T>(y)};
  launch_igemm<FpropOp<T>, T>(op, op.g.groups, 1, std::max<int64_t>(op.Kd(), 1), s, "conv2d_fwd");
}

template <typename T>
void dgrad_t(const ConvShape& cs, uintptr_t dy, uintptr_t w, uintptr_t dx, cudaStream_t s) {
  DgradOp<T> op{make_geo(cs), as_ptr<const T>(dy), as_ptr<const T>(w), as_ptr<T>(dx)};
  launch_igemm<DgradOp<T>, T>(op, op.g.groups, 1, std::max<int64_t>(op.Kd(), 1), s, "conv2d_bwd_data");
}

template <typename T>
void wgrad_t(const ConvShape& cs, uintptr_t dy, uintptr_t x, uintptr_t dw, uintptr_t ws, int64_t splits,
             cudaStream_t s) {
  WgradOp<T> op{make_geo(cs), as_ptr<const T>(dy), as_ptr<const T>(x), as_ptr<T>(splits > 1 ? ws : dw)};
  const int64_t Kd = op.Kd();
  const int64_t kchunk = std::max<int64_t>(ceil_div(ceil_div(Kd, splits), TK) * TK, TK);
  const int64_t real_splits = std::max<int64_t>(ceil_div(Kd, kchunk), 1);
  launch_igemm<WgradOp<T>, T>(op, op.g.groups, splits, kchunk, s, "conv2d_bwd_weight");
  (void)real_splits;  // splits beyond the last chunk compute zeros (still written: deterministic)
  if (splits > 1) {
    const int64_t total = cs.K * (cs.C / cs.groups) * cs.R * cs.S;
    split_reduce<T><<<grid_1d(total, 256, 8192), 256, 0, s>>>(as_ptr<const T>(ws), splits, total, as_ptr<T>(dw));
    PYC_CUDA_LAUNCH_CHECK("conv2d_wgrad_split_reduce");
  }
}

}  // namespace

ConvShape conv_shape(int64_t N, int64_t C, int64_t H, int64_t W, int64_t K, int64_t R, int64_t S, int64_t sh,
                     int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw, int64_t groups) {
  PYC_CHECK(N >= 0 && C > 0 && H > 0 && W > 0 && K > 0 && R > 0 && S > 0, "conv2d: sizes must be positive");
  PYC_CHECK(sh > 0 && sw > 0 && dh > 0 && dw > 0 && ph >= 0 && pw >= 0, "conv2d: bad stride/dilation/padding");
  PYC_CHECK(groups > 0 && C % groups == 0 && K % groups == 0, "conv2d: groups=", groups,
            " must divide in_channels=", C, " and out_channels=", K);
  ConvShape cs{N, C, H, W, K, R, S, 0, 0, sh, sw, ph, pw, dh, dw, groups};
  cs.P = conv_output_size(H, R, sh, ph, ph, dh);
  cs.Q = conv_output_size(W, S, sw, pw, pw, dw);
  PYC_CHECK(cs.P > 0 && cs.Q > 0, "conv2d: output size is empty (", cs.P, ", ", cs.Q, ")");
  const int64_t lim = (1LL << 31) - 1;
  PYC_CHECK(N * cs.P * cs.Q < lim && N * H * W < lim && (C / groups) * R * S < lim,
            "conv2d: N*H*W and N*H_out*W_out must be < 2^31 for the CUDA kernels");
  PYC_CHECK(N * C * H * W < (1LL << 40) && C * H * W < lim && K * cs.P * cs.Q < lim && H < lim / 2 && W < lim / 2 &&
                N < lim && (C / groups) * R * S < lim,
            "conv2d: tensor too large for the CUDA kernels");
  return cs;
}

int64_t conv2d_wgrad_splits(const ConvShape& cs) {
  const int64_t Mw = cs.K / cs.groups, Nw = (cs.C / cs.groups) * cs.R * cs.S;
  const int64_t t = (Mw >= 128 && Nw >= 128) ? 128 : 64;  // the tile launch_igemm picks (float)
  const int64_t tiles = ceil_div(Mw, t) * ceil_div(Nw, t) * cs.groups;
  const int64_t Kd = cs.N * cs.P * cs.Q;
  int64_t splits = ceil_div(264, tiles);                    // ~2 waves on 132 SMs
  splits = std::min<int64_t>(splits, std::max<int64_t>(Kd / 256, 1));  // >= 256 reduction steps each
  splits = std::min<int64_t>(splits, 64);
  splits = std::min<int64_t>(splits, 65535 / cs.groups);
  return std::max<int64_t>(splits, 1);
}

void conv2d_fwd(int dtype, const ConvShape& cs, uintptr_t x, uintptr_t w, uintptr_t bias, uintptr_t y,
                uintptr_t stream) {
  if (dtype == kFloat32) fwd_t<float>(cs, x, w, bias, y, as_stream(stream));
  else if (dtype == kFloat64) fwd_t<double>(cs, x, w, bias, y, as_stream(stream));
  else PYC_CHECK(false, "conv2d: dtype must be float32 or float64");
}

void conv2d_bwd_data(int dtype, const ConvShape& cs, uintptr_t dy, uintptr_t w, uintptr_t dx, uintptr_t stream) {
  if (dtype == kFloat32) dgrad_t<float>(cs, dy, w, dx, as_stream(stream));
  else if (dtype == kFloat64) dgrad_t<double>(cs, dy, w, dx, as_stream(stream));
  else PYC_CHECK(false, "conv2d: dtype must be float32 or float64");
}

void conv2d_bwd_weight(int dtype, const ConvShape& cs, uintptr_t dy, uintptr_t x, uintptr_t dw, uintptr_t ws,
                       int64_t splits, uintptr_t stream) {
  PYC_CHECK(splits >= 1 && (splits == 1 || ws != 0), "conv2d_bwd_weight: splits > 1 needs a workspace");
  if (dtype == kFloat32) wgrad_t<float>(cs, dy, x, dw, ws, splits, as_stream(stream));
  else if (dtype == kFloat64) wgrad_t<double>(cs, dy, x, dw, ws, splits, as_stream(stream));
  else PYC_CHECK(false, "conv2d: dtype must be float32 or float64");
}

void conv2d_bwd_bias(int dtype, const ConvShape& cs, uintptr_t dy, uintptr_t db, uintptr_t stream) {
  cudaStream_t s = as_stream(stream);
  const unsigned grid = static_cast<unsigned>(cs.K);
  if (dtype == kFloat32)
    bias_grad_kernel<float><<<grid, 256, 0, s>>>(as_ptr<const float>(dy), cs.N, cs.K, cs.P * cs.Q, as_ptr<float>(db));
  else if (dtype == kFloat64)
    bias_grad_kernel<double><<<grid, 256, 0, s>>>(as_ptr<const double>(dy), cs.N, cs.K, cs.P * cs.Q, as_ptr<double>(db));
  else
    PYC_CHECK(false, "conv2d: dtype must be float32 or float64");
  PYC_CUDA_LAUNCH_CHECK("conv2d_bwd_bias");
}

}  // namespace pycnnrnn::cuda

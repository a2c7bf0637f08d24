// kernels.h — host entry points of the CUDA backend (csrc/cuda/*.cu).
//
// Pointers and the stream arrive as integers (torch's data_ptr() and
// torch.cuda.current_stream().cuda_stream); C++ never sees torch. Every buffer — outputs and
// workspaces — is allocated by the caller. Entry points launch on `stream`, never synchronise
// and throw std::runtime_error for CUDA failures, std::invalid_argument for bad sizes.
// Layouts: row-major / NCHW, contiguous.
#pragma once
#include <cstdint>

namespace pycnnrnn::cuda {

constexpr int kFloat32 = 0;
constexpr int kFloat64 = 1;

// ---- max_pool2d (pool.cu) ----------------------------------------------------------------
// x [planes, H, W] -> y [planes, OH, OW], idx int64 (0 = no indices)
void max_pool2d_fwd(int dtype, uintptr_t x, uintptr_t y, uintptr_t idx, int64_t planes, int64_t H, int64_t W,
                    int64_t kH, int64_t kW, int64_t sH, int64_t sW, int64_t pH, int64_t pW, int64_t dH,
                    int64_t dW, bool ceil_mode, uintptr_t stream);
// gy [planes, OH, OW], idx -> gx [planes, H, W] (fully written)
void max_pool2d_bwd(int dtype, uintptr_t gy, uintptr_t idx, uintptr_t gx, int64_t planes, int64_t H, int64_t W,
                    int64_t kH, int64_t kW, int64_t sH, int64_t sW, int64_t pH, int64_t pW, int64_t dH,
                    int64_t dW, bool ceil_mode, uintptr_t stream);

// ---- GEMM (gemm.cu) ------------------------------------------------------------------------
// C[M,N] = alpha * op(A) op(B) + beta * C, row-major with leading dimensions.
// op(A) = A [M,K] (lda) or, trans_a, A stored [K,M]; op(B) = B [K,N] or, trans_b, B stored [N,K].
// NN, NT and TN are the tuned cases; TT works too. beta == 0 never reads C.
void gemm(int dtype, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, double alpha,
          uintptr_t A, int64_t lda, uintptr_t B, int64_t ldb, double beta, uintptr_t C, int64_t ldc,
          uintptr_t stream);

// Deterministic column sum: out[c] = (accumulate ? out[c] : 0) + sum_r X[r, c] (fixed order).
void col_sum(int dtype, uintptr_t X, int64_t rows, int64_t cols, uintptr_t out, bool accumulate, uintptr_t stream);

// ---- LSTM (lstm.cu), one layer, one direction, gate order i,f,g,o ------------------------
// x [T,B,I], h0/c0 [B,H] (0 = zeros), w_ih [4H,I], w_hh [4H,H], b_ih/b_hh [4H] (0 = none).
// Outputs: y [T,B,H], c_all [T,B,H]; gates [T,B,4H] activated i,f,g,o (0 = not saved).
// Workspace: xproj [T,B,4H].
void lstm_fwd(int dtype, int64_t T, int64_t B, int64_t I, int64_t H, uintptr_t x, uintptr_t h0, uintptr_t c0,
              uintptr_t w_ih, uintptr_t w_hh, uintptr_t b_ih, uintptr_t b_hh, uintptr_t y, uintptr_t c_all,
              uintptr_t gates, uintptr_t xproj, uintptr_t stream);
// dy [T,B,H] (0 = zeros); dh [B,H] in: dL/dh_n, out: dL/dh0; dc [B,H] in: dL/dc_n, out: dL/dc0.
// Outputs dx [T,B,I] (0 = skip), dw_ih [4H,I], dw_hh [4H,H], db [4H] (0 = skip) — overwritten.
// Workspace dz [T,B,4H].
void lstm_bwd(int dtype, int64_t T, int64_t B, int64_t I, int64_t H, uintptr_t x, uintptr_t h0, uintptr_t c0,
              uintptr_t w_ih, uintptr_t w_hh, uintptr_t y, uintptr_t c_all, uintptr_t gates, uintptr_t dy,
              uintptr_t dh, uintptr_t dc, uintptr_t dx, uintptr_t dw_ih, uintptr_t dw_hh, uintptr_t db,
              uintptr_t dz, uintptr_t stream);

// ---- GRU (gru.cu), one layer, one direction, gate order r,z,n (linear before reset) ---------
// x [T,B,I], h0 [B,H] (0 = zeros), w_ih [3H,I], w_hh [3H,H], b_ih/b_hh [3H] (0 = none).
// Outputs y [T,B,H]; saved [T,B,4H] = r, z, n, W_hn h + b_hn (0 = not saved). Workspace xproj [T,B,3H].
void gru_fwd(int dtype, int64_t T, int64_t B, int64_t I, int64_t H, uintptr_t x, uintptr_t h0, uintptr_t w_ih,
             uintptr_t w_hh, uintptr_t b_ih, uintptr_t b_hh, uintptr_t y, uintptr_t saved, uintptr_t xproj,
             uintptr_t stream);
// dh [B,H] in: dL/dh_n, out: dL/dh0. Outputs dx (0 = skip), dw_ih, dw_hh, db_ih/db_hh (0 = skip).
// Workspaces dxg, dhg [T,B,3H], dhd [B,H].
void gru_bwd(int dtype, int64_t T, int64_t B, int64_t I, int64_t H, uintptr_t x, uintptr_t h0, uintptr_t w_ih,
             uintptr_t w_hh, uintptr_t y, uintptr_t saved, uintptr_t dy, uintptr_t dh, uintptr_t dx, uintptr_t dw_ih,
             uintptr_t dw_hh, uintptr_t db_ih, uintptr_t db_hh, uintptr_t dxg, uintptr_t dhg, uintptr_t dhd,
             uintptr_t stream);

// ---- conv2d (conv.cu), NCHW, weight [K, C/groups, R, S] -------------------------------------
struct ConvShape {
  int64_t N, C, H, W, K, R, S, P, Q;
  int64_t sh, sw, ph, pw, dh, dw, groups;
};
ConvShape conv_shape(int64_t N, int64_t C, int64_t H, int64_t W, int64_t K, int64_t R, int64_t S, int64_t sh,
                     int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw, int64_t groups);
void conv2d_fwd(int dtype, const ConvShape& cs, uintptr_t x, uintptr_t w, uintptr_t bias, uintptr_t y,
                uintptr_t stream);
void conv2d_bwd_data(int dtype, const ConvShape& cs, uintptr_t dy, uintptr_t w, uintptr_t dx, uintptr_t stream);
// split-K over N*P*Q: workspace [splits, K, C/groups*R*S] when splits > 1 (reduced in fixed order)
int64_t conv2d_wgrad_splits(const ConvShape& cs);
void conv2d_bwd_weight(int dtype, const ConvShape& cs, uintptr_t dy, uintptr_t x, uintptr_t dw, uintptr_t ws,
                       int64_t splits, uintptr_t stream);
void conv2d_bwd_bias(int dtype, const ConvShape& cs, uintptr_t dy, uintptr_t db, uintptr_t stream);

}  // namespace pycnnrnn::cuda

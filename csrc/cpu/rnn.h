// rnn.h — recurrent layers (LSTM, GRU, RNN tanh/relu) on the CPU: one layer, one direction,
// the whole sequence per call, forward (inference or training) and BPTT.
//
// Dimension legend:
//   T  time steps           B  batch rows            I  input features
//   H  hidden units         G  gates (LSTM 4, GRU 3, RNN 1)     GH = G*H
//   P  projection size (LSTM proj_size; 0 = none)    K  recurrent width = P ? P : H
// Weights are torch's, row-major: w_ih [GH][I], w_hh [GH][K], b_ih/b_hh [GH], w_hr [P][H];
// gate order i,f,g,o (LSTM) and r,z,n (GRU, with b_hn inside r*(...)).
//
// Multi-layer stacking, directions, dropout and batch_first live in Python
// (pycnnrnn/ops/rnn.py), which calls these once per layer and direction.
//
// Variable lengths: lengths[b] in [0, T]. Step t of row b is valid iff t < lengths[b]. Invalid
// steps leave the state unchanged and write zeros to y, so the forward direction ends at each
// row's length and the reverse direction (t = T-1 ... 0) starts at each row's last valid step:
// torch's PackedSequence results.
#pragma once
#include <cstdint>
#include <mutex>

#include "core/block_cache.h"
#include "cpu/gemm.h"

namespace pycnnrnn {

enum class RnnMode : int { lstm = 0, gru = 1, rnn_tanh = 2, rnn_relu = 3 };

inline int rnn_gate_count(RnnMode m) { return m == RnnMode::lstm ? 4 : m == RnnMode::gru ? 3 : 1; }

// A weight of one layer-direction prepared once for many forward calls (inference), in the form
// the float32 kernels read, built by the first forward call that needs it and kept. The caller
// guarantees that the weight never changes (the Python side hands in a read-only snapshot).
// - As W_hh: the step kernels' forward panels (gate-interleaved, cpu/rnn_kernels.h). A
//   multi-step forward then takes the packed kernels at every batch size; without, from
//   pack_min_batch() rows, where packing on every call pays for itself.
// - As W_ih: W_ih^T packed as the B operand of the input projection's GEMM (pack_b), which
//   otherwise packs it on every call (8% of an LSTM(300, 512, 2) T=30 B=1 forward).
class RnnPrepared {
 public:
  // The panels of w_hh [G*H][K] for vectors of vl floats; null when they were built for another
  // geometry (e.g. another ISA's vector length): the caller then packs for this call.
  const float* forward_panels(const float* w_hh, int G, int64_t H, int64_t K, int vl);
  // w_ih [GH][I] as the packed B = w_ih^T [I][GH]; null when packed for another ISA.
  const PackedB<float>* input_weights(const float* w_ih, int64_t GH, int64_t I);
  // w_hh [GH][K] as the packed B = w_hh^T [K][GH] (the GEMM engine's step product at larger
  // batches, rnn.cpp); null when packed for another ISA.
  const PackedB<float>* recurrent_weights(const float* w_hh, int64_t GH, int64_t K);
  // Whether every one of w_hh's n weights is finite (learned once: the weights do not change).
  bool recurrent_weights_finite(const float* w_hh, int64_t n);
  // Which forms a call has built so far (tests).
  bool has_panels() const { return panels_.data() != nullptr; }
  bool has_input_weights() const { return input_.data != nullptr; }
  bool has_recurrent_weights() const { return recurrent_.data != nullptr; }

 private:
  std::once_flag once_, once_input_, once_recurrent_, once_finite_;
  bool w_hh_finite_ = false;
  int G_ = 0, vl_ = 0;
  int64_t H_ = 0, K_ = 0;
  BlockArray<float> panels_;
  PackedB<float> input_, recurrent_;
};

// One layer and direction: sizes and weights (b_* may be null: bias=False; w_hr null iff P=0;
// lengths null: every step valid).
template <typename T>
struct RnnLayer {
  RnnMode mode = RnnMode::lstm;
  int64_t steps = 0, batch = 0, input = 0, hidden = 0, proj = 0;
  bool reverse = false;
  const T* w_ih = nullptr;  // [GH][I]
  const T* w_hh = nullptr;  // [GH][K]
  const T* b_ih = nullptr;  // [GH]
  const T* b_hh = nullptr;  // [GH]
  const T* w_hr = nullptr;  // [P][H]
  const int64_t* lengths = nullptr;  // [B]
  RnnPrepared* prepared = nullptr;     // float32: w_hh's packed panels or engine operand (null: per call)
  RnnPrepared* prepared_ih = nullptr;  // float32: w_ih packed for the input GEMM (null: per call)
};

// The training workspace of one layer-direction: separate [T][B][n] arrays, in this order:
//   gates [T][B][GH]  activations (LSTM i,f,g,o; GRU r,z,n; RNN h)
//   hprev [T][B][K]   state entering step t
//   cprev [T][B][H]   LSTM: c entering step t
//   tanhc [T][B][H]   LSTM: tanh(c) after step t
//   hn    [T][B][H]   GRU: W_hn h + b_hn
//   hraw  [T][B][H]   LSTM with projection: o * tanh(c) before W_hr
struct RnnWorkspace {
  int64_t gates = 0, hprev = 0, cprev = 0, tanhc = 0, hn = 0, hraw = 0, size = 0;
};
RnnWorkspace rnn_workspace_layout(RnnMode mode, int64_t T, int64_t B, int64_t H, int64_t P);

// Forward. x [T][B][I]; h0 [B][K]; c0 [B][H] (LSTM; null = zeros; h0 null = zeros).
// y: row (t, b) at y + (t*B + b)*ldy, K values (ldy >= K lets two directions share a buffer).
// hn [B][K], cn [B][H] (LSTM). ws: null for inference, else rnn_workspace_layout(...).size
// values, all written.
template <typename T>
void rnn_layer_forward(const RnnLayer<T>& L, const T* x, const T* h0, const T* c0, T* y, int64_t ldy, T* hn,
                       T* cn, T* ws);

// BPTT from the workspace of the forward call with the same arguments.
// dy: row (t, b) at dy + (t*B + b)*lddy (K values; null = zeros); dhn [B][K], dcn [B][H] (null
// = zeros). Outputs (written, never accumulated, except dx when accumulate_dx):
// dx [T][B][I], dw_ih [GH][I], dw_hh [GH][K], db_ih, db_hh [GH] (null when no bias),
// dw_hr [P][H], dh0 [B][K], dc0 [B][H] (LSTM).
template <typename T>
void rnn_layer_backward(const RnnLayer<T>& L, const T* x, const T* h0, const T* c0, const T* ws, const T* dy,
                        int64_t lddy, const T* dhn, const T* dcn, T* dx, bool accumulate_dx, T* dw_ih, T* dw_hh,
                        T* db_ih, T* db_hh, T* dw_hr, T* dh0, T* dc0);

// The float64 oracle: a plain loop over t, b, unit and k with libm activations (no GEMM, no
// threads, no packing), forward only. Same contract as rnn_layer_forward without ws.
template <typename T>
void rnn_layer_forward_naive(const RnnLayer<T>& L, const T* x, const T* h0, const T* c0, T* y, int64_t ldy,
                             T* hn, T* cn);

}  // namespace pycnnrnn

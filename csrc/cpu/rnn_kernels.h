// rnn_kernels.h — the float32 per-step micro-kernels of the recurrent layers, one set per ISA
// (csrc/cpu/ukernels/<isa>/rnn_<isa>.cpp, all generated from cpu/rnn_vec.inc with a different
// vector width). Plain structs, no std:: containers (ODR safety across ISA flags).
//
// Forward: W_hh is packed once per call into panels, gate-interleaved:
//   panel p, row k (0..K-1), vector v (0..NV-1), lane l (0..VL-1):
//     LSTM/GRU (NV = G):  W_hh[v*H + p*VL + l][k]          (one vector per gate, VL units)
//     RNN      (NV = 4):  W_hh[p*4VL + v*VL + l][k]        (4 vectors of units)
//   zero where the unit is >= H. A step computes acc = h_prev * panel for MR batch rows at a
//   time and applies the gate formulas (cpu/rnn_cell_math.inc) in registers.
// Backward: dh_prev = dG * W_hh with W_hh packed in panels of 4*VL columns of K:
//   panel q, row g (0..GH-1), column c (0..4VL-1): W_hh[g][q*4VL + c] (zero past K).
#pragma once
#include <cstdint>

namespace pycnnrnn {

struct RnnStepF32 {
  int mode = 0;                 // RnnMode
  int64_t B = 0, H = 0, K = 0;  // rows, hidden units, recurrent width
  int64_t Kd = 0;               // reduction length: K, or 0 when pre already holds h W_hh^T
  const float* wp = nullptr;    // packed panels [npanel][K][NV*VL] (unused when Kd = 0)
  const float* h = nullptr;     // [B][K] state entering the step
  const float* pre = nullptr;   // [B][GH] x W_ih^T + b_ih (+ b_hh except GRU's n block)
  const float* rec = nullptr;   // [B][GH] h W_hh^T computed elsewhere (with Kd = 0), or null
  const float* c = nullptr;     // [B][H] LSTM c entering the step
  const float* b_hn = nullptr;  // [H] GRU (null = 0)
  float* h_out = nullptr;       // [B][H] new h (before any projection)
  float* c_out = nullptr;       // [B][H] LSTM new c
  float* gates = nullptr;       // [B][GH] saved activations, or null
  float* tanhc = nullptr;       // [B][H] LSTM saved tanh(c), or null
  float* hn = nullptr;          // [B][H] GRU saved W_hn h + b_hn, or null
  bool reverse = false;         // panels p1-1 down to p0 (serpentine order across steps)
  bool stream_saved = false;    // gates/tanhc/hn stored around the caches (rnn.cpp: big workspaces)
};

struct RnnBackF32 {
  int64_t B = 0, N = 0, Kd = 0;  // rows, output width (K), reduction (GH)
  const float* wp = nullptr;     // packed [nq][Kd][4VL]
  const float* dg = nullptr;     // [B][Kd]
  const float* add = nullptr;    // [B][N] added to the product, or null
  float* out = nullptr;          // [B][N]
  bool reverse = false;          // panels q1-1 down to q0
};

using RnnStepFn = void (*)(const RnnStepF32&, int64_t p0, int64_t p1);
using RnnBackFn = void (*)(const RnnBackF32&, int64_t q0, int64_t q1);
// LSTM pointwise backward of one batch row over H units: dg [4H] = (di, df, dg, do) from dh [H],
// the saved gates [4H] (i, f, g, o), tanh(c) [H] and c_prev [H]; dc [H] (the cell-state carry)
// is updated in place.
using LstmBackRowFn = void (*)(const float* dh, float* dc, const float* gates, const float* tc, const float* c_prev,
                               float* dg, int64_t H);

struct RnnKernelsF32 {
  int vl = 0;  // floats per vector; 0 = no vector kernels (scalar path)
  // Batch rows per register tile. Threads that split the batch start their rows at multiples of
  // it, so every row lands in the same tile whatever the thread count (a one-row tile sums in
  // another order: two chains, for batch 1).
  int mr = 1;
  RnnStepFn step = nullptr;
  RnnBackFn back = nullptr;
  LstmBackRowFn lstm_back_row = nullptr;
};

namespace rnn_avx512 {
RnnKernelsF32 kernels();
}
namespace rnn_avx2 {
RnnKernelsF32 kernels();
}

}  // namespace pycnnrnn

#!/usr/bin/env bash
# Host emulation of the CUDA kernels (no GPU needed): each kernel body is compiled as plain C++
# with one std::thread per CUDA thread, __shared__ as function statics, __syncthreads as a
# std::barrier, warp shuffles through a block-wide exchange. Checks the SGEMM (all operand
# variants), the implicit-GEMM conv tiles (fprop/dgrad/wgrad with split-K), the max-pool paths
# and the LSTM / GRU step kernels (forward vs float64, backward vs finite differences).
# It cannot see GPU-only faults (alignment, memory model, resource limits): the GPU check does.
#   bash tests/cuda_emu/run.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# kernel sections of each .cu (between the anonymous-namespace start and the host launchers)
awk '/^namespace \{/{f=1;next} /^template <bool TA, bool TB>$/{getline n; if (n ~ /^void launch_sgemm/) exit;} f' \
  "$root/csrc/cuda/gemm.cu" >"$tmp/gemm_kernels.inc"
awk '/^constexpr int TK/{f=1} /^template <typename T>$/{getline n; if (n ~ /split_reduce/) exit; if(f) print; if(f) print n; next} f' \
  "$root/csrc/cuda/conv.cu" >"$tmp/conv_kernels.inc"
awk '/^struct PoolGeom/{f=1} /^PoolGeom make_geom/{exit} f' "$root/csrc/cuda/pool.cu" >"$tmp/pool_kernels.inc"
awk '/^constexpr int HJ/{f=1} /^template <typename T>$/{getline n; if (n ~ /^void lstm_fwd_t/) exit; if(f) print; if(f) print n; next} f' \
  "$root/csrc/cuda/lstm.cu" >"$tmp/lstm_kernels.inc"
awk '/^constexpr int HJ/{f=1} /^template <typename T>$/{getline n; if (n ~ /^void gru_fwd_t/) exit; if(f) print; if(f) print n; next} f' \
  "$root/csrc/cuda/gru.cu" >"$tmp/gru_kernels.inc"
for t in emu_gemm_conv emu_pool_lstm emu_gru; do
  ${CXX:-g++} -std=c++20 -O2 -pthread -I"$tmp" -I"$here" -I"$root/csrc" -o "$tmp/$t" "$here/$t.cpp"
  "$tmp/$t"
done

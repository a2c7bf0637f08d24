#!/usr/bin/env bash
# bench/gpu_check.sh — the one-command GPU check of pycnnrnn's CUDA backend.
#
#   bash bench/gpu_check.sh            # from a copy of the repository, on a machine with a GPU
#
# Stages (each one's failure is reported; later stages still run):
#   1 versions   GPU, driver, nvcc, cmake, ninja, python, torch, cuDNN, pybind11
#   2 build      cmake + ninja straight into a staging dir, CUDA on, for the local GPU's
#                architecture (CUDA_ARCH=90 to force); falls back to pip --no-build-isolation
#   3 tests      pytest -m cuda tests/test_cuda.py
#   4 sanitizer  compute-sanitizer memcheck on bench/gpu_check.py --smoke (small case of every kernel)
#   5 bench      bench/gpu_check.py --bench: ours vs torch/cuDNN, TF32 off, one table printed last
# Logs go to $OUT (device tool), else $GPU_CHECK_OUT, else /tmp/pycnnrnn-gpu-check.
# The whole run is held under GPU_CHECK_BUDGET seconds (default 450).
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
LOG=${OUT:-${GPU_CHECK_OUT:-/tmp/pycnnrnn-gpu-check}}
mkdir -p "$LOG"
WORK=${GPU_CHECK_WORK:-/tmp/pycnnrnn-gpu}
STAGE=$WORK/stage
PY=${PYTHON:-python3}
BUDGET=${GPU_CHECK_BUDGET:-450}
T0=$SECONDS
export PYTHONUNBUFFERED=1
for d in /usr/local/cuda/bin /usr/local/cuda-13/bin /usr/local/cuda-13.0/bin "$(dirname "$(command -v "$PY")")"; do
  [ -d "$d" ] && case ":$PATH:" in *":$d:"*) ;; *) PATH="$PATH:$d" ;; esac
done
export PATH
SUMMARY=()

stage() {  # stage NAME LIMIT_S cmd...
  local name=$1 limit=$2
  shift 2
  local left=$((BUDGET - (SECONDS - T0) - 5))
  if [ "$left" -lt 10 ]; then
    echo "=== [$name] SKIPPED: out of time budget"
    SUMMARY+=("$name=skipped(time)")
    return 0
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  echo
  echo "=== [$name] start $(date -u +%T) (limit ${limit}s)"
  local t=$SECONDS
  timeout --kill-after=10 "$limit" bash -c "$*" >"$LOG/$name.log" 2>&1
  local rc=$?
  echo "=== [$name] rc=$rc in $((SECONDS - t))s (log: $LOG/$name.log)"
  SUMMARY+=("$name=rc$rc/$((SECONDS - t))s")
  return $rc
}

versions() {
  nvidia-smi --query-gpu=name,driver_version,compute_cap,memory.total,clocks.sm,clocks.max.sm,clocks.mem \
    --format=csv 2>&1 || echo "nvidia-smi failed"
  command -v nvcc && nvcc --version | tail -2
  command -v cmake && cmake --version | head -1
  command -v ninja && echo "ninja $(ninja --version)"
  command -v compute-sanitizer && compute-sanitizer --version | tail -1
  "$PY" - <<'PYEOF'
import sys, platform
print("python", sys.version.split()[0], platform.machine())
try:
    import torch
    print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version(),
          "gpu", torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)
except Exception as e:
    print("torch import failed:", e)
for m in ("pybind11", "scikit_build_core", "numpy", "pytest"):
    try:
        mod = __import__(m); print(m, getattr(mod, "__version__", "?"))
    except Exception as e:
        print(m, "missing:", e)
PYEOF
}

build() {
  local arch=${CUDA_ARCH:-}
  if [ -z "$arch" ]; then
    arch=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d ' .')
    [ -z "$arch" ] && arch=90
  fi
  echo "building for CMAKE_CUDA_ARCHITECTURES=$arch"
  rm -rf "$STAGE" && mkdir -p "$STAGE/pycnnrnn"
  cp -r pycnnrnn/. "$STAGE/pycnnrnn/"
  rm -f "$STAGE"/pycnnrnn/_C*.so
  local pbdir
  pbdir=$("$PY" -c 'import pybind11; print(pybind11.get_cmake_dir())' 2>/dev/null)
  local nvcc_path
  nvcc_path=$(command -v nvcc || true)
  if command -v cmake >/dev/null && command -v ninja >/dev/null && [ -n "$pbdir" ]; then
    cmake -S "$ROOT" -B "$WORK/build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DSKBUILD_PROJECT_NAME=pycnnrnn -DSKBUILD_PROJECT_VERSION=0.1.0 -DSKBUILD=ON \
      -DPython_EXECUTABLE="$(command -v "$PY")" -Dpybind11_DIR="$pbdir" \
      ${nvcc_path:+-DCMAKE_CUDA_COMPILER="$nvcc_path"} \
      -DPYCNNRNN_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="$arch" -DPYCNNRNN_STAGE_DIR="$STAGE/pycnnrnn" &&
      ninja -C "$WORK/build" -j"$(nproc)" && ls "$STAGE"/pycnnrnn/_C*.so && return 0
    echo "cmake build failed; trying pip"
  fi
  PYCNNRNN_CUDA=ON "$PY" -m pip install -v --no-build-isolation --no-deps --target "$WORK/pipsite" \
    -C cmake.define.CMAKE_CUDA_ARCHITECTURES="$arch" "$ROOT" || return 1
  rm -rf "$STAGE" && mkdir -p "$STAGE" && cp -r "$WORK/pipsite/pycnnrnn" "$STAGE/"
}

tests() {
  # every test is marked cuda and skips without a GPU: make sure this is not silently the case
  PYTHONPATH="$STAGE" "$PY" -P -c 'import pycnnrnn, sys; ok = pycnnrnn.cuda_available(); print("cuda_available:", ok, pycnnrnn._C.cuda_device_name(0) if ok else ""); sys.exit(0 if ok else 3)' ||
    { echo "pycnnrnn.cuda_available() is False: the cuda tests would all skip"; return 3; }
  PYTHONPATH="$STAGE" "$PY" -P -m pytest -q -m cuda tests/test_cuda.py tests/test_torch_ops.py -p no:cacheprovider \
    -rfE -o faulthandler_timeout=120 --maxfail=30 --durations=8
}

sanitizer() {
  local cs
  cs=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer /opt/nvidia/*/compute-sanitizer \
    2>/dev/null | head -1)
  if [ -z "$cs" ]; then
    echo "compute-sanitizer not found: skipped"
    return 0
  fi
  # no caching allocator: every torch allocation is exact, so an overrun leaves its buffer
  PYTORCH_NO_CUDA_MEMORY_CACHING=1 PYTHONPATH="$STAGE" "$cs" --tool memcheck --error-exitcode 9 \
    --print-limit 20 "$PY" -P bench/gpu_check.py --smoke
}

benchmark() {
  PYTHONPATH="$STAGE" "$PY" -P bench/gpu_check.py --bench --json "$LOG/bench.json"
}

show_tail() {  # show_tail NAME LINES
  echo "--- tail of $1.log"
  tail -n "$2" "$LOG/$1.log"
}

export ROOT LOG WORK STAGE PY
export -f versions build tests sanitizer benchmark
stage versions 30 versions
cat "$LOG/versions.log"
if stage build 240 build; then
  tail -n 3 "$LOG/build.log"
  stage tests 130 tests
  show_tail tests 40
  stage sanitizer 75 sanitizer
  show_tail sanitizer 15
  stage bench 220 benchmark
  show_tail bench 60
else
  show_tail build 60
  echo "build failed: tests, sanitizer and bench cannot run"
fi
echo
echo "=== gpu_check summary: ${SUMMARY[*]} (total $((SECONDS - T0))s)"

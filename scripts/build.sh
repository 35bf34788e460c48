#!/usr/bin/env bash
# Configures and builds p3d into ./build. The CUDA executor is built when nvcc is
# found (CUDA toolkit present; no GPU needed to compile).
set -euo pipefail
cd "$(dirname "$0")/.."
cuda_flags=()
nvcc_bin=$(command -v nvcc || true)
[ -z "$nvcc_bin" ] && [ -x /usr/local/cuda/bin/nvcc ] && nvcc_bin=/usr/local/cuda/bin/nvcc
if [ -n "$nvcc_bin" ] && [ "${P3D_ENABLE_CUDA:-ON}" != OFF ]; then
  cuda_flags=(-DP3D_ENABLE_CUDA=ON -DCMAKE_CUDA_COMPILER="$nvcc_bin" -DCMAKE_CUDA_ARCHITECTURES="${P3D_CUDA_ARCH:-90}")
fi
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release "${cuda_flags[@]}" >/dev/null
cmake --build build -j "$(nproc)"

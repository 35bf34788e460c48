#!/usr/bin/env bash
# Configures and builds p3d into ./build: everything, or only the targets named
# (`scripts/build.sh p3d-plan` builds the planner alone, in minutes).
#
# The CUDA executor is configured when nvcc is found (CUDA toolkit present; no
# GPU is needed to compile). GPU code is built for (P3D_CUDA_ARCH overrides):
#   - this machine's GPU ("native") when nvidia-smi sees one;
#   - else sm_80 (A100; its binary also runs on sm_86 RTX 3090/A40 and sm_89
#     L40S/RTX 4090: CUDA cubins run on later minor versions of one major),
#     sm_90 (H100/H200) and sm_100 (B200) with compute_100 PTX for newer GPUs.
set -euo pipefail
cd "$(dirname "$0")/.."
cuda_flags=()
nvcc_bin=$(command -v nvcc || true)
[ -z "$nvcc_bin" ] && [ -x /usr/local/cuda/bin/nvcc ] && nvcc_bin=/usr/local/cuda/bin/nvcc
if [ -n "$nvcc_bin" ] && [ "${P3D_ENABLE_CUDA:-ON}" != OFF ]; then
  arch=${P3D_CUDA_ARCH:-}
  if [ -z "$arch" ]; then
    if nvidia-smi -L >/dev/null 2>&1; then arch=native
    else arch="80-real;90-real"
      # sm_100 where the toolkit knows it (CUDA >= 12.8).
      if "$nvcc_bin" --list-gpu-arch 2>/dev/null | grep -q compute_100; then arch="$arch;100"; else arch="$arch;90-virtual"; fi
    fi
  fi
  cuda_flags=(-DP3D_ENABLE_CUDA=ON -DCMAKE_CUDA_COMPILER="$nvcc_bin" -DCMAKE_CUDA_ARCHITECTURES="$arch")
fi
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release "${cuda_flags[@]}" >/dev/null
if (($#)); then cmake --build build -j "$(nproc)" --target "$@"
else cmake --build build -j "$(nproc)"; fi

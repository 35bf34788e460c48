#!/usr/bin/env bash
# Installs the Debian packages p3d builds with (idempotent). CUDA and NCCL are
# expected under /usr/local/cuda when the executor is built; they are not apt packages here.
set -euo pipefail
pkgs=(cmake ninja-build g++ libfmt-dev libcli11-dev nlohmann-json3-dev libeigen3-dev
      libgtest-dev googletest libbenchmark-dev)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq "${missing[@]}"
fi

#!/usr/bin/env bash
# Builds the CPU parts of p3d (no CUDA) with AddressSanitizer and
# UndefinedBehaviorSanitizer into ./build-asan and runs the CPU tests there,
# including the short fuzz run (bench/fuzz). Any sanitizer report fails the
# run: -fno-sanitize-recover makes UBSan findings fatal.
set -euo pipefail
cd "$(dirname "$0")/.."
flags="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -O1 -g"
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DP3D_ENABLE_CUDA=OFF \
  -DCMAKE_CXX_FLAGS="$flags" -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" >/dev/null
cmake --build build-asan -j "$(nproc)"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
ctest --test-dir build-asan --output-on-failure -j "$(nproc)" -L cpu

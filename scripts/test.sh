#!/usr/bin/env bash
# The test command: installs dependencies, builds, runs every test. GPU tests
# (label "gpu") report "skipped" on machines without a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
ctest --test-dir build --output-on-failure -j "$(nproc)"
# The CPU tests again under ASan + UBSan (any report fails), with the short fuzz run.
bash scripts/sanitize.sh

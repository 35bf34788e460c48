#!/usr/bin/env bash
# Prints the README's example commands with their output (all predictions), so
# the README can be regenerated after a model change: bash scripts/readme_examples.sh
set -uo pipefail
cd "$(dirname "$0")/.."
P=build/bin/p3d-plan
run() { echo "\$ p3d-plan $*"; "$P" "$@" 2>&1; echo; }
run --model 70B --gpus 64 --mem 80
run --model 13B --gpus 8 --gpu rtx3090 --top 5
run --model 70B --gpus 32 --gpu a100-80gb --top 5
run --model 175B --gpus 128 --gpu a100-80gb --top 5
for z in 0 1 2 3; do run --model 70B --gpus 16 --gpu a100-80gb --dp 4 --tp 2 --pp 2 --zero $z --offload none --top 1; done
for z in 0 1 2 3; do run --model 70B --gpus 16 --gpu a100-80gb --dp 4 --tp 2 --pp 2 --zero $z --offload none --top 1 \
  --grad-dtype bf16 --master-bytes 2 --adam-bytes 4; done
run --model 70B --gpus 64 --gpu a100-80gb --dp 8 --tp 4 --pp 2 --zero 2 --micro-batch 2 --offload none --top 1 --claim-step 2.5
run --model 70B --gpus 64 --mem 80 --top 1 --zero 1 --vpp 1 --export deepspeed
run --model 70B --gpus 64 --mem 80 --top 1 --zero 1 --export megatron

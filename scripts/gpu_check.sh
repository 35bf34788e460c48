#!/usr/bin/env bash
# gpu_check.sh: THE script that builds p3d on a GPU machine and runs every GPU
# check and timing, one named section after another. A failing section is
# recorded and the next one still runs.
#
#   scripts/gpu_check.sh                 # all sections, in order
#   scripts/gpu_check.sh build executor_tests reference   # a subset (build first)
#   TARGETS="p3d-run p3d-tokenize p3d-plan" scripts/gpu_check.sh build dp_equivalence
#                                        # build only those targets, then the DP sections
#
# Multi-GPU sections (dp_equivalence, dp_overlap, dp_fault, dp_scaling, offload_dp,
# tp_pp_equivalence, tp_pp_throughput) need 2 GPUs and record SKIP with fewer.
# Output ($OUT, default build-gpu/gpu-out): gpu_check.log (every command and its
# output), summary.txt (one line per section, also printed last) and
# results.tar.gz (JSON results, reference tables, GEMM tables, loss curves).
# Adding a check: write a section_<name> function, append <name> to SECTIONS,
# put artifacts under "$RES" and call `record <name> PASS|FAIL "details"`.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD=${BUILD:-$ROOT/build-gpu}
OUT=${OUT:-$BUILD/gpu-out}
mkdir -p "$OUT"
LOG=$OUT/gpu_check.log
SUMMARY=$OUT/summary.txt
RES=$(mktemp -d)/results
mkdir -p "$RES"
BIN=$BUILD/bin
export NCCL_NVLS_ENABLE=0  # never NVLink multicast on the shared hosts
: >"$LOG"
: >"$SUMMARY"

SECTIONS=(env build executor_tests fused_attention reference checkpoint loss_curve speed_1p3b attention_speed attention_plan long_context speed_3b_full largest
          overlap_dp1 dp_equivalence dp_overlap dp_fault dp_scaling offload_step offload_equivalence offload_large offload_dp
          tp_pp_equivalence tp_pp_throughput accuracy fsdp2 fp8_gemm kernel_profile)
GPUS=$(nvidia-smi -L 2>/dev/null | wc -l)

log() { echo "$*" >>"$LOG"; }
record() { printf '%-18s %-4s %s\n' "$1" "$2" "$3" | tee -a "$SUMMARY" >>"$LOG"; }
# Runs a command with a time limit, output to the log (and to a file when given as RUN_TEE).
run() {
  log "+ $*"
  if [ -n "${RUN_TEE:-}" ]; then timeout "${RUN_LIMIT:-300}" "$@" 2>&1 | tee "$RUN_TEE" >>"$LOG"
  else timeout "${RUN_LIMIT:-300}" "$@" >>"$LOG" 2>&1; fi
}
# Last summary lines of a p3d-run JSON (python: json is there, numpy/torch not needed).
summarize() {
  python3 - "$1" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
s, m = j["summary"], j["memory"]
t = s.get("step_time_s", {})
mfu = s.get("mfu")
print(f"{j['run']['model']['name']} B={j['run']['micro_batch']}x{j['run']['grad_accum']} S={j['run']['seq']} "
      f"rc={j['run']['recompute']}: step {t.get('median', float('nan'))*1e3:.1f} ms, "
      f"{s.get('tflops_per_gpu', float('nan')):.1f} TFLOP/s, MFU {'n/a' if mfu is None else f'{mfu*100:.1f}%'}, "
      f"arena {m['arena_bytes']/2**30:.2f} GiB, device peak {m['device_used_peak_bytes']/2**30:.2f} GiB, "
      f"loss {j['steps'][0]['loss']:.3f}->{j['steps'][-1]['loss']:.3f}")
PY
}

# Equivalence verdict of a run against one GPU: "PASS|FAIL max|dloss| ... (last ... vs ...)".
# Pass: 20 steps each and max |loss difference| <= 2e-3 nats (docs/executor.md).
loss_verdict() {
  python3 - "$1" "$2" <<'PY'
import json, sys
a = [s["loss"] for s in json.load(open(sys.argv[1]))["steps"]]
b = [s["loss"] for s in json.load(open(sys.argv[2]))["steps"]]
d = [abs(x - y) for x, y in zip(a, b)]
ok = len(a) == len(b) == 20 and max(d) <= 2e-3
print(("PASS" if ok else "FAIL") + f" max|dloss| {max(d):.2e} at step {d.index(max(d))}"
      + f"{' bit-identical' if a == b else ''} (last {b[-1]:.5f} vs {a[-1]:.5f})")
PY
}

# The stable recipe the equivalence sections compare at (docs/executor.md,
# "Equivalence tolerance"): 20 steps of B 4 x S 128, lr 3e-4, clipping on.
EQ_RECIPE=(--micro-batch 4 --seq 128 --steps 20 --warmup 1 --lr 3e-4 --weight-decay 0.1 --clip 1.0
           --seed 7)

# A multi-rank p3d-run ARGS... into $RES/NAME.json, compared with the one-GPU
# run REF by loss_verdict: appends "NAME: ..." to the caller's $details and sets
# its status=FAIL on a failed run or verdict; exit status 1 when the run failed.
equivalence_run() {
  local name=$1 ref=$2
  shift 2
  if ! RUN_LIMIT=120 run "$BIN/p3d-run" "$@" --json "$RES/$name.json"; then
    status=FAIL; details+="$name: run failed; "; return 1
  fi
  local verdict
  verdict=$(loss_verdict "$ref" "$RES/$name.json")
  [ "${verdict%% *}" = PASS ] || status=FAIL
  details+="$name: ${verdict#* }; "
}

section_env() {
  run nvidia-smi -L
  run nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,power.limit,driver_version --format=csv
  run nvcc --version
  run cmake --version
  record env PASS "$(nvidia-smi -L 2>/dev/null | head -1)"
}

section_build() {
  local nvcc_bin
  nvcc_bin=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
  if ! run cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DP3D_ENABLE_CUDA=ON \
      -DCMAKE_CUDA_COMPILER="$nvcc_bin" -DCMAKE_CUDA_ARCHITECTURES=90; then
    record build FAIL "cmake configure"; return
  fi
  local t0=$SECONDS
  # -k 0: a broken target elsewhere must not stop the others from building.
  local targets=()
  [ -n "${TARGETS:-}" ] && targets=(--target $TARGETS)
  if RUN_LIMIT=480 run cmake --build "$BUILD" -j "$(nproc)" "${targets[@]}" -- -k 0; then
    record build PASS "$((SECONDS - t0)) s"
  else
    record build FAIL "some targets failed (see log); $((SECONDS - t0)) s"
  fi
}

section_executor_tests() {
  RUN_LIMIT=300 run ctest --test-dir "$BUILD" -R "${EXECUTOR_TESTS:-^executor_}" --output-on-failure
  local rc=$?
  local line
  line=$(grep -E "tests passed|tests failed" "$LOG" | tail -1)
  [ $rc -eq 0 ] && record executor_tests PASS "$line" || record executor_tests FAIL "$line"
}

# The fused attention (issue 14): its GPU tests, then p3d-attention-bench (fused
# vs unfused core) and torch's scaled_dot_product_attention per backend on the
# same shape, card and lease (bench/results/fused-attention.md).
section_fused_attention() {
  local status=PASS
  RUN_TEE=$RES/fused-attention-tests.txt RUN_LIMIT=300 run ctest --test-dir "$BUILD" \
      -R '^executor_(fused_attention|attention_core|model)_gpu_test$' --output-on-failure -V || status=FAIL
  local shape=(--batch 4 --heads 16 --seq 2048 --head-dim 128)
  RUN_TEE=$RES/attention-bench.txt run "$BIN/p3d-attention-bench" "${shape[@]}" --kv-heads 16 ||
    status=FAIL
  RUN_TEE=$RES/sdpa-torch.txt run python3 bench/frameworks/sdpa_torch.py "${shape[@]}" || status=FAIL
  record fused_attention $status "$(grep -E '^(fused|unfused|cudnn|flash|efficient) ' \
      "$RES/attention-bench.txt" "$RES/sdpa-torch.txt" 2>/dev/null | sed 's/^.*txt://' | tr -s ' ' | tr '\n' ';')"
}

# FP8 GEMMs (issue 16): the FP8 GEMM wrapper against the CPU on dequantized
# inputs (executor_fp8_matmul_gpu_test), PyTorch's FP8 GEMM beside bf16 at the
# curve's shapes (bench/fp8/gemm_sweep.py, the reference instrument), and
# p3d-calibrate's fp8 probe on Llama-3-8B/70B linear shapes writing the FP8
# curve into a profile that p3d-plan --fp8 then uses.
section_fp8_gemm() {
  local status=PASS gpu=h100-sxm
  nvidia-smi -L | grep -q H200 && gpu=h200
  RUN_TEE=$RES/fp8-matmul-test.txt RUN_LIMIT=120 run ctest --test-dir "$BUILD" \
      -R '^executor_fp8_matmul_gpu_test$' --output-on-failure -V || status=FAIL
  RUN_TEE=$RES/fp8-gemm-torch.txt run python3 bench/fp8/gemm_sweep.py || status=FAIL
  RUN_TEE=$RES/fp8-calibrate.txt RUN_LIMIT=400 run "$BIN/p3d-calibrate" --models llama-3-8b,llama-3-70b \
      --micro-batches 1 --seq 4096 --tp 1,4 --sweep 1024,2048,4096,8192 --max-seconds 200 \
      --out "$RES/profile-fp8-$gpu.json" || status=FAIL
  RUN_TEE=$RES/fp8-plan.txt run "$BIN/p3d-plan" --model llama-3-8b --gpus 8 --profile "$RES/profile-fp8-$gpu.json" \
      --framework megatron-core --fp8 tensorwise --top 3 --explain || status=FAIL
  record fp8_gemm $status "$(grep -cE 'OK \]' "$RES/fp8-matmul-test.txt" 2>/dev/null) test cases ok; \
$(grep -E '^ *(4096|8192) ' "$RES/fp8-gemm-torch.txt" 2>/dev/null | tr -s ' ' | tr '\n' ';') \
$(grep -E 'fp8 gemm .*(fc1|sweep 8192)' "$RES/fp8-calibrate.txt" 2>/dev/null | head -3 | tr -s ' ' | tr '\n' ';')"
}

# Byte-level tokens of the repo's text corpus (bench/data), shared by later sections.
corpus_tokens() {
  [ -f "$RES/corpus.u16" ] || run "$BIN/p3d-tokenize" bench/data/p3d-docs.txt "$RES/corpus.u16"
  echo "$RES/corpus.u16"
}

section_reference() {
  local data status=PASS details=""
  data=$(corpus_tokens)
  for m in tiny-gpt2-bytes tiny-llama-bytes; do
    local dump=$RES/dump-$m
    run "$BIN/p3d-run" --model "tests/executor/models/$m.json" --data "$data" --micro-batch 4 \
        --grad-accum 2 --seq 128 --steps 10 --warmup 1 --lr 1e-3 --weight-decay 0.1 --clip 1.0 \
        --seed 7 --dump "$dump" --json "$RES/reference-run-$m.json"
    RUN_TEE=$RES/reference-$m.txt run python3 tests/executor/reference.py "$dump" \
        --json "$RES/reference-$m.json"
    local rc=$?
    rm -f "$dump"/*.bin
    [ $rc -eq 0 ] || status=FAIL
    details+="$m: $(tail -1 "$RES/reference-$m.txt" 2>/dev/null); "
  done
  record reference $status "$details"
}

section_checkpoint() {
  local data a b c
  data=$(corpus_tokens)
  local common=(--model tests/executor/models/tiny-llama-bytes.json --data "$data" --micro-batch 4
                --seq 128 --lr 1e-3 --seed 3 --warmup 1)
  run "$BIN/p3d-run" "${common[@]}" --steps 20 --json "$RES/ckpt-straight.json"
  run "$BIN/p3d-run" "${common[@]}" --steps 10 --save "$RES/ckpt.bin" --json "$RES/ckpt-first.json"
  run "$BIN/p3d-run" "${common[@]}" --steps 10 --load "$RES/ckpt.bin" --json "$RES/ckpt-resumed.json"
  rm -f "$RES/ckpt.bin"
  local verdict
  verdict=$(python3 - "$RES" <<'PY'
import json, sys
d = sys.argv[1]
a = [s["loss"] for s in json.load(open(f"{d}/ckpt-straight.json"))["steps"]]
r = json.load(open(f"{d}/ckpt-resumed.json"))
c = [s["loss"] for s in r["steps"]]
same = r["run"]["first_step"] == 10 and c == a[10:]
print(("PASS" if same else "FAIL") + f" losses 10..19 resumed == uninterrupted: {same} (last {c[-1]!r} vs {a[-1]!r})")
PY
)
  record checkpoint "${verdict%% *}" "${verdict#* }"
}

section_loss_curve() {
  local data
  data=$(corpus_tokens)
  run "$BIN/p3d-run" --model tests/executor/models/tiny-gpt2-bytes.json --data "$data" \
      --micro-batch 16 --seq 256 --steps 400 --warmup 5 --lr 1e-3 --weight-decay 0.1 --seed 1 \
      --json "$RES/loss-curve-tiny-gpt2-bytes.json"
  local verdict
  verdict=$(python3 - "$RES/loss-curve-tiny-gpt2-bytes.json" <<'PY'
import json, sys
l = [s["loss"] for s in json.load(open(sys.argv[1]))["steps"]]
first, last = sum(l[:10]) / 10, sum(l[-10:]) / 10
ok = last < 0.6 * first
print(("PASS" if ok else "FAIL") + f" mean loss steps 0-9 {first:.3f} -> steps {len(l)-10}-{len(l)-1} {last:.3f}"
      + " (" + ", ".join(f"{i}:{l[i]:.3f}" for i in range(0, len(l), 50)) + ")")
PY
)
  record loss_curve "${verdict%% *}" "${verdict#* }"
}

# gpt-1.3b (B4, S2048, one GPU) MFU with each --gemm-epilogues setting of
# EPILOGUES (default "off on": the A/B of executor/matmul.h's epilogues).
section_speed_1p3b() {
  RUN_TEE=$RES/gemm-bench-gpt-1.3b.txt run "$BIN/p3d-gemm-bench" --model gpt-1.3b --micro-batch 4 --seq 2048
  local status=PASS details=""
  for epi in ${EPILOGUES:-off on}; do
    for cfg in "none 1 12" "selective 1 8" "none 4 5"; do
      set -- $cfg
      local json=$RES/speed-gpt-1.3b-$1-ga$2-epilogues-$epi.json
      if run "$BIN/p3d-run" --model gpt-1.3b --micro-batch 4 --seq 2048 --grad-accum "$2" \
          --steps "$3" --warmup 2 --recompute "$1" --gemm-epilogues "$epi" --profile --json "$json"; then
        details+="epilogues $epi: $(summarize "$json"); "
      else
        status=FAIL; details+="gpt-1.3b rc=$1 ga=$2 epilogues=$epi failed; "
      fi
    done
  done
  record speed_1p3b $status "$details"
}

# MFU, TFLOP/s and the profiled attention share of gpt-1.3b (B4, S2048, one GPU)
# with each attention core (issue 14), recompute none (with the fused core,
# selective runs the same code as none: docs/executor.md). ATTN_CONFIGS overrides.
attention_share() {
  python3 - "$1" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
p = j.get("profile", {})
ph = p.get("phase_seconds", {})
tot = sum(ph.values()) or float("nan")
print(f"attention {ph.get('attention', float('nan')) / tot * 100:.1f}% of the profiled step "
      f"({', '.join(f'{k} {v*1e3:.1f} ms' for k, v in ph.items())})")
PY
}
section_attention_speed() {
  local status=PASS details=""
  local configs=${ATTN_CONFIGS:-"fused:none unfused:none"}
  for cfg in $configs; do
    set -- ${cfg/:/ }
    local json=$RES/speed-gpt-1.3b-$1-$2.json
    if run "$BIN/p3d-run" --model gpt-1.3b --micro-batch 4 --seq 2048 --steps 6 --warmup 2 \
        --recompute "$2" --attention "$1" --profile --json "$json"; then
      details+="[$1] $(summarize "$json"); $(attention_share "$json"); "
    else
      status=FAIL; details+="gpt-1.3b attention=$1 rc=$2 failed; "
    fi
  done
  record attention_speed $status "$details"
}

# gpt-1.3b with the fused core as the planner plans it (B4, S2048, grad-accum 4,
# one GPU): p3d-plan with fixed dims, p3d-run of the saved plan, p3d-compare
# term by term; then the fused core alone on the long-context layer shape
# (Llama-3.2-1B: NH32 KV8 HD64, S16384) with torch's SDPA beside it.
section_attention_plan() {
  local gpu=h100-sxm status=PASS details=""
  nvidia-smi -L | grep -q H200 && gpu=h200
  run "$BIN/p3d-plan" --model gpt-1.3b --gpus 1 --gpu $gpu --dp 1 --tp 1 --pp 1 --zero 0 \
      --micro-batch 4 --global-batch 16 --seq 2048 --recompute none \
      --save-plan "$RES/plan-1p3b-fused.json" || status=FAIL
  run "$BIN/p3d-run" --plan "$RES/plan-1p3b-fused.json" --steps 5 --warmup 2 --profile \
      --json "$RES/run-1p3b-fused-ga4.json" || status=FAIL
  RUN_TEE=$RES/compare-1p3b-fused.txt run "$BIN/p3d-compare" "$RES/plan-1p3b-fused.json" \
      "$RES/run-1p3b-fused-ga4.json"
  [ -f "$RES/run-1p3b-fused-ga4.json" ] &&
    details+="$(summarize "$RES/run-1p3b-fused-ga4.json"); $(attention_share "$RES/run-1p3b-fused-ga4.json"); "
  details+="compare: $(grep -E '^  (activations|buffers|total|step|mfu) ' "$RES/compare-1p3b-fused.txt" | tr -s ' ' | tr '\n' ';'); "
  local long=(--batch 1 --heads 32 --kv-heads 8 --seq 16384 --head-dim 64)
  RUN_TEE=$RES/attention-bench-long.txt run "$BIN/p3d-attention-bench" "${long[@]}" --skip-unfused \
      --reps 10 || status=FAIL
  RUN_TEE=$RES/sdpa-torch-long.txt run python3 bench/frameworks/sdpa_torch.py "${long[@]}" --reps 10
  details+="long layer: $(grep -E '^(fused|cudnn|flash) ' "$RES/attention-bench-long.txt" "$RES/sdpa-torch-long.txt" | sed 's/^.*txt://' | tr -s ' ' | tr '\n' ';')"
  record attention_plan $status "$details"
}

# Long context: a Llama-3.2-1B-shaped model at S = 16384, micro-batch 1, one GPU.
# Fused: planned with fixed dims, run from the saved plan, compared term by term;
# unfused must refuse (its per-layer S x S probabilities cannot fit).
section_long_context() {
  local gpu=h100-sxm status=PASS details=""
  nvidia-smi -L | grep -q H200 && gpu=h200
  local model=bench/executor/models/llama-3.2-1b.json
  run "$BIN/p3d-plan" --model $model --gpus 1 --gpu $gpu --dp 1 --tp 1 --pp 1 --zero 0 \
      --micro-batch 1 --global-batch 1 --seq 16384 --recompute none \
      --save-plan "$RES/long-plan.json" || status=FAIL
  RUN_LIMIT=240 run "$BIN/p3d-run" --plan "$RES/long-plan.json" --steps 4 --warmup 1 \
      --force --json "$RES/long-run.json" || status=FAIL
  RUN_TEE=$RES/long-compare.txt run "$BIN/p3d-compare" "$RES/long-plan.json" "$RES/long-run.json"
  [ -f "$RES/long-run.json" ] && details+="fused: $(summarize "$RES/long-run.json"); "
  RUN_TEE=$RES/long-unfused.txt RUN_LIMIT=120 run "$BIN/p3d-run" --model $model --micro-batch 1 \
      --seq 16384 --steps 2 --warmup 1 --attention unfused --json "$RES/long-unfused.json"
  local rc=$?
  [ $rc -eq 0 ] && status=FAIL
  details+="unfused: exit $rc, $(grep -m1 -o 'does not fit[^;]*' "$RES/long-unfused.txt" | head -c 160); "
  details+="compare: $(grep -iE 'peak|total|activations' "$RES/long-compare.txt" | tr -s ' ' | head -4 | tr '\n' ';')"
  record long_context $status "$details"
}

section_speed_3b_full() {
  local json=$RES/speed-gpt-2.7b-full.json
  if run "$BIN/p3d-run" --model gpt-2.7b --micro-batch 4 --seq 2048 --steps 6 --warmup 2 \
      --recompute full --profile --json "$json"; then
    record speed_3b_full PASS "$(summarize "$json")"
  else
    record speed_3b_full FAIL "see log"
  fi
}

# The largest model (of a descending list) whose arena fits this card, full recompute.
section_largest() {
  for m in llama-2-13b llama-2-7b 6B 5B 4B megatron-3.6b; do
    local json=$RES/largest-$m.json
    run "$BIN/p3d-run" --model "$m" --micro-batch 1 --seq 2048 --steps 4 --warmup 1 \
        --recompute full --json "$json"
    local rc=$?
    if [ $rc -eq 0 ]; then record largest PASS "$(summarize "$json")"; return; fi
    log "largest: $m did not run (exit $rc)"
  done
  record largest FAIL "none of the candidates fit"
}

# DP = N (2, and 4 when there are 4 GPUs) against one GPU on the same global
# batch: one GPU runs grad-accum N*ga, each DP rank ga (its share of the
# micro-batches, trainer.h). Tiny GPT-2 on the byte corpus, 20 steps, lr 3e-4,
# clipping on. Tolerance (docs/executor.md): max |loss difference| over the
# 20 steps <= 2e-3 nats; "bit-identical" is noted where every loss is equal.
section_dp_equivalence() {
  if [ "$GPUS" -lt 2 ]; then record dp_equivalence SKIP "needs 2 GPUs, found $GPUS"; return; fi
  local data status=PASS details=""
  data=$(corpus_tokens)
  local common=(--model tests/executor/models/tiny-gpt2-bytes.json --data "$data" "${EQ_RECIPE[@]}")
  for dp in 2 4; do
    [ "$GPUS" -lt $dp ] && continue
    for ga in 1 2; do
      local ref=$RES/dp-ref-ga$((dp * ga)).json
      [ -f "$ref" ] || RUN_LIMIT=120 run "$BIN/p3d-run" "${common[@]}" --grad-accum $((dp * ga)) \
          --json "$ref"
      for rc in none full; do
        [ $ga = 1 ] && [ $rc = full ] && continue
        for z in 0 1 2 3; do
          equivalence_run dp$dp-z$z-ga$ga-$rc "$ref" --nproc $dp --dp $dp --zero $z "${common[@]}" \
              --grad-accum $ga --recompute $rc --nccl-timeout-s 60
        done
      done
    done
  done
  record dp_equivalence $status "$details"
}

# Gradient buckets at DP = 1 (issue 14): nothing is reduced, so --bucket-mb
# must not change a single loss (tiny GPT-2, 20 steps, per-unit buckets vs
# the default one bucket); --bucket-mb 0 is refused as bad input (exit 2).
section_overlap_dp1() {
  local data status=PASS details=""
  data=$(corpus_tokens)
  local common=(--model tests/executor/models/tiny-gpt2-bytes.json --data "$data" "${EQ_RECIPE[@]}"
                --grad-accum 2)
  for mb in 100 0.001; do
    RUN_LIMIT=120 run "$BIN/p3d-run" "${common[@]}" --bucket-mb $mb --json "$RES/overlap-dp1-$mb.json" ||
      { status=FAIL; details+="--bucket-mb $mb: run failed; "; }
  done
  local verdict
  verdict=$(python3 - "$RES/overlap-dp1-100.json" "$RES/overlap-dp1-0.001.json" <<'PY'
import json, sys
try:
    a, b = ([s["loss"] for s in json.load(open(f))["steps"]] for f in sys.argv[1:3])
    print(("PASS" if a == b and len(a) == 20 else "FAIL") + f" 20 losses bit-identical: {a == b}")
except (OSError, KeyError, ValueError) as e:
    print(f"FAIL {e}")
PY
)
  [ "${verdict%% *}" = PASS ] || status=FAIL
  details+="${verdict#* }; "
  RUN_TEE=$RES/overlap-dp1-zero.txt RUN_LIMIT=30 run "$BIN/p3d-run" \
      --model tests/executor/models/tiny-gpt2-bytes.json --steps 1 --bucket-mb 0
  local rc=$?
  if [ $rc -eq 2 ] && grep -q -- "--bucket-mb" "$RES/overlap-dp1-zero.txt"; then
    details+="--bucket-mb 0 refused (exit 2)"
  else
    status=FAIL; details+="--bucket-mb 0: expected exit 2 naming the flag, got $rc"
  fi
  record overlap_dp1 $status "$details"
}

# Data-parallel overlap (issue 14): DP2 ZeRO 0-3 with gradient buckets of
# single units (--bucket-mb 1: every tiny-gpt2-bytes unit is wider than 1 MB),
# of several units (7: {head, layer 3, layer 2}, {layer 1, layer 0},
# {embedding}) and of the whole model (100, the default), grad-accum 2 (ZeRO-2/3
# reduce every micro-batch), 20 steps. Each against one GPU (tolerance as
# dp_equivalence, 2e-3 nats) and the three bucket sizes against each other:
# with 2 ranks every sum has two operands, so the losses must be bit-identical
# whatever the buckets (a difference means a bucket reduced the wrong range or
# too early). Timing the overlap belongs to the multi-GPU measurements.
section_dp_overlap() {
  if [ "$GPUS" -lt 2 ]; then record dp_overlap SKIP "needs 2 GPUs, found $GPUS"; return; fi
  local data status=PASS details=""
  data=$(corpus_tokens)
  local common=(--model tests/executor/models/tiny-gpt2-bytes.json --data "$data" "${EQ_RECIPE[@]}")
  local ref=$RES/dp-ref-ga4.json
  [ -f "$ref" ] || RUN_LIMIT=120 run "$BIN/p3d-run" "${common[@]}" --grad-accum 4 --json "$ref"
  for z in 0 1 2 3; do
    local names=()
    for mb in 1 7 100; do
      equivalence_run dp2-z$z-bucket$mb "$ref" --nproc 2 --dp 2 --zero $z "${common[@]}" \
          --grad-accum 2 --bucket-mb $mb --nccl-timeout-s 60 && names+=("$RES/dp2-z$z-bucket$mb.json")
    done
    local same
    same=$(python3 - "${names[@]}" <<'PY'
import json, sys
l = [[s["loss"] for s in json.load(open(f))["steps"]] for f in sys.argv[1:]]
print("PASS" if len(l) == 3 and l[0] == l[1] == l[2] else "FAIL")
PY
)
    [ "$same" = PASS ] || status=FAIL
    details+="z$z buckets 1/7/100 MB bit-identical: $same; "
  done
  record dp_overlap $status "$details"
}

# A rank that dies (exit) or hangs before step 3 must end every rank with an
# error naming it, in bounded time (spawner; comm watchdog / progress deadline).
# Output lines are stamped with seconds since the start; the record states the
# time from the fault to the first abort message and who sent it: the
# watchdog (hang: must be it, within --nccl-timeout-s 15 + the 10 s abort
# bound + 5 s slack) or the progress deadline (15 + 10 + 20 s: a defect).
section_dp_fault() {
  if [ "$GPUS" -lt 2 ]; then record dp_fault SKIP "needs 2 GPUs, found $GPUS"; return; fi
  local status=PASS details=""
  for kind in exit hang; do
    local t0=$SECONDS out=$RES/dp-fault-$kind.txt
    local cmd=("$BIN/p3d-run" --nproc 2 --dp 2 --model tests/executor/models/tiny-gpt2-bytes.json
               --micro-batch 4 --seq 128 --steps 10 --fault-inject 1:3:$kind --nccl-timeout-s 15)
    log "+ ${cmd[*]}"
    timeout 150 "${cmd[@]}" 2>&1 | python3 -u -c '
import sys, time
t0 = time.monotonic()
for line in iter(sys.stdin.readline, ""):
    sys.stdout.write(f"{time.monotonic() - t0:7.2f} {line}")' | tee "$out" >>"$LOG"
    local rc=${PIPESTATUS[0]} took=$((SECONDS - t0))
    # 124: the 150 s limit of `timeout` ran out, i.e. a hang.
    if [ $rc -eq 0 ] || [ $rc -eq 124 ]; then status=FAIL; fi
    # The phrase for the record; exit status 1 when a hang was not ended by
    # the watchdog within 30 s of the fault.
    local verdict
    verdict=$(python3 - "$out" "$kind" <<'PY'
import sys
path, kind = sys.argv[1], sys.argv[2]
fault = first = last = None
for line in open(path):
    t, _, text = line.strip().partition(" ")
    text = text.strip()
    if fault is None and "--fault-inject" in text:
        fault = float(t)
    if first is None and ("aborting NCCL:" in text or "progress deadline" in text):
        first = (float(t), "progress deadline" if "progress deadline" in text else "watchdog", text)
    if "p3d-run" in text:
        last = text
if fault is None:
    print("no --fault-inject message")
    sys.exit(1)
if first is None:
    print(f"no abort message; last: {(last or '')[:200]}")
    sys.exit(1 if kind == "hang" else 0)
delay = first[0] - fault
print(f"first abort message {delay:.1f} s after the fault, from the {first[1]}: {first[2][:200]}")
sys.exit(1 if kind == "hang" and (first[1] != "watchdog" or delay > 30) else 0)
PY
) || status=FAIL
    details+="$kind: exit $rc after ${took} s, $verdict; "
  done
  record dp_fault $status "$details"
}

# Weak scaling on the 1.3B shape (B = 4, S = 2048 per GPU): one GPU vs DP = 2
# and 4 (ZeRO 0, 1, 2), and saved DP plans run with their prediction beside them.
section_dp_scaling() {
  if [ "$GPUS" -lt 2 ]; then record dp_scaling SKIP "needs 2 GPUs, found $GPUS"; return; fi
  local common=(--model gpt-1.3b --micro-batch 4 --seq 2048 --steps 7 --warmup 2)
  local status=PASS gpu=h100-sxm
  nvidia-smi -L | grep -q H200 && gpu=h200
  run "$BIN/p3d-run" "${common[@]}" --json "$RES/scale-1gpu.json" || status=FAIL
  for dp in 2 4; do
    [ "$GPUS" -lt $dp ] && continue
    for z in 0 1 2; do
      run "$BIN/p3d-run" --nproc $dp --dp $dp --zero $z "${common[@]}" \
          --json "$RES/scale-dp$dp-z$z.json" || status=FAIL
    done
    run "$BIN/p3d-plan" --model gpt-1.3b --gpus $dp --gpu $gpu --dp $dp --tp 1 --pp 1 --zero 1 \
        --micro-batch 4 --global-batch $((4 * dp)) --seq 2048 --recompute none --offload none \
        --save-plan "$RES/plan-dp$dp.json" \
      && run "$BIN/p3d-run" --nproc $dp --plan "$RES/plan-dp$dp.json" --steps 7 --warmup 2 \
        --json "$RES/scale-plan-dp$dp.json"
  done
  local details
  details=$(python3 - "$RES" <<'PY'
import json, os, sys
d = sys.argv[1]
def load(f):
    p = os.path.join(d, f)
    return json.load(open(p)) if os.path.exists(p) else None
def tps(f):
    j = load(f)
    return j["summary"].get("tokens_per_s") if j else None
one = tps("scale-1gpu.json")
out = [f"1 GPU {one:.0f} tok/s" if one else "1 GPU failed"]
for dp in (2, 4):
    for z in (0, 1, 2):
        t = tps(f"scale-dp{dp}-z{z}.json")
        if t and one: out.append(f"DP{dp} ZeRO-{z} {t:.0f} tok/s = {t/one:.3f}x (eff {t/one/dp:.3f})")
    p, t = load(f"plan-dp{dp}.json"), tps(f"scale-plan-dp{dp}.json")
    if p and t:
        pr = p["prediction"]
        out.append(f"plan DP{dp} ZeRO-1: measured {t:.0f} tok/s vs predicted {pr['tokens_per_s']:.0f}"
                   f" (step {pr['time']['step_s']*1e3:.1f} ms predicted)")
print("; ".join(out))
PY
)
  record dp_scaling $status "$details"
}

# Tensor and pipeline parallel against one GPU on the same global batch (as
# dp_equivalence): TP2, PP2 1F1B, PP2 interleaved (vpp 2) and, with 4 GPUs,
# TP4, PP4, DP2xTP2, DP2xPP2, TP2xPP2; each without and with full recompute,
# tiny GPT-2 (tied embedding: the PP head copy) and tiny Llama (GQA) byte
# models, 20 steps, lr 3e-4, clipping on. Micro-batches per DP rank: 4 for
# pipelines (2 = pp and 4 for interleaved), 1 otherwise. Sequence parallel
# (--sp): TP2 on 2 GPUs, DP2xTP2 and TP2xPP2 with 4. Same tolerance as
# dp_equivalence: max |loss difference| <= 2e-3 nats. --sp with --tp 1 must be
# refused by rule (sp=>tp>1). Every multi-rank run has a 40 s limit and a 30 s
# NCCL watchdog; the section starts no run after TPP_BUDGET_S (default 140) s
# (noted as "not run (time budget)").
section_tp_pp_equivalence() {
  if [ "$GPUS" -lt 2 ]; then record tp_pp_equivalence SKIP "needs 2 GPUs, found $GPUS"; return; fi
  local data status=PASS details="" t0=$SECONDS
  data=$(corpus_tokens)
  # name dp tp pp vpp grad-accum (per DP rank) [sp: 1 = sequence parallel]
  local layouts=("tp2 1 2 1 1 1" "tp2-sp 1 2 1 1 1 1" "pp2 1 1 2 1 4" "pp2-vpp2 1 1 2 2 2"
                 "pp2-vpp2-m4 1 1 2 2 4")
  [ "$GPUS" -ge 4 ] && layouts+=("tp4 1 4 1 1 1" "pp4 1 1 4 1 4" "dp2xtp2 2 2 1 1 1"
                                  "dp2xtp2-sp 2 2 1 1 1 1" "dp2xpp2 2 1 2 1 4" "tp2xpp2 1 2 2 1 4"
                                  "tp2xpp2-sp 1 2 2 1 4 1")
  # TPP_LAYOUTS="name dp tp pp vpp ga [sp];..." and TPP_RECOMPUTE="none full" select a subset.
  if [ -n "${TPP_LAYOUTS:-}" ]; then IFS=';' read -r -a layouts <<<"$TPP_LAYOUTS"; fi
  # Order: without recompute first, layouts by priority, both models per layout,
  # so the time budget cuts the least important runs.
  for rc in ${TPP_RECOMPUTE:-none full}; do
    for spec in "${layouts[@]}"; do
      read -r lname dp tp pp vpp ga sp <<<"$spec"
      local sp_flag=()
      [ "${sp:-0}" = 1 ] && sp_flag=(--sp)
      [ $((dp * tp * pp)) -gt "$GPUS" ] && { details+="$lname: needs $((dp * tp * pp)) GPUs; "; continue; }
      for model in gpt2 llama; do
        local name=$model-$lname-$rc
        if [ $model = llama ] && [ $tp = 4 ]; then
          details+="$name: n/a (2 kv heads: rule kv_heads % tp); "; continue
        fi
        if [ $((SECONDS - t0)) -gt "${TPP_BUDGET_S:-140}" ]; then details+="$name: not run (time budget); "; continue; fi
        local common=(--model tests/executor/models/tiny-$model-bytes.json --data "$data"
                      --micro-batch 4 --seq 128 --steps 20 --warmup 1 --lr 3e-4 --weight-decay 0.1
                      --clip 1.0 --seed 7)
        local ref=$RES/tpp-ref-$model-ga$((dp * ga)).json
        [ -f "$ref" ] || RUN_LIMIT=60 run "$BIN/p3d-run" "${common[@]}" --grad-accum $((dp * ga)) \
            --json "$ref"
        if ! RUN_LIMIT=40 run "$BIN/p3d-run" --nproc $((dp * tp * pp)) --dp $dp --tp $tp --pp $pp \
            --vpp $vpp --zero 1 "${sp_flag[@]}" "${common[@]}" --grad-accum $ga --recompute $rc \
            --nccl-timeout-s 30 --json "$RES/tpp-$name.json"; then
          status=FAIL
          details+="$name: run failed ($(grep -hE 'p3d-run( rank [0-9]+)?: ' "$LOG" | tail -1)); "
          continue
        fi
        local verdict
        verdict=$(loss_verdict "$ref" "$RES/tpp-$name.json")
        [ "${verdict%% *}" = PASS ] || status=FAIL
        details+="$name: ${verdict#* }; "
      done
    done
  done
  # Sequence parallelism splits over TP: with --tp 1 p3d-run must refuse it by rule.
  RUN_TEE=$RES/tpp-sp-tp1.txt RUN_LIMIT=30 run "$BIN/p3d-run" --tp 1 --sp \
      --model tests/executor/models/tiny-gpt2-bytes.json --micro-batch 4 --seq 128 --steps 1
  local sp_rc=$?
  if [ $sp_rc -ne 0 ] && grep -q "rule sp=>tp>1" "$RES/tpp-sp-tp1.txt"; then
    details+="tp1-sp: refused (rule sp=>tp>1); "
  else
    status=FAIL; details+="tp1-sp: expected the 'rule sp=>tp>1' refusal, got exit $sp_rc; "
  fi
  details+="section took $((SECONDS - t0)) s"
  record tp_pp_equivalence $status "$details"
}

# The 1.3B shape on 2 GPUs: TP2 (B = 4, one micro-batch) and PP2 1F1B (B = 4,
# 8 micro-batches) from saved p3d-plan plans, measured tokens/s next to the
# plan's prediction (and one GPU for scale).
section_tp_pp_throughput() {
  if [ "$GPUS" -lt 2 ]; then record tp_pp_throughput SKIP "needs 2 GPUs, found $GPUS"; return; fi
  local status=PASS gpu=h100-sxm
  nvidia-smi -L | grep -q H200 && gpu=h200
  RUN_LIMIT=120 run "$BIN/p3d-run" --model gpt-1.3b --micro-batch 4 --seq 2048 --steps 6 --warmup 2 \
      --json "$RES/tpp-1gpu.json" || status=FAIL
  for spec in "tp2 2 1 4" "pp2 1 2 32"; do
    read -r lname tp pp gb <<<"$spec"
    if RUN_LIMIT=60 run "$BIN/p3d-plan" --model gpt-1.3b --gpus 2 --gpu $gpu --dp 1 --tp $tp \
        --pp $pp --vpp 1 --zero 1 --no-sp --micro-batch 4 --global-batch $gb --seq 2048 \
        --recompute none --offload none --save-plan "$RES/plan-$lname.json"; then
      RUN_LIMIT=150 run "$BIN/p3d-run" --nproc 2 --plan "$RES/plan-$lname.json" --steps 6 \
          --warmup 2 --nccl-timeout-s 60 --json "$RES/tpp-$lname.json" || status=FAIL
    else
      status=FAIL
    fi
  done
  local details
  details=$(python3 - "$RES" <<'PY'
import json, os, sys
d = sys.argv[1]
def load(f):
    p = os.path.join(d, f)
    return json.load(open(p)) if os.path.exists(p) else None
one = load("tpp-1gpu.json")
out = [f"1 GPU {one['summary']['tokens_per_s']:.0f} tok/s" if one else "1 GPU failed"]
for name in ("tp2", "pp2"):
    p, j = load(f"plan-{name}.json"), load(f"tpp-{name}.json")
    if not (p and j and "tokens_per_s" in j["summary"]):
        out.append(f"{name}: no result")
        continue
    t, pr = j["summary"]["tokens_per_s"], p["prediction"]
    out.append(f"{name.upper()}: measured {t:.0f} tok/s vs predicted {pr['tokens_per_s']:.0f} "
               f"({t / pr['tokens_per_s']:.2f}x), peak memory rank {j['summary'].get('peak_memory_rank')}")
print("; ".join(out))
PY
)
  record tp_pp_throughput $status "$details"
}

# Optimizer offload (executor/offload/host_optimizer.h): the GPU test against
# the GPU AdamW (prints how many bf16 weights ended 1 ulp apart), then the
# offloaded step's rates for 1e8..1e9 parameters (bench/results/offload-*.md).
section_offload_step() {
  local status=PASS details=""
  RUN_TEE=$RES/offload-test.txt RUN_LIMIT=120 run "$BIN/executor_offload_host_optimizer_gpu_test" \
    || status=FAIL
  details+="test: $(grep -E 'after [0-9]+ steps|PASSED|FAILED' "$RES/offload-test.txt" | tr '\n' ' '); "
  RUN_TEE=$RES/offload-bench.txt RUN_LIMIT=240 run "$BIN/offload_step_bench" --steps 2 1e8 3e8 1e9 \
    || status=FAIL
  details+="bench: $(grep -E '^\| 1.00e\+09 \| pipelined' "$RES/offload-bench.txt")"
  record offload_step $status "$details"
}

# --offload optimizer against the on-GPU AdamW on the same batches: tiny GPT-2,
# 20 steps, lr 3e-4, clipping on, ZeRO 0/1/2 at DP = 1 (the gradient buffer
# is the copy source) and DP = 2 where 2 GPUs exist (ZeRO-2: the reduced shard).
# Tolerance: max |loss difference| <= 2e-3 nats, the DP-equivalence bound at
# these settings (the offloaded step puts each weight within 1 bf16 ulp of the
# GPU's: section offload_step). Then checkpoint: 10 + 10 steps resumed ==
# 20 straight, bit for bit (master/m/v saved from the host).
section_offload_equivalence() {
  local data status=PASS details=""
  data=$(corpus_tokens)
  local common=(--model tests/executor/models/tiny-gpt2-bytes.json --data "$data" --micro-batch 4
                --seq 128 --steps 20 --warmup 1 --lr 3e-4 --weight-decay 0.1 --clip 1.0 --seed 7)
  local names=()
  RUN_LIMIT=120 run "$BIN/p3d-run" "${common[@]}" --grad-accum 2 --json "$RES/offload-ref.json"
  for z in 0 1 2; do
    RUN_LIMIT=120 run "$BIN/p3d-run" "${common[@]}" --grad-accum 2 --zero $z --offload optimizer \
        --json "$RES/offload-dp1-z$z.json" && names+=(offload-dp1-z$z) \
      || { status=FAIL; details+="dp1 z$z: run failed; "; }
  done
  # ZeRO-2 at DP = 1 without offload too: the gradient buffer is the shard there.
  RUN_LIMIT=120 run "$BIN/p3d-run" "${common[@]}" --grad-accum 2 --zero 2 \
      --json "$RES/gpu-dp1-z2.json" && names+=(gpu-dp1-z2) \
    || { status=FAIL; details+="gpu dp1 z2: run failed; "; }
  if [ "$GPUS" -ge 2 ]; then
    for z in 1 2; do
      RUN_LIMIT=120 run "$BIN/p3d-run" --nproc 2 --dp 2 --zero $z "${common[@]}" --offload optimizer \
          --nccl-timeout-s 60 --json "$RES/offload-dp2-z$z.json" && names+=(offload-dp2-z$z) \
        || { status=FAIL; details+="dp2 z$z: run failed; "; }
    done
  fi
  local ck=(--model tests/executor/models/tiny-llama-bytes.json --data "$data" --micro-batch 4
            --seq 128 --lr 1e-3 --seed 3 --warmup 1 --zero 1 --offload optimizer)
  run "$BIN/p3d-run" "${ck[@]}" --steps 20 --json "$RES/offload-ckpt-straight.json"
  run "$BIN/p3d-run" "${ck[@]}" --steps 10 --save "$RES/offload-ckpt.bin"
  run "$BIN/p3d-run" "${ck[@]}" --steps 10 --load "$RES/offload-ckpt.bin" \
      --json "$RES/offload-ckpt-resumed.json"
  rm -f "$RES/offload-ckpt.bin"
  local verdict
  verdict=$(python3 - "$RES" "${names[@]}" <<'PY'
import json, sys
d, names = sys.argv[1], sys.argv[2:]
loss = lambda f: [s["loss"] for s in json.load(open(f"{d}/{f}.json"))["steps"]]
ref, ok, out = loss("offload-ref"), True, []
for n in names:
    b = loss(n)
    diff = [abs(x - y) for x, y in zip(ref, b)]
    good = len(b) == len(ref) == 20 and max(diff) <= 2e-3
    ok &= good
    out.append(f"{n}: max|dloss| {max(diff):.2e} at step {diff.index(max(diff))}"
               f"{' bit-identical' if b == ref else ''} (last {b[-1]:.5f} vs {ref[-1]:.5f})")
try:
    a, r = loss("offload-ckpt-straight"), loss("offload-ckpt-resumed")
    same = r == a[10:]
    out.append(f"checkpoint 10+10 == 20 straight: {same}")
except (OSError, KeyError, ValueError) as e:
    same = False
    out.append(f"checkpoint: {e}")
print(("PASS" if ok and same and names else "FAIL") + " " + "; ".join(out))
PY
)
  [ "${verdict%% *}" = PASS ] || status=FAIL
  record offload_equivalence $status "$details${verdict#* }"
}

# A model that does not fit one card without offload (p3d-plan says so) trains
# with --offload optimizer: 5B (llama-style, 4.98e9 parameters, 18 B/param =
# 83 GiB of model state) on one 80 GB H100, ZeRO-1 at DP = 1, full recompute.
# (On a 141 GB H200 it fits without offload, and no model that does not fits
# the machine's 128 GiB of host memory: the run is then timing only.) Its
# loss must fall; step time and peak memory go next to the saved plan's
# prediction.
section_offload_large() {
  local gpu=h100-sxm status=PASS
  nvidia-smi -L | grep -q H200 && gpu=h200
  local plan=(--model 5B --gpus 1 --gpu $gpu --seq 2048 --global-batch 4)
  RUN_TEE=$RES/offload-large-none.txt run "$BIN/p3d-plan" "${plan[@]}" --offload none --top 1
  local rc_none=$?
  [ $rc_none -eq 3 ] || [ $gpu = h200 ] || status=FAIL
  run "$BIN/p3d-plan" "${plan[@]}" --offload optimizer --dp 1 --tp 1 --pp 1 --zero 1 \
      --micro-batch 1 --recompute full --save-plan "$RES/offload-large-plan.json" || status=FAIL
  local data
  data=$(corpus_tokens)
  RUN_LIMIT=360 run "$BIN/p3d-run" --plan "$RES/offload-large-plan.json" --data "$data" --steps 4 \
      --warmup 1 --json "$RES/offload-large-run.json" || status=FAIL
  RUN_TEE=$RES/offload-large-compare.txt run "$BIN/p3d-compare" "$RES/offload-large-plan.json" \
      "$RES/offload-large-run.json"
  local details
  details=$(python3 - "$RES" "$rc_none" <<'PY'
import json, os, sys
d, rc_none = sys.argv[1], sys.argv[2]
p = json.load(open(f"{d}/offload-large-plan.json"))["prediction"]
f = f"{d}/offload-large-run.json"
if not os.path.exists(f):
    print(f"FAIL p3d-plan --offload none exit {rc_none}; the offload run failed"); sys.exit()
j = json.load(open(f))
l = [s["loss"] for s in j["steps"]]
t, m = j["summary"].get("step_time_s", {}), j["memory"]
ok = l[-1] < l[0]
print(("PASS" if ok else "FAIL") + f" p3d-plan --offload none exit {rc_none} (3 = nothing fits); "
      f"loss {' '.join(f'{x:.3f}' for x in l)}; step {t.get('median', float('nan')):.2f} s "
      f"(predicted {p['time']['step_s']:.2f}); device peak {m['device_used_peak_bytes']/2**30:.2f} GiB "
      f"(predicted {p['memory']['total']/2**30:.2f}); host pinned {m['host_pinned_bytes']/2**30:.2f} GiB")
PY
)
  [ "${details%% *}" = PASS ] || status=FAIL
  record offload_large $status "${details#* }"
}

# Optimizer offload at DP = 2, each rank offloading only its ZeRO shard: the
# 2-GPU test (tests/executor_offload/dp_offload_test.cc: 10-step losses of
# DP2 ZeRO-1 and ZeRO-2 offload within 2e-3 nats of DP2 ZeRO-1 with the GPU
# AdamW, pinned host memory about half the model's 18 B/param per rank), then
# a saved DP2 ZeRO-1 offload plan of gpt-1.3b (B = 4, S = 2048 per GPU) run
# for 7 steps, timed, beside its prediction (p3d-compare). Test output and
# the comparison go to results.tar.gz (offload-dp-*.txt).
section_offload_dp() {
  if [ "$GPUS" -lt 2 ]; then record offload_dp SKIP "needs 2 GPUs, found $GPUS"; return; fi
  local gpu=h100-sxm status=PASS details=""
  nvidia-smi -L | grep -q H200 && gpu=h200
  RUN_TEE=$RES/offload-dp-test.txt RUN_LIMIT=200 run "$BIN/executor_offload_dp_offload_test" \
    || status=FAIL
  details+="test: $(grep -E 'max \|dloss\||PASSED|FAILED|SKIPPED' "$RES/offload-dp-test.txt" \
    | sort -u | tr '\n' ' '); "
  run "$BIN/p3d-plan" --model gpt-1.3b --gpus 2 --gpu $gpu --dp 2 --tp 1 --pp 1 --zero 1 \
      --micro-batch 4 --global-batch 8 --seq 2048 --recompute none --offload optimizer \
      --save-plan "$RES/offload-dp2-plan.json" || status=FAIL
  RUN_LIMIT=240 run "$BIN/p3d-run" --nproc 2 --plan "$RES/offload-dp2-plan.json" --steps 7 \
      --warmup 2 --nccl-timeout-s 120 --json "$RES/offload-dp2-run.json" || status=FAIL
  RUN_TEE=$RES/offload-dp-compare.txt run "$BIN/p3d-compare" "$RES/offload-dp2-plan.json" \
      "$RES/offload-dp2-run.json"
  details+=$(python3 - "$RES" <<'PY'
import json, os, sys
d = sys.argv[1]
f = f"{d}/offload-dp2-run.json"
if not os.path.exists(f) or not os.path.exists(f"{d}/offload-dp2-plan.json"):
    print("plan DP2 ZeRO-1 offload: no plan or run"); sys.exit()
p = json.load(open(f"{d}/offload-dp2-plan.json"))["prediction"]
j = json.load(open(f))
t, m = j["summary"].get("step_time_s", {}), j["memory"]
print(f"plan DP2 ZeRO-1 offload: step {t.get('median', float('nan')):.3f} s "
      f"(predicted {p['time']['step_s']:.3f}); device peak {m['device_used_peak_bytes']/2**30:.2f} GiB "
      f"(predicted {p['memory']['total']/2**30:.2f}); host pinned {m['host_pinned_bytes']/2**30:.2f} GiB "
      f"per rank")
PY
)
  record offload_dp $status "$details"
}

# The calibrate-predict-measure-compare suite (scripts/accuracy_suite.sh) on the
# binaries of the build section; its table, profile and runs land in $OUT/acc.
section_accuracy() {
  RUN_LIMIT=${ACC_LIMIT:-420} run env SKIP_BUILD=1 BUILD="$BUILD" OUT="$OUT/acc" \
      STEPS="${ACC_STEPS:-5}" WARMUP="${ACC_WARMUP:-2}" CAL_SECONDS="${CAL_SECONDS:-60}" \
      RUN_LIMIT="${ACC_RUN_LIMIT:-90}" scripts/accuracy_suite.sh
  local rc=$?
  local line
  line=$(grep -m1 '^\*\*Step time' "$OUT/acc/accuracy.md" 2>/dev/null | tr -d '*')
  [ $rc -eq 0 ] && [ -n "$line" ] && record accuracy PASS "$line" ||
    record accuracy FAIL "exit $rc ${line:-no table} (see $OUT/acc/suite.log)"
}

# FSDP2 as torchtitan runs it (bench/frameworks/fsdp2_train.py: fully_shard per
# block, SDPA, bf16 mixed precision, fp32 loss) on one GPU for three layouts,
# each eager and with every block under torch.compile (--compile), beside
# p3d-plan's prediction with the matching profile: pytorch-fsdp2 (eager) or
# torchtitan (compiled) (issue 15). Measured: median step and
# torch.cuda.max_memory_allocated/reserved (no CUDA context); predicted: step
# and peak total, and the total without runtime (CUDA context, NCCL,
# allocator reserve), the figure comparable to allocated. One rank: p3d plans
# it as ZeRO-0 (nothing is sharded), FSDP2's copies priced by the profile.
# Needs torch (>= 2.4) in python3; FSDP2_CONFIGS overrides the layouts,
# FSDP2_MODES the modes ("eager compile").
section_fsdp2() {
  if ! python3 -c "import torch" 2>/dev/null; then
    record fsdp2 SKIP "python3 has no torch"; return
  fi
  local gpu=h100-sxm status=PASS details=""
  nvidia-smi -L | grep -q H200 && gpu=h200
  cat >"$RES/fsdp2-llama-1b.json" <<'JSON'
{"model_type": "llama", "num_hidden_layers": 16, "hidden_size": 2048, "num_attention_heads": 32,
 "num_key_value_heads": 8, "intermediate_size": 8192, "vocab_size": 128256, "max_position_embeddings": 8192,
 "tie_word_embeddings": true}
JSON
  cat >"$RES/fsdp2-gpt-1.3b.json" <<'JSON'
{"model_type": "gpt2", "n_layer": 24, "n_embd": 2048, "n_head": 16, "n_inner": 8192, "vocab_size": 50257,
 "n_positions": 2048}
JSON
  # model:micro_batch:grad_accum:seq:activation checkpointing
  local configs=${FSDP2_CONFIGS:-"llama-1b:2:2:2048:none llama-1b:1:2:4096:selective gpt-1.3b:4:1:2048:full"}
  for cfg in $configs; do
    IFS=: read -r model mb ga seq ac <<<"$cfg"
    for mode in ${FSDP2_MODES:-eager compile}; do
      local tag="$model-mb$mb-ga$ga-s$seq-$ac-$mode" rc=none framework=pytorch-fsdp2 flag=""
      [ "$ac" != none ] && rc=$ac
      [ "$mode" = compile ] && framework=torchtitan flag=--compile
      if ! RUN_LIMIT=600 run python3 bench/frameworks/fsdp2_train.py --config "$RES/fsdp2-$model.json" \
          --micro-batch "$mb" --grad-accum "$ga" --seq "$seq" --ac "$ac" $flag --json "$RES/fsdp2-$tag.json" \
          --kernels "$RES/fsdp2-$tag-kernels.txt"; then
        status=FAIL; details+="$tag: run failed; "; continue
      fi
      log "+ p3d-plan ... --framework $framework ($tag) --json > fsdp2-$tag-plan.json"
      "$BIN/p3d-plan" --model "$RES/fsdp2-$model.json" --gpus 1 --gpu $gpu --framework $framework --dp 1 --tp 1 \
          --pp 1 --zero 0 --offload none --micro-batch "$mb" --global-batch $((mb * ga)) --seq "$seq" \
          --recompute "$rc" --top 1 --json >"$RES/fsdp2-$tag-plan.json" 2>>"$LOG" || status=FAIL  # exit 3: predicted not to fit
      details+="$(python3 - "$RES/fsdp2-$tag.json" "$RES/fsdp2-$tag-plan.json" "$tag" "$framework" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
p = json.load(open(sys.argv[2]))["plans"][0]
gib = 2 ** 30
step, pred = m["step_time_s"]["median"], p["time"]["step_s"]
mem = p["memory"]
print(f"{sys.argv[3]} ({sys.argv[4]}): step measured {step*1e3:.1f} ms, predicted {pred*1e3:.1f} ms "
      f"({(pred/step-1)*100:+.1f}%); memory measured allocated {m['max_memory_allocated_bytes']/gib:.2f} / reserved "
      f"{m['max_memory_reserved_bytes']/gib:.2f} GiB, predicted {(mem['total']-mem['runtime'])/gib:.2f} GiB without "
      f"runtime, {mem['total']/gib:.2f} GiB total ({'fits' if p['fits'] else 'NOT fits'}); ", end="")
PY
)"
    done
  done
  record fsdp2 $status "$details"
}

# Per-kernel time of one gpt-1.3b training step (B4, S2048, GA1: the MFU
# target's shape) under Nsight Compute, grouped by kernel
# (bench/executor/kernel_times.py): where the step's time goes beyond the
# PhaseTimer's four phases. ncu serialises launches; shares, not wall time.
section_kernel_profile() {
  local status=PASS
  command -v ncu >/dev/null || { record kernel_profile SKIP "ncu not installed"; return; }
  RUN_LIMIT=300 run ncu --clock-control none --metrics gpu__time_duration.sum --csv --log-file "$RES/ncu-1p3b.csv" \
      "$BIN/p3d-run" --model gpt-1.3b --micro-batch 4 --seq 2048 --steps 1 --warmup 0 ${PROFILE_ARGS:-} ||
      status=FAIL
  RUN_TEE=$RES/kernel-times-1p3b.txt run python3 bench/executor/kernel_times.py "$RES/ncu-1p3b.csv" --top 40 ||
    status=FAIL
  record kernel_profile $status "$(head -12 "$RES/kernel-times-1p3b.txt" 2>/dev/null | tr -s ' ' | tr '\n' ';')"
}

wanted=("$@")
[ ${#wanted[@]} -eq 0 ] && wanted=("${SECTIONS[@]}")
for s in "${wanted[@]}"; do
  log "===== section $s ($(date -u +%H:%M:%S)) ====="
  t0=$SECONDS
  "section_$s"
  log "===== end $s: $((SECONDS - t0)) s ====="
done
tar -czf "$OUT/results.tar.gz" -C "$(dirname "$RES")" results
echo "=== gpu_check summary ($(nvidia-smi -L 2>/dev/null | head -1)) ==="
cat "$SUMMARY"

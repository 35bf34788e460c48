#!/usr/bin/env bash
# accuracy_suite.sh: the predict-measure-compare loop on a GPU machine
# (docs/calibration.md). Builds p3d, calibrates the GPUs at hand, then for each
# plan of scripts/accuracy_plans.tsv: p3d-plan --profile ... --save-plan,
# p3d-run, p3d-compare; writes the table and the summary (mean and max
# absolute error of step time and of peak memory per GPU) with card, date,
# commit and command.
#
#   scripts/accuracy_suite.sh                 # every plan the GPUs allow
#   PLANS=my_plans.tsv STEPS=12 CAL_SECONDS=60 scripts/accuracy_suite.sh
#
# Output ($OUT, default ./accuracy-out): accuracy.md (commit it as
# bench/results/accuracy-<card>.md), accuracy.json, profile.json, suite.log,
# and runs.tar.gz (every saved plan, run JSON and comparison).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-$ROOT/accuracy-out}
BUILD=${BUILD:-$ROOT/build-gpu}
PLANS=${PLANS:-$ROOT/scripts/accuracy_plans.tsv}
STEPS=${STEPS:-10}
WARMUP=${WARMUP:-3}
BIN=$BUILD/bin
WORK=$(mktemp -d)/runs
mkdir -p "$OUT" "$WORK"
LOG=$OUT/suite.log
: >"$LOG"
export NCCL_NVLS_ENABLE=0  # never NVLink multicast on the shared hosts
COMMAND="$0 $*"

say() { echo "[suite $(date -u +%H:%M:%S)] $*" | tee -a "$LOG" >&2; }
run() { echo "+ $*" >>"$LOG"; timeout "${RUN_LIMIT:-300}" "$@" </dev/null >>"$LOG" 2>&1; }

# ---- build (the cmake lines of scripts/gpu_check.sh's build section) ----
if [ -z "${SKIP_BUILD:-}" ]; then
  say "build in $BUILD"
  nvcc_bin=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
  run cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DP3D_ENABLE_CUDA=ON \
      -DCMAKE_CUDA_COMPILER="$nvcc_bin" -DCMAKE_CUDA_ARCHITECTURES=90 -DP3D_BUILD_TESTS=OFF \
      -DP3D_BUILD_BENCH=OFF || { say "cmake configure failed (see $LOG)"; exit 2; }
  RUN_LIMIT=480 run cmake --build "$BUILD" -j "$(nproc)" --target p3d-plan p3d-compare p3d-run \
      p3d-calibrate || { say "build failed (see $LOG)"; exit 2; }
fi

GPUS=$(nvidia-smi -L 2>/dev/null | wc -l)
CARD=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
DRIVER=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -1)
# P3D_COMMIT: the commit the caller built (a copied tree's own .git may be stale).
if [ -n "${P3D_COMMIT:-}" ]; then COMMIT=$P3D_COMMIT
else
  COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
  [ -n "$(git status --porcelain 2>/dev/null)" ] && COMMIT="$COMMIT (+ uncommitted changes)"
fi
say "$GPUS x $CARD, driver $DRIVER, commit $COMMIT"
[ "$GPUS" -ge 1 ] || { say "no GPU"; exit 2; }

# ---- calibrate on every GPU, with the GEMM shapes of the suite's models ----
models=$(grep -v '^#' "$PLANS" | awk 'NF {print $2}' | sort -u | paste -sd, -)
micro=$(grep -v '^#' "$PLANS" | awk 'NF {print $9}' | sort -un | paste -sd, -)
seqs=$(grep -v '^#' "$PLANS" | awk 'NF {print $12}' | sort -un | paste -sd, -)
PROFILE=$OUT/profile.json
say "calibrate: models $models, micro-batches $micro, sequence lengths $seqs"
if ! RUN_LIMIT=240 run "$BIN/p3d-calibrate" --nproc "$GPUS" --models "$models" \
    --micro-batches "$micro" --seq "$seqs" --max-seconds "${CAL_SECONDS:-150}" --out "$PROFILE"; then
  say "calibration failed (see $LOG)"; exit 4
fi

has_plan_flag=0
"$BIN/p3d-run" --help 2>/dev/null | grep -q -- '--plan' && has_plan_flag=1
say "p3d-run --plan: $([ $has_plan_flag = 1 ] && echo available || echo 'not built yet: single-GPU flags')"

# ---- plans ----
: >"$WORK/status.tsv"
while read -r name model gpus dp tp pp vpp zero mb ga rc seq force sp offload; do
  [ -z "$name" ] || [ "${name:0:1}" = "#" ] && continue
  sp_flag=--no-sp
  [ "${sp:-0}" = 1 ] && sp_flag=--sp
  plan=$WORK/$name.plan.json run_json=$WORK/$name.run.json cmp=$WORK/$name.compare.json
  if [ "$gpus" -gt "$GPUS" ]; then
    echo -e "$name\tskipped: needs $gpus GPUs" >>"$WORK/status.tsv"; continue
  fi
  if [ "$gpus" -gt 1 ] && [ $has_plan_flag = 0 ]; then
    echo -e "$name\tskipped: multi-GPU p3d-run --plan not built yet" >>"$WORK/status.tsv"; continue
  fi
  say "$name: plan"
  run "$BIN/p3d-plan" --model "$model" --gpus "$gpus" --profile "$PROFILE" --dp "$dp" --tp "$tp" \
      --pp "$pp" --vpp "$vpp" --zero "$zero" --micro-batch "$mb" --global-batch $((mb * ga * dp)) \
      --seq "$seq" --recompute "$rc" "$sp_flag" --offload "${offload:-none}" --top 1 \
      --save-plan "$plan"
  if [ ! -s "$plan" ]; then
    echo -e "$name\tfailed: p3d-plan saved no plan" >>"$WORK/status.tsv"; continue
  fi
  say "$name: run"
  if [ $has_plan_flag = 1 ]; then
    args=(--plan "$plan")
    [ "$force" = 1 ] && args+=(--force)
    [ "$gpus" -gt 1 ] && args+=(--nproc "$gpus")
  else
    args=(--model "$model" --micro-batch "$mb" --grad-accum "$ga" --seq "$seq" --recompute "$rc")
  fi
  run "$BIN/p3d-run" "${args[@]}" --steps "$STEPS" --warmup "$WARMUP" --profile --json "$run_json"
  code=$?
  if [ $code -eq 0 ]; then
    run "$BIN/p3d-compare" "$plan" "$run_json" --json "$cmp" --svg "$WORK/$name.timeline.svg"
    echo -e "$name\tcompared" >>"$WORK/status.tsv"
  elif [ $code -eq 3 ]; then  # p3d-run: does not fit (refused or out of memory)
    run "$BIN/p3d-compare" "$plan" --run-failed --json "$cmp"
    echo -e "$name\tran out of memory (exit 3)" >>"$WORK/status.tsv"
  else
    echo -e "$name\tfailed: p3d-run exit $code (see suite.log)" >>"$WORK/status.tsv"
  fi
done <"$PLANS"

# ---- table and summary ----
python3 - "$WORK" "$OUT" "$CARD" "$GPUS" "$DRIVER" "$COMMIT" "$COMMAND" "$PROFILE" <<'PY'
import json, os, sys, datetime
work, out, card, gpus, driver, commit, command, profile = sys.argv[1:9]
status = dict(l.rstrip("\n").split("\t", 1) for l in open(f"{work}/status.tsv") if l.strip())
rows, step_err, mem_err, boundary = [], [], [], []
def fig(c, name):
    return next((f for f in c["figures"] if f["name"] == name), {})
for name, st in status.items():
    path = f"{work}/{name}.compare.json"
    if not os.path.exists(path):
        rows.append(f"| {name} | {st} | | | | | | | |"); continue
    c = json.load(open(path))
    s, m = fig(c, "time.step_s"), fig(c, "memory.total")
    ms = lambda v: "-" if v is None else f"{v*1e3:.1f}"
    gib = lambda v: "-" if v is None else f"{v/2**30:.2f}"
    pct = lambda e: "-" if e is None else f"{e*100:+.1f}%"
    if s.get("error") is not None: step_err.append(abs(s["error"]))
    if m.get("error") is not None: mem_err.append(abs(m["error"]))
    fit = c["fit"]; boundary.append(fit["boundary_right"])
    verdict = ("right" if fit["boundary_right"] else "WRONG") + (" (forced)" if fit["forced"] else "")
    rows.append(f"| {name} | {c['plan']} | {ms(s.get('predicted'))} | {ms(s.get('measured'))} | "
                f"{pct(s.get('error'))} | {gib(m.get('predicted'))} | {gib(m.get('measured'))} | "
                f"{pct(m.get('error'))} | {verdict} |")
def stats(v):
    return "no plan compared" if not v else f"mean {sum(v)/len(v)*100:.1f}%, max {max(v)*100:.1f}% over {len(v)} plans"
date = datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M UTC")
md = [f"# Accuracy suite: {gpus} x {card}", "",
      f"- Card: {gpus} x {card}, driver {driver}; date {date}; commit {commit}.",
      f"- Command: `{command}` (plans: scripts/accuracy_plans.tsv); profile measured in the same run "
      f"(`p3d-calibrate`, {os.path.basename(profile)}); every prediction is `p3d-plan --profile`.",
      f"- Error = predicted / measured - 1; peak memory = device used at peak + driver reserve (docs/calibration.md).",
      "", f"**Step time: {stats(step_err)}. Peak memory per GPU: {stats(mem_err)}. "
      f"Fit boundary right in {sum(boundary)} of {len(boundary)}.**", "",
      "| plan | layout | step ms predicted | step ms measured | error | peak GiB predicted | peak GiB measured | error | fit boundary |",
      "|---|---|---|---|---|---|---|---|---|"] + rows
open(f"{out}/accuracy.md", "w").write("\n".join(md) + "\n")
json.dump({"card": card, "gpus": int(gpus), "driver": driver, "commit": commit, "date": date,
           "command": command, "status": status,
           "step_time_abs_error": {"mean": sum(step_err)/len(step_err) if step_err else None,
                                   "max": max(step_err) if step_err else None},
           "peak_memory_abs_error": {"mean": sum(mem_err)/len(mem_err) if mem_err else None,
                                     "max": max(mem_err) if mem_err else None}},
          open(f"{out}/accuracy.json", "w"), indent=2)
print("\n".join(md))
PY
tar -czf "$OUT/runs.tar.gz" -C "$(dirname "$WORK")" runs

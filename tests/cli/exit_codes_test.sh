#!/usr/bin/env bash
# Exit codes and messages of the command-line tools as a user meets them
# (README "Exit codes"; issue 18): every malformed flag is 2, a missing or
# unreadable input file is 2, and no tool dies of a signal.
# Usage: exit_codes_test.sh BIN_DIR
set -u
BIN=$1
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fails=0
# expect CODE NEEDLE -- command...: exit status CODE and NEEDLE in its output.
expect() {
  local want=$1 needle=$2; shift 3
  local out; out=$("$@" 2>&1); local got=$?
  if [ "$got" != "$want" ] || ! grep -qF -- "$needle" <<<"$out"; then
    echo "FAIL: $* -> exit $got (want $want), output: $(head -c 300 <<<"$out")"; fails=$((fails + 1))
  else echo "ok:   $* -> $got"; fi
}
mkdir "$TMP/dir"
expect 2 "--no-such"        -- "$BIN/p3d-plan" --no-such-flag
expect 2 "--gpus"           -- "$BIN/p3d-plan" --model 7B --gpus eight --mem 80
expect 2 "--report"         -- "$BIN/p3d-plan" --model 7B --gpus 8 --mem 80 --report ''
expect 2 "without a config.json" -- "$BIN/p3d-plan" --model "$TMP/dir/" --gpus 8 --mem 80
expect 2 "not a regular"    -- "$BIN/p3d-plan" --model /dev/zero --gpus 8 --mem 80
expect 3 "no plan fits"     -- "$BIN/p3d-plan" --model 13B --gpus 8 --gpu rtx3090 --offload none
expect 0 "zero_optimization" -- "$BIN/p3d-plan" --model 7B --gpus 8 --mem 80 --zero 1 --vpp 1 --export deepspeed
"$BIN/p3d-plan" --model 7B --gpus 8 --mem 80 --zero 1 --vpp 1 --export deepspeed 2>/dev/null >"$TMP/ds.json"
python3 -c "import json,sys; json.load(open(sys.argv[1]))" "$TMP/ds.json" || { echo "FAIL: --export stdout is not JSON"; fails=$((fails + 1)); }
expect 2 "--no-such"        -- "$BIN/p3d-compare" plan.json --no-such-flag
expect 2 "plan file"        -- "$BIN/p3d-compare" "$TMP/nope.json" "$TMP/nope2.json"
expect 2 "is a directory"   -- "$BIN/p3d-compare" "$TMP/dir" --run-failed
if [ -x "$BIN/p3d-run" ]; then
  expect 2 "--no-such"      -- "$BIN/p3d-run" --no-such-flag
  expect 2 "input"          -- "$BIN/p3d-tokenize" "$TMP/dir" "$TMP/out.u16"
  expect 2 "--no-such"      -- "$BIN/p3d-calibrate" --no-such-flag
  expect 2 "plan file"      -- "$BIN/p3d-run" --plan "$TMP/nope.json"   # was exit 4
  expect 2 "is a directory" -- "$BIN/p3d-run" --plan "$TMP/dir"
  expect 2 "--recompute"    -- "$BIN/p3d-run" --model gpt2-small --recompute sometimes
  if ! nvidia-smi -L >/dev/null 2>&1; then
    expect 4 "no usable NVIDIA GPU" -- "$BIN/p3d-run" --model gpt2-small --steps 1
  fi
fi
[ "$fails" = 0 ] && echo "all exit codes as documented" || { echo "$fails failed"; exit 1; }

#!/usr/bin/env bash
# A run killed again and again trains as a run never stopped. Training (tiny model, CPU, 12 steps,
# a checkpoint every 2 and a validation every 4) is killed with SIGKILL at chosen moments - after a
# step, in the middle of a checkpoint save, in the middle of a validation, halfway through a
# metrics.jsonl line (MDS_CRASH_AT: src/core/crash_point.h; only whether a background checkpoint write
# had finished when the run died can vary, and the checks follow it) - and stopped once
# with SIGTERM (a checkpoint, then exit 0); each time it is resumed with --resume. At the end the
# weights, EMA, optimizer state, best/ and metrics.jsonl (less its clock readings) equal those of the
# uninterrupted run, and no unfinished checkpoint is left behind.
#   tests/kill_resume_e2e.sh PROGRAM SOURCE_DIR
set -euo pipefail
source "$(dirname "$0")/e2e_lib.sh"
prepare_train_valid
common=(--config "$src/configs/tiny-cpu.toml" --set data.train=prep --set data.valid=prepv --set data.tokenizer=tok
        --set train.steps=12 --set train.log_every=1 --set train.save_every=2 --set train.eval_every=4
        --set train.eval_batches=2 --set train.keep_last=20 --set data.batch_tokens=1024)

quiet "$bin" train "${common[@]}" --set train.out_dir=ref

# run CRASH_AT [--resume]: a training of the interrupted run that must die of SIGKILL at CRASH_AT.
killed() {
  local at=$1; shift
  set +e
  MDS_CRASH_AT=$at "$bin" train "${common[@]}" --set train.out_dir=cut "$@" > "cut-$at.log" 2>&1
  local rc=$?
  set -e
  check "killed at $at (status $rc), latest checkpoint then: $(ls cut/checkpoints | grep -v tmp | sort -t_ -k2 -n | tail -1)" \
    "[ $rc = 137 ]"
}
latest_step() { ls cut/checkpoints | grep -v tmp | sed 's/^step_//' | sort -n | tail -1; }
killed train.step:5                    # after step 5: step 2 saved, step 4 too unless its background write was cut
# The next run dies in its first save: step 6 when it resumes from step 4; from step 2, best/ (step 4
# validates, and its first validation always improves, before its checkpoint is written).
if [ "$(latest_step)" = 4 ]; then cut_save=checkpoints/step_6; else cut_save=best; fi
killed checkpoint.write:1 --resume
check "the save cut short left $cut_save.tmp-*" "ls -d cut/$cut_save.tmp-* >/dev/null 2>&1"
unfinished=$(ls -d cut/$cut_save.tmp-* | head -1)
set +e
"$bin" generate --checkpoint "$unfinished" --input valid.jsonl --output out.jsonl > gen.log 2>&1
set -e
check "generate on it says: $(grep -o 'is an unfinished checkpoint[^;]*' gen.log)" "grep -q 'is an unfinished checkpoint' gen.log"
killed train.validation:1 --resume     # dies in its first validation
check "the next run removed the unfinished checkpoint" "! ls -d cut/checkpoints/*.tmp-* >/dev/null 2>&1"
killed metrics.write:3 --resume        # dies halfway through its third record
set +e
MDS_CRASH_AT=train.step:2:TERM "$bin" train "${common[@]}" --set train.out_dir=cut --resume > term.log 2>&1
rc=$?
set -e
check "SIGTERM: a checkpoint and status 0 (status $rc; $(grep -o 'training interrupted by SIGTERM at step [0-9]*' term.log))" \
  "[ $rc = 0 ] && grep -q 'interrupted by SIGTERM' term.log"
quiet "$bin" train "${common[@]}" --set train.out_dir=cut --resume

same() {
  if "$bin" model compare "$1" "$2" > compare.log 2>&1; then echo "ok: $1 = $2 bit for bit"
  else echo "FAIL: $1 and $2 differ:"; cat compare.log; failures=$((failures + 1)); fi
}
same ref/checkpoints/step_12 cut/checkpoints/step_12
same ref/best cut/best
clockless() { sed -E 's/"(elapsed_s|train_s|tokens_per_s|real_tokens_per_s)":[^,}]*,?//g' "$1"; }
if diff <(clockless ref/metrics.jsonl) <(clockless cut/metrics.jsonl) > metrics.diff; then
  echo "ok: metrics.jsonl the same ($(wc -l < cut/metrics.jsonl) records)"
else
  echo "FAIL: metrics.jsonl differs:"; head -20 metrics.diff; failures=$((failures + 1))
fi
check "no unfinished checkpoint left" "! ls -d cut/checkpoints/*.tmp-* cut/best.tmp-* >/dev/null 2>&1"
finish

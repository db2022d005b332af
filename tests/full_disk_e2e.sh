#!/usr/bin/env bash
# A save that runs out of space (a file-size limit: ulimit -f, SIGXFSZ ignored, so writes fail with
# EFBIG as on a full disk) fails the run with an error naming the file, leaves no partial checkpoint,
# keeps the previous one whole, and the run then resumes from it to the result of a run never stopped.
#   tests/full_disk_e2e.sh PROGRAM SOURCE_DIR
set -euo pipefail
source "$(dirname "$0")/e2e_lib.sh"
prepare_fixture
common=(--config "$src/configs/tiny-cpu.toml" --set data.train=prep --set data.tokenizer=tok --set train.log_every=1
        --set train.save_every=2 --set train.eval_every=0 --set data.batch_tokens=1024 --set train.steps=6)

quiet "$bin" train "${common[@]}" --set train.out_dir=ref
quiet "$bin" train "${common[@]}" --set train.out_dir=run --stop-after 2
# 2 MiB a file: less than one weights file of the tiny model (3.2 MB).
set +e
(trap '' XFSZ; ulimit -f 2048; exec "$bin" train "${common[@]}" --set train.out_dir=run --resume) > full.log 2>&1
rc=$?
set -e
check "the run fails (status $rc) naming the file: $(grep -o 'error: .*' full.log | head -1)" \
  "[ $rc != 0 ] && grep -q 'checkpoints/step_4.*File too large' full.log"
check "no partial checkpoint left" "! ls -d run/checkpoints/*.tmp-* >/dev/null 2>&1 && [ ! -e run/checkpoints/step_4 ]"
# Resuming reads step_2 whole: every file against the size and checksum saved with it.
quiet "$bin" train "${common[@]}" --set train.out_dir=run --resume
check "resumed from step_2" "grep -q 'resumed from run/checkpoints/step_2 at step 2' run.log"
if "$bin" model compare ref/checkpoints/step_6 run/checkpoints/step_6 > compare.log 2>&1; then
  echo "ok: resumed after the failed save, the same weights as a run never stopped"
else
  echo "FAIL: the resumed run differs:"; cat compare.log; failures=$((failures + 1))
fi
finish

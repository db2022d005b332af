#!/usr/bin/env bash
# Data-parallel GPU training through c10d NCCL, with the one GPU a machine may have: a group of one
# process (moe-diffuseq launch -n 1 -- train, dist.backend = "nccl") trains as the same run without a
# group (dist.seed_per_batch: the same randomness), within the tolerance of GPU kernels that do not
# promise bit-equal sums; and NCCL on a CPU run is refused naming dist.backend. Skips (77) without a GPU
# or without NCCL in the build.
#   tests/data_parallel_gpu_e2e.sh PROGRAM SOURCE_DIR
set -euo pipefail
source "$(dirname "$0")/e2e_lib.sh"
info=$("$bin" info)
grep -q "data-parallel backends: .*nccl" <<< "$info" || { echo "skipped: this build has no NCCL"; exit 77; }
grep -qE "GPUs visible: [1-9]" <<< "$info" || { echo "skipped: no GPU"; exit 77; }
prepare_fixture
common=(--config "$src/configs/tiny-cpu.toml" --set data.train=prep --set data.tokenizer=tok --set train.log_every=2
        --set train.eval_every=0 --set train.save_every=0 --set data.batch_tokens=1024 --set diffusion.t_sampler=uniform
        --set train.device=cuda --set train.precision=fp32 --set train.steps=6 --set dist.timeout_s=120)
quiet "$bin" train "${common[@]}" --set train.out_dir=alone --set dist.seed_per_batch=true
quiet "$bin" launch -n 1 -- train "${common[@]}" --set train.out_dir=group --set dist.backend=nccl
grep -h "data-parallel" run.log | head -3
grep -q "c10d nccl" run.log || { echo "FAIL: the run does not say it uses NCCL"; failures=$((failures + 1)); }
if "$bin" model compare alone/checkpoints/step_6 group/checkpoints/step_6 --tolerance 1e-4 > compare.log 2>&1; then
  echo "ok: one NCCL rank = no group at step 6: $(grep -o 'largest difference [^ ]*' compare.log | sort -k3 -g | tail -1)"
else
  echo "FAIL: the NCCL run differs:"; cat compare.log; failures=$((failures + 1))
fi
set +e
WORLD_SIZE=1 RANK=0 MASTER_PORT=$(( 20000 + RANDOM % 20000 )) "$bin" train "${common[@]}" --set train.out_dir=cpu \
  --set train.device=cpu --set dist.backend=nccl > cpu.log 2>&1
rc=$?
set -e
if [ "$rc" = 0 ] || ! grep -q 'dist.backend = "nccl" needs GPU training' cpu.log; then
  echo "FAIL: NCCL on the CPU: status $rc"; tail -5 cpu.log; failures=$((failures + 1))
else
  echo "ok: $(grep -o 'dist.backend = "nccl" needs GPU training[^:]*' cpu.log)"
fi
finish

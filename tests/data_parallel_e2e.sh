#!/usr/bin/env bash
# Data-parallel training on the CPU, several processes over c10d Gloo on loopback (the way a user runs
# it: moe-diffuseq launch -n N -- train ...), against one process:
#   1. N = 2 processes train bit for bit as one process with train.grad_accum = 2 (dist.seed_per_batch:
#      the same randomness per micro-batch; a sum of two is the same in either order), N = 4 within
#      float tolerance (Gloo's ring sums four gradients in another order) - weights, EMA, optimizer;
#   2. a run saved by 2 processes resumes on 1 (grad_accum 2), one saved by 1 (grad_accum 4) on 4
#      processes (the global batch kept): the same weights as the runs never stopped;
#   3. a rank that dies stops the others with an error naming the failed operation, within
#      dist.timeout_s (no hang); the launcher says which rank failed and exits non-zero.
#   tests/data_parallel_e2e.sh PROGRAM SOURCE_DIR
set -euo pipefail
source "$(dirname "$0")/e2e_lib.sh"
# A LibTorch without Gloo headers (the pip one of CUDA builds) trains data-parallel on GPUs only.
grep -q "data-parallel backends: .*gloo" <<< "$("$bin" info)" || { echo "skipped: this build has no Gloo"; exit 77; }
prepare_fixture
common=(--config "$src/configs/tiny-cpu.toml" --set data.train=prep --set data.tokenizer=tok --set train.log_every=2
        --set train.eval_every=0 --set train.save_every=0 --set data.batch_tokens=1024 --set diffusion.t_sampler=uniform
        --set dist.timeout_s=60)
# same DIR_A DIR_B STEP [TOLERANCE]: the weights, EMA and optimizer state of the two checkpoints
# (bit for bit without a tolerance).
same() {
  if "$bin" model compare "$1/checkpoints/step_$3" "$2/checkpoints/step_$3" --tolerance "${4:-0}" > compare.log 2>&1; then
    echo "ok: $1 = $2 at step $3 (within ${4:-0}): $(grep -o 'largest difference [^ ]*' compare.log | sort -k3 -g | tail -1)"
  else
    echo "FAIL: $1 and $2 differ at step $3:"; cat compare.log; failures=$((failures + 1))
  fi
}
train_one() { quiet "$bin" train "${common[@]}" "$@"; }
launch() { local n=$1; shift; quiet "$bin" launch -n "$n" -- train "${common[@]}" "$@"; }

# 1. equality with one process
train_one --set train.out_dir=one2 --set train.steps=6 --set train.grad_accum=2 --set dist.seed_per_batch=true
launch 2 --set train.out_dir=two --set train.steps=6
same one2 two 6
# Many small buckets (about 40 of 0.08 MiB), started while the backward pass runs: the same.
launch 2 --set train.out_dir=buckets --set train.steps=6 --set dist.bucket_mb=0.08
same one2 buckets 6
train_one --set train.out_dir=one4 --set train.steps=4 --set train.grad_accum=4 --set dist.seed_per_batch=true
launch 4 --set train.out_dir=four --set train.steps=4
same one4 four 4 1e-5
grep -q '"world_size": 4' four/checkpoints/step_4/trainer_state.json || { echo "FAIL: no world_size in trainer_state.json"; failures=$((failures + 1)); }
[ "$(wc -l < two/metrics.jsonl)" = 3 ] || { echo "FAIL: two/metrics.jsonl has $(wc -l < two/metrics.jsonl) records, not 3 (rank 0 alone writes)"; failures=$((failures + 1)); }

# 2. resume at another world size: 2 processes for 3 steps, then 1 process (grad_accum 2) to 6
launch 2 --set train.out_dir=switch --set train.steps=6 --stop-after 3
[ -d switch/checkpoints/step_3 ] || { echo "FAIL: no checkpoint at step 3"; failures=$((failures + 1)); }
train_one --set train.out_dir=switch --set train.steps=6 --set train.grad_accum=2 --set dist.seed_per_batch=true --resume
same one2 switch 6
# and 1 process (grad_accum 4) for 2 steps, then 4 processes to 4
train_one --set train.out_dir=grow --set train.steps=4 --set train.grad_accum=4 --set dist.seed_per_batch=true --stop-after 2
launch 4 --set train.out_dir=grow --set train.steps=4 --resume
same one4 grow 4 1e-5

# 3. a rank that dies: rank 1 killed, rank 0 (started by hand, as on two hosts) fails with a clear error
# A free port: the one the launcher picks (and `info` leaves unused).
port=$("$bin" launch -n 1 -- info 2>&1 | grep -oE "127\.0\.0\.1:[0-9]+" | head -1 | cut -d: -f2)
export WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=$port
RANK=0 "$bin" train "${common[@]}" --set train.out_dir=dies --set train.steps=100000 --set dist.timeout_s=20 > rank0.log 2>&1 &
rank0=$!
RANK=1 "$bin" train "${common[@]}" --set train.out_dir=dies --set train.steps=100000 --set dist.timeout_s=20 > rank1.log 2>&1 &
rank1=$!
for _ in $(seq 300); do grep -q "step 2" rank0.log 2>/dev/null && break; sleep 0.1; done
kill -9 "$rank1"
wait "$rank1" 2>/dev/null || true
set +e
timeout 60 tail --pid="$rank0" -f /dev/null
wait "$rank0"
rc=$?
set -e
unset WORLD_SIZE MASTER_ADDR MASTER_PORT
if [ "$rc" = 0 ] || [ "$rc" = 124 ] || ! grep -q "data-parallel .* failed on rank 0" rank0.log; then
  echo "FAIL: rank 0 after rank 1 died: status $rc"; tail -5 rank0.log; failures=$((failures + 1))
else
  echo "ok: rank 0 stopped with: $(grep -o 'data-parallel .* failed on rank 0[^:]*' rank0.log | head -1)"
fi
# The launcher, one of whose processes fails (a bad key on rank... every rank: the first failure counts).
set +e
"$bin" launch -n 2 -- train "${common[@]}" --set train.out_dir=bad --set train.steps=2 --set data.train=nowhere > launch.log 2>&1
rc=$?
set -e
if [ "$rc" = 0 ] || ! grep -qE "launch: rank [01] exited with status" launch.log; then
  echo "FAIL: launch with failing processes: status $rc"; tail -5 launch.log; failures=$((failures + 1))
else
  echo "ok: $(grep -oE 'launch: rank [01] exited with status [0-9]+' launch.log | head -1)"
fi
finish

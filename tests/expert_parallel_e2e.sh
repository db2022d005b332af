#!/usr/bin/env bash
# Expert parallelism on the CPU (dist.expert_parallel: each process holds moe.experts / N experts of
# every MoE layer; tokens exchanged with c10d all-to-all over Gloo on loopback), against one process
# holding all of them with train.grad_accum = N:
#   1. 2 processes train as one (weights, EMA, optimizer within float tolerance: the experts' gradients
#      sum the two processes' tokens in one product where one process adds two micro-batches), with a
#      validation (loss and generated samples) that every process runs and rank 0 alone writes; best/
#      the same;
#   2. checkpoints hold every expert: one saved by 2 processes resumes in 1, one saved by 1 on 2;
#   3. experts that 3 processes cannot share, or a capacity, are refused naming the key.
#   tests/expert_parallel_e2e.sh PROGRAM SOURCE_DIR
set -euo pipefail
source "$(dirname "$0")/e2e_lib.sh"
grep -q "data-parallel backends: .*gloo" <<< "$("$bin" info)" || { echo "skipped: this build has no Gloo"; exit 77; }
prepare_train_valid
# tiny-cpu.toml: 4 experts, top 2, in every layer.
common=(--config "$src/configs/tiny-cpu.toml" --set data.train=prep --set data.tokenizer=tok --set data.valid=prepv
        --set train.log_every=2 --set train.eval_every=3 --set train.eval_samples=4 --set train.eval_batches=2
        --set train.save_every=0 --set data.batch_tokens=1024 --set diffusion.t_sampler=uniform --set dist.timeout_s=60
        --set train.steps=6)
one=(--set train.grad_accum=2 --set dist.seed_per_batch=true)
tol=1e-5
same() {
  if "$bin" model compare "$1" "$2" --tolerance $tol > compare.log 2>&1; then
    echo "ok: $1 = $2 (within $tol): $(grep -o 'largest difference [^ ]*' compare.log | sort -k3 -g | tail -1)"
  else
    echo "FAIL: $1 and $2 differ:"; tail -20 compare.log; failures=$((failures + 1))
  fi
}
train_one() { quiet "$bin" train "${common[@]}" "${one[@]}" "$@"; }
launch_ep() { quiet "$bin" launch -n 2 -- train "${common[@]}" --set dist.expert_parallel=true "$@"; }

# 1. two processes, two experts each, against one process with all four
train_one --set train.out_dir=one
launch_ep --set train.out_dir=ep
check "the processes said how the experts are spread" "grep -q 'expert parallelism: 2 experts of every MoE layer on each of the 2 processes' run.log"
same one/checkpoints/step_6 ep/checkpoints/step_6
same one/best ep/best
check "rank 0 wrote the generated samples of steps 3 and 6" "[ -s ep/samples/step_3.jsonl ] && [ -s ep/samples/step_6.jsonl ]"
check "metrics.jsonl has one record a log or a validation ($(wc -l < ep/metrics.jsonl) lines)" "[ \"\$(wc -l < ep/metrics.jsonl)\" = 5 ]"
check "the validation scored the same as one process's" \
  "diff <(grep -o '\"valid_loss\": *[0-9.e+-]*' one/metrics.jsonl | cut -c1-22) <(grep -o '\"valid_loss\": *[0-9.e+-]*' ep/metrics.jsonl | cut -c1-22)"

# 2. resume across layouts: 2 processes for 3 steps, then 1; 1 process for 3 steps, then 2
launch_ep --set train.out_dir=shrink --stop-after 3
train_one --set train.out_dir=shrink --resume
same one/checkpoints/step_6 shrink/checkpoints/step_6
train_one --set train.out_dir=grow --stop-after 3
launch_ep --set train.out_dir=grow --resume
same one/checkpoints/step_6 grow/checkpoints/step_6

# 3. what cannot be sharded
set +e
"$bin" launch -n 3 -- train "${common[@]}" --set dist.expert_parallel=true --set train.out_dir=three > three.log 2>&1
rc3=$?
"$bin" launch -n 2 -- train "${common[@]}" --set dist.expert_parallel=true --set moe.capacity_factor=1.25 \
  --set train.out_dir=capacity > capacity.log 2>&1
rc_cap=$?
set -e
check "3 processes for 4 experts: $(grep -o 'dist.expert_parallel: moe.experts = 4 cannot[^"]*processes' three.log | head -1)" \
  "[ $rc3 != 0 ] && grep -q 'moe.experts = 4 cannot be shared evenly by 3 processes' three.log"
check "a capacity: $(grep -o 'set moe.capacity_factor = 0' capacity.log | head -1)" \
  "[ $rc_cap != 0 ] && grep -q 'set moe.capacity_factor = 0' capacity.log"
finish

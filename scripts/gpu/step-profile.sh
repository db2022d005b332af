#!/usr/bin/env bash
# Runs ON THE GPU MACHINE: the step-overhead issue's measurements in one call. Builds
# (scripts/gpu/build.sh, the CUDA tests of CTEST_ARGS, default "Cuda|Gpu"), then
#  - profiles the training step (train_step_bench --profile: where a step's time goes, per phase, as
#    issued by the host and with a device synchronisation after each phase) for the issue's models;
#  - the default MoE model at L = 8192 and 32768 (synthetic), and on SumPubMed's own batches beside
#    synthetic ones of the same shape, when .data/sumpubmed and its tokenizer .data/sumpubmed-tok
#    are carried (scripts/gpu/carry-data sumpubmed; moe-diffuseq tokenizer train, see bench/README.md);
#  - sampling (sampling_bench: with and without CUDA graphs, in one process);
# and returns everything in one archive, $OUT/step-profile.tar.gz, with the program (gpu-bin.tar.gz,
# for later calls: unpack into .gpu-bin and carry it). STEP_PROFILE_ONLY picks parts (default
# "profile real sampling"; "reference": the two models with the dense-attention kernels that the fused
# one replaced; "residual": the two models and sampling with model.bf16_residual = false; "cast": sampling
# with sample.cast_cache = false).
#
# Here, first: scripts/gpu/fetch-deps (.deps/root); device call with carry [".deps/root", ".data"] and
#   scripts/gpu/step-profile.sh
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
out=${OUT:-/tmp/mds-gpu-out}
mkdir -p "$out"
work=/tmp/step-profile
rm -rf "$work"
mkdir -p "$work"
start=$(date +%s)
# Only what this script runs: the program, the two benchmarks, the test programs with CUDA tests.
targets="moe-diffuseq train_step_bench sampling_bench sliding_attention_test moe_test cuda_graph_test train_gpu_test
  optim_gpu_test precision_test batch_tensors_test safetensors_test"
MDS_TARGETS=${MDS_TARGETS:-$(echo $targets)} CTEST_ARGS=${CTEST_ARGS:--R Cuda|Gpu} OUT="$work" scripts/gpu/build.sh \
  > "$work/build-and-test.txt" 2>&1
echo "build + CUDA tests: rc $? after $(( $(date +%s) - start )) s"
grep -E "tests passed|tests failed|Failed|FAILED" "$work/build-and-test.txt" | head -20
tar -C build-gpu -czf "$out/gpu-bin.tar.gz" moe-diffuseq libmds_sentencepiece.so 2>/dev/null
# The measurements end by STEP_PROFILE_SECONDS (default 560) after the start, so that the archive is
# written inside the device's 10 minutes: each run gets what is left, at most its own limit.
deadline=$(( start + ${STEP_PROFILE_SECONDS:-560} ))
left() { local l=$(( deadline - $(date +%s) )); [ "$l" -gt "$1" ] && l=$1; [ "$l" -lt 1 ] && l=1; echo "$l"; }

bench=build-gpu/train_step_bench
# The JSONs record the commit and the GPU (as bench.sh has them do).
MDS_BENCH_COMMIT=$(cat COMMIT 2>/dev/null || git rev-parse --short HEAD 2>/dev/null || echo unknown)
MDS_BENCH_GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
export MDS_BENCH_COMMIT MDS_BENCH_GPU
common=(--profile --longest off --warmup 3 --steps 10 --max-seconds 20 --tokens-per-step 16384 --vocab 4000)
# name | flags: the QQP race's model (configs/paraphrase.toml), DiffuSeq's size (12x768 dense), the default MoE.
run() {
  local name=$1; shift
  echo "== $name"
  timeout "$(left 150)" "$bench" "${common[@]}" --json "$work/train_step_$name.json" "$@" > "$work/$name.txt" 2>&1
  echo "rc $?"
  sed -n '/where a step/,$p' "$work/$name.txt"
}
# sampling_bench once: the stem of its files under $work, the heading, then its extra arguments.
sampling() {
  local stem=$1 heading=$2; shift 2
  echo "== $heading"
  timeout "$(left 200)" build-gpu/sampling_bench --device cuda --runs 5 --warmup 1 "$@" --json "$work/$stem.json" \
    > "$work/$stem.txt" 2>&1
  echo "rc $?"
  cat "$work/$stem.txt"
}
parts=${STEP_PROFILE_ONLY:-profile real sampling}
has() { [[ " $parts " == *" $1 "* ]]; }
{
  if has profile; then
  run paraphrase-6x512 --dim 512 --layers 6 --heads 8 --ffn-dim 2048 --experts 1 --trg-len 64 --lengths 130 \
    --set attention.type=dense --set model.embed_dim=128 --set model.x0=softmax --set model.target_positions=restart \
    --set data.target_length=predict --set model.dropout=0.3 --set train.ema_decay=0.999
  run dense-12x768 --dim 768 --layers 12 --heads 12 --ffn-dim 3072 --experts 1 --lengths 128 --set attention.type=dense
  fi
  if has reference; then
  # The same two models with the kernels the fused dense attention replaced, in the same call.
  run paraphrase-6x512-reference --dense-attention reference --dim 512 --layers 6 --heads 8 --ffn-dim 2048 --experts 1 \
    --trg-len 64 --lengths 130 --set attention.type=dense --set model.embed_dim=128 --set model.x0=softmax \
    --set model.target_positions=restart --set data.target_length=predict --set model.dropout=0.3 --set train.ema_decay=0.999
  run dense-12x768-reference --dense-attention reference --dim 768 --layers 12 --heads 12 --ffn-dim 3072 --experts 1 \
    --lengths 128 --set attention.type=dense
  fi
  if has profile; then
  run default-moe --lengths 128,8192,32768
  fi
  if has residual; then
  # The residual stream and the norms in float32, as autocast has them (model.bf16_residual = false).
  run dense-12x768-fp32-residual --dim 768 --layers 12 --heads 12 --ffn-dim 3072 --experts 1 --lengths 128 \
    --set attention.type=dense --set model.bf16_residual=false
  run default-moe-fp32-residual --lengths 8192 --set model.bf16_residual=false
  fi
  if has real && [ -d .data/sumpubmed ] && [ -d .data/sumpubmed-tok ]; then
    # SumPubMed as the issue measured it: max_src_len 7680 + max_trg_len 512, 16,384 tokens a step.
    run sumpubmed-real --data .data/sumpubmed/train.jsonl.zst --tokenizer .data/sumpubmed-tok \
      --set data.max_src_len=7680 --set data.max_trg_len=512 --set data.batch_tokens=16384
  fi
  if has sampling; then sampling sampling "sampling"; fi
  # Every model call casting the weights again, as before core/cast_cache.h (sample.cast_cache = false).
  if has cast; then sampling sampling-no-cast-cache "sampling, sample.cast_cache = false" --set sample.cast_cache=false; fi
  if has residual; then
    sampling sampling-fp32-residual "sampling, model.bf16_residual = false" --set model.bf16_residual=false
  fi
} 2>&1 | tee "$work/profile.txt"
cp "$work/profile.txt" "$out/profile.txt"
tar -C "$work" -czf "$out/step-profile.tar.gz" .
echo "step-profile.sh: $(( $(date +%s) - start )) s in all"

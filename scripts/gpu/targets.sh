#!/usr/bin/env bash
# Runs ON THE GPU MACHINE: the step-overhead issue's targets alone, in a short call (no tests, no
# profile): builds the two benchmarks, then times the DiffuSeq-sized 12x768 dense model at L = 128,
# the default MoE model at L = 8192 and 32768, and sampling. Everything comes back in $OUT/targets.txt
# and $OUT/targets.tar.gz (the JSONs).
#   device call, carry [".deps/root"]:  scripts/gpu/targets.sh
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
out=${OUT:-/tmp/mds-gpu-out}
work=/tmp/targets
rm -rf "$work" && mkdir -p "$out" "$work"
start=$(date +%s)
MDS_TARGETS="train_step_bench sampling_bench" CTEST_ARGS="-R NoTestHasThisName" OUT="$work" scripts/gpu/build.sh \
  > "$work/build.txt" 2>&1
echo "build: rc $? after $(( $(date +%s) - start )) s" | tee "$out/targets.txt"
MDS_BENCH_COMMIT=$(cat COMMIT 2>/dev/null || git rev-parse --short HEAD 2>/dev/null || echo unknown)
MDS_BENCH_GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
export MDS_BENCH_COMMIT MDS_BENCH_GPU
b=build-gpu
common=(--longest off --warmup 3 --steps 10 --max-seconds 20 --tokens-per-step 16384 --vocab 4000)
{
  echo "== $MDS_BENCH_GPU, commit $MDS_BENCH_COMMIT"
  echo "== dense-12x768"
  timeout 60 $b/train_step_bench "${common[@]}" --dim 768 --layers 12 --heads 12 --ffn-dim 3072 --experts 1 \
    --lengths 128 --set attention.type=dense --json "$work/train_step_dense-12x768.json" | grep -E "^ +128 |target"
  echo "== default-moe"
  timeout 90 $b/train_step_bench "${common[@]}" --lengths 8192,32768 --json "$work/train_step_default-moe.json" \
    | grep -E "^ +(8192|32768) "
  echo "== sampling"
  timeout 120 $b/sampling_bench --device cuda --runs 3 --warmup 1 --json "$work/sampling.json" | sed -n '/^case/,/^request/p'
} 2>&1 | tee -a "$out/targets.txt"
tar -C "$work" -czf "$out/targets.tar.gz" $(cd "$work" && ls *.json build.txt 2>/dev/null)
echo "targets.sh: $(( $(date +%s) - start )) s in all" | tee -a "$out/targets.txt"

#!/usr/bin/env bash
# Runs ON THE GPU MACHINE, in one call: builds the program, the two benchmarks and the CUDA tests
# that cover the forward pass in bf16, runs those tests, times model.bf16_residual on and off in the
# same call (train_step_bench: the DiffuSeq-sized 12x768 model at L = 128, and with RESIDUAL_MOE=1 the
# default MoE at L = 8192; sampling_bench), then the quality races of PLAN with that program.
#   device call, carry [".deps/root", ".data"]:  scripts/gpu/residual-and-races.sh PLAN
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
out=${OUT:-/tmp/mds-gpu-out}
mkdir -p "$out"
plan=${1:?usage: scripts/gpu/residual-and-races.sh PLAN}
start=$(date +%s)
MDS_TARGETS="moe-diffuseq train_step_bench sampling_bench train_gpu_test precision_test moe_test" \
  CTEST_ARGS="-R Cuda|Gpu" OUT=/tmp/residual-build scripts/gpu/build.sh > /tmp/build-and-tests.txt 2>&1
echo "build + CUDA tests: rc $? after $(( $(date +%s) - start )) s" | tee "$out/residual.txt"
# The device returns at most 8 files: the test summary goes into residual.txt.
grep -E "tests passed|tests failed|Failed|FAILED|Passed|SKIPPED|error" /tmp/build-and-tests.txt | head -60 >> "$out/residual.txt"
export MDS_BENCH_COMMIT=$(cat COMMIT 2>/dev/null || echo unknown)
b=build-gpu
{
  for r in true false; do
    echo "== model.bf16_residual = $r"
    timeout 40 $b/train_step_bench --longest off --warmup 3 --steps 10 --max-seconds 10 --tokens-per-step 16384 \
      --vocab 4000 --dim 768 --layers 12 --heads 12 --ffn-dim 3072 --experts 1 --lengths 128 --set attention.type=dense \
      --set model.bf16_residual=$r --json /tmp/ts-12x768-$r.json | grep -E "^ +128 "
    [ "${RESIDUAL_MOE:-0}" = 1 ] && timeout 40 $b/train_step_bench --longest off --warmup 3 --steps 10 --max-seconds 10 \
      --tokens-per-step 16384 --vocab 4000 --lengths 8192 --set model.bf16_residual=$r --json /tmp/ts-moe-$r.json \
      | grep -E "^ +8192 "
    timeout 60 $b/sampling_bench --device cuda --runs 2 --warmup 1 --set model.bf16_residual=$r \
      --json /tmp/sampling-$r.json | sed -n '/^case/,/^request/p'
  done
} 2>&1 | tee -a "$out/residual.txt"
echo "benchmarks done after $(( $(date +%s) - start )) s"
tar -C /tmp -czf "$out/residual-json.tar.gz" $(cd /tmp && ls ts-*.json sampling-*.json 2>/dev/null)
MDS_BIN=$PWD/$b/moe-diffuseq scripts/gpu/quality.sh "$plan" 2>&1 | tail -3
echo "residual-and-races.sh: $(( $(date +%s) - start )) s in all"

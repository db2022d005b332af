#!/usr/bin/env bash
# Runs ON THE GPU MACHINE: where CUDA graphs stop paying in generation, to choose the default of
# sample.cuda_graphs_max_len. sampling_bench times each case with graphs and as issued in one process;
# its summary case (batch 1 unless said) runs here at source lengths from 1,024 to 32,768 tokens with the
# default MoE model, and once as configs/summarization.toml generates (its 6x512 dense model, batches of
# 8 rows of 4,096 + 512 tokens). Tables in $OUT/graph-lengths.txt, the JSONs in $OUT/graph-lengths.tar.gz.
#   device call, carry [".deps/root"]:  scripts/gpu/graph-lengths.sh
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
out=${OUT:-/tmp/mds-gpu-out}
work=/tmp/graph-lengths
rm -rf "$work" && mkdir -p "$out" "$work"
start=$(date +%s)
MDS_TARGETS="sampling_bench" CTEST_ARGS="-R NoTestHasThisName" OUT="$work" scripts/gpu/build.sh > "$work/build.txt" 2>&1
echo "build: rc $? after $(( $(date +%s) - start )) s" | tee "$out/graph-lengths.txt"
MDS_BENCH_COMMIT=$(cat COMMIT 2>/dev/null || git rev-parse --short HEAD 2>/dev/null || echo unknown)
MDS_BENCH_GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
export MDS_BENCH_COMMIT MDS_BENCH_GPU
b=build-gpu/sampling_bench
common=(--device cuda --runs 3 --warmup 1 --short-batch 1 --short-src 30 --short-trg 32)
{
  echo "== $MDS_BENCH_GPU, commit $MDS_BENCH_COMMIT"
  for src in 1024 2048 4096 8192 16384 32768; do
    echo "== default MoE, summary of a $src-token source"
    timeout 90 $b "${common[@]}" --long-src "$src" --long-trg 256 --json "$work/moe_$src.json" | grep -E "^summary "
  done
  echo "== summarization.toml's model: 6x512 dense, 8 rows of 4096 + 512"
  timeout 90 $b "${common[@]}" --dim 512 --layers 6 --heads 8 --ffn-dim 2048 --experts 1 --window 128 --long-batch 8 \
    --long-src 4096 --long-trg 512 --json "$work/summarization.json" | grep -E "^summary "
} 2>&1 | tee -a "$out/graph-lengths.txt"
tar -C "$work" -czf "$out/graph-lengths.tar.gz" $(cd "$work" && ls *.json build.txt 2>/dev/null)
echo "graph-lengths.sh: $(( $(date +%s) - start )) s in all" | tee -a "$out/graph-lengths.txt"

#!/usr/bin/env bash
# Runs ON THE GPU MACHINE: quality races (bench/quality/run), several at once on the one GPU; each
# race's quality_*.json and the table of all, $OUT/quality.txt, come back on their own, the rest
# (logs, predictions, metrics; no checkpoints) in one archive, $OUT/quality.tar.gz (the device returns
# at most 8 files: up to 5 races a plan, or 6 when the build's program is not returned).
#
# Here, first:  scripts/gpu/fetch-deps; scripts/gpu/carry-data qqp sumpubmed ...   (.deps/root, .data/)
# Then call the device tool with carry [".deps/root", ".data"] and the command
#   scripts/gpu/quality.sh PLAN
# PLAN is a file with one race a line: DATA MINUTES LABEL [bench/quality/run arguments...], e.g.
#   qqp 5.5 recipe --set model.layers=6 --extra-gen "mbr4=--mbr 4"
# Races of one plan run concurrently (each with train.threads = QUALITY_THREADS, default 2), so their
# GPU time is shared: compare them with each other, and time a headline number alone.
# MDS_BIN=path/to/moe-diffuseq skips the build (a binary from an earlier call, carried in .gpu-bin).
# GPU_TESTS=1 also runs the CUDA tests after the build (CTEST_ARGS as in build.sh).
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
out=${OUT:-/tmp/mds-gpu-out}
mkdir -p "$out"
plan=${1:?usage: scripts/gpu/quality.sh PLAN}
[ -f "$plan" ] || { echo "quality.sh: no plan file $plan" >&2; exit 2; }
deps=$PWD/.deps/root
export LD_LIBRARY_PATH="$deps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export MDS_DATA_DIR=${MDS_DATA_DIR:-$PWD/.data}

start=$(date +%s)
bin=${MDS_BIN:-}
if [ -z "$bin" ]; then
  if [ "${GPU_TESTS:-0}" = 1 ]; then
    CTEST_ARGS=${CTEST_ARGS:--R Cuda|Gpu} scripts/gpu/build.sh || echo "quality.sh: some GPU tests failed (see $out/ctest.log)"
  else
    MDS_TARGETS="moe-diffuseq" CTEST_ARGS="-R NoTestHasThisName" scripts/gpu/build.sh >/dev/null 2>&1 || true
  fi
  bin=$PWD/build-gpu/moe-diffuseq
  [ -x "$bin" ] || { echo "quality.sh: the build failed (see $out/build.log)"; tail -40 "$out/build.log"; exit 1; }
  # The program and its SentencePiece module, for later calls (carry them as .gpu-bin).
  tar -C build-gpu -czf "$out/gpu-bin.tar.gz" moe-diffuseq libmds_sentencepiece.so
fi
echo "quality.sh: program ready after $(( $(date +%s) - start )) s: $bin"
[ -f COMMIT ] || git rev-parse --short HEAD > COMMIT 2>/dev/null || true

work=/tmp/quality-races
rm -rf "$work"
mkdir -p "$work"
pids=()
labels=()
jsons=()
while read -r data minutes label rest; do
  case "$data" in ''|'#'*) continue ;; esac
  eval "args=($rest)"  # the plan's quoting holds: --extra-gen "mbr4=--mbr 4"
  OUT="" bench/quality/run --bin "$bin" --data "$data" --minutes "$minutes" --label "$label" --device cuda \
    --out "$work/$data-$label" --json "$work/quality_${data}_${label}.json" \
    --set train.threads="${QUALITY_THREADS:-2}" "${args[@]}" > "$work/$data-$label.log" 2>&1 &
  pids+=($!)
  labels+=("$data-$label")
  jsons+=("$work/quality_${data}_${label}.json")
done < "$plan"
failed=0
for i in "${!pids[@]}"; do
  # Each result comes back as soon as its race ends: a call cut short by its time limit keeps them.
  if wait "${pids[$i]}"; then echo "== ${labels[$i]}: done"; cp "${jsons[$i]}" "$out/" 2>/dev/null; else echo "== ${labels[$i]}: FAILED"; failed=1; tail -20 "$work/${labels[$i]}.log"; fi
done
# One table of every race: the model's row and the baselines', from each race's eval table.
for label in "${labels[@]}"; do
  echo "== $label"
  grep -E "^quality race:" "$work/$label/race.log" 2>/dev/null || true
  sed -n '/^system/,/^$/p' "$work/$label/scores.txt" 2>/dev/null
done | tee "$out/quality.txt"
# The results on their own (they must come back even when the archive is over the device's 16 MiB),
# then the logs, tables, predictions and metrics of every race (no checkpoints, no prepared data).
cp "$work"/quality_*.json "$out/" 2>/dev/null || true
# The held-out samples of every validation are left out: they repeat the sources (hotpotqa's came to
# 19 MiB and took the archive over the device's limit).
(cd "$work" && find . -type f \( -name '*.log' -o -name '*.txt' -o -name '*.json' -o -name '*.jsonl' \) -size -4M \
   -not -path '*/samples/*' -not -name holdout.jsonl -print0 \
  | tar --null -T - -czf "$out/quality.tar.gz")
echo "quality.sh: $(( $(date +%s) - start )) s in all"
exit "$failed"

#!/usr/bin/env bash
# Runs ON THE GPU MACHINE after scripts/gpu/build.sh built build-gpu: the benchmarks of bench/README.md,
# each writing $OUT/<name>.json, their tables together in $OUT/bench.txt, and the machine (GPU name,
# driver, LibTorch, commit) in $OUT/machine.json and in every JSON (as "run_machine").
#
# With the device tool: carry [".deps/root"] and the command
#   scripts/gpu/build.sh; scripts/gpu/bench.sh        (or bench.sh alone on a machine that still has build-gpu)
# Expected 2-4 minutes on an H100 (not measured yet); each program also has a hard time limit below so that the whole stays
# under ~6 minutes. BENCH_ONLY="train_step sampling" runs a subset.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
out=${OUT:-/tmp/mds-gpu-out}
mkdir -p "$out"

deps=$PWD/.deps/root
export LD_LIBRARY_PATH="$deps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
python=${PYTHON:-/opt/torch/.venv/bin/python3}
[ -x "$python" ] || python=python3
build=${BENCH_BUILD:-build-gpu}  # another build directory: for trying the script elsewhere
[ -f "$build/CMakeCache.txt" ] || { echo "bench.sh: $build is not configured: run scripts/gpu/build.sh first" >&2; exit 1; }

# Bring the programs up to date (a no-op right after build.sh).
benches="sliding_attention_bench train_step_bench sampling_bench moe_layer_bench"
# shellcheck disable=SC2086
cmake --build "$build" -j "$(nproc)" --target $benches 2>&1 | tail -3

# The device's copy of the tree may carry a stale .git: a COMMIT file written here (git rev-parse HEAD >
# COMMIT before the call) wins.
commit=$(cat COMMIT 2>/dev/null || git rev-parse HEAD 2>/dev/null || echo unknown)
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
export MDS_BENCH_COMMIT="$commit" MDS_BENCH_GPU="$gpu"
"$python" - "$out/machine.json" <<'EOF' || echo "bench.sh: no machine.json ($python failed)"
import json, os, subprocess, sys, time
def run(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
    except Exception as e:  # noqa: BLE001
        return f"unavailable: {e}"
m = {"gpu": run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version,clocks.max.sm,power.limit",
                 "--format=csv,noheader"]),
     "commit": os.environ.get("MDS_BENCH_COMMIT", "unknown"),
     "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
     "nproc": os.cpu_count()}
try:
    import torch
    m["torch"] = torch.__version__
    m["cuda"] = torch.version.cuda
    m["cudnn"] = torch.backends.cudnn.version()
except Exception as e:  # noqa: BLE001
    m["torch"] = f"unavailable: {e}"
json.dump(m, open(sys.argv[1], "w"), indent=2)
EOF

txt=$out/bench.txt
{ echo "== machine"; cat "$out/machine.json" 2>/dev/null; echo; } | tee "$txt"

failed=0
# run NAME SECONDS PROGRAM ARGS...: the program's output goes to the terminal and bench.txt.
run() {
  local name=$1 limit=$2 prog=$3
  shift 3
  if [ ! -x "$build/$prog" ]; then
    echo "== $name: $build/$prog is not built; skipped" | tee -a "$txt"
    return
  fi
  echo "== $name: $prog $* --json $out/$name.json" | tee -a "$txt"
  local start rc
  start=$(date +%s)
  timeout -k 10 "$limit" "$build/$prog" "$@" --json "$out/$name.json" 2>&1 | tee -a "$txt"
  rc=${PIPESTATUS[0]}
  echo "== $name: exit $rc after $(( $(date +%s) - start )) s$([ "$rc" = 124 ] && echo " (time limit $limit s)")" | tee -a "$txt"
  echo | tee -a "$txt"
  [ "$rc" = 0 ] || failed=1
}
want() { [ -z "${BENCH_ONLY:-}" ] || [[ " $BENCH_ONLY " == *" $1 "* ]]; }

# Iteration counts: attention 3 warm-up + 2 x 20 calls per (L, variant); training 3 warm-up + 10 steps
# per L (at most 20 s of timed steps each) and one step per L of the batch-1 search; sampling 1 warm-up
# + 5 runs per case.
want sliding_attention && run sliding_attention 100 sliding_attention_bench --device cuda \
  --lengths 16384,32768,65536 --warmup 3 --iters 20
want train_step && run train_step 200 train_step_bench --device cuda \
  --lengths 512,2048,8192,16384,32768 --tokens-per-step 32768 --warmup 3 --steps 10 --max-seconds 20 \
  --longest on --longest-start 32768
want sampling && run sampling 60 sampling_bench --device cuda --runs 5 --warmup 1
want moe && run moe 60 moe_layer_bench --device cuda

# The machine into every result ("run_machine"), for the programs that do not record it themselves.
"$python" - "$out" <<'EOF' || true
import glob, json, os, sys
out = sys.argv[1]
try:
    machine = json.load(open(os.path.join(out, "machine.json")))
except Exception:  # noqa: BLE001
    sys.exit(0)
for path in glob.glob(os.path.join(out, "*.json")):
    if os.path.basename(path) == "machine.json":
        continue
    try:
        d = json.load(open(path))
    except Exception:  # noqa: BLE001
        continue
    if isinstance(d, dict):
        d["run_machine"] = machine
        json.dump(d, open(path, "w"), indent=2)
EOF

results=""
for f in "$out"/*.json; do [ -f "$f" ] && results="$results $(basename "$f")"; done
echo "results in $out:$results" | tee -a "$txt"
grep -hE "^targets:" "$txt" || true
exit "$failed"

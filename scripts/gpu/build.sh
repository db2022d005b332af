#!/usr/bin/env bash
# Runs ON THE GPU MACHINE: configures and builds the whole project against the LibTorch of the
# machine's PyTorch (CUDA), runs every test (GPU tests included), and writes logs to $OUT.
#
# Here, first:  scripts/gpu/fetch-deps          (unpacks the Debian packages into .deps/root)
# Then call the device tool with carry [".deps/root"] and the command:  scripts/gpu/build.sh
# MDS_TARGETS="a b" builds only those targets; CTEST_ARGS="-R Foo" narrows the tests.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-/tmp/mds-gpu-out}
mkdir -p "$out"

deps=$PWD/.deps/root
[ -d "$deps/usr/include" ] || { echo "build.sh: .deps/root is missing: run scripts/gpu/fetch-deps here and carry it" >&2; exit 1; }
python=${PYTHON:-/opt/torch/.venv/bin/python3}
[ -x "$python" ] || python=python3
torch_prefix=$("$python" -c 'import torch; print(torch.utils.cmake_prefix_path)')
export LD_LIBRARY_PATH="$deps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# NCCL headers and library ship inside the venv (nvidia-nccl); later issues link them.
nccl_root=$("$python" -c 'import nvidia.nccl, os; print(os.path.dirname(nvidia.nccl.__file__ if nvidia.nccl.__file__ else list(nvidia.nccl.__path__)[0]))' 2>/dev/null || true)

{
  echo "== machine"; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  echo "g++: $(g++ --version | head -1)"; echo "nvcc: $(nvcc --version | tail -1)"; echo "cmake: $(cmake --version | head -1)"
  "$python" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "cxx11abi", torch._C._GLIBCXX_USE_CXX11_ABI)'
} 2>&1 | tee "$out/machine.txt"

build=build-gpu
start=$(date +%s)
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DMDS_CUDA=ON \
  -DCMAKE_PREFIX_PATH="$torch_prefix;$deps/usr" -DMDS_NCCL_ROOT="$nccl_root" 2>&1 | tee "$out/configure.log" | tail -5
# -k 0: one broken program does not stop the others from building and being tested.
cmake --build "$build" -j "$(nproc)" ${MDS_TARGETS:+--target $MDS_TARGETS} -- -k 0 2>&1 | tee "$out/build.log" \
  | grep -E "error|warning: unused|FAILED" | head -40 || true
[ -f "$build/libmds_model.a" ] || [ -f "$build/libmds_model.so" ] || { echo "build.sh: build failed (see build.log)"; tail -60 "$out/build.log"; exit 1; }
echo "build: $(( $(date +%s) - start )) s"

[ -x "$build/moe-diffuseq" ] && "$build/moe-diffuseq" info | tee "$out/info.txt"
set +e
ctest --test-dir "$build" --output-on-failure -j 4 --timeout 600 ${CTEST_ARGS:-} 2>&1 | tee "$out/ctest.log" | tail -25
rc=${PIPESTATUS[0]}
set -e
# Which GPU tests ran and which skipped, from the gtest output.
grep -hE "SKIPPED|Skipped" "$out/ctest.log" | head -20 || true
exit "$rc"

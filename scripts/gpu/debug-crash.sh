#!/usr/bin/env bash
# Runs ON THE GPU MACHINE after build.sh: a backtrace of one crashing test (cuda-gdb debugs host code).
# Usage: scripts/gpu/debug-crash.sh TEST_BINARY GTEST_FILTER
set -uo pipefail
cd "$(dirname "$0")/../.."
export LD_LIBRARY_PATH="$PWD/.deps/root/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
bin=build-gpu/$1
ldd "$bin" | grep -E "stdc|gtest|torch_cpu|zstd|libz" || true
cuda-gdb -batch -ex run -ex bt -ex "info sharedlibrary" --args "$bin" --gtest_filter="$2" 2>&1 | grep -vE "^\[New Thread|^\[Thread" | head -80

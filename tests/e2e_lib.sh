# What the end-to-end test scripts (tests/*_e2e.sh) share; sourced, after `set -euo pipefail`, with the
# script's arguments PROGRAM SOURCE_DIR:
#   bin, src     the program and the source tree, as absolute paths
#   a scratch directory, removed at exit (with any background job), as the working directory
#   quiet CMD..  runs CMD with its output in run.log, shown (its end) only when it fails
#   check WHAT CONDITION   prints "ok: WHAT" or "FAIL: WHAT" and counts failures
#   finish       exits 1 when a check failed
#   prepare_fixture [FILE]  a 400-piece tokenizer (tok/) and the prepared pairs (prep/) of FILE
#                (default: the 240 Debian descriptions of tests/fixtures)
#   prepare_train_valid     the first 200 of them as train.jsonl (prepared: tok/, prep/), the last 40
#                as valid.jsonl (prepared: prepv/)
bin=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
src=$(cd "$2" && pwd)
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
cd "$work"
fixture=$src/tests/fixtures/debian-descriptions-240.jsonl
failures=0

# A command that fails shows its output (set -e would otherwise end the test without a word).
quiet() { "$@" > run.log 2>&1 || { local rc=$?; echo "FAIL ($rc): $*"; tail -n 30 run.log; return "$rc"; }; }
check() { if eval "$2"; then echo "ok: $1"; else echo "FAIL: $1"; failures=$((failures + 1)); fi; }
finish() { [ "$failures" = 0 ] || { echo "$failures check(s) failed"; exit 1; }; }
prepare_fixture() {
  quiet "$bin" tokenizer train --input "${1:-$fixture}" --vocab-size 400 --out tok
  quiet "$bin" data prepare --input "${1:-$fixture}" --tokenizer tok --out prep
}
prepare_train_valid() {
  head -n 200 "$fixture" > train.jsonl
  tail -n 40 "$fixture" > valid.jsonl
  prepare_fixture train.jsonl
  quiet "$bin" data prepare --input valid.jsonl --tokenizer tok --out prepv
}

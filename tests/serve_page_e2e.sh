#!/usr/bin/env bash
# The pages of `moe-diffuseq serve` in headless Chromium (web/e2e/serve_page.mjs), against a tiny model
# trained here for a few steps on the test fixture: the streamed steps and the final text on /, the
# curves on /run. Screenshots land in ARTEFACTS. Exits 77 (CTest: skipped) without node, chromium or
# web/node_modules (scripts/install-deps --web installs them; scripts/test does).
#   tests/serve_page_e2e.sh PROGRAM SOURCE_DIR ARTEFACTS
set -euo pipefail
bin=$1 src=$2 artefacts=$3
chromium=${CHROMIUM:-/usr/bin/chromium}
for need in node "$chromium"; do command -v "$need" >/dev/null || { echo "skipped: no $need"; exit 77; }; done
[ -d "$src/web/node_modules/playwright-core" ] || { echo "skipped: no $src/web/node_modules (scripts/install-deps --web)"; exit 77; }
mkdir -p "$artefacts"
work=$(mktemp -d)
server=""
cleanup() { [ -z "$server" ] || kill "$server" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

"$bin" tokenizer train --input "$src/tests/fixtures/debian-descriptions-240.jsonl" --vocab-size 400 --out "$work/tok" >/dev/null 2>&1
"$bin" data prepare --input "$src/tests/fixtures/debian-descriptions-240.jsonl" --tokenizer "$work/tok" --out "$work/prepared" >/dev/null 2>&1
"$bin" train --config "$src/configs/tiny-cpu.toml" --set data.train="$work/prepared" --set data.tokenizer="$work/tok" \
  --set train.out_dir="$work/run" --set train.steps=40 --set train.log_every=5 --set train.eval_every=0 \
  --set train.save_every=0 --set data.batch_tokens=1024 > "$work/train.log" 2>&1 || { cat "$work/train.log"; exit 1; }

"$bin" serve --checkpoint "$work/run/checkpoints/step_40" --run "$work/run" --web-dir "$src/web" --port 0 > "$work/serve.log" 2>&1 &
server=$!
# The port the server picked, from its first line (bounded: 60 s).
url=""
for _ in $(seq 600); do
  url=$(grep -oE "on http://127\.0\.0\.1:[0-9]+" "$work/serve.log" | head -1 | sed 's/^on //') || true
  [ -n "$url" ] && break
  kill -0 "$server" 2>/dev/null || { cat "$work/serve.log"; exit 1; }
  sleep 0.1
done
[ -n "$url" ] || { echo "the server did not start:"; cat "$work/serve.log"; exit 1; }
node "$src/web/e2e/serve_page.mjs" "$url" "$artefacts" || { echo "--- server log"; tail -20 "$work/serve.log"; exit 1; }

#!/usr/bin/env bash
# The quality race (bench/quality/run) as its README runs it, on the CPU with the tiny model: a data
# folder of compressed train and plain valid pairs, a checkpoint chosen on held-out training pairs,
# and a JSON result holding every system's metrics beside the trivial baselines.
#   tests/quality_race_e2e.sh PROGRAM SOURCE_DIR
set -euo pipefail
source "$(dirname "$0")/e2e_lib.sh"
mkdir data
head -n 200 "$fixture" | gzip > data/train.jsonl.gz
tail -n 40 "$fixture" > data/valid.jsonl
quiet "$src/bench/quality/run" --bin "$bin" --data "$work/data" --minutes 0.15 --config "$src/configs/tiny-cpu.toml" \
  --vocab 400 --device cpu --holdout 30 --eval-every 10 --set data.batch_tokens=1024 --out race --json race.json --label test
check "the holdout came from the compressed training file" \
  "[ \$(wc -l < race/train.jsonl) = 170 ] && [ \$(wc -l < race/holdout.jsonl) = 30 ]"
check "a checkpoint chosen on the holdout: $(grep -o 'checkpoint: step .*' race/race.log)" \
  "grep -q 'did best on the holdout by f1' race/race.log"
# Every system scored on the 40 valid pairs, the model's two checkpoints among them.
systems=$(grep -oE '"name": "[a-z-]+\.jsonl"' race.json | grep -oE '[a-z-]+\.jsonl' | sort | paste -sd' ')
check "systems: $systems" \
  "[ '$systems' = 'copy.jsonl first-k.jsonl model-final.jsonl model.jsonl most-frequent.jsonl' ]"
check "the result's counts" "grep -q '\"valid_examples\": 40' race.json && grep -q '\"holdout\": 30' race.json && grep -qE '\"steps\": [1-9]' race.json"
check "the table printed beside the baselines" "grep -qE '^copy.jsonl +[0-9.]+' race/scores.txt"
# The first five examples' texts travel in the result, so that a reader sees what the model writes.
check "five examples side by side in the result" \
  "[ \$(grep -c '\"model.jsonl\": ' race.json) = 5 ] && grep -q '\"side_by_side\": \\[' race.json"
finish

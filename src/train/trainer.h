// The training loop: data -> forward process -> loss -> AdamW, with EMA, validation, checkpoints and
// exact resume. Single device; the run directory layout is in docs/formats.md.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/config.h"

namespace mds::train {

struct TrainOptions {
  bool resume = false;      // continue from the newest checkpoint of train.out_dir
  int64_t stop_after = -1;  // stop (with a checkpoint) after this many steps of this process; -1 = run to the end
  // Called after every step with its number (tests: e.g. raise(SIGINT) at a chosen step).
  std::function<void(int64_t step)> on_step;
};

struct TrainResult {
  int64_t step = 0;            // steps done in all
  // "finished", "early stopping", "stopped after N steps", "time budget of M min reached",
  // "interrupted by SIGINT" (or SIGTERM)
  std::string stop_reason;
  std::vector<double> losses;  // the training loss of every step this process ran (NaN for skipped ones)
  double best_valid = 0.0;     // best validation value: the loss, or minus the watched metric (NaN without validation)
  double tokens_per_second = 0.0;
  double train_seconds = 0.0;  // wall-clock time of the training loop, across resumes
};

TrainResult train(const Config& config, const TrainOptions& options);

}  // namespace mds::train

// Checkpoints: a directory per save, written atomically (a temporary directory, fsync, rename).
//
//   RUN/checkpoints/step_N/   model.safetensors      the model (EMA weights when EMA is on: what sampling uses)
//                             raw.safetensors        the raw (non-EMA) weights, for resuming
//                             optimizer.safetensors  AdamW state (exp_avg, exp_avg_sq, step per parameter)
//                             trainer_state.json     step, epoch, data position, RNG states, t-sampler,
//                                                    the size and crc32 of every other file,
//                                                    best validation value, counters
//                             sampler.safetensors    t-sampler history
//                             tokenizer.model, config.toml
//   RUN/best/                 the same, for the best validation loss so far
// The last `keep_last` step_N directories are kept.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/safetensors.h"

namespace mds::io {

struct CheckpointContent {
  TensorMap model, raw, optimizer, sampler;
  nlohmann::json trainer_state;
  std::string tokenizer_model;  // bytes of tokenizer.model
  std::string config_toml;
};

// Writes `content` to DIR atomically (DIR.tmp-<pid> then rename; an existing DIR is replaced).
// Refuses (mds::Error) to write a checkpoint whose tensors hold NaN or inf.
void write_checkpoint(const std::string& dir, const CheckpointContent& content);
CheckpointContent read_checkpoint(const std::string& dir, bool with_training_state = true);

// RUN/checkpoints/step_N directories, by step (ascending), complete ones only.
std::vector<std::pair<int64_t, std::string>> list_checkpoints(const std::string& run_dir);
// Removes all but the newest `keep_last`.
void prune_checkpoints(const std::string& run_dir, int64_t keep_last);
// Removes what interrupted saves left in a run directory: checkpoints/step_N.tmp-P and best.tmp-P
// (unfinished), and step_N.old-P beside a complete step_N. Only while no process writes into the run
// (training holds its lock). Returns the paths removed.
std::vector<std::string> remove_checkpoint_leftovers(const std::string& run_dir);
// The newest complete checkpoint of a run, or "" when none.
std::string latest_checkpoint(const std::string& run_dir);

}  // namespace mds::io

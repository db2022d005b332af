// Validation during training: the loss on a fixed set of validation batches, and generated samples
// scored with the evaluation metrics.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/config.h"
#include "data/example_source.h"
#include "data/tokenizer.h"
#include "train/train_step.h"

namespace mds::train {

// Mean diffusion loss over the first train.eval_batches validation batches (unshuffled), with its own
// fixed random draws (seed train.seed + 7919): comparable across validations. The default CPU
// generator, which training draws from, is left exactly as it was.
double validation_loss(TrainState& state, const data::ExampleSource& valid, const Config& config);

// Generates the first train.eval_samples validation examples with the EMA weights (the training
// weights are put back after), scores them with `metric_names` and writes them to
// RUN/samples/step_N.jsonl (nothing written when run_dir is empty). Returns {metric: value}.
std::map<std::string, double> validate_by_generation(TrainState& state, const data::ExampleSource& valid, const Config& config,
                                                     const data::Tokenizer& tokenizer, const std::string& run_dir,
                                                     const std::vector<std::string>& metric_names);

}  // namespace mds::train

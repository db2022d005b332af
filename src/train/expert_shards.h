// Expert parallelism in training (dist.expert_parallel; model/expert_parallel.h for the layer): rank r
// of W holds experts [r*E/W, (r+1)*E/W) of every MoE layer and trains them on the tokens every rank
// routes there. What that changes in a step and in a checkpoint:
//   - the shards' gradients are not averaged by the reducer: each already sums the contributions of
//     every rank's tokens, and is divided by W (the mean over the ranks, as the replicated ones get);
//   - the gradient norm that clipping uses adds the shards' squared norms over the ranks, so that every
//     rank clips by the norm of the whole model (and skips a non-finite step with the others);
//   - checkpoints hold the unsharded layout (weights, EMA, optimizer moments gathered from the ranks),
//     so that `generate` loads them as any other, and a run resumes on any number of processes that
//     divides E: each takes its slice.
#pragma once

#include <torch/torch.h>

#include <map>
#include <set>
#include <string>
#include <vector>

#include "model/denoiser.h"
#include "runtime/distributed.h"

namespace mds::train {

struct ExpertShards {
  int shard = 0, shards = 1;          // this rank's shard, and their number (1 = nothing sharded)
  std::set<std::string> names;        // the sharded parameters
  std::vector<torch::Tensor> params;  // this rank's shards of them
  std::vector<torch::Tensor> replicated;  // every other parameter: the same on every rank
  runtime::Collective* group = nullptr;   // the ranks that hold the shards (not owned)
  bool active() const { return shards > 1; }
};

// The model's sharded and replicated parameters (nothing sharded when its options say one shard).
ExpertShards expert_shards_of(model::DenoiserImpl& model, runtime::Collective* group);

// The shards' gradients after the backward pass: a shard no token reached gets zeros (as the whole
// tensor would hold in one process), then all are divided by the number of ranks.
void average_expert_gradients(const ExpertShards& experts);

// In a map of named tensors (state_dict, EMA weights, optimizer state), the entries of a sharded
// parameter: its name, or its name followed by "." and a suffix (the optimizer's "w1.exp_avg").
// gather: every rank gets the whole tensor [E, ...] (a collective: every rank calls it, with the same keys);
// slice: the whole tensor becomes this rank's shard; `origin` names the file in errors.
void gather_expert_shards(std::map<std::string, torch::Tensor>& named, const ExpertShards& experts);
void slice_expert_shards(std::map<std::string, torch::Tensor>& named, const ExpertShards& experts,
                         const std::string& origin);

}  // namespace mds::train

#include "train/expert_shards.h"

#include "core/error.h"

namespace mds::train {

namespace {

// `key` names a sharded parameter, or one's entry: its name + "." + a suffix ("w1.exp_avg").
bool is_shard_entry(const std::set<std::string>& names, const std::string& key) {
  if (names.count(key) != 0) return true;
  const std::size_t dot = key.rfind('.');
  return dot != std::string::npos && names.count(key.substr(0, dot)) != 0;
}

}  // namespace

ExpertShards expert_shards_of(model::DenoiserImpl& model, runtime::Collective* group) {
  ExpertShards e;
  e.shards = static_cast<int>(model.options().expert_shards);
  e.shard = static_cast<int>(model.options().expert_shard);
  e.group = group;
  for (const auto& p : model.named_parameters()) {
    if (e.active() && model::is_expert_parameter(p.key())) {
      e.names.insert(p.key());
      e.params.push_back(p.value());
    } else {
      e.replicated.push_back(p.value());
    }
  }
  MDS_CHECK(!e.active() || (group != nullptr && group->world_size() == e.shards && group->rank() == e.shard),
            "expert parallelism: the model holds shard ", e.shard, " of ", e.shards,
            " but the group does not match (one shard a rank)");
  return e;
}

void average_expert_gradients(const ExpertShards& experts) {
  torch::NoGradGuard no_grad;
  const double world = static_cast<double>(experts.shards);
  for (const torch::Tensor& p : experts.params) {
    torch::Tensor& g = p.mutable_grad();
    if (!g.defined()) g = torch::zeros_like(p);
    else g.div_(world);
  }
}

void gather_expert_shards(std::map<std::string, torch::Tensor>& named, const ExpertShards& experts) {
  if (!experts.active()) return;
  // The whole tensors, this rank's slice filled; then one broadcast from each rank of its slices
  // (std::map's order: the same keys in the same order on every rank).
  std::vector<std::vector<torch::Tensor>> slices(static_cast<std::size_t>(experts.shards));
  for (auto& [key, shard] : named) {
    if (!is_shard_entry(experts.names, key)) continue;
    std::vector<int64_t> sizes = shard.sizes().vec();
    const int64_t rows = sizes.at(0);
    sizes[0] = rows * experts.shards;
    torch::Tensor whole = torch::empty(sizes, shard.options());
    whole.narrow(0, rows * experts.shard, rows).copy_(shard);
    for (int r = 0; r < experts.shards; ++r) slices[static_cast<std::size_t>(r)].push_back(whole.narrow(0, rows * r, rows));
    shard = whole;
  }
  for (int r = 0; r < experts.shards; ++r) experts.group->broadcast(slices[static_cast<std::size_t>(r)], r);
}

void slice_expert_shards(std::map<std::string, torch::Tensor>& named, const ExpertShards& experts,
                         const std::string& origin) {
  if (!experts.active()) return;
  for (auto& [key, whole] : named) {
    if (!is_shard_entry(experts.names, key)) continue;
    MDS_CHECK(whole.dim() >= 1 && whole.size(0) % experts.shards == 0, origin, ": ", key, " has ",
              whole.dim() >= 1 ? whole.size(0) : 0, " experts, which ", experts.shards,
              " processes cannot share evenly (dist.expert_parallel)");
    const int64_t rows = whole.size(0) / experts.shards;
    whole = whole.narrow(0, rows * experts.shard, rows).contiguous();
  }
}

}  // namespace mds::train

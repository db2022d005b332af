#include "model/state_dict.h"

#include "core/error.h"

namespace mds::model {

std::map<std::string, torch::Tensor> state_dict(const torch::nn::Module& module) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& p : module.named_parameters()) out[p.key()] = p.value().detach();
  for (const auto& b : module.named_buffers()) out[b.key()] = b.value().detach();
  return out;
}

void load_state_dict(torch::nn::Module& module, const std::map<std::string, torch::Tensor>& tensors,
                     const std::string& origin) {
  torch::NoGradGuard no_grad;
  std::size_t used = 0;
  auto load = [&](const std::string& name, torch::Tensor& target) {
    auto it = tensors.find(name);
    MDS_CHECK(it != tensors.end(), origin, ": tensor \"", name, "\" is missing (was the checkpoint made with ",
              "another configuration?)");
    MDS_CHECK(it->second.sizes() == target.sizes(), origin, ": tensor \"", name, "\" has shape ", it->second.sizes(),
              ", the model expects ", target.sizes());
    target.copy_(it->second);
    ++used;
  };
  for (auto& p : module.named_parameters()) load(p.key(), p.value());
  for (auto& b : module.named_buffers()) load(b.key(), b.value());
  if (used != tensors.size()) {
    auto names = module.named_parameters();
    for (const auto& [name, t] : tensors)
      MDS_CHECK(names.contains(name) || module.named_buffers().contains(name), origin, ": unexpected tensor \"",
                name, "\" (was the checkpoint made with another configuration?)");
  }
}

}  // namespace mds::model

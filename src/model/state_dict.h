// A module's parameters by name, and loading them back strictly (every name present, shapes equal):
// the bridge between modules and checkpoint files.
#pragma once

#include <torch/torch.h>

#include <map>
#include <string>

namespace mds::model {

std::map<std::string, torch::Tensor> state_dict(const torch::nn::Module& module);  // detached views
// Copies `tensors` into the module's parameters (converting dtype and device). Throws mds::Error naming
// the first missing, unexpected or mis-shaped tensor; `origin` names the file in messages.
void load_state_dict(torch::nn::Module& module, const std::map<std::string, torch::Tensor>& tensors,
                     const std::string& origin);

}  // namespace mds::model

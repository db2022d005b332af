#include "io/tensor_compare.h"

#include <ATen/ATen.h>

#include <limits>
#include <set>

#include "core/error.h"

namespace mds::io {

std::vector<TensorDifference> compare_tensors(const TensorMap& a, const TensorMap& b) {
  std::set<std::string> names;
  for (const auto& [name, t] : a) names.insert(name);
  for (const auto& [name, t] : b) names.insert(name);
  std::vector<TensorDifference> out;
  for (const std::string& name : names) {
    TensorDifference d;
    d.name = name;
    const auto ia = a.find(name), ib = b.find(name);
    if (ia == a.end() || ib == b.end()) {
      d.problem = ia == a.end() ? "only in the second" : "only in the first";
    } else if (ia->second.sizes() != ib->second.sizes()) {
      d.problem = str_cat("shapes ", ia->second.sizes(), " and ", ib->second.sizes());
    } else if (ia->second.scalar_type() != ib->second.scalar_type()) {
      d.problem = str_cat("dtypes ", ia->second.scalar_type(), " and ", ib->second.scalar_type());
    } else if (ia->second.numel() > 0) {
      const at::Tensor x = ia->second.to(at::kDouble), y = ib->second.to(at::kDouble);
      const at::Tensor diff = (x - y).abs();
      d.max_abs = diff.max().item<double>();
      d.max_rel = (diff / at::maximum(x.abs(), y.abs()).clamp_min(1e-30)).max().item<double>();
    }
    if (!d.problem.empty()) d.max_abs = d.max_rel = std::numeric_limits<double>::infinity();
    out.push_back(d);
  }
  return out;
}

}  // namespace mds::io

#include "infer/remask.h"

#include <ATen/ATen.h>

#include <cmath>
#include <limits>

#include "core/error.h"

namespace mds::infer {

double remask_share_of_round(double share, int64_t round, int64_t rounds) {
  MDS_CHECK(rounds >= 1 && round >= 1 && round <= rounds, "remask: round ", round, " of ", rounds);
  return share * static_cast<double>(rounds - round + 1) / static_cast<double>(rounds);
}

at::Tensor least_confident(const at::Tensor& confidence_BT, const at::Tensor& eligible_BT, double share) {
  MDS_CHECK(confidence_BT.dim() == 2 && eligible_BT.sizes() == confidence_BT.sizes() &&
                eligible_BT.scalar_type() == at::kBool,
            "remask: confidence and eligible must be [B, T] (eligible bool)");
  const int64_t T = confidence_BT.size(1);
  // Ineligible positions sort last; the stable sort keeps the earlier of two equal confidences first.
  const at::Tensor conf_BT = at::where(eligible_BT, confidence_BT.to(at::kDouble),
                                       at::full({}, std::numeric_limits<double>::infinity(),
                                                confidence_BT.options().dtype(at::kDouble)));
  const at::Tensor order_BT = std::get<1>(at::sort(conf_BT, /*stable=*/true, /*dim=*/1, /*descending=*/false));
  const at::Tensor rank_BT = at::empty_like(order_BT).scatter_(
      1, order_BT, at::arange(T, order_BT.options()).unsqueeze(0).expand_as(order_BT).contiguous());
  const at::Tensor k_B1 = at::floor(eligible_BT.sum(1, /*keepdim=*/true).to(at::kDouble) * share).to(at::kLong);
  return (rank_BT < k_B1) & eligible_BT;
}

}  // namespace mds::infer

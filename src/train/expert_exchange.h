// The model's ExpertExchange (model/expert_parallel.h) over the data-parallel group's c10d all-to-all.
#pragma once

#include "model/expert_parallel.h"
#include "runtime/distributed.h"

namespace mds::train {

class CollectiveExpertExchange : public model::ExpertExchange {
 public:
  explicit CollectiveExpertExchange(runtime::Collective& group) : group_(group) {}
  int rank() const override { return group_.active() ? group_.rank() : 0; }
  int world_size() const override { return group_.active() ? group_.world_size() : 1; }
  at::Tensor all_to_all(const at::Tensor& input, const std::vector<int64_t>& recv_rows,
                        const std::vector<int64_t>& send_rows) override {
    return group_.all_to_all(input, recv_rows, send_rows);
  }

 private:
  runtime::Collective& group_;
};

}  // namespace mds::train

// Expert parallelism: the E experts of a MoE layer sharded over the W ranks of a group, E/W to a rank
// (rank r holds experts [r*E/W, (r+1)*E/W)), the tokens routed to them exchanged with all-to-all
// (GShard; docs/math.md M4 for the layer itself). The router and everything outside the experts stay
// replicated. Every rank runs the same layers in the same order, so the exchanges pair up.
//
// The model does not depend on the runtime: it sees the group through ExpertExchange, which the trainer
// implements over runtime::Collective (c10d all-to-all: Gloo on CPUs, NCCL on GPUs).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

#include "kernels/moe/moe.h"

namespace mds::model {

class ExpertExchange {
 public:
  virtual ~ExpertExchange() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  // runtime::Collective::all_to_all's contract: send_rows[j] rows of `input` to rank j, in rank
  // order; recv_rows[i] rows from rank i, stacked in rank order.
  virtual at::Tensor all_to_all(const at::Tensor& input, const std::vector<int64_t>& recv_rows,
                                const std::vector<int64_t>& send_rows) = 0;
};

// all_to_all with a gradient: the backward sends the gradients of the received rows back to the ranks
// they came from (the same exchange with the counts swapped).
at::Tensor exchange_rows(ExpertExchange& group, const at::Tensor& input, const std::vector<int64_t>& recv_rows,
                         const std::vector<int64_t>& send_rows);

// kernels::moe_ffn's y_ND = sum_a weight_NA * FFN_{expert_NA}(x_n) with the experts sharded: `local`
// holds this rank's E/W experts ([E/W, ...]), expert_NA the global expert ids in [0, E). Dropless.
// Rows travel twice (to the experts and back) and the counts once, which needs them on the host (one
// sync a layer). Differentiable in x, the local weights and weight_NA; the local weights' gradients
// hold the contributions of every rank's tokens. tokens_per_local_expert: int64 [E/W], the
// assignments this rank's experts received from all ranks.
at::Tensor moe_ffn_expert_parallel(ExpertExchange& group, const at::Tensor& x_ND, const kernels::ExpertWeights& local,
                                   const at::Tensor& expert_NA, const at::Tensor& weight_NA, int64_t experts,
                                   at::Tensor* tokens_per_local_expert = nullptr);

}  // namespace mds::model

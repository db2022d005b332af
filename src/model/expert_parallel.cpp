// Expert parallelism: sharded experts, rows exchanged with all-to-all.
//
// Dimensions: N tokens, D model dim, E experts (E_l = E/W on a rank), A = k experts per token,
// M = N*A assignments sent, R assignments received.
#include "model/expert_parallel.h"

#include <torch/torch.h>

#include <cstdint>

#include "core/error.h"

namespace mds::model {

namespace {

// all_to_all as an autograd function. The group travels as an address: autograd keeps only
// IValues, and the group outlives every backward of the step.
struct ExchangeRows : public torch::autograd::Function<ExchangeRows> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& input, int64_t group,
                            std::vector<int64_t> recv_rows, std::vector<int64_t> send_rows) {
    ctx->saved_data["group"] = group;
    ctx->saved_data["recv"] = recv_rows;
    ctx->saved_data["send"] = send_rows;
    auto* g = reinterpret_cast<ExpertExchange*>(static_cast<intptr_t>(group));
    return g->all_to_all(input, recv_rows, send_rows);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad) {
    auto* g = reinterpret_cast<ExpertExchange*>(static_cast<intptr_t>(ctx->saved_data["group"].toInt()));
    const std::vector<int64_t> recv = ctx->saved_data["recv"].toIntVector();
    const std::vector<int64_t> send = ctx->saved_data["send"].toIntVector();
    // Back where they came from: what was received is sent, what was sent is received.
    return {g->all_to_all(grad[0].contiguous(), send, recv), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

std::vector<int64_t> to_vector(const at::Tensor& t) {
  const at::Tensor c = t.to(at::kCPU, at::kLong).contiguous();
  return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
}

}  // namespace

at::Tensor exchange_rows(ExpertExchange& group, const at::Tensor& input, const std::vector<int64_t>& recv_rows,
                         const std::vector<int64_t>& send_rows) {
  return ExchangeRows::apply(input, static_cast<int64_t>(reinterpret_cast<intptr_t>(&group)), recv_rows, send_rows);
}

at::Tensor moe_ffn_expert_parallel(ExpertExchange& group, const at::Tensor& x_ND, const kernels::ExpertWeights& local,
                                   const at::Tensor& expert_NA, const at::Tensor& weight_NA, int64_t experts,
                                   at::Tensor* tokens_per_local_expert) {
  const int64_t W = group.world_size(), E = experts;
  MDS_CHECK(W >= 1 && E % W == 0, "expert parallelism: ", E, " experts cannot be shared evenly by ", W, " ranks");
  const int64_t El = E / W;
  MDS_CHECK(local.w1_EDF.size(0) == El, "expert parallelism: this rank holds ", local.w1_EDF.size(0),
            " experts, not E/W = ", El);
  MDS_CHECK(x_ND.dim() == 2 && expert_NA.dim() == 2 && expert_NA.size(0) == x_ND.size(0) &&
                weight_NA.sizes() == expert_NA.sizes(),
            "expert parallelism: x_ND [N, D], expert_NA and weight_NA [N, A] expected");
  const int64_t N = x_ND.size(0), D = x_ND.size(1), A = expert_NA.size(1);

  // The assignments in expert order, which is rank order: rank j's rows are one slice.
  const at::Tensor expert_M = expert_NA.reshape({-1}).to(at::kLong);
  const at::Tensor order_M = std::get<1>(expert_M.sort(/*stable=*/true, /*dim=*/0, /*descending=*/false));
  const at::Tensor token_M = at::div(order_M, A, "floor");
  const at::Tensor x_MD = x_ND.index_select(0, token_M);

  // How many rows go to each expert, and from every rank to this rank's experts: [W, E_l] each.
  const at::Tensor sent_WE = at::bincount(expert_M, {}, E).to(at::kCPU).reshape({W, El}).contiguous();
  const std::vector<int64_t> ones(static_cast<std::size_t>(W), 1);
  const at::Tensor got_WE = group.all_to_all(sent_WE, ones, ones).reshape({W, El});
  const std::vector<int64_t> send = to_vector(sent_WE.sum(1)), recv = to_vector(got_WE.sum(1));

  const at::Tensor x_RD = exchange_rows(group, x_MD, recv, send);
  // Received rows come by source rank, then by local expert: each row's local expert.
  const at::Tensor local_R =
      at::repeat_interleave(at::arange(El, at::kLong).repeat({W}), got_WE.reshape({-1}))
          .to(x_ND.device());
  at::Tensor h_RD;
  if (x_RD.size(0) > 0) {
    const at::Tensor unit_R1 = at::ones({x_RD.size(0), 1}, x_RD.options());
    h_RD = kernels::moe_ffn(x_RD, local, local_R.unsqueeze(1), unit_R1, /*capacity=*/-1);
  } else {
    h_RD = x_RD * 0;  // nothing to compute; the exchange back still runs (every rank takes part)
  }
  const at::Tensor h_MD = exchange_rows(group, h_RD.to(x_MD.scalar_type()), send, recv);

  const at::Tensor w_M = weight_NA.reshape({-1}).index_select(0, order_M).to(h_MD.scalar_type());
  if (tokens_per_local_expert) *tokens_per_local_expert = got_WE.sum(0).to(x_ND.device());
  return at::zeros({N, D}, h_MD.options()).index_add(0, token_M, h_MD * w_M.unsqueeze(1));
}

}  // namespace mds::model

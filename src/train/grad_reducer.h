// Data-parallel gradients: the mean over the ranks, all-reduced in buckets while the backward pass
// still runs (as PyTorch's DDP does). The parameters are put into fixed buckets, in reverse order of
// the model's parameter list (about the order the backward pass finishes them), of one dtype and at
// most dist.bucket_mb each; a hook on each parameter copies its gradient into its bucket, and a bucket
// whose gradients are all there starts its all-reduce, buckets strictly in order so that every rank
// starts the same all-reduces in the same order. finish() fills the gradients that never came (a
// parameter this rank's batch did not reach) with what .grad holds or zeros, starts the rest, waits,
// and writes the mean into every .grad.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <vector>

#include "runtime/distributed.h"

namespace mds::train {

class GradientReducer {
 public:
  GradientReducer(runtime::Collective& collective, std::vector<torch::Tensor> params, int64_t bucket_bytes);
  ~GradientReducer();
  GradientReducer(const GradientReducer&) = delete;
  GradientReducer& operator=(const GradientReducer&) = delete;

  // Before the backward pass of a step's last micro-batch: its gradients (with what the earlier
  // micro-batches left in .grad) go to the buckets as they are computed.
  void arm();
  // After that backward pass: every .grad holds the mean over the ranks.
  void finish();

  std::size_t buckets() const { return buckets_.size(); }

 private:
  struct Slot {
    std::size_t bucket = 0;
    int64_t offset = 0;
    bool ready = false;
  };
  struct Bucket {
    torch::Tensor flat;
    std::vector<std::size_t> params;
    std::size_t ready = 0;
  };
  void on_grad(std::size_t i, const torch::Tensor& grad);
  // Bucket slot of parameter i = grad + held (either may be undefined: zeros).
  void put(std::size_t i, const torch::Tensor& grad, const torch::Tensor& held);
  void start_ready_buckets();

  runtime::Collective& collective_;
  std::vector<torch::Tensor> params_;
  std::vector<Slot> slots_;
  std::vector<Bucket> buckets_;
  std::vector<unsigned> hooks_;
  std::size_t next_bucket_ = 0;  // the next bucket to start
  bool armed_ = false;
};

}  // namespace mds::train

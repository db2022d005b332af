// How training draws the diffusion step t (docs/math.md eq. T1-T2).
//   uniform     p(t) = 1/T, weight 1
//   lossaware   DiffuSeq's LossSecondMomentResampler: the last 10 losses of every t; once all are
//               full, p(t) ∝ sqrt(mean(loss_t^2)), mixed with 0.001 uniform; weight 1 / (T p(t))
// The history is part of a checkpoint, so a resumed run draws exactly what an uninterrupted one would.
#pragma once

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

#include "core/device_to_host.h"

namespace mds::diffusion {

class TimestepSampler {
 public:
  TimestepSampler(std::string kind, int64_t steps, int64_t history = 10, double uniform_prob = 0.001);

  struct Draw {
    at::Tensor t_B;       // int64
    at::Tensor weight_B;  // float32 importance weights
  };
  // On the CPU. Applies the pending updates first (flush()).
  Draw sample(int64_t batch, at::Generator generator);
  // Records the per-example losses (detached, any device) of the t's drawn.
  void update(const at::Tensor& t_B, const at::Tensor& loss_B);
  // The same without waiting for the device: the losses' copy to the host is queued now and applied
  // by the next flush() (sample() calls it), by when the device has long computed them, so a draw
  // sees what it would see after update(). `skip` (optional, a 0-dim bool beside the losses): when
  // true they are dropped (a NaN or inf batch teaches nothing).
  void update_later(const at::Tensor& t_B, const at::Tensor& loss_B, const at::Tensor& skip = {});
  void flush();
  bool warmed_up() const;

  // State for checkpoints: [T, history] losses and [T] counts as tensors (after flush()).
  at::Tensor history_tensor() const;
  at::Tensor counts_tensor() const;
  void load(const at::Tensor& history, const at::Tensor& counts);
  const std::string& kind() const { return kind_; }

 private:
  std::string kind_;
  int64_t steps_, history_;
  double uniform_prob_;
  std::vector<double> losses_;  // steps_ * history_, ring buffers
  std::vector<int64_t> counts_;  // entries written per t (saturates at history_ for "full")
  struct Pending {
    at::Tensor t_B;  // CPU
    HostCopy loss_B, skip;
  };
  std::vector<Pending> pending_;  // update_later()'s, oldest first
};

}  // namespace mds::diffusion

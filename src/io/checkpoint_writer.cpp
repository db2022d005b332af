#include "io/checkpoint_writer.h"

#include <ATen/ATen.h>

#include <exception>
#include <utility>

#include "core/log.h"

namespace mds::io {

namespace {

TensorMap owned(const TensorMap& tensors) {
  TensorMap out;
  for (const auto& [name, t] : tensors)
    out[name] = t.defined() ? t.detach().to(at::kCPU, /*non_blocking=*/false, /*copy=*/true) : t;
  return out;
}

}  // namespace

CheckpointContent owned_copy(const CheckpointContent& content) {
  CheckpointContent c;
  c.model = owned(content.model);
  c.raw = owned(content.raw);
  c.optimizer = owned(content.optimizer);
  c.sampler = owned(content.sampler);
  c.trainer_state = content.trainer_state;
  c.tokenizer_model = content.tokenizer_model;
  c.config_toml = content.config_toml;
  return c;
}

void CheckpointWriter::write(const std::string& dir, const CheckpointContent& content, std::function<void()> after) {
  wait();
  pending_ = std::async(std::launch::async, [dir, copy = owned_copy(content), after = std::move(after)] {
    write_checkpoint(dir, copy);
    if (after) after();
  });
}

void CheckpointWriter::wait() {
  if (pending_.valid()) pending_.get();  // get() leaves the future invalid: a failure is thrown once
}

CheckpointWriter::~CheckpointWriter() {
  try {
    wait();
  } catch (const std::exception& e) {
    log_error("writing a checkpoint failed: ", e.what());
  }
}

}  // namespace mds::io

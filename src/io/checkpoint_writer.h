// Checkpoints written off the training loop's critical path: the tensors are copied to host memory
// (the one wait, for a GPU's copy), then a background thread serialises, syncs and renames them in
// (write_checkpoint: still atomic) while training goes on. One write at a time: the next one, and
// wait(), first wait for it, and rethrow its failure. Writing a default-size model took the loop
// several seconds; the copy takes a fraction of one.
#pragma once

#include <functional>
#include <future>
#include <string>

#include "io/checkpoint.h"

namespace mds::io {

class CheckpointWriter {
 public:
  CheckpointWriter() = default;
  ~CheckpointWriter();  // waits for a write in flight (a failure is logged: destructors do not throw)
  CheckpointWriter(const CheckpointWriter&) = delete;
  CheckpointWriter& operator=(const CheckpointWriter&) = delete;

  // Copies `content` (the caller may change its tensors as soon as this returns), then writes it to
  // `dir` in the background and runs `after` there once it is in place (pruning older checkpoints).
  void write(const std::string& dir, const CheckpointContent& content, std::function<void()> after = {});
  // Until no write is in flight; rethrows the failure of the last one.
  void wait();

 private:
  std::future<void> pending_;
};

// `content` with every tensor copied into host memory of its own (nothing shared with the caller's).
CheckpointContent owned_copy(const CheckpointContent& content);

}  // namespace mds::io

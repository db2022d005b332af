// Data-parallel training across processes, through LibTorch's c10d process groups: launched the way
// torchrun launches (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT), one process per device,
// rank 0 hosting the rendezvous (a c10d TCPStore). Gloo carries the collectives (CPU tensors; CUDA
// tensors through the host). A peer that dies or stops answering makes every collective fail within
// dist.timeout_s with an error naming the operation, never a hang.
#pragma once

#include <ATen/core/Tensor.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/config.h"

namespace mds::runtime {

struct DistributedEnv {
  int rank = 0, world_size = 1, local_rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  bool active() const { return world_size > 1; }
};

// From the environment: WORLD_SIZE unset (or 1) is a single process; otherwise every variable is
// checked (an integer in range, RANK < WORLD_SIZE), and a bad one is an error naming it.
DistributedEnv distributed_env_from_environment();

// The process group of a data-parallel run. world_size 1 needs no group: every call is the identity.
class Collective {
 public:
  Collective();  // one process
  // Joins the group (rank 0 serves the rendezvous); waits at most `timeout` for the others.
  Collective(const DistributedEnv& env, std::chrono::milliseconds timeout);
  ~Collective();
  Collective(const Collective&) = delete;
  Collective& operator=(const Collective&) = delete;

  int rank() const { return env_.rank; }
  int world_size() const { return env_.world_size; }
  bool active() const { return env_.active(); }

  // In place: the sum over ranks.
  void all_reduce_sum(at::Tensor& tensor);
  // Starts summing `tensor` over the ranks in place (every rank starts the same ones in the same
  // order); wait_all() waits for every one started, naming `what` if one fails.
  void start_all_reduce_sum(const at::Tensor& tensor);
  void wait_all(const char* what);
  // Whether any rank says true (a stop signal seen by one, a time budget spent by one).
  bool any(bool mine);
  // Rank `root`'s tensors, in place on every rank.
  void broadcast(const std::vector<at::Tensor>& tensors, int root = 0);
  void barrier();

 private:
  struct Group;
  DistributedEnv env_;
  std::unique_ptr<Group> group_;
};

}  // namespace mds::runtime

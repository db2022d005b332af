// Data-parallel training across processes, through LibTorch's c10d process groups: launched the way
// torchrun launches (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT), one process per device,
// rank 0 hosting the rendezvous (a c10d TCPStore). NCCL carries the collectives of GPU training, Gloo
// those of CPU training (dist.backend). A peer that dies or stops answering makes every collective fail
// within dist.timeout_s (Gloo: an error naming the operation; NCCL: its watchdog ends the process), never
// a hang.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "core/config.h"

namespace mds::runtime {

struct DistributedEnv {
  int rank = 0, world_size = 1, local_rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  bool launched = false;  // WORLD_SIZE was set: a process group, even of one (as under torchrun)
  bool active() const { return launched; }
};

// From the environment: WORLD_SIZE unset is a single process without a group; set (1 included), every
// variable is checked (an integer in range, RANK < WORLD_SIZE), and a bad one is an error naming it.
DistributedEnv distributed_env_from_environment();

// The backends this build can use, e.g. "gloo, nccl" ("none": one process only).
std::string available_backends();

// The process group of a data-parallel run. world_size 1 needs no group: every call is the identity.
class Collective {
 public:
  Collective();  // one process
  // Joins the group (rank 0 serves the rendezvous); waits at most `timeout` for the others. `backend`
  // is dist.backend: "nccl", "gloo" or "auto" (NCCL where `device` is a GPU and the build has it).
  // Tensors given on another device than the backend's travel through it.
  Collective(const DistributedEnv& env, std::chrono::milliseconds timeout, const std::string& backend,
             c10::Device device);
  ~Collective();
  Collective(const Collective&) = delete;
  Collective& operator=(const Collective&) = delete;

  int rank() const { return env_.rank; }
  int world_size() const { return env_.world_size; }
  bool active() const { return env_.active(); }
  const std::string& backend() const { return backend_; }  // "nccl" or "gloo"; "" without a group

  // In place: the sum over ranks.
  void all_reduce_sum(at::Tensor& tensor);
  // Starts summing `tensor` (on the backend's device) over the ranks in place (every rank starts the
  // same ones in the same order); wait_all() waits for every one started, naming `what` if one fails
  // (with NCCL: the current stream waits, the host does not).
  void start_all_reduce_sum(const at::Tensor& tensor);
  void wait_all(const char* what);
  // Whether any rank says true (a stop signal seen by one, a time budget spent by one).
  bool any(bool mine);
  // any() `lag` calls late, without holding up the GPU: starts agreeing on `mine` and returns the
  // agreement started `lag` calls earlier (false for the first `lag` calls). Every rank makes the same
  // calls, so all get the same answer on the same call. With NCCL, any() must wait for everything the
  // GPU was given before it (its answer is on the device), once a step; this waits only for the
  // agreement of `lag` calls ago, while the steps queued since keep the GPU busy. Without a group: mine.
  bool any_after(bool mine, int lag);
  // Rank `root`'s tensors, in place on every rank.
  void broadcast(const std::vector<at::Tensor>& tensors, int root = 0);
  // Rows exchanged between all ranks (expert parallelism): this rank sends the next `send_rows[j]`
  // rows of `input` (dim 0) to rank j, in rank order, and receives `recv_rows[i]` rows from rank i,
  // stacked in rank order; the result has sum(recv_rows) rows, each rank's recv_rows[i] being rank
  // i's send_rows[this rank]. Without a group: `input` itself (both lists must be {rows}).
  at::Tensor all_to_all(const at::Tensor& input, const std::vector<int64_t>& recv_rows,
                        const std::vector<int64_t>& send_rows);

 private:
  struct Group;
  DistributedEnv env_;
  std::string backend_;
  std::unique_ptr<Group> group_;
};

}  // namespace mds::runtime

#include "runtime/distributed.h"

#include <ATen/ATen.h>

#if __has_include(<torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>) && __has_include(<gloo/algorithm.h>)
#define MDS_HAS_C10D_GLOO 1
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#endif

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <exception>

#include "core/error.h"

namespace mds::runtime {

namespace {

// An environment variable as an integer in [lo, hi]; `fallback` when unset.
int env_int(const char* name, int fallback, int lo, int hi) {
  const char* text = std::getenv(name);
  if (text == nullptr || *text == '\0') return fallback;
  errno = 0;
  char* end = nullptr;
  const long v = std::strtol(text, &end, 10);
  MDS_CHECK(errno == 0 && end != text && *end == '\0', "environment variable ", name, "=\"", text,
            "\" is not an integer");
  MDS_CHECK(v >= lo && v <= hi, "environment variable ", name, "=", v, " must be in [", lo, ", ", hi, "]");
  return static_cast<int>(v);
}

// LibTorch's messages carry a C++ backtrace after the first line.
std::string first_line(const char* what) {
  const std::string s = what;
  return s.substr(0, s.find('\n'));
}

}  // namespace

DistributedEnv distributed_env_from_environment() {
  DistributedEnv e;
  e.world_size = env_int("WORLD_SIZE", 1, 1, 1 << 16);
  if (e.world_size == 1) return e;
  MDS_CHECK(std::getenv("RANK") != nullptr, "WORLD_SIZE=", e.world_size,
            " but RANK is not set: launch each process with RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT "
            "(moe-diffuseq launch -n N -- train ... sets them)");
  e.rank = env_int("RANK", 0, 0, e.world_size - 1);
  e.local_rank = env_int("LOCAL_RANK", e.rank, 0, e.world_size - 1);
  const char* addr = std::getenv("MASTER_ADDR");
  if (addr != nullptr && *addr != '\0') e.master_addr = addr;
  e.master_port = env_int("MASTER_PORT", 29500, 1, 65535);
  return e;
}

#ifdef MDS_HAS_C10D_GLOO

struct Collective::Group {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> pg;
  std::chrono::milliseconds timeout;
  std::vector<c10::intrusive_ptr<c10d::Work>> in_flight;  // started, not yet waited for
};

namespace {

// Waits for a collective; a peer that died or timed out becomes an error that says which operation.
void wait(const c10::intrusive_ptr<c10d::Work>& work, const char* what, int rank) {
  try {
    work->wait();
  } catch (const std::exception& e) {
    fail("data-parallel ", what, " failed on rank ", rank,
         " (another rank stopped, crashed or did not answer within dist.timeout_s): ", first_line(e.what()));
  }
}

}  // namespace

Collective::Collective(const DistributedEnv& env, std::chrono::milliseconds timeout) : env_(env) {
  if (!env.active()) return;
  group_ = std::make_unique<Group>();
  group_->timeout = timeout;
  try {
    c10d::TCPStoreOptions so;
    so.port = static_cast<std::uint16_t>(env.master_port);
    so.isServer = env.rank == 0;
    so.numWorkers = static_cast<std::size_t>(env.world_size);
    so.waitWorkers = true;
    so.timeout = timeout;
    auto tcp = c10::make_intrusive<c10d::TCPStore>(env.master_addr, so);
    group_->store = c10::make_intrusive<c10d::PrefixStore>("mds", tcp);
    auto options = c10d::ProcessGroupGloo::Options::create(timeout);
    options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    group_->pg = c10::make_intrusive<c10d::ProcessGroupGloo>(group_->store, env.rank, env.world_size, options);
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    fail("data-parallel set-up failed on rank ", env.rank, " of ", env.world_size, " (rendezvous at ", env.master_addr,
         ":", env.master_port, ", MASTER_ADDR / MASTER_PORT): ", first_line(e.what()));
  }
}

Collective::Collective() = default;
Collective::~Collective() = default;

void Collective::start_all_reduce_sum(const at::Tensor& tensor) {
  if (!active()) return;
  std::vector<at::Tensor> io = {tensor};
  group_->in_flight.push_back(group_->pg->allreduce(io));
}

void Collective::wait_all(const char* what) {
  if (!active()) return;
  std::vector<c10::intrusive_ptr<c10d::Work>> works;
  works.swap(group_->in_flight);
  for (auto& w : works) wait(w, what, env_.rank);
}

void Collective::all_reduce_sum(at::Tensor& tensor) {
  if (!active()) return;
  std::vector<at::Tensor> io = {tensor};
  wait(group_->pg->allreduce(io), "all-reduce", env_.rank);
}

bool Collective::any(bool mine) {
  if (!active()) return mine;
  at::Tensor flag = at::full({1}, mine ? 1 : 0, at::kInt);
  std::vector<at::Tensor> io = {flag};
  c10d::AllreduceOptions o;
  o.reduceOp = c10d::ReduceOp::MAX;
  wait(group_->pg->allreduce(io, o), "agreement on stopping", env_.rank);
  return flag.item<int>() != 0;
}

void Collective::broadcast(const std::vector<at::Tensor>& tensors, int root) {
  if (!active()) return;
  for (const at::Tensor& t : tensors) {
    std::vector<at::Tensor> io = {t};
    c10d::BroadcastOptions o;
    o.rootRank = root;
    wait(group_->pg->broadcast(io, o), "broadcast", env_.rank);
  }
}

void Collective::barrier() {
  if (!active()) return;
  wait(group_->pg->barrier(), "barrier", env_.rank);
}

#else  // a LibTorch without c10d / Gloo headers: one process only

struct Collective::Group {};

Collective::Collective(const DistributedEnv& env, std::chrono::milliseconds) : env_(env) {
  MDS_CHECK(!env.active(), "WORLD_SIZE=", env.world_size,
            ": this build of moe-diffuseq has no c10d (its LibTorch lacks the Gloo headers): one process only");
}
Collective::Collective() = default;
Collective::~Collective() = default;
void Collective::start_all_reduce_sum(const at::Tensor&) {}
void Collective::wait_all(const char*) {}
void Collective::all_reduce_sum(at::Tensor&) {}
bool Collective::any(bool mine) { return mine; }
void Collective::broadcast(const std::vector<at::Tensor>&, int) {}
void Collective::barrier() {}

#endif

}  // namespace mds::runtime

#include "runtime/distributed.h"

#include <ATen/ATen.h>

#include "core/torch_compat.h"

// What this LibTorch brings: the c10d store always (both builds), Gloo where its headers are installed
// (Debian's libgloo-dev on the CPU; the GPU machine's PyTorch ships none), NCCL in CUDA builds that
// found nccl.h (CMake defines MDS_WITH_NCCL and USE_C10D_NCCL, which the header needs).
#if __has_include(<torch/csrc/distributed/c10d/TCPStore.hpp>)
#define MDS_HAS_C10D 1
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#if __has_include(<torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>) && __has_include(<gloo/algorithm.h>)
#define MDS_HAS_GLOO 1
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#if defined(MDS_WITH_NCCL) && __has_include(<torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>)
#define MDS_HAS_NCCL 1
#include <ATen/cuda/CUDAEvent.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif
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
[[maybe_unused]] std::string first_line(const char* what) {
  const std::string s = what;
  return s.substr(0, s.find('\n'));
}

}  // namespace

DistributedEnv distributed_env_from_environment() {
  DistributedEnv e;
  const char* world = std::getenv("WORLD_SIZE");
  if (world == nullptr || *world == '\0') return e;
  e.launched = true;
  e.world_size = env_int("WORLD_SIZE", 1, 1, 1 << 16);
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

std::string available_backends() {
  std::string out;
#ifdef MDS_HAS_GLOO
  out += "gloo";
#endif
#ifdef MDS_HAS_NCCL
  out += out.empty() ? "nccl" : ", nccl";
#endif
  return out.empty() ? "none" : out;
}

namespace {

// dist.backend resolved for `device`, or an error that says what this build lacks.
std::string choose_backend(const std::string& wanted, c10::Device device) {
#ifdef MDS_HAS_NCCL
  constexpr bool nccl = true;
#else
  constexpr bool nccl = false;
#endif
#ifdef MDS_HAS_GLOO
  constexpr bool gloo = true;
#else
  constexpr bool gloo = false;
#endif
  const std::string b = wanted == "auto" ? (device.is_cuda() && nccl ? "nccl" : "gloo") : wanted;
  MDS_CHECK(b == "gloo" || b == "nccl", "dist.backend = \"", wanted, "\": one of \"auto\", \"nccl\", \"gloo\"");
  if (b == "nccl") {
    MDS_CHECK(nccl, "dist.backend = \"nccl\": this build of moe-diffuseq has no NCCL (a CUDA build finds it beside "
              "LibTorch); it has: ", available_backends());
    MDS_CHECK(device.is_cuda(), "dist.backend = \"nccl\" needs GPU training; train.device is ", device.str(),
              ": use \"gloo\" (or \"auto\")");
  } else {
    MDS_CHECK(gloo, "data-parallel training on ", device.str(), " needs Gloo, which this build lacks (its LibTorch "
              "ships no Gloo headers)", nccl ? ": train on GPUs with dist.backend = \"nccl\"" : ": one process only");
  }
  return b;
}

// all_to_all's lists: one count per rank, none negative, the sent ones adding up to the input's rows.
void check_exchange(const at::Tensor& input, const std::vector<int64_t>& recv_rows,
                    const std::vector<int64_t>& send_rows, int world_size) {
  MDS_CHECK(input.defined() && input.dim() >= 1, "all-to-all: the input needs a first dimension");
  MDS_CHECK(static_cast<int>(recv_rows.size()) == world_size && static_cast<int>(send_rows.size()) == world_size,
            "all-to-all: ", recv_rows.size(), " received and ", send_rows.size(), " sent counts for ", world_size,
            " ranks");
  int64_t sent = 0;
  for (std::size_t i = 0; i < send_rows.size(); ++i) {
    MDS_CHECK(send_rows[i] >= 0 && recv_rows[i] >= 0, "all-to-all: a negative row count");
    sent += send_rows[i];
  }
  MDS_CHECK(sent == input.size(0), "all-to-all: the counts send ", sent, " rows of ", input.size(0));
  if (world_size == 1) MDS_CHECK(recv_rows[0] == sent, "all-to-all: one rank receives what it sends");
}

}  // namespace

#if defined(MDS_HAS_GLOO) || defined(MDS_HAS_NCCL)

#if MDS_TORCH_C10D_BACKEND
using ProcessGroupBase = c10d::Backend;
#else
using ProcessGroupBase = c10d::ProcessGroup;
#endif

struct Collective::Group {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<ProcessGroupBase> pg;
  c10::Device device{c10::kCPU};  // where the backend's tensors live
  std::vector<c10::intrusive_ptr<c10d::Work>> in_flight;  // started, not yet waited for
  // any_after's agreements, oldest first: the flag being reduced, and with NCCL its copy on the host
  // and the event that says the copy is there.
  struct Agreement {
    at::Tensor flag, host;
    c10::intrusive_ptr<c10d::Work> work;
#ifdef MDS_HAS_NCCL
    std::unique_ptr<at::cuda::CUDAEvent> copied;
#endif
  };
  std::deque<Agreement> agreements;
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

Collective::Collective(const DistributedEnv& env, std::chrono::milliseconds timeout, const std::string& backend,
                       c10::Device device)
    : env_(env) {
  if (!env.active()) return;
  backend_ = choose_backend(backend, device);
  group_ = std::make_unique<Group>();
  group_->device = backend_ == "nccl" ? device : c10::Device(c10::kCPU);
  try {
    c10d::TCPStoreOptions so;
    so.port = static_cast<std::uint16_t>(env.master_port);
    so.isServer = env.rank == 0;
    so.numWorkers = static_cast<std::size_t>(env.world_size);
    so.waitWorkers = true;
    so.timeout = timeout;
    auto tcp = c10::make_intrusive<c10d::TCPStore>(env.master_addr, so);
    group_->store = c10::make_intrusive<c10d::PrefixStore>("mds", tcp);
#ifdef MDS_HAS_NCCL
    if (backend_ == "nccl") {
      auto options = c10d::ProcessGroupNCCL::Options::create();
      options->timeout = timeout;
      group_->pg = c10::make_intrusive<c10d::ProcessGroupNCCL>(group_->store, env.rank, env.world_size, options);
    }
#endif
#ifdef MDS_HAS_GLOO
    if (backend_ == "gloo") {
      auto options = c10d::ProcessGroupGloo::Options::create(timeout);
      options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
      group_->pg = c10::make_intrusive<c10d::ProcessGroupGloo>(group_->store, env.rank, env.world_size, options);
    }
#endif
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    fail("data-parallel set-up (", backend_, ") failed on rank ", env.rank, " of ", env.world_size, " (rendezvous at ",
         env.master_addr, ":", env.master_port, ", MASTER_ADDR / MASTER_PORT): ", first_line(e.what()));
  }
}

Collective::Collective() = default;

Collective::~Collective() {
  // Agreements still in flight: every rank started the same ones, so they end; the group must outlive them.
  if (group_)
    for (Group::Agreement& a : group_->agreements) {
      try {
        a.work->wait();
      } catch (const std::exception&) {
      }
    }
}

void Collective::start_all_reduce_sum(const at::Tensor& tensor) {
  if (!active()) return;
  MDS_CHECK(backend_ != "nccl" || tensor.device() == group_->device, "NCCL all-reduce of a tensor on ",
            tensor.device().str(), ", not ", group_->device.str());
  std::vector<at::Tensor> io = {tensor};
  group_->in_flight.push_back(group_->pg->allreduce(io));
}

void Collective::wait_all(const char* what) {
  if (!active()) return;
  std::vector<c10::intrusive_ptr<c10d::Work>> works;
  works.swap(group_->in_flight);
  for (auto& w : works) wait(w, what, env_.rank);
}

namespace {

// NCCL reduces GPU tensors only: a host tensor (the logged losses) travels through the GPU. The
// operand to hand the backend, and whether the result must be copied back.
std::vector<at::Tensor> operand(const at::Tensor& t, const std::string& backend, c10::Device device, bool* staged) {
  *staged = backend == "nccl" && t.device() != device;
  return {*staged ? t.to(device) : t};
}

}  // namespace

void Collective::all_reduce_sum(at::Tensor& tensor) {
  if (!active()) return;
  bool staged = false;
  std::vector<at::Tensor> io = operand(tensor, backend_, group_->device, &staged);
  wait(group_->pg->allreduce(io), "all-reduce", env_.rank);
  if (staged) tensor.copy_(io[0]);
}

bool Collective::any(bool mine) {
  if (!active()) return mine;
  std::vector<at::Tensor> io = {at::full({1}, mine ? 1 : 0, at::TensorOptions(at::kInt).device(group_->device))};
  c10d::AllreduceOptions o;
  o.reduceOp = c10d::ReduceOp::MAX;
  wait(group_->pg->allreduce(io, o), "agreement on stopping", env_.rank);
  return io[0].item<int>() != 0;
}

bool Collective::any_after(bool mine, int lag) {
  if (!active()) return mine;
  Group::Agreement a;
  a.flag = at::full({1}, mine ? 1 : 0, at::TensorOptions(at::kInt).device(group_->device));
  std::vector<at::Tensor> io = {a.flag};
  c10d::AllreduceOptions o;
  o.reduceOp = c10d::ReduceOp::MAX;
  a.work = group_->pg->allreduce(io, o);
#ifdef MDS_HAS_NCCL
  if (backend_ == "nccl") {
    // The current stream waits for the all-reduce and copies its answer to pinned host memory; the
    // event marks that point of the stream, so that reading it waits for nothing queued later.
    wait(a.work, "agreement on stopping", env_.rank);
    a.host = at::empty({1}, at::TensorOptions(at::kInt).pinned_memory(true));
    a.host.copy_(a.flag, /*non_blocking=*/true);
    a.copied = std::make_unique<at::cuda::CUDAEvent>();
    a.copied->record();
  }
#endif
  group_->agreements.push_back(std::move(a));
  if (static_cast<int>(group_->agreements.size()) <= lag) return false;
  Group::Agreement oldest = std::move(group_->agreements.front());
  group_->agreements.pop_front();
#ifdef MDS_HAS_NCCL
  if (oldest.copied) {
    oldest.copied->synchronize();
    return oldest.host.item<int>() != 0;
  }
#endif
  wait(oldest.work, "agreement on stopping", env_.rank);
  return oldest.flag.item<int>() != 0;
}

void Collective::broadcast(const std::vector<at::Tensor>& tensors, int root) {
  if (!active()) return;
  for (const at::Tensor& t : tensors) {
    bool staged = false;
    std::vector<at::Tensor> io = operand(t, backend_, group_->device, &staged);
    c10d::BroadcastOptions o;
    o.rootRank = root;
    wait(group_->pg->broadcast(io, o), "broadcast", env_.rank);
    if (staged) const_cast<at::Tensor&>(t).copy_(io[0]);
  }
}

at::Tensor Collective::all_to_all(const at::Tensor& input, const std::vector<int64_t>& recv_rows,
                                  const std::vector<int64_t>& send_rows) {
  check_exchange(input, recv_rows, send_rows, active() ? env_.world_size : 1);
  if (!active()) return input;
  int64_t received = 0;
  for (int64_t r : recv_rows) received += r;
  std::vector<int64_t> sizes = input.sizes().vec();
  sizes[0] = received;
  bool staged = false;
  at::Tensor in = operand(input.contiguous(), backend_, group_->device, &staged)[0];
  at::Tensor out = at::empty(sizes, in.options());
  std::vector<int64_t> recv = recv_rows, send = send_rows;  // c10d takes them by reference
  wait(group_->pg->alltoall_base(out, in, recv, send), "all-to-all", env_.rank);
  return staged ? out.to(input.device()) : out;
}

#else  // a LibTorch without Gloo or NCCL headers: one process only

struct Collective::Group {};

Collective::Collective(const DistributedEnv& env, std::chrono::milliseconds, const std::string& backend,
                       c10::Device device)
    : env_(env) {
  if (env.active()) choose_backend(backend, device);  // says what is missing
}
Collective::Collective() = default;
Collective::~Collective() = default;
void Collective::start_all_reduce_sum(const at::Tensor&) {}
void Collective::wait_all(const char*) {}
void Collective::all_reduce_sum(at::Tensor&) {}
bool Collective::any(bool mine) { return mine; }
bool Collective::any_after(bool mine, int) { return mine; }
void Collective::broadcast(const std::vector<at::Tensor>&, int) {}
at::Tensor Collective::all_to_all(const at::Tensor& input, const std::vector<int64_t>& recv_rows,
                                  const std::vector<int64_t>& send_rows) {
  check_exchange(input, recv_rows, send_rows, 1);
  return input;
}

#endif

}  // namespace mds::runtime

// The data-parallel launch variables (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT): read
// as torchrun sets them, and every bad value refused naming its variable. The multi-process runs
// themselves are tests/data_parallel_e2e.sh.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "core/error.h"
#include "runtime/distributed.h"
#include "runtime/launch.h"
#include "rank_threads.h"
#include "test_util.h"

namespace mds {
namespace {

// Sets the five variables for a scope (nullptr: unset), restoring nothing: each test sets all five.
void set_env(const char* rank, const char* world, const char* local, const char* addr, const char* port) {
  const std::pair<const char*, const char*> vars[] = {
      {"RANK", rank}, {"WORLD_SIZE", world}, {"LOCAL_RANK", local}, {"MASTER_ADDR", addr}, {"MASTER_PORT", port}};
  for (const auto& [name, value] : vars) {
    if (value) setenv(name, value, 1);
    else unsetenv(name);
  }
}

TEST(DistributedEnv, ReadsTorchrunsVariables) {
  set_env(nullptr, nullptr, nullptr, nullptr, nullptr);
  EXPECT_FALSE(runtime::distributed_env_from_environment().active());
  // WORLD_SIZE set, even to 1: a group of one (torchrun --nproc-per-node 1 does the same).
  set_env("0", "1", nullptr, nullptr, nullptr);
  EXPECT_TRUE(runtime::distributed_env_from_environment().active());
  EXPECT_EQ(runtime::distributed_env_from_environment().world_size, 1);

  set_env("3", "4", "1", "10.0.0.2", "29600");
  const runtime::DistributedEnv e = runtime::distributed_env_from_environment();
  EXPECT_TRUE(e.active());
  EXPECT_EQ(e.rank, 3);
  EXPECT_EQ(e.world_size, 4);
  EXPECT_EQ(e.local_rank, 1);
  EXPECT_EQ(e.master_addr, "10.0.0.2");
  EXPECT_EQ(e.master_port, 29600);

  set_env("1", "2", nullptr, nullptr, nullptr);  // torchrun's defaults where unset
  const runtime::DistributedEnv d = runtime::distributed_env_from_environment();
  EXPECT_EQ(d.local_rank, 1);
  EXPECT_EQ(d.master_addr, "127.0.0.1");
  EXPECT_EQ(d.master_port, 29500);
  set_env(nullptr, nullptr, nullptr, nullptr, nullptr);
}

TEST(DistributedEnv, NamesTheBadVariable) {
  const struct {
    const char *rank, *world, *local, *port;
    std::string says;
  } cases[] = {
      {nullptr, "2", nullptr, nullptr, "RANK is not set"},
      {"2", "2", nullptr, nullptr, "RANK=2 must be in [0, 1]"},
      {"x", "2", nullptr, nullptr, "RANK=\"x\" is not an integer"},
      {"0", "two", nullptr, nullptr, "WORLD_SIZE=\"two\" is not an integer"},
      {"0", "0", nullptr, nullptr, "WORLD_SIZE=0 must be in"},
      {"0", "2", "5", nullptr, "LOCAL_RANK=5 must be in [0, 1]"},
      {"0", "2", nullptr, "70000", "MASTER_PORT=70000 must be in [1, 65535]"},
      {"0", "2", nullptr, "80a", "MASTER_PORT=\"80a\" is not an integer"},
  };
  for (const auto& c : cases) {
    set_env(c.rank, c.world, c.local, nullptr, c.port);
    const std::string message = test::error_of([] { runtime::distributed_env_from_environment(); });
    EXPECT_NE(message.find(c.says), std::string::npos) << message;
  }
  set_env(nullptr, nullptr, nullptr, nullptr, nullptr);
}

TEST(DistributedEnv, OneProcessNeedsNoGroup) {
  runtime::Collective one;
  EXPECT_FALSE(one.active());
  EXPECT_FALSE(one.any(false));
  EXPECT_TRUE(one.any(true));
  at::Tensor t = at::ones({3});
  one.all_reduce_sum(t);  // the identity
  EXPECT_TRUE(t.equal(at::ones({3})));
}


// A group of one over Gloo on loopback: the collectives are the identity, and a backend the build or
// the device cannot serve is refused naming dist.backend.
TEST(DistributedEnv, AGroupOfOneOverGloo) {
  if (runtime::available_backends().find("gloo") == std::string::npos) GTEST_SKIP() << "no Gloo in this build";
  runtime::DistributedEnv env;
  env.launched = true;
  env.master_port = runtime::free_port();
  runtime::Collective one(env, std::chrono::milliseconds(20000), "auto", c10::Device(c10::kCPU));
  ASSERT_TRUE(one.active());
  EXPECT_EQ(one.backend(), "gloo");
  at::Tensor t = at::arange(4, at::kFloat);
  one.all_reduce_sum(t);
  EXPECT_TRUE(t.equal(at::arange(4, at::kFloat)));
  one.start_all_reduce_sum(t);
  one.wait_all("test");
  EXPECT_TRUE(t.equal(at::arange(4, at::kFloat)));
  EXPECT_TRUE(one.any(true));
  EXPECT_FALSE(one.any(false));

  // Without other ranks, any_after answers `lag` calls late.
  std::vector<bool> answers;
  for (bool mine : {false, true, false, false, true}) answers.push_back(one.any_after(mine, 2));
  EXPECT_EQ(answers, std::vector<bool>({false, false, false, true, false}));

  const std::string nccl_on_cpu = test::error_of([&] {
    runtime::Collective c(env, std::chrono::milliseconds(1000), "nccl", c10::Device(c10::kCPU));
  });
  EXPECT_NE(nccl_on_cpu.find("dist.backend = \"nccl\""), std::string::npos) << nccl_on_cpu;
}

// Two ranks (threads of this process) over Gloo: a wish of one rank reaches both on the same call,
// `lag` calls later; a wish of the other later still, and both are answered.
TEST(DistributedEnv, RanksAgreeOnStoppingOnTheSameCall) {
  if (runtime::available_backends().find("gloo") == std::string::npos) GTEST_SKIP() << "no Gloo in this build";
  const std::vector<std::vector<bool>> wishes = {{false, false, true, false, false, false, false},
                                                 {false, false, false, false, true, false, false}};
  std::vector<std::vector<bool>> answers(2);
  const std::vector<std::string> errors = test::run_ranks(2, [&](runtime::Collective& c, int rank) {
    for (bool mine : wishes[static_cast<std::size_t>(rank)]) answers[static_cast<std::size_t>(rank)].push_back(c.any_after(mine, 2));
  });
  const std::vector<bool> expected = {false, false, false, false, true, false, true};
  for (int rank = 0; rank < 2; ++rank) {
    EXPECT_EQ(errors[static_cast<std::size_t>(rank)], "");
    EXPECT_EQ(answers[static_cast<std::size_t>(rank)], expected) << "rank " << rank;
  }
}

}  // namespace
}  // namespace mds

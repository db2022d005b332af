// Several ranks of a data-parallel group in one test process: one thread each, joined over c10d Gloo
// on loopback.
#pragma once

#include <chrono>
#include <exception>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "runtime/distributed.h"
#include "runtime/launch.h"

namespace mds::test {

// Runs fn(group, rank) for ranks 0 .. world - 1 at once and waits for all; each rank's error, "" where
// it ended without one.
inline std::vector<std::string> run_ranks(int world, const std::function<void(runtime::Collective&, int)>& fn) {
  const int port = runtime::free_port();
  std::vector<std::string> errors(static_cast<std::size_t>(world));
  std::vector<std::thread> ranks;
  for (int rank = 0; rank < world; ++rank) {
    ranks.emplace_back([&, rank] {
      try {
        runtime::DistributedEnv env;
        env.launched = true;
        env.rank = rank;
        env.world_size = world;
        env.master_port = port;
        runtime::Collective group(env, std::chrono::milliseconds(20000), "gloo", c10::Device(c10::kCPU));
        fn(group, rank);
      } catch (const std::exception& e) {
        errors[static_cast<std::size_t>(rank)] = e.what();
      }
    });
  }
  for (std::thread& t : ranks) t.join();
  return errors;
}

}  // namespace mds::test

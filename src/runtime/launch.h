// `moe-diffuseq launch -n N -- ARGS...`: N local processes of this program, each with the variables
// a data-parallel run reads (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT), for users
// without torchrun. A process that fails stops the others (SIGTERM, then SIGKILL after a grace
// period); Ctrl-C and SIGTERM are passed on to all of them.
#pragma once

#include <string>
#include <vector>

namespace mds::runtime {

struct LaunchOptions {
  int processes = 2;
  std::string master_addr = "127.0.0.1";
  int master_port = 0;        // 0: a free port of this machine
  double grace_seconds = 30;  // after a failure, how long the others get to stop on SIGTERM
};

// Runs `program` with `args` N times; returns 0 when all succeed, else the first failure's exit status
// (128 + signal for a killed one), having said which rank failed and how.
int launch_local(const std::string& program, const std::vector<std::string>& args, const LaunchOptions& options);

// A TCP port of this machine that nobody listens on now.
int free_port();

}  // namespace mds::runtime

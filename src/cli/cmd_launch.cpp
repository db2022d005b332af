// `moe-diffuseq launch -n N [--master-addr A] [--master-port P] -- COMMAND ARGS...`: N local processes
// of `moe-diffuseq COMMAND ARGS...` for a data-parallel run (src/runtime/launch.h).
#include <CLI/CLI.hpp>

#include <unistd.h>

#include <cstdlib>
#include <memory>

#include "cli/commands.h"
#include "core/error.h"
#include "runtime/launch.h"

namespace mds::cli {

void add_launch_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("launch", "run N local processes of a command, data-parallel (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT set for each)");
  auto o = std::make_shared<runtime::LaunchOptions>();
  auto args = std::make_shared<std::vector<std::string>>();
  cmd->add_option("-n,--processes", o->processes, "processes (one per GPU, or CPU processes)")->required()->check(CLI::Range(1, 1024));
  cmd->add_option("--master-addr", o->master_addr, "address of rank 0 (the rendezvous)");
  cmd->add_option("--master-port", o->master_port, "its port (default: a free one)")->check(CLI::Range(0, 65535));
  cmd->add_option("--grace", o->grace_seconds, "seconds the others get to stop after one fails")
      ->check(CLI::Range(0.0, 86400.0));
  cmd->add_option("command", *args, "the command and its arguments, after --, e.g. -- train --config my.toml")->required();
  cmd->callback([o, args] {
    char self[4096];
    const ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
    MDS_CHECK(n > 0, "launch: cannot find this program's path (/proc/self/exe)");
    self[n] = '\0';
    const int rc = runtime::launch_local(self, *args, *o);
    if (rc != 0) std::exit(rc);
  });
}

}  // namespace mds::cli

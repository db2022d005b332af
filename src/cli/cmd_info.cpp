// `moe-diffuseq info`: what this build is and what hardware it sees.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <memory>

#include "cli/commands.h"
#include "runtime/device.h"

namespace mds::cli {

using runtime::runtime_description;

void add_info_command(CLI::App& app) {
  auto* info = app.add_subcommand("info", "print the LibTorch build, the GPUs and the CPU threads");
  auto build = std::make_shared<bool>(false);
  info->add_flag("--build-config", *build, "also print LibTorch's build configuration (BLAS, flags)");
  info->callback([build] {
    std::printf("moe-diffuseq 0.1.0\n%s", runtime_description(*build).c_str());
  });
}

}  // namespace mds::cli

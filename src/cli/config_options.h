// The --config / --set flags shared by every subcommand that takes a configuration.
#pragma once

#include <CLI/CLI.hpp>

#include <string>
#include <vector>

#include "core/config.h"

namespace mds::cli {

struct ConfigOptions {
  std::string path;
  std::vector<std::string> sets;

  void add_to(CLI::App* command) {
    command->add_option("-c,--config", path, "TOML configuration file (keys not given keep their defaults)");
    command->add_option("--set", sets, "override a key: --set section.key=value (repeatable)");
  }
  Config resolve() const { return Config::load(path, sets); }
};

}  // namespace mds::cli

// `moe-diffuseq config show|schema`: print the resolved configuration or the key reference.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <memory>

#include "cli/commands.h"
#include "cli/config_options.h"

namespace mds::cli {

void add_config_command(CLI::App& app) {
  auto* config = app.add_subcommand("config", "print and check configurations");
  config->require_subcommand(1);

  auto options = std::make_shared<ConfigOptions>();
  auto docs = std::make_shared<bool>(false);
  auto* show = config->add_subcommand("show", "print the resolved configuration as TOML (validates it)");
  options->add_to(show);
  show->add_flag("--docs", *docs, "precede each key with its documentation");
  show->callback([options, docs] {
    Config resolved = options->resolve();
    std::fputs(resolved.to_toml(*docs).c_str(), stdout);
  });

  auto* schema = config->add_subcommand("schema", "print every key, its type, default and meaning (markdown)");
  schema->callback([] { std::fputs(config_schema_markdown().c_str(), stdout); });
}

}  // namespace mds::cli

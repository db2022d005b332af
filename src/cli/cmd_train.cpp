// `moe-diffuseq train --config F.toml [--set k=v ...] [--resume]`.
#include <CLI/CLI.hpp>

#include <memory>

#include "cli/commands.h"
#include "cli/config_options.h"
#include "train/trainer.h"

namespace mds::cli {

using train::TrainOptions;

void add_train_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("train", "train a model (run directory: train.out_dir)");
  auto config = std::make_shared<ConfigOptions>();
  auto options = std::make_shared<TrainOptions>();
  config->add_to(cmd);
  cmd->add_flag("--resume", options->resume, "continue from the newest checkpoint of train.out_dir");
  cmd->add_option("--stop-after", options->stop_after, "stop (with a checkpoint) after N steps of this run")
      ->check(CLI::Validator([](std::string& v) { return v.rfind('-', 0) == 0 ? "must be 0 or more, got " + v : std::string(); },
                             "N >= 0"));
  cmd->callback([config, options] { train::train(config->resolve(), *options); });
}

}  // namespace mds::cli

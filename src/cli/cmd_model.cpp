// `moe-diffuseq model describe`: the architecture and parameter counts a configuration gives.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <memory>

#include "cli/commands.h"
#include "cli/config_options.h"
#include "core/error.h"
#include "data/tokenizer.h"
#include "model/denoiser.h"

namespace mds::cli {

using data::Tokenizer;
using model::Denoiser;
using model::model_options_from_config;

void add_model_command(CLI::App& app) {
  auto* model = app.add_subcommand("model", "inspect model architectures");
  model->require_subcommand(1);
  auto options = std::make_shared<ConfigOptions>();
  auto vocab = std::make_shared<int64_t>(0);
  auto* describe = model->add_subcommand("describe", "print the layers and parameter counts (total, active per token)");
  options->add_to(describe);
  describe->add_option("--vocab-size", *vocab, "vocabulary size (default: from data.tokenizer, else 8000)");
  describe->callback([options, vocab] {
    Config config = options->resolve();
    int64_t v = *vocab;
    if (v == 0 && !config.get_string("data.tokenizer").empty())
      v = Tokenizer::load(config.get_string("data.tokenizer")).vocab_size();
    if (v == 0) v = 8000;
    Denoiser denoiser(model_options_from_config(config, v));
    std::printf("%s\n", denoiser->describe().c_str());
  });
}

}  // namespace mds::cli

// `moe-diffuseq model describe`: the architecture and parameter counts a configuration gives.
// `moe-diffuseq model compare A B`: how far apart two checkpoints' tensors are.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <memory>

#include "cli/commands.h"
#include "cli/config_options.h"
#include "core/error.h"
#include "core/fs.h"
#include "io/tensor_compare.h"
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

  auto paths = std::make_shared<std::vector<std::string>>();
  auto tolerance = std::make_shared<double>(0.0);
  auto* compare = model->add_subcommand(
      "compare", "the largest difference between two checkpoints (or .safetensors files), tensor by tensor; "
                 "exits 1 when one is over --tolerance");
  compare->add_option("paths", *paths, "two checkpoint directories or .safetensors files")->required()->expected(2);
  compare->add_option("--tolerance", *tolerance, "largest absolute difference allowed (default 0: bit for bit)");
  compare->callback([paths, tolerance] {
    // A checkpoint directory: the files of its weights and optimizer state that both hold.
    std::vector<std::pair<std::string, std::string>> files;
    const std::string& a = paths->at(0);
    const std::string& b = paths->at(1);
    if (fs::is_directory(a) || fs::is_directory(b)) {
      MDS_CHECK(fs::is_directory(a) && fs::is_directory(b), "model compare: give two directories or two files");
      for (const char* f : {"raw.safetensors", "model.safetensors", "optimizer.safetensors"})
        if (fs::exists(fs::join(a, f)) || fs::exists(fs::join(b, f))) files.emplace_back(fs::join(a, f), fs::join(b, f));
      MDS_CHECK(!files.empty(), "model compare: ", a, " and ", b, " hold no .safetensors files");
    } else {
      files.emplace_back(a, b);
    }
    double worst = 0.0;
    for (const auto& [fa, fb] : files) {
      const auto diffs = io::compare_tensors(io::load_safetensors(fa), io::load_safetensors(fb));
      double file_worst = 0.0;
      std::string where;
      for (const auto& d : diffs) {
        if (!d.problem.empty()) std::printf("%s: %s: %s\n", fa.c_str(), d.name.c_str(), d.problem.c_str());
        if (d.max_abs > file_worst || where.empty()) {
          file_worst = d.max_abs;
          where = d.name;
        }
      }
      std::printf("%s: %zu tensors, largest difference %.3g (%s)\n", fa.c_str(), diffs.size(), file_worst,
                  where.c_str());
      worst = std::max(worst, file_worst);
    }
    if (worst > *tolerance) {
      std::printf("differ: %.3g > tolerance %.3g\n", worst, *tolerance);
      std::exit(1);
    }
    std::printf("same within %.3g\n", *tolerance);
  });
}

}  // namespace mds::cli

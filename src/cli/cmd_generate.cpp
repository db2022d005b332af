// `moe-diffuseq generate --checkpoint DIR --input F.jsonl --output P.jsonl [...]`.
#include <CLI/CLI.hpp>

#include <memory>
#include <optional>

#include "cli/commands.h"
#include "core/log.h"
#include "infer/generator.h"

namespace mds::cli {

namespace {
struct GenerateArgs {
  std::string checkpoint, input, output;
  std::vector<std::string> sets;
  std::optional<std::string> sampler, skip_type, mbr_metric;
  std::optional<int64_t> steps, seed, batch_size, mbr;
  bool clamp = false, discrete_noise = false;
};
}  // namespace

void add_generate_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("generate", "generate targets for the sources of a jsonl file");
  auto a = std::make_shared<GenerateArgs>();
  cmd->add_option("--checkpoint", a->checkpoint, "checkpoint directory (RUN/best or RUN/checkpoints/step_N)")
      ->required();
  cmd->add_option("--input", a->input, "jsonl with \"src\" (\"trg\", \"id\" kept when present)")->required();
  cmd->add_option("--output", a->output, "predictions jsonl (- for standard output)")->required();
  cmd->add_option("--sampler", a->sampler, "dpm++2m (default) | dpm++3m | ddim | ancestral");
  cmd->add_option("--steps", a->steps, "model evaluations (default sample.steps)");
  cmd->add_option("--skip-type", a->skip_type, "DPM-Solver++ grid: time_uniform | logSNR | time_quadratic");
  cmd->add_option("--seed", a->seed, "sampling seed");
  cmd->add_option("--batch-size", a->batch_size, "sequences generated at once");
  cmd->add_option("--mbr", a->mbr, "candidates per input for minimum-Bayes-risk selection");
  cmd->add_option("--mbr-metric", a->mbr_metric, "bleu (default) | rouge-l");
  cmd->add_flag("--clamp", a->clamp, "round x0 predictions to the nearest embedding at every step");
  cmd->add_flag("--discrete-noise", a->discrete_noise, "DiffuSeq-v2 discrete absorbing noise (ancestral)");
  cmd->add_option("--set", a->sets, "override a key of the checkpoint's configuration (e.g. train.device=cpu)");
  cmd->callback([a] {
    std::vector<std::string> sets = a->sets;
    if (a->sampler) sets.push_back("sample.sampler=" + *a->sampler);
    if (a->steps) sets.push_back("sample.steps=" + std::to_string(*a->steps));
    if (a->skip_type) sets.push_back("sample.skip_type=" + *a->skip_type);
    if (a->seed) sets.push_back("sample.seed=" + std::to_string(*a->seed));
    if (a->batch_size) sets.push_back("sample.batch_size=" + std::to_string(*a->batch_size));
    if (a->mbr) sets.push_back("sample.mbr=" + std::to_string(*a->mbr));
    if (a->mbr_metric) sets.push_back("sample.mbr_metric=" + *a->mbr_metric);
    if (a->clamp) sets.push_back("sample.clamp=true");
    if (a->discrete_noise) sets.push_back("sample.discrete_noise=true");
    TextGenerator generator(a->checkpoint, sets);
    GenerateOptions options = generate_options_from_config(generator.config());
    GenerateFileStats stats = generate_file(generator, a->input, a->output, options);
    log_info("generated ", stats.examples, " predictions with ", options.sampler.sampler, " (", options.sampler.steps,
             " steps", options.mbr > 1 ? str_cat(", MBR over ", options.mbr) : std::string(), ") on ",
             generator.device(), " (", to_string(generator.precision()), ") in ",
             stats.seconds, " s (", 1000.0 * stats.seconds / static_cast<double>(stats.examples),
             " ms per example) -> ", a->output);
  });
}

}  // namespace mds::cli

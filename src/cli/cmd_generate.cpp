// `moe-diffuseq generate --checkpoint DIR --input F.jsonl --output P.jsonl [...]`.
#include <CLI/CLI.hpp>

#include <memory>
#include <optional>

#include "cli/commands.h"
#include "core/log.h"
#include "infer/generator.h"

namespace mds::cli {

using infer::GenerateFileStats;
using infer::GenerateOptions;
using infer::TextGenerator;
using infer::check_generate_options;
using infer::generate_file;
using runtime::to_string;

namespace {
struct GenerateArgs {
  std::string checkpoint, input, output;
  std::vector<std::string> sets;
  std::optional<std::string> sampler, skip_type, mbr_metric, length;
  std::optional<int64_t> steps, seed, batch_size, mbr, remask_rounds;
  std::optional<double> start_time, mbr_noise_share, mbr_compact_share, rewrite_threshold;
  bool clamp = false, discrete_noise = false, mbr_source = false;
};
}  // namespace

void add_generate_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("generate", "generate targets for the sources of a jsonl file");
  auto a = std::make_shared<GenerateArgs>();
  cmd->add_option("--checkpoint", a->checkpoint, "checkpoint directory (RUN/best or RUN/checkpoints/step_N)")
      ->required();
  cmd->add_option("--input", a->input, "jsonl with \"src\" (\"trg\", \"id\" kept when present)")->required();
  cmd->add_option("--output", a->output, "predictions jsonl (- for standard output)")->required();
  cmd->add_option("--sampler", a->sampler, "dpm++2m (default) | dpm++3m | ddim | ancestral")
      ->check(CLI::IsMember({"dpm++2m", "dpm++3m", "ddim", "ancestral"}));
  cmd->add_option("--steps", a->steps, "model evaluations (default sample.steps)");
  cmd->add_option("--skip-type", a->skip_type, "DPM-Solver++ grid: time_uniform | logSNR | time_quadratic")
      ->check(CLI::IsMember({"time_uniform", "logSNR", "time_quadratic"}));
  cmd->add_option("--start-time", a->start_time,
                  "DPM-Solver++ from the source tokens noised to this share of the diffusion time (default "
                  "sample.start_time; 1 = from noise)");
  cmd->add_option("--length", a->length,
                  "target tokens of each output: predict (the length head's; default sample.length) | source (the "
                  "source's length: with --start-time below 1 every source word keeps its place)")
      ->check(CLI::IsMember({"predict", "source"}));
  cmd->add_option("--seed", a->seed, "sampling seed")->check(CLI::NonNegativeNumber);
  cmd->add_option("--batch-size", a->batch_size, "sequences generated at once");
  cmd->add_option("--mbr", a->mbr, "candidates per input for minimum-Bayes-risk selection");
  cmd->add_option("--mbr-metric", a->mbr_metric, "bleu (default) | rouge-l")
      ->check(CLI::IsMember({"bleu", "rouge-l"}));
  cmd->add_flag("--mbr-source", a->mbr_source,
                "editing tasks: the source (cut to the output's length: a summary's lead) is one more MBR "
                "candidate, so an output changes it only where the samples agree on the change (with --mbr of at "
                "least 2; sample.mbr_source)");
  cmd->add_option("--mbr-noise-share", a->mbr_noise_share,
                  "with --mbr and --start-time below 1: this share of the candidates starts from noise (default "
                  "sample.mbr_noise_share)")
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--mbr-compact-share", a->mbr_compact_share,
                  "a canvas model trained with data.canvas_rewrite_compact: this share of the --mbr candidates starts "
                  "from the source packed at the first places, a rewrite's start (default sample.mbr_compact_share)")
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--rewrite-threshold", a->rewrite_threshold,
                  "a model with a rewrite head (data.canvas_rewrite_compact): rows whose head gives them a higher "
                  "probability of being a rewrite start from the packed source, the others on the canvas; 1 = none "
                  "(default sample.rewrite_threshold)")
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--remask-rounds", a->remask_rounds,
                  "mask-predict rounds after the solver: the least confident tokens are denoised again (default "
                  "sample.remask_rounds; sample.remask_share, sample.remask_time)")
      ->check(CLI::Range(int64_t{0}, int64_t{16}));
  cmd->add_flag("--clamp", a->clamp, "round x0 predictions to the nearest embedding at every step");
  cmd->add_flag("--discrete-noise", a->discrete_noise, "DiffuSeq-v2 discrete absorbing noise (ancestral)");
  cmd->add_option("--set", a->sets, "override a key of the checkpoint's configuration (e.g. train.device=cpu)");
  cmd->callback([a] {
    TextGenerator generator(a->checkpoint, a->sets);
    GenerateOptions& o = generator.options();  // the checkpoint's sample.* keys (and --set), then the flags
    if (a->sampler) o.sampler.sampler = *a->sampler;
    if (a->steps) o.sampler.steps = *a->steps;
    if (a->skip_type) o.sampler.skip_type = *a->skip_type;
    if (a->start_time) o.sampler.start_time = *a->start_time;
    if (a->length) o.length = *a->length;
    if (a->seed) o.seed = static_cast<uint64_t>(*a->seed);
    if (a->batch_size) o.batch_size = *a->batch_size;
    if (a->mbr) o.mbr = *a->mbr;
    if (a->mbr_metric) o.mbr_metric = *a->mbr_metric;
    if (a->mbr_source) o.mbr_source = true;
    if (a->mbr_noise_share) o.mbr_noise_share = *a->mbr_noise_share;
    if (a->mbr_compact_share) o.mbr_compact_share = *a->mbr_compact_share;
    if (a->rewrite_threshold) o.rewrite_threshold = *a->rewrite_threshold;
    if (a->remask_rounds) o.remask_rounds = *a->remask_rounds;
    if (a->clamp) o.sampler.clamp = true;
    if (a->discrete_noise) o.sampler.discrete_noise = true;
    check_generate_options(o);
    GenerateFileStats stats = generate_file(generator, a->input, a->output);
    log_info("generated ", stats.examples, " predictions with ", o.sampler.sampler, " (", o.sampler.steps, " steps",
             o.mbr > 1 ? str_cat(", MBR over ", o.mbr, o.mbr_source ? " and the source" : "",
                                 mbr_noise_candidates(o) > 0 ? str_cat(", ", mbr_noise_candidates(o), " from noise") : "")
                      : std::string(),
             o.remask_rounds > 0 ? str_cat(", ", o.remask_rounds, " mask-predict rounds") : std::string(), ") on ", generator.device(), " (",
             to_string(generator.precision()), ") in ", stats.seconds, " s (",
             1000.0 * stats.seconds / static_cast<double>(stats.examples), " ms per example) -> ", a->output);
  });
}

}  // namespace mds::cli

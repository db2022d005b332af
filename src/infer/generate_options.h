// The options of one generation (sample.* of the configuration, or a request's fields) and their
// checks, apart from the generator: the HTTP request parser uses them without LibTorch.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/config.h"
#include "diffusion/sampler_options.h"

namespace mds::infer {

struct GenerateOptions {
  diffusion::SamplerOptions sampler;
  uint64_t seed = 0;
  int64_t batch_size = 64;
  int64_t mbr = 1;                  // candidates per input; 1 = no MBR
  std::string mbr_metric = "bleu";  // bleu | rouge-l
  // The source is one more MBR candidate (metrics/mbr.h mbr_select_or_source): an output differs from
  // its source only where the samples agree on the change. Inert with mbr = 1 (no samples to agree):
  // a checkpoint that sets it still answers --mbr 1 with its one sample.
  bool mbr_source = false;
  // The share of the MBR candidates that start from noise where the sampler starts from the source
  // (sample.start_time < 1): a model trained to edit its source writes short outputs right from noise
  // and long ones from the source, and MBR keeps the candidate the others agree with. 0 = all start at
  // start_time; inert with mbr = 1.
  double mbr_noise_share = 0.0;
  // On a canvas trained with data.canvas_rewrite_compact: the share of the MBR candidates that start
  // from the source packed at the first places (a rewrite's start) rather than stretched over the
  // canvas (an edit's): MBR chooses within the kind the model is surer of (surer_kind). The candidates
  // before the noise ones; 0 = none; inert with mbr = 1.
  double mbr_compact_share = 0.0;
  // A model with a rewrite head (data.canvas_rewrite_compact) and mbr_compact_share = 0: a row whose
  // head gives it a probability above this of being a rewrite starts every candidate packed; the others
  // on the canvas. 1 = every row on the canvas.
  double rewrite_threshold = 0.5;
  // How many target positions each row denoises: the length head's prediction (without one, the
  // whole region, the model's EOS ending the text), or the row's source length (the start from the
  // source puts target token j on source token j: the same length keeps every source word in place).
  std::string length = "predict";  // predict | source
  // Mask-predict rounds after the solver (infer/remask.h): round r of R sends remask_share (R - r + 1) / R
  // of each output's tokens, the least confident, to m, and solves again from remask_time.
  int64_t remask_rounds = 0;
  double remask_share = 0.3;
  double remask_time = 0.1;
};

// How many of the options.mbr candidates start from noise (the last ones): round(mbr_noise_share * mbr),
// none without MBR.
int64_t mbr_noise_candidates(const GenerateOptions& options);
// How many of the options.mbr candidates start compact (those just before the noise ones):
// round(mbr_compact_share * mbr), none without MBR.
int64_t mbr_compact_candidates(const GenerateOptions& options);
// With candidates started compact and others (sample.mbr_compact_share): the indices of the kind the
// model is surer of, its mean `confidence_K[k]` (GeneratedBatch::confidence) over the kind's candidates
// the higher (the others on a tie), among which MBR then chooses. From the start that does not fit an
// example the model writes salad, and knows it less surely. Every index where there is one kind.
std::vector<std::size_t> surer_kind(const GenerateOptions& options, const std::vector<double>& confidence_K);
// The sampler of MBR candidate k (0-based): options.sampler, from noise for the last
// mbr_noise_candidates(options) of them, compact for the mbr_compact_candidates(options) before those.
diffusion::SamplerOptions candidate_sampler(const GenerateOptions& options, int64_t k);

// The sample.* keys (and diffusion.absorb_rate for the discrete noise).
GenerateOptions generate_options_from_config(const Config& config);
// Throws naming the command-line option for a value out of range (--steps, --batch-size, --mbr, ...).
void check_generate_options(const GenerateOptions& options);

}  // namespace mds::infer

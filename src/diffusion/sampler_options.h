// What a sampler is asked to do (sample.* of the configuration), apart from the sampler itself: the
// HTTP request parser and the command line check these without LibTorch.
#pragma once

#include <cstdint>
#include <string>

#include "core/config.h"

namespace mds::diffusion {

struct SamplerOptions {
  std::string sampler = "dpm++2m";  // dpm++2m | dpm++3m | ddim | ancestral
  int64_t steps = 10;
  std::string skip_type = "time_uniform";  // DPM-Solver++ grid
  std::string time_mapping = "upstream";   // upstream | v2
  bool clamp = false;                      // replace x0 predictions by the nearest embedding row
  bool discrete_noise = false;             // ancestral: DiffuSeq-v2 jumps to m
  double absorb_rate = 0.5;                // gamma for discrete_noise and a start below 1
  // DPM-Solver++ only: the share of the diffusion time the solver starts at. 1 = from noise; below 1
  // from SampleInputs::start_x0_BLC noised to that time (SDEdit), by the forward process: a target
  // token jumps to m with probability absorb_rate * sigma (start_jumps), and the rest get
  // m + alpha (x0 - m) + sigma eps.
  double start_time = 1.0;
  bool start_jumps = true;  // false: no token jumps to m at the start (the given x0 kept whole)
  // Not the sampler's: on a canvas (data.target_canvas = "source"), the start from the source packs it
  // at the first places, as a rewrite trains with data.canvas_rewrite_compact, instead of stretching
  // it over the canvas. Set for the MBR candidates of sample.mbr_compact_share, not by a key.
  bool compact_start = false;
  // Not the sampler's: whether the generator replays the model call of each step as a CUDA graph,
  // for batches of at most cuda_graphs_max_len positions a row (longer ones are bound by the GPU, where
  // the capture costs more than it saves: bench/README.md, "Where CUDA graphs stop paying").
  bool cuda_graphs = true;
  int64_t cuda_graphs_max_len = 8704;
  // Not the sampler's either: whether the weights' casts to the compute dtype are made once for all the
  // steps of a run (core/cast_cache.h) instead of in every model call.
  bool cast_cache = true;
};

// sample.sampler, sample.steps, sample.skip_type, sample.time_mapping, sample.clamp,
// sample.discrete_noise, sample.start_time, sample.start_jumps, sample.cuda_graphs,
// sample.cuda_graphs_max_len, sample.cast_cache and diffusion.absorb_rate.
SamplerOptions sampler_options_from_config(const Config& config);

}  // namespace mds::diffusion

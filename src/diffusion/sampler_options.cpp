#include "diffusion/sampler_options.h"

namespace mds::diffusion {

SamplerOptions sampler_options_from_config(const Config& c) {
  SamplerOptions o;
  o.sampler = c.get_string("sample.sampler");
  o.steps = c.get_int("sample.steps");
  o.skip_type = c.get_string("sample.skip_type");
  o.time_mapping = c.get_string("sample.time_mapping");
  o.clamp = c.get_bool("sample.clamp");
  o.discrete_noise = c.get_bool("sample.discrete_noise");
  o.absorb_rate = c.get_float("diffusion.absorb_rate");
  o.start_time = c.get_float("sample.start_time");
  o.start_jumps = c.get_bool("sample.start_jumps");
  o.cuda_graphs = c.get_bool("sample.cuda_graphs");
  o.cuda_graphs_max_len = c.get_int("sample.cuda_graphs_max_len");
  o.cast_cache = c.get_bool("sample.cast_cache");
  return o;
}

}  // namespace mds::diffusion

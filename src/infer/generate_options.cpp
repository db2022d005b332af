#include "infer/generate_options.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace mds::infer {

using diffusion::sampler_options_from_config;

GenerateOptions generate_options_from_config(const Config& c) {
  GenerateOptions o;
  o.sampler = sampler_options_from_config(c);
  o.seed = static_cast<uint64_t>(c.get_int("sample.seed"));
  o.batch_size = c.get_int("sample.batch_size");
  o.mbr = c.get_int("sample.mbr");
  o.mbr_metric = c.get_string("sample.mbr_metric");
  o.mbr_source = c.get_bool("sample.mbr_source");
  o.mbr_noise_share = c.get_float("sample.mbr_noise_share");
  o.mbr_compact_share = c.get_float("sample.mbr_compact_share");
  o.rewrite_threshold = c.get_float("sample.rewrite_threshold");
  o.length = c.get_string("sample.length");
  o.remask_rounds = c.get_int("sample.remask_rounds");
  o.remask_share = c.get_float("sample.remask_share");
  o.remask_time = c.get_float("sample.remask_time");
  return o;
}

int64_t mbr_noise_candidates(const GenerateOptions& o) {
  if (o.mbr < 2) return 0;
  return std::clamp<int64_t>(std::llround(o.mbr_noise_share * static_cast<double>(o.mbr)), 0, o.mbr);
}

int64_t mbr_compact_candidates(const GenerateOptions& o) {
  if (o.mbr < 2) return 0;
  return std::clamp<int64_t>(std::llround(o.mbr_compact_share * static_cast<double>(o.mbr)), 0, o.mbr);
}

std::vector<std::size_t> surer_kind(const GenerateOptions& o, const std::vector<double>& confidence_K) {
  MDS_CHECK(static_cast<int64_t>(confidence_K.size()) == o.mbr, "surer_kind: ", confidence_K.size(),
            " confidences for ", o.mbr, " candidates");
  const int64_t compact = mbr_compact_candidates(o), to = o.mbr - mbr_noise_candidates(o), from = to - compact;
  const auto is_compact = [&](int64_t k) { return k >= from && k < to; };
  std::vector<std::size_t> kept;
  if (compact == 0 || compact == o.mbr) {
    for (int64_t k = 0; k < o.mbr; ++k) kept.push_back(static_cast<std::size_t>(k));
    return kept;
  }
  double in = 0.0, out = 0.0;
  for (int64_t k = 0; k < o.mbr; ++k) (is_compact(k) ? in : out) += confidence_K[static_cast<std::size_t>(k)];
  const bool packed = in / static_cast<double>(compact) > out / static_cast<double>(o.mbr - compact);
  for (int64_t k = 0; k < o.mbr; ++k)
    if (is_compact(k) == packed) kept.push_back(static_cast<std::size_t>(k));
  return kept;
}

diffusion::SamplerOptions candidate_sampler(const GenerateOptions& o, int64_t k) {
  diffusion::SamplerOptions s = o.sampler;
  const int64_t noise = o.mbr - mbr_noise_candidates(o), compact = noise - mbr_compact_candidates(o);
  if (k >= noise)
    s.start_time = 1.0;
  else if (k >= compact)
    s.compact_start = true;
  return s;
}

void check_generate_options(const GenerateOptions& o) {
  MDS_CHECK(o.sampler.steps >= 1, "--steps must be at least 1, got ", o.sampler.steps);
  MDS_CHECK(o.batch_size >= 1, "--batch-size must be at least 1, got ", o.batch_size);
  MDS_CHECK(o.mbr >= 1, "--mbr must be at least 1, got ", o.mbr);
  MDS_CHECK(o.sampler.start_time > 0.0 && o.sampler.start_time <= 1.0,
            "--start-time (sample.start_time) must be in (0, 1], got ", o.sampler.start_time);
  MDS_CHECK(o.sampler.start_time == 1.0 || o.sampler.sampler.rfind("dpm++", 0) == 0,
            "--start-time (sample.start_time) below 1 needs a DPM-Solver++ sampler (dpm++2m, dpm++3m), not ",
            o.sampler.sampler);
  MDS_CHECK(o.mbr_noise_share >= 0.0 && o.mbr_noise_share <= 1.0,
            "--mbr-noise-share (sample.mbr_noise_share) must be in [0, 1], got ", o.mbr_noise_share);
  MDS_CHECK(o.mbr_compact_share >= 0.0 && o.mbr_compact_share + o.mbr_noise_share <= 1.0,
            "--mbr-compact-share (sample.mbr_compact_share) must be in [0, 1 - sample.mbr_noise_share], got ",
            o.mbr_compact_share, " with a noise share of ", o.mbr_noise_share);
  MDS_CHECK(o.rewrite_threshold >= 0.0 && o.rewrite_threshold <= 1.0,
            "--rewrite-threshold (sample.rewrite_threshold) must be in [0, 1], got ", o.rewrite_threshold);
  MDS_CHECK(o.mbr_metric == "bleu" || o.mbr_metric == "rouge-l", "--mbr-metric must be bleu or rouge-l, got \"",
            o.mbr_metric, "\"");
  MDS_CHECK(o.remask_rounds >= 0, "--remask-rounds (sample.remask_rounds) must be at least 0, got ", o.remask_rounds);
  MDS_CHECK(o.remask_rounds == 0 || o.sampler.sampler.rfind("dpm++", 0) == 0,
            "--remask-rounds (sample.remask_rounds) needs a DPM-Solver++ sampler (dpm++2m, dpm++3m), not ",
            o.sampler.sampler);
  MDS_CHECK(o.remask_share >= 0.0 && o.remask_share <= 1.0, "sample.remask_share must be in [0, 1], got ",
            o.remask_share);
  MDS_CHECK(o.remask_time > 0.0 && o.remask_time <= 1.0, "sample.remask_time must be in (0, 1], got ", o.remask_time);
  MDS_CHECK(o.length == "predict" || o.length == "source", "--length (sample.length) must be predict or source, got \"",
            o.length, "\"");
}

}  // namespace mds::infer

// The model flags the model-level benchmarks share (train_step_bench, sampling_bench): by default the
// project's default model (src/core/config_schema.cpp); --dim, --layers, ... or --set KEY=VALUE make
// a smaller one (smoke tests on CPU).
#pragma once

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "core/config.h"
#include "kernels/sliding_attention/sliding_attention.h"
#include "model/denoiser.h"
#include "model/model_options.h"

namespace mds::bench {

struct ModelFlags {
  // 0 = the configuration's default.
  int64_t dim = 0, layers = 0, heads = 0, ffn_dim = 0, experts = 0, top_k = 0, window = 0;
  int64_t vocab = 8000;  // the tokenizer's default vocab_size (src/data/tokenizer.h)
  std::vector<std::string> sets;
  // The GPU kernel of dense attention: "fused" (the program's) or "reference" (the masked ops it
  // replaced), so that the two can be timed in one run.
  std::string dense_attention = "fused";
};

inline void add_model_flags(CLI::App& app, ModelFlags& f) {
  app.add_option("--dim", f.dim,
                 "model.dim (0 = default 768); also sets heads = dim/64 and ffn = 4 dim unless given");
  app.add_option("--layers", f.layers, "model.layers (0 = default)");
  app.add_option("--heads", f.heads, "model.heads (0 = default)");
  app.add_option("--ffn-dim", f.ffn_dim, "model.ffn_dim (0 = default)");
  app.add_option("--experts", f.experts, "moe.experts (0 = default)");
  app.add_option("--top-k", f.top_k, "moe.top_k (0 = default)");
  app.add_option("--window", f.window, "attention.window (0 = default)");
  app.add_option("--vocab", f.vocab, "vocabulary size (the tokenizer's default is 8000)");
  app.add_option("--set", f.sets, "any configuration key, KEY=VALUE (repeatable; applied last)");
  app.add_option("--dense-attention", f.dense_attention,
                 "GPU kernel of dense attention: fused (scaled_dot_product_attention) or reference (what it replaced: "
                 "the masked ops, or the split path for a window that covers the row)")
      ->check(CLI::IsMember({"fused", "reference"}));
}

inline void set_int(Config& c, const std::string& key, int64_t value) {
  c.set(key + "=" + std::to_string(value));
}

// Defaults, then the flags, then --set. Not validated: the caller sets the data keys first.
inline Config model_config(const ModelFlags& f) {
  Config c;
  if (f.dim > 0) {
    set_int(c, "model.dim", f.dim);
    // A smaller width keeps the default's head dim (64) and FFN ratio (4) unless told otherwise.
    if (f.heads == 0) set_int(c, "model.heads", std::max<int64_t>(1, f.dim / 64));
    if (f.ffn_dim == 0) set_int(c, "model.ffn_dim", 4 * f.dim);
  }
  if (f.layers > 0) set_int(c, "model.layers", f.layers);
  if (f.heads > 0) set_int(c, "model.heads", f.heads);
  if (f.ffn_dim > 0) set_int(c, "model.ffn_dim", f.ffn_dim);
  if (f.experts > 0) set_int(c, "moe.experts", f.experts);
  if (f.top_k > 0) set_int(c, "moe.top_k", f.top_k);
  if (f.window > 0) set_int(c, "attention.window", f.window);
  for (const std::string& s : f.sets) c.set(s);
  // Process-wide, as the kernels are: set where the flags become the model's configuration.
  kernels::set_fused_dense_attention(f.dense_attention == "fused");
  return c;
}

inline nlohmann::json model_json(const Config& c, const ModelFlags& f, const model::Denoiser& model) {
  const model::ModelOptions& mo = model->options();
  const model::ParameterCounts counts = model->parameter_counts();
  std::vector<int64_t> dilation;
  for (const auto& a : mo.attention) dilation.push_back(a.dilation_head.front());
  return {{"dim", mo.dim},
          {"layers", mo.layers},
          {"heads", mo.heads},
          {"ffn_dim", mo.ffn_dim},
          {"embed_dim", mo.embed_dim},
          {"experts", mo.experts},
          {"top_k", mo.top_k},
          {"attention", c.get_string("attention.type")},
          {"window", mo.attention.front().window},
          {"dilation_per_layer", dilation},
          {"globals", c.get_string("attention.globals")},
          {"vocab", f.vocab},
          {"max_positions", mo.max_positions},
          {"sets", f.sets},
          {"dense_attention", f.dense_attention},
          {"parameters_total", counts.total},
          {"parameters_active", counts.active},
          {"parameters_experts", counts.experts},
          {"parameters_embedding", counts.embedding}};
}

}  // namespace mds::bench

// Text generation from a checkpoint: tokenize, pack, sample x0 with a diffusion sampler, round to
// tokens with the tied head, cut at the first EOS or PAD, decode.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/config.h"
#include "diffusion/sampler.h"
#include "diffusion/schedule.h"
#include "data/tokenizer.h"
#include "model/batch_tensors.h"
#include "model/denoiser.h"
#include "model/precision.h"

namespace mds {

struct GenerateOptions {
  SamplerOptions sampler;
  uint64_t seed = 0;
  int64_t batch_size = 64;
  int64_t mbr = 1;                  // candidates per input; 1 = no MBR
  std::string mbr_metric = "bleu";  // bleu | rouge-l
};

// Sampler settings from the sample.* keys.
GenerateOptions generate_options_from_config(const Config& config);

class TextGenerator {
 public:
  // Loads DIR/model.safetensors (EMA weights), DIR/config.toml and DIR/tokenizer.model; `overrides` are
  // --set assignments applied to the checkpoint's configuration (sample.*, train.device, ...).
  // The model runs in train.precision resolved for the device (bf16 on GPU by default); the
  // sampler's state, its updates and the final rounding stay float32.
  TextGenerator(const std::string& checkpoint_dir, const std::vector<std::string>& overrides = {});
  // Around a model in memory (validation during training): shares `model`, copies the tokenizer.
  TextGenerator(const Config& config, const Tokenizer& tokenizer, Denoiser model, c10::Device device);
  // One prediction per source, in order.
  std::vector<std::string> generate(const std::vector<std::string>& sources, const GenerateOptions& options);
  // x0 of one packed batch (tensors on device()): float32 [B, L, E], whatever precision() the model
  // runs in. `generator` is a CPU generator (the sampling noise).
  torch::Tensor sample_x0(const BatchTensors& batch, const SamplerOptions& options, at::Generator generator);
  const Config& config() const { return config_; }
  const Tokenizer& tokenizer() const { return tokenizer_; }
  Denoiser& model() { return model_; }
  c10::Device device() const { return device_; }
  Precision precision() const { return precision_; }

 private:
  std::vector<std::string> generate_once(const std::vector<std::string>& sources, const GenerateOptions& options,
                                         uint64_t seed);
  Config config_;
  Tokenizer tokenizer_;
  Denoiser model_{nullptr};
  NoiseSchedule schedule_;
  c10::Device device_{c10::kCPU};
  Precision precision_ = Precision::fp32;
};

struct GenerateFileStats {
  std::size_t examples = 0;
  double seconds = 0;
};

// Reads INPUT (jsonl; "trg" optional), writes OUTPUT jsonl: {"id", "src", "prediction"[, "reference"]}.
GenerateFileStats generate_file(TextGenerator& generator, const std::string& input, const std::string& output,
                                const GenerateOptions& options);

}  // namespace mds

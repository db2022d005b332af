#include "infer/generator.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <numeric>

#include "core/error.h"
#include "core/fs.h"
#include "core/log.h"
#include "data/batcher.h"
#include "data/jsonl.h"
#include "metrics/mbr.h"
#include "model/batch_tensors.h"
#include "model/device.h"
#include "model/state_dict.h"
#include "train/checkpoint.h"

namespace mds {

GenerateOptions generate_options_from_config(const Config& c) {
  GenerateOptions o;
  o.sampler.sampler = c.get_string("sample.sampler");
  o.sampler.steps = c.get_int("sample.steps");
  o.sampler.skip_type = c.get_string("sample.skip_type");
  o.sampler.time_mapping = c.get_string("sample.time_mapping");
  o.sampler.clamp = c.get_bool("sample.clamp");
  o.sampler.discrete_noise = c.get_bool("sample.discrete_noise");
  o.sampler.absorb_rate = c.get_float("diffusion.absorb_rate");
  o.seed = static_cast<uint64_t>(c.get_int("sample.seed"));
  o.batch_size = c.get_int("sample.batch_size");
  o.mbr = c.get_int("sample.mbr");
  o.mbr_metric = c.get_string("sample.mbr_metric");
  return o;
}

TextGenerator::TextGenerator(const std::string& dir, const std::vector<std::string>& overrides) {
  MDS_CHECK(fs::is_directory(dir), "checkpoint ", dir, " is not a directory");
  CheckpointContent ck = read_checkpoint(dir, /*with_training_state=*/false);
  config_.merge_toml(ck.config_toml, dir + "/config.toml");
  for (const auto& o : overrides) config_.set(o);
  config_.validate();
  tokenizer_ = Tokenizer::from_serialized(ck.tokenizer_model);
  set_threads(static_cast<int>(config_.get_int("train.threads")));
  device_ = resolve_device(config_.get_string("train.device"));
  precision_ = resolve_precision(config_, "train.precision", device_);
  model_ = Denoiser(model_options_from_config(config_, tokenizer_.vocab_size()));
  load_state_dict(*model_, ck.model, dir + "/model.safetensors");
  model_->to(device_);
  model_->eval();
  schedule_ = NoiseSchedule::make(config_.get_string("diffusion.schedule"), config_.get_int("diffusion.steps"));
}

TextGenerator::TextGenerator(const Config& config, const Tokenizer& tokenizer, Denoiser model, c10::Device device)
    : config_(config),
      tokenizer_(Tokenizer::from_serialized(tokenizer.serialized())),
      model_(std::move(model)),
      device_(device),
      precision_(resolve_precision(config_, "train.precision", device_)) {
  schedule_ = NoiseSchedule::make(config_.get_string("diffusion.schedule"), config_.get_int("diffusion.steps"));
}

std::vector<std::string> TextGenerator::generate(const std::vector<std::string>& sources, const GenerateOptions& o) {
  MDS_CHECK(o.mbr >= 1, "--mbr must be at least 1");
  if (o.mbr == 1) return generate_once(sources, o, o.seed);
  // MBR: candidates from different seeds, then the one that agrees most with the others.
  std::vector<std::vector<std::string>> candidates;
  for (int64_t k = 0; k < o.mbr; ++k) candidates.push_back(generate_once(sources, o, o.seed + static_cast<uint64_t>(k)));
  std::vector<std::string> out(sources.size());
  for (std::size_t i = 0; i < sources.size(); ++i) {
    std::vector<std::string> options;
    for (const auto& c : candidates) options.push_back(c[i]);
    out[i] = options[mbr_select(options, o.mbr_metric)];
  }
  return out;
}

torch::Tensor TextGenerator::sample_x0(const BatchTensors& bt, const SamplerOptions& options, at::Generator gen) {
  torch::NoGradGuard no_grad;
  SampleInputs in;
  in.anchor_BLE = model_->embed(bt.ids_BL);
  in.trg_mask_BL = bt.trg_mask_BL;
  in.absorbing_E = model_->absorbing();
  in.embedding_VE = model_->embedding_weight();
  // Only the model call runs under autocast: the solver's state and history, clamping and the
  // final rounding stay float32.
  auto predict = [&](const torch::Tensor& x_BLE, const torch::Tensor& model_t_B) {
    PrecisionScope scope(precision_, device_);
    return model_->forward(x_BLE, model_t_B, bt.key_mask_BL, bt.global_mask_BL).x0_BLE.to(x_BLE.scalar_type());
  };
  return sample(schedule_, predict, in, options, gen);
}

std::vector<std::string> TextGenerator::generate_once(const std::vector<std::string>& sources,
                                                      const GenerateOptions& o, uint64_t seed) {
  torch::NoGradGuard no_grad;
  PackOptions pack;
  pack.max_src_len = static_cast<int>(config_.get_int("data.max_src_len"));
  pack.max_trg_len = static_cast<int>(config_.get_int("data.max_trg_len"));
  pack.truncation = parse_truncation(config_.get_string("data.truncation"));
  pack.trg_pad = TargetPadding::max;  // the output may use the whole target region
  pack.globals = parse_global_tokens(config_.get_string("attention.globals"));

  InMemorySource source;
  for (const auto& s : sources) source.add(tokenizer_.encode(s), {});
  // Similar lengths together: less source padding. The output order is restored below.
  std::vector<std::size_t> order(sources.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) { return source.src(a).size < source.src(b).size; });

  at::Generator gen = at::detail::createCPUGenerator(seed);
  std::vector<std::string> out(sources.size());
  for (std::size_t start = 0; start < order.size(); start += static_cast<std::size_t>(o.batch_size)) {
    std::vector<std::size_t> idx(order.begin() + static_cast<std::ptrdiff_t>(start),
                                 order.begin() + static_cast<std::ptrdiff_t>(
                                                     std::min(order.size(), start + static_cast<std::size_t>(o.batch_size))));
    Batch batch = pack_batch(source, idx, pack);
    BatchTensors bt = to_tensors(batch, device_);
    torch::Tensor x0 = sample_x0(bt, o.sampler, gen);
    torch::Tensor ids_BL = model_->logits(x0).argmax(-1).cpu();
    const int64_t first = batch.src_region + 2;  // BOS, source region, SEP
    for (int64_t b = 0; b < batch.batch_size; ++b) {
      std::vector<int32_t> tokens;
      for (int64_t p = first; p < batch.length; ++p) {
        const auto id = static_cast<int32_t>(ids_BL[b][p].item<int64_t>());
        if (id == SpecialTokens::eos || id == SpecialTokens::pad) break;
        tokens.push_back(id);
      }
      out[idx[static_cast<std::size_t>(b)]] = tokenizer_.decode(tokens);
    }
  }
  return out;
}

GenerateFileStats generate_file(TextGenerator& generator, const std::string& input, const std::string& output,
                                const GenerateOptions& o) {
  JsonlOptions jo;
  jo.require_trg = false;
  jo.skip_empty = false;
  JsonlStats js;
  std::vector<Example> examples = read_jsonl(input, jo, &js);
  MDS_CHECK(!examples.empty(), input, ": no examples to generate from");
  std::vector<std::string> sources;
  for (const auto& e : examples) sources.push_back(e.src);
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::string> predictions = generator.generate(sources, o);
  GenerateFileStats stats;
  stats.examples = examples.size();
  stats.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  std::string text;
  for (std::size_t i = 0; i < examples.size(); ++i) {
    const auto& e = examples[i];
    text += "{\"id\": " + json_quote(e.id.empty() ? std::to_string(e.line) : e.id) + ", \"src\": " + json_quote(e.src) +
            ", \"prediction\": " + json_quote(predictions[i]);
    if (!e.trg.empty()) text += ", \"reference\": " + json_quote(e.trg);
    text += "}\n";
  }
  if (output == "-") {
    std::fwrite(text.data(), 1, text.size(), stdout);
  } else {
    fs::write_file_atomic(output, text);
  }
  return stats;
}

}  // namespace mds

// Text generation from a checkpoint: tokenize, pack, sample x0 with a diffusion sampler, round to
// tokens with the tied head, cut at the first EOS or PAD, decode.
//
// Dimensions: B batch, L length, C embedding dim.
#pragma once

#include <ATen/core/Generator.h>
#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/config.h"
#include "data/batcher.h"
#include "data/tokenizer.h"
#include "diffusion/sampler.h"
#include "infer/generate_options.h"
#include "diffusion/schedule.h"
#include "model/batch_tensors.h"
#include "model/denoiser.h"
#include "runtime/runtime.h"

namespace mds::infer {

// The denoiser as the sampler calls it for one packed batch: x0 for x_t at model time t, with the
// batch's masks, in the runtime's precision (only the model call; the result is in x's dtype). With
// self-conditioning, each call feeds the previous call's estimate back (its source positions hold
// `anchor_BLC`), the first call none, as training does. With `cuda_graphs`, on a GPU and a side
// stream, the calls after the first (second, with self-conditioning) replay a CUDA graph.
diffusion::X0Predictor x0_predictor(model::Denoiser& model, const model::BatchTensors& batch,
                                    const torch::Tensor& anchor_BLC, const runtime::Runtime& runtime,
                                    bool cuda_graphs = false);

// Target ids of each row of a batch, up to (not including) the first EOS or PAD; with a length head at
// most the predicted length, at least one token and no special ids. On a canvas (data.target_canvas)
// every place of the source's canvas is read and its empty places (PAD, EOS) are dropped.
struct GeneratedBatch {
  std::vector<std::vector<int32_t>> tokens;
  // Per row: the mean over the places read of the rounding's largest probability (how sure the model
  // is of what it wrote); empty unless the options start MBR candidates compact (surer_kind reads it).
  std::vector<double> confidence;
};

// Whether `row` holds ids and every one of them is blank (blank_V, as Tokenizer::blank_ids gives it).
bool reads_blank(const std::vector<int32_t>& row, const std::vector<uint8_t>& blank_V);
// An output of decided length reads as text: where every id of `row` is blank (blank_V, as
// Tokenizer::blank_ids gives it), the first becomes the id that `first_logits_V` (the first target
// position's logits over the vocabulary) prefers among the ids that are not. Other rows are left alone.
void ensure_text(std::vector<int32_t>& row, const torch::Tensor& first_logits_V, const std::vector<uint8_t>& blank_V);

// What the denoising looks like after a solver step: the text that the model's current x0 estimate
// reads as, for the sources of one packed batch (`rows`: their indices in generate()'s list).
// `candidate` counts the MBR candidates (0 without MBR); `step` runs 1 .. `steps` (model calls).
struct StepUpdate {
  int64_t candidate = 0, step = 0, steps = 0;
  std::vector<std::size_t> rows;
  std::vector<std::string> texts;
};
using StepObserver = std::function<void(const StepUpdate&)>;
// The ids of one packed batch after a model call, as generate_ids reads them: (step, ids).
using IdsObserver = std::function<void(int64_t step, const GeneratedBatch&)>;

// The number of model calls a generation makes per candidate: sample.steps (or the T diffusion steps
// for ancestral sampling asked for more), once more for every mask-predict round.
int64_t model_calls(const GenerateOptions& options, int64_t diffusion_steps);

class TextGenerator {
 public:
  // Loads DIR/model.safetensors (EMA weights), DIR/config.toml and DIR/tokenizer.model; `overrides` are
  // --set assignments applied to the checkpoint's configuration (sample.*, train.device, ...).
  // The model runs in train.precision resolved for the device (bf16 on GPU by default); the
  // sampler's state, its updates and the final rounding stay float32.
  explicit TextGenerator(const std::string& checkpoint_dir, const std::vector<std::string>& overrides = {});
  // Around a model in memory (validation during training, benchmarks): shares `model`, runs it as
  // `runtime` says. The tokenizer (copied) is needed by generate() only.
  TextGenerator(const Config& config, model::Denoiser model, const runtime::Runtime& runtime, const data::Tokenizer* tokenizer = nullptr);

  // The options generate() and generate_ids() use: from the configuration's sample.* keys, then
  // whatever the caller changes.
  GenerateOptions& options() { return options_; }
  const GenerateOptions& options() const { return options_; }
  // What this model cannot do of `options` (check_generate_options checks the rest): rounds need
  // the absorbing state m. Throws mds::Error naming the key.
  void check_options_for_model(const GenerateOptions& options) const;

  // One prediction per source, in order. `observe`, when given, sees the text of every step.
  std::vector<std::string> generate(const std::vector<std::string>& sources, const StepObserver& observe = {});
  // Each source as far as its output reaches: the words a start from the source begins with
  // (sample.start_time below 1), and the candidate sample.mbr_source offers MBR. Where an output is
  // given fewer tokens than its source has (output_lengths), the decoded first tokens of the source as
  // the model reads it; otherwise the source text as given, whole.
  std::vector<std::string> start_texts(const std::vector<std::string>& sources);
  // How generation packs a row: the configuration's data.* keys, with the whole target region.
  const data::PackOptions& pack_options() const { return pack_; }
  // How many of `sources` are longer than data.max_src_len tokens: the model reads only the part that
  // data.truncation keeps of those. It tokenizes them once more than generate() does: about 1.3M
  // tokens/s on one CPU core (8 ms for a 10,000-token document), against about 200 ms to sample an
  // 8,192-token document on an H100 (bench/README.md).
  std::size_t sources_cut(const std::vector<std::string>& sources) const;
  // The target ids of one packed batch (packed with pack_options()), with options().sampler;
  // `generator` is a CPU generator (the sampling noise); `observe` sees the ids read from the x0
  // estimate of every model call (a rounding each: only when asked for).
  GeneratedBatch generate_ids(const data::Batch& batch, at::Generator generator, const IdsObserver& observe = {});
  // x0 of one packed batch (tensors on device()): float32 [B, L, C], whatever precision() the model
  // runs in. `on_x0` sees each model call's x0 estimate.
  // `start`, where given (x0_BLC and jump_BL), replaces the start from the source (options.start_time
  // below 1): the solver starts from start.x0_BLC with the start.jump_BL positions at m.
  struct SolverStart {
    torch::Tensor x0_BLC, jump_BL;
  };
  torch::Tensor sample_x0(const model::BatchTensors& batch, const diffusion::SamplerOptions& options, at::Generator generator,
                          const std::function<void(const torch::Tensor&)>& on_x0 = {}, const SolverStart& start = {});
  // Where mask-predict round `round` (1 .. options().remask_rounds) starts from a solved x0 of `batch`
  // (first: the first target position; length_B as output_lengths() gives it): the target tokens the
  // rounding reads with the least confidence (the share of remask_share_of_round) go to m (jump_BL),
  // the other read tokens start from their words' embeddings, the rest (EOS, padding) from x0.
  SolverStart remask_start(const model::BatchTensors& batch, const torch::Tensor& x0_BLC, int64_t first,
                           const torch::Tensor& length_B, int64_t round);
  // The length head's choice for each row: the number of target tokens before EOS, the median of its
  // distribution over 1 .. T-1 tokens, int64 [B].
  torch::Tensor predict_lengths(const model::BatchTensors& batch);
  // The rows the rewrite head (data.canvas_rewrite_compact) gives a probability above
  // options().rewrite_threshold of being a rewrite: they start from their source packed at the first
  // places. bool [B] on device().
  torch::Tensor predict_rewrites(const model::BatchTensors& batch);
  // The number of target tokens each row of `batch` is given (sample.length): the length head's
  // prediction, or the source's length (at least 1, at most the region less its EOS); undefined where
  // the whole region is denoised (no length head, sample.length = "predict"). int64 [B].
  torch::Tensor output_lengths(const data::Batch& batch, const model::BatchTensors& tensors);

  const Config& config() const { return config_; }
  const data::Tokenizer& tokenizer() const { return tokenizer_; }
  model::Denoiser& model() { return model_; }
  c10::Device device() const { return runtime_.device; }
  runtime::Precision precision() const { return runtime_.precision; }

 private:
  void init_from_config();
  // The sources tokenized, and the rows of each batch generation packs (similar lengths together).
  struct PackedSources {
    data::InMemorySource source;
    std::vector<std::vector<std::size_t>> batches;
  };
  PackedSources pack_sources(const std::vector<std::string>& sources) const;
  std::vector<std::string> generate_once(const std::vector<std::string>& sources,
                                         const diffusion::SamplerOptions& sampler, uint64_t seed, int64_t candidate,
                                         const StepObserver& observe, std::vector<double>* confidence = nullptr);
  // generate_ids with a sampler of its own (an MBR candidate's: candidate_sampler).
  GeneratedBatch generate_ids(const data::Batch& batch, at::Generator generator, const IdsObserver& observe,
                              const diffusion::SamplerOptions& sampler);
  // The target ids of x0 (as the final rounding reads them): rows end at EOS / PAD, or at length_B
  // (a canvas drops its empty places instead, but for the rows marked in `packed`, which started
  // packed; empty = none).
  GeneratedBatch read_ids(const torch::Tensor& x0_BLC, int64_t first, const torch::Tensor& length_B,
                          const std::vector<uint8_t>& packed = {});
  // Mask-predict round `round` of options().remask_rounds on a solved x0 (infer/remask.h): the solver
  // runs again from options().remask_time, started by remask_start(). Returns the new x0.
  torch::Tensor remask_round(const model::BatchTensors& batch, const torch::Tensor& x0_BLC, int64_t first,
                             const torch::Tensor& length_B, int64_t round, at::Generator generator,
                             const std::function<void(const torch::Tensor&)>& on_x0);

  Config config_;
  data::Tokenizer tokenizer_;
  bool has_tokenizer_ = false;
  std::vector<uint8_t> blank_;  // tokenizer_.blank_ids(), for read_ids (empty without a tokenizer)
  model::Denoiser model_{nullptr};
  diffusion::NoiseSchedule schedule_;
  runtime::Runtime runtime_;
  GenerateOptions options_;
  data::PackOptions pack_;
};

struct GenerateFileStats {
  std::size_t examples = 0;
  double seconds = 0;
};

// Reads INPUT (jsonl; "trg" optional), writes OUTPUT jsonl: {"id", "src", "prediction"[, "reference"]},
// with the generator's options().
GenerateFileStats generate_file(TextGenerator& generator, const std::string& input, const std::string& output);

}  // namespace mds::infer

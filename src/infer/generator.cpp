#include "infer/generator.h"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <limits>
#include <memory>
#include <numeric>

#include "core/cast_cache.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/log.h"
#include "data/jsonl.h"
#include "data/source_canvas.h"
#include "data/special_tokens.h"
#include "infer/remask.h"
#include "io/checkpoint.h"
#include "metrics/mbr.h"
#include "model/model_options.h"
#include "model/state_dict.h"
#include "runtime/cuda_graph.h"

namespace mds::infer {

using data::Batch;
using data::Example;
using data::InMemorySource;
using data::JsonlOptions;
using data::JsonlStats;
using data::SpecialTokens;
using data::TargetPadding;
using data::Tokenizer;
using data::json_quote;
using data::pack_batch;
using data::pack_options_from_config;
using data::read_jsonl;
using diffusion::NoiseSchedule;
using diffusion::SampleInputs;
using diffusion::SamplerOptions;
using diffusion::sample;
using io::CheckpointContent;
using io::read_checkpoint;
using model::BatchTensors;
using model::Denoiser;
using model::load_state_dict;
using model::model_options_from_config;
using model::to_tensors;
using runtime::PrecisionScope;
using runtime::Runtime;
using runtime::resolve_runtime;

TextGenerator::TextGenerator(const std::string& dir, const std::vector<std::string>& overrides) {
  MDS_CHECK(fs::is_directory(dir), "checkpoint ", dir, " is not a directory");
  CheckpointContent ck = read_checkpoint(dir, /*with_training_state=*/false);
  // Without its configuration the defaults would build another model; without its tokenizer the
  // ids would mean nothing: a checkpoint needs both.
  MDS_CHECK(!ck.config_toml.empty(), "checkpoint ", dir, " has no config.toml (every checkpoint holds the "
            "configuration it was trained with: copy the whole directory)");
  MDS_CHECK(!ck.tokenizer_model.empty(), "checkpoint ", dir, " has no tokenizer.model (every checkpoint holds "
            "its tokenizer: copy the whole directory)");
  // Weights holding NaN or inf would generate nothing but empty text.
  for (const auto& [name, t] : ck.model)
    MDS_CHECK(!t.is_floating_point() || t.isfinite().all().item<bool>(), dir, "/model.safetensors: tensor \"", name,
              "\" holds NaN or inf values: the run diverged before this checkpoint; use an earlier one");
  config_.merge_toml(ck.config_toml, dir + "/config.toml");
  for (const auto& o : overrides) config_.set(o);
  config_.validate();
  tokenizer_ = Tokenizer::from_serialized(ck.tokenizer_model);
  has_tokenizer_ = true;
  runtime_ = resolve_runtime(config_);
  model_ = Denoiser(model_options_from_config(config_, tokenizer_.vocab_size()));
  load_state_dict(*model_, ck.model, dir + "/model.safetensors");
  model_->to(runtime_.device);
  model_->eval();
  init_from_config();
}

TextGenerator::TextGenerator(const Config& config, Denoiser model, const Runtime& runtime, const Tokenizer* tokenizer)
    : config_(config), model_(std::move(model)), runtime_(runtime) {
  if (tokenizer) {
    tokenizer_ = Tokenizer::from_serialized(tokenizer->serialized());
    has_tokenizer_ = true;
  }
  init_from_config();
}

void TextGenerator::init_from_config() {
  if (has_tokenizer_) blank_ = tokenizer_.blank_ids();
  schedule_ = NoiseSchedule::from_config(config_);
  options_ = generate_options_from_config(config_);
  pack_ = pack_options_from_config(config_);
  pack_.trg_pad = TargetPadding::max;  // the output may use the whole target region
  pack_.mask_target_padding = false;   // a length head, if any, cuts each row (generate_ids)
  check_options_for_model(options_);  // here, not after the first solve has run
}

void TextGenerator::check_options_for_model(const GenerateOptions& options) const {
  MDS_CHECK(options.remask_rounds == 0 || model_->absorbing().defined(),
            "sample.remask_rounds needs a model with the absorbing state m (diffusion.soft_absorbing = true)");
  // Mask-predict rounds read every place as a word; a canvas's empty places are PAD.
  MDS_CHECK(options.mbr_compact_share == 0.0 || pack_.source_canvas,
            "--mbr-compact-share (sample.mbr_compact_share) needs a model laid out on its source's canvas "
            "(data.target_canvas = \"source\")");
  MDS_CHECK(options.remask_rounds == 0 || !pack_.source_canvas,
            "--remask-rounds (sample.remask_rounds) does not work with a model laid out on its source's canvas "
            "(data.target_canvas = \"source\")");
}

int64_t model_calls(const GenerateOptions& o, int64_t diffusion_steps) {
  const SamplerOptions& s = o.sampler;
  return (s.sampler == "ancestral" ? std::min(s.steps, diffusion_steps) : s.steps) * (1 + o.remask_rounds);
}

std::vector<std::string> TextGenerator::generate(const std::vector<std::string>& sources, const StepObserver& observe) {
  check_generate_options(options_);
  MDS_CHECK(has_tokenizer_, "TextGenerator::generate: this generator has no tokenizer");
  // One set of casts for every batch and MBR candidate of the call (sample_x0's scopes nest in it).
  const core::CastCacheScope cast_once(options_.sampler.cast_cache);
  if (options_.mbr == 1) return generate_once(sources, options_.sampler, options_.seed, 0, observe);
  // MBR: candidates from different seeds (the last sample.mbr_noise_share of them from noise), then
  // the one that agrees most with the others.
  std::vector<std::vector<std::string>> candidates;
  std::vector<std::vector<double>> sure(static_cast<std::size_t>(options_.mbr));
  for (int64_t k = 0; k < options_.mbr; ++k)
    candidates.push_back(generate_once(sources, candidate_sampler(options_, k),
                                       options_.seed + static_cast<uint64_t>(k), k, observe, &sure[static_cast<std::size_t>(k)]));
  // With the source a candidate: as far as each output reaches (a summary is offered the lead, not
  // the article), and index options.size() is that text.
  const std::vector<std::string> starts = options_.mbr_source ? start_texts(sources) : std::vector<std::string>();
  std::vector<std::string> out(sources.size());
  for (std::size_t i = 0; i < sources.size(); ++i) {
    std::vector<std::string> options;
    // Candidates started two ways (sample.mbr_compact_share): MBR chooses within the kind of start the
    // model is surer of.
    std::vector<double> sure_K;
    for (const auto& s : sure) sure_K.push_back(s[i]);
    for (std::size_t k : surer_kind(options_, sure_K)) options.push_back(candidates[k][i]);
    const std::size_t pick = options_.mbr_source && options.size() >= 2
                                 ? mbr_select_or_source(options, options_.mbr_metric, starts[i])
                                 : mbr_select(options, options_.mbr_metric);
    out[i] = pick < options.size() ? options[pick] : starts[i];
  }
  return out;
}

TextGenerator::PackedSources TextGenerator::pack_sources(const std::vector<std::string>& sources) const {
  PackedSources p;
  for (const auto& s : sources) p.source.add(tokenizer_.encode(s), {});
  // Similar lengths together: less source padding. Callers put results back in the sources' order.
  std::vector<std::size_t> order(sources.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) { return p.source.src(a).size < p.source.src(b).size; });
  const auto batch_size = static_cast<std::size_t>(options_.batch_size);
  for (std::size_t start = 0; start < order.size(); start += batch_size)
    p.batches.emplace_back(order.begin() + static_cast<std::ptrdiff_t>(start),
                           order.begin() + static_cast<std::ptrdiff_t>(std::min(order.size(), start + batch_size)));
  return p;
}

std::vector<std::string> TextGenerator::start_texts(const std::vector<std::string>& sources) {
  MDS_CHECK(has_tokenizer_, "TextGenerator::start_texts: this generator has no tokenizer");
  torch::NoGradGuard no_grad;
  const PackedSources packed = pack_sources(sources);
  std::vector<std::string> out(sources.size());
  for (const auto& idx : packed.batches) {
    const Batch batch = pack_batch(packed.source, idx, pack_);
    const torch::Tensor length_B = output_lengths(batch, to_tensors(batch, runtime_.device));
    const torch::Tensor n_B = length_B.defined() ? length_B.to(torch::kCPU, torch::kLong).contiguous() : length_B;
    for (std::size_t b = 0; b < idx.size(); ++b) {
      const int64_t src = batch.src_len[b];
      const int64_t n = n_B.defined() ? n_B.data_ptr<int64_t>()[b] : src;
      if (n >= src) {  // the output may be as long as the source: all of it, as given
        out[idx[b]] = sources[idx[b]];
        continue;
      }
      // Target position j starts from source token j, at position 1 + j of the row (model::source_aligned_x0).
      const auto first = batch.ids.begin() + static_cast<std::ptrdiff_t>(static_cast<int64_t>(b) * batch.length + 1);
      out[idx[b]] = tokenizer_.decode(std::vector<int32_t>(first, first + n));
    }
  }
  return out;
}

diffusion::X0Predictor x0_predictor(Denoiser& model, const BatchTensors& bt, const torch::Tensor& anchor_BLC,
                                    const Runtime& runtime, bool cuda_graphs) {
  model::DenoiserInputs base;
  base.key_mask_BL = bt.key_mask_BL;
  base.global_mask_BL = bt.global_mask_BL;
  base.trg_mask_BL = bt.trg_mask_BL;
  base.ids_BL = bt.ids_BL;  // the copy head reads the source tokens (the target part is PAD)
  base.trg_start = bt.src_region + 2;
  base.trg_rows_N = bt.trg_rows_N;  // found once per batch, not by every model call (device syncs)
  base.facts = bt.facts;
  const bool self_condition = model->options().self_condition;
  // The model call of a step: a function of x_t, t and the previous estimate (the rest is fixed for
  // the batch), so that every step after the first replays one CUDA graph.
  auto call = std::make_shared<runtime::GraphedCall>(
      [model, base, runtime](const std::vector<torch::Tensor>& xs) mutable {
        // Only the model call runs under autocast: the solver's state and history, clamping and the
        // final rounding stay float32.
        PrecisionScope scope(runtime.precision, runtime.device);
        model::DenoiserInputs in = base;
        in.x_t_BLC = xs[0];
        in.t_B = xs[1];
        in.self_cond_BLC = xs[2];
        return model->forward(in).x0_BLC.to(xs[0].scalar_type());
      },
      cuda_graphs);
  // Shared by the copies the sampler makes of the predictor: the last estimate lives here.
  auto previous = std::make_shared<torch::Tensor>();
  return [call, base, self_condition, previous, anchor_BLC](const torch::Tensor& x_BLC, const torch::Tensor& model_t_B) {
    torch::Tensor x0_BLC = (*call)({x_BLC, model_t_B, *previous});
    if (self_condition)
      *previous = torch::where(base.trg_mask_BL.unsqueeze(-1), x0_BLC, anchor_BLC.to(x0_BLC.scalar_type()));
    return x0_BLC;
  };
}

torch::Tensor TextGenerator::sample_x0(const BatchTensors& bt, const SamplerOptions& options, at::Generator gen,
                                       const std::function<void(const torch::Tensor&)>& on_x0, const SolverStart& start) {
  torch::NoGradGuard no_grad;
  // CUDA graphs are captured on a stream of the batch's own (a GPU's default stream cannot be).
  const bool graphs = options.cuda_graphs && bt.ids_BL.size(1) <= options.cuda_graphs_max_len;
  const runtime::SideStreamScope side_stream(graphs ? runtime_.device : c10::Device(c10::kCPU));
  // Each weight cast to the compute dtype once for all the steps; declared before the predictor, whose
  // CUDA graph may use the cast weights, so that they outlive it.
  const core::CastCacheScope cast_once(options.cast_cache);
  SampleInputs in;
  in.anchor_BLC = model_->embed(bt.ids_BL);
  in.trg_mask_BL = bt.trg_mask_BL;
  in.absorbing_C = model_->absorbing();
  in.embedding_VC = model_->embedding_weight();
  if (start.x0_BLC.defined()) {
    in.start_x0_BLC = start.x0_BLC;
    in.start_jump_BL = start.jump_BL;
  } else if (options.start_time < 1.0) {
    const int64_t stride = options.compact_start ? 1 : data::canvas_stride(pack_);
    in.start_x0_BLC = model::source_aligned_x0(bt, in.anchor_BLC, in.absorbing_C, stride, model_->canvas_blank(stride));
  }
  diffusion::X0Predictor predict = x0_predictor(model_, bt, in.anchor_BLC, runtime_, graphs);
  if (on_x0) {
    predict = [predict, on_x0](const torch::Tensor& x_BLC, const torch::Tensor& t_B) {
      torch::Tensor x0_BLC = predict(x_BLC, t_B);
      on_x0(x0_BLC);
      return x0_BLC;
    };
  }
  return sample(schedule_, predict, in, options, gen);
}

torch::Tensor TextGenerator::predict_lengths(const BatchTensors& bt) {
  torch::NoGradGuard no_grad;
  PrecisionScope scope(runtime_.precision, runtime_.device);
  const torch::Tensor logits_BT =
      model_->length_logits(model_->embed(bt.ids_BL), bt.key_mask_BL & bt.trg_mask_BL.logical_not());
  // The median of the predicted distribution: the length with the least expected error in tokens,
  // where the argmax of a flat distribution over hundreds of lengths lands anywhere. Training never
  // sees an empty target: the length is at least one token.
  const torch::Tensor p_BT = torch::softmax(logits_BT.narrow(1, 1, logits_BT.size(1) - 1).to(torch::kFloat), -1);
  return (p_BT.cumsum(-1) < 0.5).sum(-1).clamp_max(p_BT.size(1) - 1) + 1;
}

torch::Tensor TextGenerator::predict_rewrites(const BatchTensors& bt) {
  torch::NoGradGuard no_grad;
  PrecisionScope scope(runtime_.precision, runtime_.device);
  const torch::Tensor logits_B =
      model_->rewrite_logits(model_->embed(bt.ids_BL), bt.key_mask_BL & bt.trg_mask_BL.logical_not());
  return torch::sigmoid(logits_B.to(torch::kFloat)) > options_.rewrite_threshold;
}

torch::Tensor TextGenerator::output_lengths(const Batch& batch, const BatchTensors& bt) {
  if (options_.length == "source" || pack_.source_canvas) {  // a canvas: the source's, with its empty places
    std::vector<int64_t> n;
    for (const int32_t src : batch.src_len) n.push_back(src * data::canvas_stride(pack_));
    return torch::tensor(n, torch::kLong).clamp(1, std::max<int64_t>(1, batch.trg_region - 1));
  }
  return model_->has_length_head() ? predict_lengths(bt) : torch::Tensor();
}

GeneratedBatch TextGenerator::generate_ids(const Batch& batch, at::Generator gen, const IdsObserver& observe) {
  return generate_ids(batch, gen, observe, options_.sampler);
}

GeneratedBatch TextGenerator::generate_ids(const Batch& batch, at::Generator gen, const IdsObserver& observe,
                                           const SamplerOptions& sampler) {
  torch::NoGradGuard no_grad;
  check_options_for_model(options_);  // options() may have changed since the generator was made
  BatchTensors bt = to_tensors(batch, runtime_.device);
  // Where each row's length is decided (sample.length), exactly that many positions (and the EOS)
  // are denoised.
  const torch::Tensor length_B = output_lengths(batch, bt);
  if (length_B.defined()) bt = model::limit_target_region(bt, length_B + 1);
  // The rows that start packed on a canvas: every row of a candidate started so (sample.mbr_compact_share),
  // else those the rewrite head calls rewrites. Read from the host once for every read of the batch.
  if (pack_.source_canvas && sampler.compact_start)
    bt.compact_start_B = torch::ones({batch.batch_size}, torch::kBool);
  else if (pack_.source_canvas && model_->has_rewrite_head() && sampler.start_time < 1.0 && options_.mbr_compact_share == 0.0)
    bt.compact_start_B = predict_rewrites(bt);
  std::vector<uint8_t> packed(static_cast<std::size_t>(batch.batch_size), 0);
  if (bt.compact_start_B.defined()) {
    const torch::Tensor host_B = bt.compact_start_B.to(torch::kCPU, torch::kBool).contiguous();
    std::copy(host_B.data_ptr<bool>(), host_B.data_ptr<bool>() + host_B.numel(), packed.begin());
  }
  const int64_t first = batch.src_region + 2;  // BOS, source region, SEP
  int64_t step = 0;
  std::function<void(const torch::Tensor&)> on_x0;
  if (observe)
    on_x0 = [&](const torch::Tensor& x0_BLC) { observe(++step, read_ids(x0_BLC.to(torch::kFloat), first, length_B, packed)); };
  torch::Tensor x0_BLC = sample_x0(bt, sampler, gen, on_x0);
  for (int64_t r = 1; r <= options_.remask_rounds; ++r) x0_BLC = remask_round(bt, x0_BLC, first, length_B, r, gen, on_x0);
  return read_ids(x0_BLC, first, length_B, packed);
}

namespace {
// Where each output's length is decided, no special token may be read as a word: their logits go to
// -inf, in place (read_ids and the mask-predict rounds read the same words).
void exclude_specials_(torch::Tensor& logits_BTV) {
  logits_BTV.narrow(-1, 0, SpecialTokens::count).fill_(-std::numeric_limits<float>::infinity());
}
}  // namespace

torch::Tensor TextGenerator::remask_round(const BatchTensors& bt, const torch::Tensor& x0_BLC, int64_t first,
                                          const torch::Tensor& length_B, int64_t round, at::Generator gen,
                                          const std::function<void(const torch::Tensor&)>& on_x0) {
  SamplerOptions options = options_.sampler;
  options.start_time = options_.remask_time;
  return sample_x0(bt, options, gen, on_x0, remask_start(bt, x0_BLC, first, length_B, round));
}

TextGenerator::SolverStart TextGenerator::remask_start(const BatchTensors& bt, const torch::Tensor& x0_BLC,
                                                       int64_t first, const torch::Tensor& length_B, int64_t round) {
  torch::NoGradGuard no_grad;
  const int64_t B = x0_BLC.size(0), L = x0_BLC.size(1), T = L - first;
  // The words as read_ids reads them, and how sure the rounding is of each.
  torch::Tensor logits_BTV = model_->logits(x0_BLC.narrow(1, first, T)).to(torch::kFloat);
  if (length_B.defined()) exclude_specials_(logits_BTV);
  const auto [p_BT, word_BT] = torch::softmax(logits_BTV, -1).max(-1);
  torch::Tensor eligible_BT = bt.trg_mask_BL.narrow(1, first, T);
  if (length_B.defined())  // the decided tokens, not the EOS after them
    eligible_BT = eligible_BT & (torch::arange(T, torch::TensorOptions().dtype(torch::kLong).device(x0_BLC.device())).unsqueeze(0) <
                                  length_B.to(x0_BLC.device()).unsqueeze(1));
  const torch::Tensor jump_BT =
      least_confident(p_BT, eligible_BT, remask_share_of_round(options_.remask_share, round, options_.remask_rounds));
  // Each read word starts from its own embedding; the EOS and padding from where the solver left them.
  torch::Tensor ids_BL = bt.ids_BL.clone();
  ids_BL.narrow(1, first, T).copy_(torch::where(eligible_BT, word_BT, ids_BL.narrow(1, first, T)));
  // A target-region mask [B, T] as one over the whole row [B, L] (false on the source and markers).
  const auto whole_row = [&](const torch::Tensor& mask_BT) {
    torch::Tensor mask_BL = torch::zeros({B, L}, mask_BT.options());
    mask_BL.narrow(1, first, T).copy_(mask_BT);
    return mask_BL;
  };
  SolverStart start;
  start.x0_BLC = torch::where(whole_row(eligible_BT).unsqueeze(-1), model_->embed(ids_BL).to(x0_BLC.scalar_type()), x0_BLC);
  start.jump_BL = whole_row(jump_BT);
  return start;
}

bool reads_blank(const std::vector<int32_t>& row, const std::vector<uint8_t>& blank_V) {
  return !row.empty() && std::all_of(row.begin(), row.end(), [&](int32_t id) { return blank_V.at(static_cast<std::size_t>(id)) != 0; });
}

void ensure_text(std::vector<int32_t>& row, const torch::Tensor& first_logits_V, const std::vector<uint8_t>& blank_V) {
  MDS_CHECK(static_cast<int64_t>(blank_V.size()) == first_logits_V.numel(), "ensure_text: ", blank_V.size(),
            " blank flags for ", first_logits_V.numel(), " logits");
  if (!reads_blank(row, blank_V)) return;
  const torch::Tensor is_blank_V =
      torch::from_blob(const_cast<uint8_t*>(blank_V.data()), {first_logits_V.numel()}, torch::kUInt8).to(torch::kBool);
  const torch::Tensor logits_V = first_logits_V.to(torch::kCPU, torch::kFloat).masked_fill(is_blank_V, -std::numeric_limits<float>::infinity());
  row[0] = static_cast<int32_t>(logits_V.argmax().item<int64_t>());
}

GeneratedBatch TextGenerator::read_ids(const torch::Tensor& x0_BLC, int64_t first, const torch::Tensor& length_B,
                                       const std::vector<uint8_t>& packed) {
  // Read up to the model's own EOS, but with a decided length never as an empty output (training
  // never sees one) and never as a special token: where the rounding prefers one, the best word is read.
  const bool decided = length_B.defined();  // sample.length or the length head gave each row its length
  const int64_t B = x0_BLC.size(0), T = x0_BLC.size(1) - first;
  torch::Tensor logits_BTV = model_->logits(x0_BLC.narrow(1, first, T));
  const torch::Tensor any_BT = logits_BTV.argmax(-1).to(torch::kCPU, torch::kLong).contiguous();
  torch::Tensor word_BT = any_BT;  // without a decided length every id is read as the rounding says
  if (decided) {
    exclude_specials_(logits_BTV);
    word_BT = logits_BTV.argmax(-1).to(torch::kCPU, torch::kLong).contiguous();
  }
  const torch::Tensor end_B = decided ? length_B.to(torch::kCPU, torch::kLong).contiguous()
                                      : torch::full({B}, T, torch::kLong);
  const int64_t *any = any_BT.data_ptr<int64_t>(), *word = word_BT.data_ptr<int64_t>(), *end = end_B.data_ptr<int64_t>();
  GeneratedBatch out;
  out.tokens.resize(static_cast<std::size_t>(B));
  // How sure the model is: a softmax over the vocabulary, only where MBR chooses between kinds of start.
  if (mbr_compact_candidates(options_) > 0) {
    const torch::Tensor sure_BT =
        std::get<0>(torch::softmax(logits_BTV.to(torch::kFloat), -1).max(-1)).to(torch::kCPU, torch::kDouble).contiguous();
    const double* sure = sure_BT.data_ptr<double>();
    out.confidence.assign(static_cast<std::size_t>(B), 0.0);
    for (int64_t b = 0; b < B; ++b) {
      const int64_t places = std::min(T, end[b]);
      for (int64_t p = 0; p < places; ++p) out.confidence[static_cast<std::size_t>(b)] += sure[b * T + p] / static_cast<double>(places);
    }
  }
  for (int64_t b = 0; b < B; ++b) {
    auto& row = out.tokens[static_cast<std::size_t>(b)];
    for (int64_t p = 0; p < std::min(T, end[b]); ++p) {
      const int64_t i = b * T + p;
      const bool ends = any[i] == SpecialTokens::eos || any[i] == SpecialTokens::pad;
      // An empty place of the canvas; a row started packed is written from the first place on, as the
      // plain layout writes it, and ends at its first empty place.
      if (ends && pack_.source_canvas && (packed.empty() || packed[static_cast<std::size_t>(b)] == 0)) continue;
      if (ends && (!decided || p > 0)) break;
      row.push_back(static_cast<int32_t>(word[i]));
    }
    // A canvas read as all empty places: its first place's best word, as an output of decided length
    // is never empty.
    if (pack_.source_canvas && row.empty() && end[b] > 0) row.push_back(static_cast<int32_t>(word[b * T]));
    // Read as text, the decided tokens could still be none (a lone word boundary "▁" and the EOS).
    if (decided && !blank_.empty() && reads_blank(row, blank_)) ensure_text(row, logits_BTV[b][0], blank_);
  }
  return out;
}

std::vector<std::string> TextGenerator::generate_once(const std::vector<std::string>& sources,
                                                     const SamplerOptions& sampler, uint64_t seed, int64_t candidate,
                                                     const StepObserver& observe, std::vector<double>* confidence) {
  const PackedSources packed = pack_sources(sources);
  at::Generator gen = at::detail::createCPUGenerator(seed);
  std::vector<std::string> out(sources.size());
  if (confidence) confidence->assign(sources.size(), 0.0);
  for (const auto& idx : packed.batches) {
    IdsObserver on_ids;
    if (observe) {
      on_ids = [&](int64_t step, const GeneratedBatch& ids) {
        StepUpdate u;
        u.candidate = candidate;
        u.step = step;
        u.steps = model_calls(options_, schedule_.steps);
        u.rows = idx;
        for (const auto& row : ids.tokens) u.texts.push_back(tokenizer_.decode(row));
        observe(u);
      };
    }
    GeneratedBatch generated = generate_ids(pack_batch(packed.source, idx, pack_), gen, on_ids, sampler);
    for (std::size_t b = 0; b < idx.size(); ++b) {
      out[idx[b]] = tokenizer_.decode(generated.tokens[b]);
      if (confidence && !generated.confidence.empty()) (*confidence)[idx[b]] = generated.confidence[b];
    }
  }
  return out;
}

std::size_t TextGenerator::sources_cut(const std::vector<std::string>& sources) const {
  MDS_CHECK(has_tokenizer_, "TextGenerator::sources_cut needs a tokenizer");
  std::size_t cut = 0;
  for (const std::string& src : sources) {
    const std::size_t n = tokenizer_.encode(src).size();
    if (data::packed_src_len(n, pack_) < static_cast<int64_t>(n)) ++cut;  // packing's own rule
  }
  return cut;
}

GenerateFileStats generate_file(TextGenerator& generator, const std::string& input, const std::string& output) {
  JsonlOptions jo;
  jo.require_trg = false;
  jo.skip_empty = false;
  JsonlStats js;
  std::vector<Example> examples = read_jsonl(input, jo, &js);
  MDS_CHECK(!examples.empty(), input, ": no examples to generate from");
  // Found now, not after the whole generation ran.
  const std::string out_dir = fs::parent_path(output);
  MDS_CHECK(output == "-" || out_dir.empty() || fs::is_directory(out_dir), "--output ", output, ": the directory ",
            out_dir, " does not exist");
  std::vector<std::string> sources;
  for (const auto& e : examples) sources.push_back(e.src);
  // A model trained on short sources (configs/qa.toml keeps 64 tokens) reads only part of long ones: say so.
  if (const std::size_t cut = generator.sources_cut(sources); cut > 0)
    log_info(input, ": ", cut, " of ", sources.size(), " sources are longer than the model's data.max_src_len = ",
             generator.pack_options().max_src_len, " tokens and are cut ",
             data::where_cut(generator.pack_options().truncation), " (data.truncation)");
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::string> predictions = generator.generate(sources);
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

}  // namespace mds::infer

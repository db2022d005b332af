// The configuration schema: every key, its default and its meaning. docs/config.md is generated from
// this table (`moe-diffuseq config schema`), so this is the one place a key is defined.
#include "core/config.h"

namespace mds {
namespace {

KeySpec b(const char* key, bool v, const char* doc) { return {key, Value::boolean(v), doc, {}}; }
KeySpec i(const char* key, int64_t v, double lo, double hi, const char* doc) {
  KeySpec s{key, Value::integer(v), doc, {}};
  s.min = lo;
  s.max = hi;
  return s;
}
KeySpec f(const char* key, double v, double lo, double hi, const char* doc) {
  KeySpec s{key, Value::real(v), doc, {}};
  s.min = lo;
  s.max = hi;
  return s;
}
KeySpec s(const char* key, const char* v, std::vector<std::string> choices, const char* doc) {
  return {key, Value::string(v), doc, std::move(choices)};
}
KeySpec l(const char* key, std::vector<int64_t> v, double lo, double hi, const char* doc) {
  KeySpec k{key, Value::int_list(std::move(v)), doc, {}};
  k.min = lo;
  k.max = hi;
  return k;
}

constexpr double kBig = 1e18;

std::vector<KeySpec> make_schema() {
  return {
      // ------------------------------------------------------------------ model
      i("model.embed_dim", 128, 1, 65536, "Dimension of the token embeddings: the space the diffusion runs in."),
      i("model.dim", 768, 1, 65536, "Hidden size of the transformer."),
      i("model.layers", 12, 1, 1024, "Number of transformer blocks."),
      i("model.heads", 12, 1, 1024, "Attention heads per block; model.dim must be divisible by it."),
      i("model.ffn_dim", 3072, 1, 1 << 20, "Hidden size of each expert feed-forward network (of the dense one when moe.experts = 1)."),
      i("model.time_embed_dim", 128, 2, 65536, "Size of the sinusoidal time embedding fed to the time MLP (even)."),
      i("model.max_positions", 0, 0, 1 << 24, "Learned position embeddings; 0 = data.max_src_len + data.max_trg_len + 2, the longest packed row."),
      s("model.norm", "pre", {"pre", "post"}, "Layer-norm placement: pre-LN (stable for deep and long models) or post-LN as in DiffuSeq."),
      b("model.bf16_residual", true, "Under bf16 precision (train.precision), the residual stream between the blocks and the layer norms run in bf16 (the norms accumulate in float32); false: float32, as autocast has them, with a cast up before every norm and down before every projection."),
      f("model.dropout", 0.1, 0, 1, "Dropout on the embeddings and on each attention and FFN output (the sparse kernel has no dropout on probabilities)."),
      f("model.layer_norm_eps", 1e-12, 0, 1, "Layer-norm epsilon (DiffuSeq/BERT use 1e-12)."),
      f("model.init_std", 0.02, 0, 10, "Standard deviation of the normal initialisation of linear weights and the router."),
      s("model.x0", "softmax", {"regress", "softmax"}, "How the denoiser predicts x0: softmax over the vocabulary and take the expected embedding (CDCD, Plaid), trained with cross-entropy (loss.x0_ce_weight), or regress the vector (DiffuSeq)."),
      b("model.self_condition", false, "Self-conditioning (Analog Bits): the previous x0 estimate is an input, through a zero-initialised linear layer; trained on train.self_condition_prob of the steps."),
      s("model.embed_norm", "none", {"none", "l2"}, "Embedding rows as learned (DiffuSeq), or L2-normalised to RMS model.embed_scale (against embedding collapse)."),
      f("model.embed_scale", 1.0, 1e-6, 1e6, "RMS of an embedding row with model.embed_norm = \"l2\"."),
      b("model.copy_head", false, "With model.x0 = \"softmax\": a pointer over the source tokens mixed into the predicted distribution through a learned gate (pointer-generator), so that copying a source word is one attention away."),
      s("model.target_positions", "restart", {"continue", "restart"}, "Target position ids restart at 1 so that target token j shares source token j's position (plus a learned segment embedding), or continue after the source (DiffuSeq)."),
      // ------------------------------------------------------------------ attention
      s("attention.type", "sparse", {"sparse", "dense"}, "sparse: sliding window with dilation and global tokens; dense: full attention (plain DiffuSeq)."),
      i("attention.window", 256, 0, kBig, "One-sided window w: query i sees keys i + d*j for j in [-w, w]."),
      l("attention.dilation", {}, 1, 1 << 20, "Dilation d per layer: one value for all layers or one per layer; empty = 1 in the lower half, 2 in the upper half."),
      i("attention.dilated_heads", 0, 0, 1024, "Heads of a dilated layer that use its dilation (the rest use 1); 0 = all heads."),
      s("attention.globals", "bos+sep", {"none", "bos+sep", "bos+sep+target"}, "Global tokens, which see and are seen by every position: BOS and SEP, optionally every target position too."),
      b("attention.global_projections", false, "Separate query/key/value projections for global attention, as in Longformer."),
      // ------------------------------------------------------------------ moe
      i("moe.experts", 8, 1, 4096, "Experts per MoE layer E; 1 = a dense feed-forward layer."),
      i("moe.top_k", 2, 1, 4096, "Experts per token k (at most moe.experts)."),
      b("moe.renormalize", true, "Renormalise the top-k router probabilities to sum to 1."),
      f("moe.aux_loss_weight", 0.01, 0, kBig, "Weight of the load-balancing loss (Switch form, averaged over layers)."),
      f("moe.z_loss_weight", 1e-3, 0, kBig, "Weight of the router z-loss (averaged over layers)."),
      f("moe.capacity_factor", 0.0, 0, kBig, "0 = dropless; > 0: an expert takes at most ceil(cf * k * N / E) tokens, the rest pass through the residual and are counted."),
      f("moe.jitter", 0.0, 0, 1, "Multiplicative router input jitter U(1-eps, 1+eps) during training; 0 = off."),
      // ------------------------------------------------------------------ diffusion
      i("diffusion.steps", 2000, 2, 1 << 20, "Number of diffusion steps T; the model sees time t*1000/T."),
      s("diffusion.schedule", "sqrt", {"sqrt"}, "Noise schedule: alpha_bar(t) = 1 - sqrt(t + 1e-4) (DiffuSeq)."),
      f("diffusion.noise_factor", 1.0, 1e-3, 1e3, "Noise factor F: the signal-to-noise ratio of every step divided by F^2 (Difformer; F > 1 makes the model lean on the source); 1 = DiffuSeq's schedule."),
      b("diffusion.soft_absorbing", true, "Learned absorbing vector m: noised targets drift toward m instead of 0 (DiffuSeq-v2)."),
      f("diffusion.absorb_rate", 0.5, 0, 1, "gamma: a target token jumps to m with probability gamma*sqrt(1 - alpha_bar_t); 0 = no discrete jumps."),
      s("diffusion.t_sampler", "lossaware", {"uniform", "lossaware"}, "How training draws t: uniform, or by the second moment of recent losses."),
      // ------------------------------------------------------------------ loss
      s("loss.positions", "target", {"target", "all"}, "Positions in the mse and rounding losses: target only, or all (DiffuSeq's code)."),
      f("loss.rounding_weight", 1.0, 0, kBig, "Weight of the rounding cross-entropy."),
      f("loss.prior_weight", 1.0, 0, kBig, "Weight of the tT (prior matching) term."),
      f("loss.absorb_reg", 0.01, 0, kBig, "Weight of |m| (DiffuSeq-v2's effective value)."),
      f("loss.mse_weight", 1.0, 0, kBig, "Weight of the x0 mse."),
      f("loss.x0_ce_weight", 1.0, 0, kBig, "Weight of the cross-entropy of the predicted x0's logits against the tokens (the main loss with model.x0 = \"softmax\"; Difformer's anchor loss with \"regress\"); 0 = off, as DiffuSeq."),
      f("loss.length_weight", 0.1, 0, kBig, "Weight of the length head's cross-entropy (data.target_length = \"predict\")."),
      f("loss.rewrite_weight", 0.1, 0, kBig, "Weight of the rewrite head's binary cross-entropy (data.canvas_rewrite_compact): whether a target is a rewrite, from its source."),
      // ------------------------------------------------------------------ data
      s("data.train", "", {}, "Training data: a prepared directory (`data prepare`) or a jsonl file."),
      s("data.valid", "", {}, "Validation data: a prepared directory or a jsonl file; empty = none."),
      s("data.tokenizer", "", {}, "Tokenizer directory or .model file (`tokenizer train`)."),
      i("data.max_src_len", 1024, 0, 1 << 24, "Source tokens kept per example (BOS and SEP not counted)."),
      i("data.max_trg_len", 128, 2, 1 << 24, "Length of the target region, EOS included: the longest output."),
      s("data.truncation", "end", {"end", "start", "middle"}, "Which part of a long source is dropped."),
      s("data.trg_pad", "max", {"max", "batch"}, "Target region length: always data.max_trg_len, or the batch's longest target."),
      s("data.target_length", "predict", {"generate", "predict"}, "predict: a length head predicts the target length from the source, padding after EOS is masked out, and generation denoises exactly that many positions; generate: target padding is generated and the model decides the length (DiffuSeq)."),
      s("data.target_canvas", "none", {"none", "source"}, "source: each target is laid out on its source, every source token followed by data.canvas_slots empty places, the target put in by the fewest edits (kept words where the source has them, inserted words in the places after the word they follow, empty places PAD). Sampling from the source (sample.start_time < 1) then inserts words without shifting the rest, and an output is read from its source's canvas (sample.length is not used; PAD places are dropped). Needs data.max_trg_len >= (data.canvas_slots + 1) * data.max_src_len + 1. none: target token j starts from source token j."),
      b("data.canvas_rewrite_compact", false, "With data.canvas_rewrite_below > 0: a target written from the canvas's first place trains from its source packed at the first places, as the plain layout starts, rather than stretched over the canvas, and the model gets a rewrite head that tells from the source whether its target is a rewrite (loss.rewrite_weight). Generation starts each row the way its head says (sample.rewrite_threshold): an edit on the canvas, a rewrite such as a template from the packed start."),
      i("data.canvas_slots", 1, 0, 16, "With data.target_canvas = \"source\": empty places after every source token, the most words an output can insert there."),
      f("data.canvas_rewrite_below", 0.0, 0, 1, "With data.target_canvas = \"source\": a training target that keeps fewer than this share of its tokens on equal source words (or is longer than its canvas) is written from the canvas's first place on, as a rewrite, instead of aligned word by word (a template that replaces a method's body). 0: every target aligned."),
      i("data.batch_tokens", 16384, 1, kBig, "Token budget of a batch: B * L never exceeds it (padding included)."),
      i("data.max_batch_size", 0, 0, kBig, "Most sequences in a batch; 0 = no limit beyond the token budget."),
      i("data.bucket_window", 100, 1, kBig, "Length bucketing: examples are sorted by length within windows of this many batches."),
      b("data.swap_pairs", false, "Training also reads every pair the other way round (trg -> src): twice the examples for a symmetric task such as paraphrase; validation reads the pairs as they are."),
      b("data.shuffle", true, "Shuffle examples and batches each epoch (deterministic for train.seed)."),
      // ------------------------------------------------------------------ train
      s("train.out_dir", "runs/run", {}, "Run directory: config, metrics.jsonl, checkpoints."),
      i("train.steps", 100000, 1, kBig, "Optimizer steps."),
      f("train.lr", 1e-4, 0, kBig, "Peak learning rate (AdamW)."),
      i("train.warmup_steps", 1000, 0, kBig, "Linear warm-up steps, then linear decay to train.min_lr at train.steps (or at train.max_minutes, whichever comes first)."),
      f("train.max_minutes", 0.0, 0, kBig, "Wall-clock budget of the training loop in minutes, counted across resumes: the run stops there with a checkpoint, and the learning rate decays over it; 0 = train.steps alone."),
      f("train.min_lr", 0.0, 0, kBig, "Learning rate at the end of the decay."),
      f("train.source_start_prob", 0.0, 0, 1, "The share of training examples whose target positions are noised from the source put in their place (target position j from source token j) instead of from the target, at a time below train.source_start_time: the model learns to edit the source into the target, as sampling with sample.start_time < 1 asks of it. 0: DiffuSeq (always from the target)."),
      f("train.source_start_time", 0.1, 0, 1, "With train.source_start_prob: those examples' diffusion time is uniform in [0, this) of the schedule (match sample.start_time)."),
      f("train.self_condition_prob", 0.5, 0, 1, "With model.self_condition: the share of training steps that first estimate x0 without gradient and feed it back."),
      f("train.weight_decay", 0.0, 0, kBig, "AdamW weight decay."),
      f("train.adam_beta1", 0.9, 0, 1, "AdamW beta1."),
      f("train.adam_beta2", 0.999, 0, 1, "AdamW beta2."),
      f("train.adam_eps", 1e-8, 0, 1, "AdamW epsilon."),
      f("train.grad_clip", 1.0, 0, kBig, "Clip the global gradient norm to this; 0 = off."),
      i("train.grad_accum", 1, 1, 1 << 20, "Batches accumulated per optimizer step."),
      f("train.ema_decay", 0.9999, 0, 1, "Decay of the exponential moving average of the weights used for sampling; 0 = off."),
      b("train.ema_warmup", true, "EMA decay min(train.ema_decay, (1 + n) / (10 + n)) at update n, so that a short run's EMA is not mostly its random start; false = train.ema_decay from the first step (DiffuSeq)."),
      i("train.seed", 102, 0, kBig, "Seed of every random choice: data order, initialisation, noise."),
      s("train.device", "auto", {"auto", "cpu", "cuda"}, "Where to train: auto = cuda when available."),
      s("train.precision", "auto", {"auto", "fp32", "bf16"}, "Compute precision of the model in training, validation and generation: auto = bf16 on GPU, fp32 on CPU (bf16 needs a GPU); weights, optimizer state, router, losses and sampler state stay fp32."),
      i("train.threads", 0, 0, 4096, "CPU threads for LibTorch; 0 = all cores."),
      i("train.log_every", 50, 1, kBig, "Steps between log lines and metrics.jsonl records."),
      i("train.eval_every", 1000, 0, kBig, "Steps between validations; 0 = never."),
      i("train.eval_batches", 50, 0, kBig, "Validation batches per validation; 0 = the whole set."),
      i("train.eval_samples", 0, 0, kBig, "Validation examples generated and scored at each validation; 0 = none."),
      i("train.save_every", 1000, 0, kBig, "Steps between checkpoints; 0 = only at the end."),
      i("train.keep_last", 3, 1, kBig, "Checkpoints kept besides best/."),
      i("train.max_bad_steps", 10, 1, kBig, "Stop after this many steps in a row with a NaN or inf loss (each is skipped)."),
      s("train.best_metric", "loss", {}, "What picks the best/ checkpoint at each validation: loss (the validation loss), or a metric of the generated validation samples (bleu, f1, rougeL, ...; needs train.eval_samples > 0), higher is better."),
      s("train.early_stop_metric", "", {}, "Validation metric for early stopping (e.g. loss, bleu); empty = off. It also picks best/ (train.best_metric, when given, must agree)."),
      i("train.early_stop_patience", 5, 1, kBig, "Validations without improvement before early stopping."),
      // ------------------------------------------------------------------ sample
      s("sample.sampler", "dpm++2m", {"dpm++2m", "dpm++3m", "ddim", "ancestral"}, "Sampler."),
      i("sample.steps", 10, 1, 1 << 20, "Model evaluations (DPM-Solver++, DDIM) or respaced steps (ancestral)."),
      s("sample.skip_type", "time_uniform", {"time_uniform", "logSNR", "time_quadratic"}, "DPM-Solver++ time grid."),
      s("sample.time_mapping", "upstream", {"upstream", "v2"}, "Model time of DPM-Solver++: upstream (t - 1/N)*1000, or DiffuSeq-v2's t*1000."),
      f("sample.start_time", 1.0, 0.0, 1.0, "Where DPM-Solver++ starts, as a share of the diffusion time: 1 = from noise (DiffuSeq); below 1 = from the source tokens, target token j from source token j, noised to that time (SDEdit; for tasks whose output follows the source's words, with model.target_positions = \"restart\")."),
      s("sample.length", "predict", {"predict", "source"}, "How many target tokens each output has: predict = the length head's prediction (data.target_length = \"predict\"; without a head the model's EOS ends the text), source = the source's length in tokens (with sample.start_time below 1, every source word keeps its place: no words cut off and no words made up after the end)."),
      b("sample.start_jumps", true, "With sample.start_time below 1: each source token put at the start jumps to m with probability gamma*sigma(s), as the forward process does (the model then rewrites those); false keeps the source whole, only Gaussian noise (outputs closest to the source)."),
      b("sample.cuda_graphs", true, "On a GPU, replay the model call of every solver step after the first as a CUDA graph captured for the batch (for batches whose rows have at most sample.cuda_graphs_max_len positions), so that the host no longer issues hundreds of kernels a step: one request of 30 + 32 tokens samples 2.3 times as fast, a batch of 100 x 128 tokens 5% faster (bench/README.md)."),
      i("sample.cuda_graphs_max_len", 8704, 0, int64_t{1} << 40, "With sample.cuda_graphs: the longest row (source, target and markers) of a batch whose model call is replayed as a graph; longer ones are bound by the GPU, where the capture costs more than it saves (default MoE model, one document on an H100: 1.6-2.7 times as fast with graphs from 1,282 to 8,450 positions, 17% slower at 16,642, the same at 33,026)."),
      b("sample.cast_cache", true, "Cast the weights to the compute dtype (bf16) once for all the steps of a sampling run instead of in every model call (false: every call casts them again, as before; for comparisons). Results are the same either way."),
      b("sample.clamp", false, "Replace x0 predictions by the nearest token embedding at every step."),
      b("sample.discrete_noise", false, "DiffuSeq-v2 discrete absorbing noise during ancestral sampling."),
      i("sample.seed", 0, 0, kBig, "Seed of the sampling noise."),
      i("sample.batch_size", 64, 1, kBig, "Sequences generated at once."),
      i("sample.mbr", 1, 1, 1024, "Candidates per input for minimum-Bayes-risk selection; 1 = off."),
      s("sample.mbr_metric", "bleu", {"bleu", "rouge-l"}, "Agreement measure used by MBR."),
      b("sample.mbr_source", false, "For editing tasks (paraphrase, simplification), with sample.mbr of at least 2: the source text is one more candidate MBR may choose, scored by its mean agreement with the samples (it is not evidence); where an output is given fewer tokens than its source (a summary from an article), the candidate is the source's first words up to that length (its lead). Samples damaged at different places agree with the source more than with each other, so an output differs from its source only where the samples agree on the change. With sample.mbr = 1 it does nothing."),
      f("sample.mbr_compact_share", 0.0, 0.0, 1.0, "With sample.mbr of at least 2, a canvas (data.target_canvas = \"source\") and sample.start_time below 1: this share of the MBR candidates (rounded; those just before the noise ones) starts from the source packed at the first places, as the rewrites of data.canvas_rewrite_compact train, instead of stretched over the canvas; MBR then chooses among the candidates of the kind of start the model is surer of (the mean of its rounding's largest probability). 0 = none: the rewrite head chooses each row's start (sample.rewrite_threshold)."),
      f("sample.rewrite_threshold", 0.5, 0.0, 1.0, "A model with a rewrite head (data.canvas_rewrite_compact), sample.start_time below 1 and sample.mbr_compact_share = 0: a row whose head gives its target a probability above this of being a rewrite starts every candidate from its source packed at the first places and is read up to its first empty place; the others start on the canvas. 1 = every row on the canvas."),
      f("sample.mbr_noise_share", 0.0, 0.0, 1.0, "With sample.mbr of at least 2 and sample.start_time below 1: this share of the MBR candidates (rounded; the last ones) starts from noise instead of from the source. A model trained to edit its source (train.source_start_prob) writes short outputs word for word from noise and long ones better from the source (Java -> C#, bench/README.md); MBR keeps the candidate the others agree with. 0 = every candidate starts at sample.start_time."),
      i("sample.remask_rounds", 0, 0, 16, "Mask-predict rounds after the solver (DPM-Solver++, a model with the absorbing state m): each round reads the output, sends its least confident target tokens to m and solves again from sample.remask_time, the other tokens starting from their words. 0 = off (one solve, DiffuSeq). Each round costs one more solve."),
      f("sample.remask_share", 0.3, 0.0, 1.0, "With sample.remask_rounds = R: round r (1..R) sends share * (R - r + 1) / R of each output's tokens, the least confident (the rounding's softmax), to m."),
      f("sample.remask_time", 0.1, 0.0, 1.0, "With sample.remask_rounds: where each round's solve starts, as a share of the diffusion time (as sample.start_time)."),
      // ------------------------------------------------------------------ serve
      i("serve.max_queue", 64, 0, kBig, "Requests waiting for the model; one more is answered 503 (retry later)."),
      f("serve.batch_window_ms", 5.0, 0, 10000, "How long the server waits for more requests to batch with the first (same sampling options, up to sample.batch_size sources)."),
      i("serve.max_inputs", 64, 1, kBig, "Sources in one request."),
      i("serve.max_source_bytes", 65536, 1, kBig, "Bytes of one source."),
      i("serve.max_body_bytes", 1048576, 1, kBig, "Bytes of one request body."),
      i("serve.max_steps", 200, 1, 1 << 20, "The most sampling steps a request may ask for."),
      i("serve.max_mbr", 16, 1, 1024, "The most MBR candidates a request may ask for."),
      // ------------------------------------------------------------------ dist
      s("dist.backend", "auto", {"auto", "nccl", "gloo"}, "Data-parallel runs: the c10d backend of the collectives; auto: NCCL for GPU training where the build has it, Gloo otherwise (CPU training; GPU tensors through the host)."),
      f("dist.timeout_s", 600.0, 1.0, 1e6, "Data-parallel runs (RANK / WORLD_SIZE set): how long a collective or the rendezvous waits for the other ranks before failing with an error (a rank that died); longer than a validation."),
      f("dist.bucket_mb", 25.0, 0.001, 1e6, "Data-parallel runs: gradients are all-reduced in buckets of at most this many MiB."),
      b("dist.expert_parallel", false, "Data-parallel runs: shard every MoE layer's experts over the processes (moe.experts / WORLD_SIZE each, tokens exchanged with all-to-all) instead of holding all of them on every one; needs moe.experts divisible by the number of processes and moe.capacity_factor = 0. Checkpoints keep the unsharded layout. Validation then runs on every process."),
      b("dist.seed_per_batch", false, "Draw each micro-batch's randomness (t, noise, dropout) from a generator seeded by (train.seed, step, the micro-batch's place in the global batch): what a data-parallel run does (always on there), so that one process with train.grad_accum = N trains as N processes do."),
  };
}

}  // namespace

const std::vector<KeySpec>& config_schema() {
  static const std::vector<KeySpec> schema = make_schema();
  return schema;
}

const KeySpec* find_key_spec(const std::string& key) {
  for (const auto& spec : config_schema())
    if (spec.key == key) return &spec;
  return nullptr;
}

}  // namespace mds

#include "train/validation.h"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <limits>

#include "core/fs.h"
#include "data/jsonl.h"
#include "infer/generator.h"
#include "metrics/eval_report.h"
#include "model/batch_tensors.h"
#include "model/state_dict.h"

namespace mds::train {

using data::Batch;
using data::ExampleSource;
using data::PackOptions;
using data::Tokenizer;
using data::batch_plan_options_from_config;
using data::json_quote;
using data::pack_batch;
using data::pack_options_from_config;
using data::plan_batches;
using diffusion::LossTerms;
using diffusion::TimestepSampler;
using diffusion::diffusion_loss;
using infer::TextGenerator;
using model::BatchTensors;
using model::load_state_dict;
using model::state_dict;
using model::to_tensors;
using runtime::PrecisionScope;

double validation_loss(TrainState& s, const ExampleSource& valid, const Config& c) {
  auto gen = at::detail::getDefaultCPUGenerator();
  const auto saved = gen.get_state();
  gen.set_current_seed(static_cast<uint64_t>(c.get_int("train.seed")) + 7919);
  torch::NoGradGuard no_grad;
  s.model->eval();
  const PackOptions pack = pack_options_from_config(c);
  auto plan = plan_batches(valid, pack, batch_plan_options_from_config(c, /*shuffle=*/false), 0);
  const int64_t limit = c.get_int("train.eval_batches");
  if (limit > 0 && static_cast<int64_t>(plan.size()) > limit) plan.resize(static_cast<std::size_t>(limit));
  TimestepSampler uniform("uniform", s.schedule.steps);
  double sum = 0;
  int64_t count = 0;
  for (const auto& examples : plan) {
    Batch batch = pack_batch(valid, examples, pack);
    BatchTensors t = to_tensors(batch, s.runtime.device);
    auto draw = uniform.sample(batch.batch_size, gen);
    PrecisionScope scope(s.runtime.precision, s.runtime.device);  // as in training, so the two losses compare
    LossTerms terms = diffusion_loss(s.model, t, s.schedule, draw.t_B, draw.weight_B, s.loss, gen);
    sum += terms.loss_B.sum().item<double>();
    count += batch.batch_size;
  }
  s.model->train();
  gen.set_state(saved);
  return count > 0 ? sum / static_cast<double>(count) : std::numeric_limits<double>::quiet_NaN();
}

std::map<std::string, double> validate_by_generation(TrainState& s, const ExampleSource& valid, const Config& c,
                                                     const Tokenizer& tokenizer, const std::string& run_dir,
                                                     const std::vector<std::string>& metric_names) {
  const std::size_t n = std::min<std::size_t>(valid.size(), static_cast<std::size_t>(c.get_int("train.eval_samples")));
  std::vector<std::string> sources, references;
  for (std::size_t i = 0; i < n; ++i) {
    auto src = valid.src(i), trg = valid.trg(i);
    sources.push_back(tokenizer.decode(std::vector<int32_t>(src.begin(), src.end())));
    references.push_back(tokenizer.decode(std::vector<int32_t>(trg.begin(), trg.end())));
  }
  // Sample with the EMA weights, as generate would, then put the training weights back.
  std::map<std::string, torch::Tensor> backup;
  if (s.ema) {
    for (const auto& [name, t] : state_dict(*s.model)) backup[name] = t.clone();
    load_state_dict(*s.model, s.ema->weights(), "EMA weights");
  }
  s.model->eval();
  TextGenerator generator(c, s.model, s.runtime, &tokenizer);
  const std::vector<std::string> predictions = generator.generate(sources);
  s.model->train();
  if (s.ema) load_state_dict(*s.model, backup, "training weights");

  metrics::EvalSet set;
  set.prediction_files = {"validation samples"};
  set.matched_by = "line";
  set.sources = sources;
  for (const auto& r : references) set.references.push_back({r});
  set.predictions = {predictions};
  for (std::size_t i = 0; i < n; ++i) {
    set.ids.push_back(std::to_string(i));
    set.lines.push_back(i + 1);
  }
  metrics::EvalOptions eo;
  eo.metrics = metric_names;
  metrics::EvalReport report = metrics::evaluate(set, eo);
  std::map<std::string, double> out;
  for (const auto& m : report.systems.front().metrics) out[m.name] = m.value;

  std::string text;
  for (std::size_t i = 0; i < n; ++i)
    text += "{\"src\": " + json_quote(sources[i]) + ", \"reference\": " + json_quote(references[i]) +
            ", \"prediction\": " + json_quote(predictions[i]) + "}\n";
  if (run_dir.empty()) return out;
  fs::create_directories(fs::join(run_dir, "samples"));
  fs::write_file_atomic(fs::join(run_dir, "samples/step_" + std::to_string(s.step) + ".jsonl"), text);
  return out;
}

}  // namespace mds::train

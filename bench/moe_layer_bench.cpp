// Benchmark (not a test): a MoE layer's forward + backward, routing included, against the dense FFN of
// the same active width, side by side in one run on one device.
//
// Dimensions: N tokens, D model dim, F expert hidden, E experts, A = k experts per token.
//
// Each row is one training step's forward + backward (gradients of the input and of every parameter
// through torch::autograd::grad, so nothing accumulates into .grad) of:
//   dense   Linear(D, A*F) -> GELU -> Linear(A*F, D): a dense FFN as wide as the experts a token uses
//   moe     MoeLayer: fp32 router, top-k, aux and z losses, moe_ffn (grouped GEMMs on CUDA under
//           autocast; the loop below otherwise)
//   sorted  the same layer (same weights) with MoeOptions::sorted_dispatch: detail::moe_ffn_sorted
//           (one GEMM per expert, host offsets)
// On CUDA under bfloat16 autocast (float32 master weights) unless --no-autocast. After warm-up steps,
// --repeats batches of --iters steps are each timed as a whole (synchronize, clock, steps,
// synchronize, clock), so that the host's launches overlap the device's work as in training; the
// median over the batches of the time per step counts.
//
//   moe_layer_bench [--device cuda|cpu] [--tokens 16384] [--dim 768] [--ffn 3072] [--experts 8]
//             [--top-k 2] [--capacity-factor 0] [--iters 20] [--repeats 5] [--warmup 5]
//             [--no-autocast] [--target 1.3] [--json PATH]
//   CPU smoke run: moe_layer_bench --device cpu --tokens 512 --dim 64 --ffn 128 --iters 3 --repeats 3
#include <ATen/ATen.h>
#include <torch/cuda.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/torch.h>
#include <torch/version.h>

#ifdef MDS_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#endif

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "bench/bench_common.h"
#include "core/fs.h"
#include "core/torch_compat.h"
#include "kernels/moe/moe.h"
#include "model/moe_layer.h"

namespace mds {

using model::MoeLayer;
using model::MoeLayerOutput;
using model::MoeOptions;

namespace {

struct Options {
  std::string device;  // empty: cuda when available
  int64_t tokens = 16384, dim = 768, ffn = 3072, experts = 8, top_k = 2;
  double capacity_factor = 0.0;
  int64_t iters = 20, repeats = 5, warmup = 5;
  bool no_autocast = false;
  double target = 1.3;
  std::string json_path;  // empty: bench/results/moe_<device>.json
};

struct Measurement {
  std::string name;
  std::vector<double> times_ms;  // per step, one value per batch
  double median_ms = 0.0, min_ms = 0.0;
};

// ---------------------------------------------------------------------------- steps

// The gradients of every input under the upstream gradients, returned (not accumulated into .grad).
void backward(const std::vector<at::Tensor>& outputs, const std::vector<at::Tensor>& grad_outputs,
              const std::vector<at::Tensor>& inputs) {
  const auto grads = torch::autograd::grad(outputs, inputs, grad_outputs, /*retain_graph=*/false,
                                           /*create_graph=*/false, /*allow_unused=*/true);
  (void)grads;
}

Measurement measure(const std::string& name, const std::function<void()>& step,
                    const at::Device& device, const Options& opt) {
  Measurement m;
  m.name = name;
  for (int64_t i = 0; i < opt.warmup; ++i) step();
  for (int64_t r = 0; r < opt.repeats; ++r) {
    bench::sync(device);
    const auto start = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < opt.iters; ++i) step();
    bench::sync(device);
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    m.times_ms.push_back(ms / static_cast<double>(std::max<int64_t>(1, opt.iters)));
  }
  std::vector<double> sorted = m.times_ms;
  std::sort(sorted.begin(), sorted.end());
  if (!sorted.empty()) {
    m.median_ms = sorted.size() % 2 == 1
                      ? sorted[sorted.size() / 2]
                      : 0.5 * (sorted[sorted.size() / 2 - 1] + sorted[sorted.size() / 2]);
    m.min_ms = sorted.front();
  }
  return m;
}

int bench_main(int argc, char** argv) {
  Options opt;
  CLI::App app{"MoE layer forward + backward (routing included) vs a dense FFN of the same active width"};
  app.add_option("--device", opt.device, "cuda or cpu (default: cuda when available)")
      ->check(CLI::IsMember({"cuda", "cpu"}));
  app.add_option("--tokens", opt.tokens, "N tokens");
  app.add_option("--dim", opt.dim, "D model dim");
  app.add_option("--ffn", opt.ffn, "F hidden size of one expert (the dense FFN gets top_k * F)");
  app.add_option("--experts", opt.experts, "E experts");
  app.add_option("--top-k", opt.top_k, "A experts per token");
  app.add_option("--capacity-factor", opt.capacity_factor, "0 = dropless");
  app.add_option("--iters", opt.iters, "steps per timed batch");
  app.add_option("--repeats", opt.repeats, "timed batches (the median is reported)");
  app.add_option("--warmup", opt.warmup, "untimed steps first");
  app.add_flag("--no-autocast", opt.no_autocast, "float32 throughout (default on CUDA: bf16 autocast)");
  app.add_option("--target", opt.target, "the moe/dense ratio to pass");
  app.add_option("--json", opt.json_path, "where to write the results");
  CLI11_PARSE(app, argc, argv);
  if (opt.device.empty()) opt.device = torch::cuda::is_available() ? "cuda" : "cpu";
  if (opt.device == "cuda" && !torch::cuda::is_available()) {
    std::fprintf(stderr, "moe_bench: --device cuda but no CUDA device is available\n");
    return 1;
  }
  if (opt.json_path.empty()) opt.json_path = "bench/results/moe_layer_" + opt.device + ".json";
  const at::Device device(opt.device == "cuda" ? at::kCUDA : at::kCPU);
  const bool autocast = device.is_cuda() && !opt.no_autocast;
  const int64_t N = opt.tokens, D = opt.dim, F = opt.ffn, A = opt.top_k;

  at::manual_seed(0);
  MoeOptions mo;
  mo.dim = D;
  mo.ffn_dim = F;
  mo.experts = opt.experts;
  mo.top_k = A;
  mo.capacity_factor = opt.capacity_factor;
  MoeLayer layer(mo);
  layer->to(device);
  MoeOptions mo_sorted = mo;
  mo_sorted.sorted_dispatch = true;
  MoeLayer sorted_layer(mo_sorted);
  {
    torch::NoGradGuard no_grad;
    for (auto& p : sorted_layer->named_parameters()) p.value().copy_(layer->named_parameters()[p.key()]);
  }
  sorted_layer->to(device);
  torch::nn::Linear lin1(D, A * F), lin2(A * F, D);
  lin1->to(device);
  lin2->to(device);

  const auto f32 = at::TensorOptions().dtype(at::kFloat).device(device);
  const at::Tensor x_ND = at::randn({N, D}, f32).requires_grad_(true);
  const at::Tensor g_ND = at::randn({N, D}, f32);
  const at::Tensor aux_weight = at::full({}, 0.01, f32), z_weight = at::full({}, 0.001, f32);
  std::vector<at::Tensor> dense_inputs = {x_ND}, moe_inputs = {x_ND}, sorted_inputs = {x_ND};
  for (const auto& p : lin1->parameters()) dense_inputs.push_back(p);
  for (const auto& p : lin2->parameters()) dense_inputs.push_back(p);
  for (const auto& p : layer->parameters()) moe_inputs.push_back(p);
  for (const auto& p : sorted_layer->parameters()) sorted_inputs.push_back(p);
  const c10::DeviceType device_type = device.type();

  auto dense_step = [&] {
    at::Tensor y;
    {
      compat::AutocastScope scope(device_type, autocast);
      y = lin2->forward(at::gelu(lin1->forward(x_ND)));
    }
    backward({y}, {g_ND.to(y.scalar_type())}, dense_inputs);
  };
  // One layer's forward + backward: `layer` picks moe_ffn's dispatch, `sorted_layer` the loop.
  auto layer_step = [&](MoeLayer& l, const std::vector<at::Tensor>& inputs) {
    MoeLayerOutput out;
    {
      compat::AutocastScope scope(device_type, autocast);
      out = l->forward(x_ND);
    }
    backward({out.y_ND, out.aux_loss, out.z_loss}, {g_ND.to(out.y_ND.scalar_type()), aux_weight, z_weight},
             inputs);
  };
  auto moe_step = [&] { layer_step(layer, moe_inputs); };
  auto sorted_step = [&] { layer_step(sorted_layer, sorted_inputs); };

  const std::string name = bench::device_name(device);
  const bool grouped = device.is_cuda() && compat::kHasGroupedMm && autocast;  // as moe_ffn decides
  std::printf(
      "MoE forward + backward on %s (%s), LibTorch %s: N=%lld D=%lld F=%lld E=%lld top-%lld, "
      "capacity factor %g, %s, median of %lld batches of %lld steps after %lld warm-up\n"
      "moe_ffn: %s; dense FFN: %lld -> %lld -> %lld\n",
      opt.device.c_str(), name.c_str(), bench::torch_version().c_str(), static_cast<long long>(N),
      static_cast<long long>(D), static_cast<long long>(F), static_cast<long long>(opt.experts),
      static_cast<long long>(A), opt.capacity_factor, autocast ? "bf16 autocast" : "float32",
      static_cast<long long>(opt.repeats), static_cast<long long>(opt.iters),
      static_cast<long long>(opt.warmup),
      grouped ? "grouped GEMMs (at::_grouped_mm), no host sync" : "one GEMM per expert (the loop)",
      static_cast<long long>(D), static_cast<long long>(A * F), static_cast<long long>(D));
  std::fflush(stdout);

  std::vector<Measurement> results;
  results.push_back(measure("dense", dense_step, device, opt));
  results.push_back(measure("moe", moe_step, device, opt));
  results.push_back(measure("sorted", sorted_step, device, opt));
  const double dense_ms = results[0].median_ms;
  const double ratio = dense_ms > 0 ? results[1].median_ms / dense_ms : 0.0;
  const bool pass = ratio > 0 && ratio <= opt.target;

  std::printf("\n%-8s %10s %10s %12s   (ms per step)\n", "", "median", "min", "vs dense");
  for (const Measurement& m : results)
    std::printf("%-8s %10.3f %10.3f %11.2fx\n", m.name.c_str(), m.median_ms, m.min_ms,
                dense_ms > 0 ? m.median_ms / dense_ms : 0.0);
  std::printf("\nmoe / dense = %.3f (target <= %.2f): %s\n", ratio, opt.target, pass ? "PASS" : "FAIL");

  nlohmann::json rows = nlohmann::json::array();
  for (const Measurement& m : results)
    rows.push_back({{"name", m.name},
                    {"median_ms", m.median_ms},
                    {"min_ms", m.min_ms},
                    {"times_ms", m.times_ms}});
  nlohmann::json report = {
      {"benchmark", "moe"},
      {"machine", bench::machine_json(device)},
      {"params",
       {{"tokens", N},
        {"dim", D},
        {"ffn", F},
        {"experts", opt.experts},
        {"top_k", A},
        {"capacity_factor", opt.capacity_factor},
        {"precision", autocast ? "bf16 autocast" : "float32"},
        {"moe_ffn", grouped ? "grouped (at::_grouped_mm)" : "per-expert loop"},
        {"iters", opt.iters},
        {"repeats", opt.repeats},
        {"warmup", opt.warmup}}},
      {"results", rows},
      {"moe_over_dense", ratio},
      {"target", opt.target},
      {"pass", pass}};
  bench::write_json(opt.json_path, report);
  return 0;
}

}  // namespace
}  // namespace mds

int main(int argc, char** argv) {
  return mds::bench::guarded_main("moe_layer_bench", [&] { return mds::bench_main(argc, argv); });
}

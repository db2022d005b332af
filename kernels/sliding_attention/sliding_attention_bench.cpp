// Benchmark (not a test): attention forward + backward, sliding_attention's variants against dense
// scaled_dot_product_attention, in one process (the CPU time and memory sweep over L is
// sliding_attention_memory_bench).
//
// Dimensions: B batch, H heads, L length, K head dim, W one-sided window, G global tokens.
//
// bf16 on CUDA (float32 on CPU, a smoke test), B=2 H=12 K=64 W=256 at L = --lengths (16384, 32768,
// 65536). For every L, dense attention is LibTorch's scaled_dot_product_attention (no mask; by default
// restricted to the cuDNN backend, the reference; `--dense-backend default` lets LibTorch
// choose) and sliding_attention runs in three variants, so that the cost of each feature shows:
//   window                   dilation 1, no globals
//   window+dilation          dilation d (every head), no globals
//   window+dilation+globals  dilation d, G globals spread evenly (position g*L/G; --globals-at
//                            first puts them at 0..G-1)           <- the target pattern
// Each measurement: --warmup calls, then --iters calls back to back between two device
// synchronisations (the reported ms is their mean), then --iters calls each bracketed by a
// synchronisation (their median is in the JSON). A call is out = f(q, k, v) and the gradients of
// <out, dout> for a fixed random dout (torch::autograd::grad, so nothing accumulates into .grad).
// GPU memory is the caching allocator's peak of allocated bytes above what the inputs held.
// Targets (issue): window+dilation+globals at L=16384 within 1.35 ms and at least 9x faster than
// dense; at longer L linear growth from that (1.35 ms * L / 16384), and t(2L)/t(L) <= 2.2.
//
//   sliding_attention_bench [--device auto|cpu|cuda] [--json PATH] [--lengths 16384,32768,65536]
//                           [--batch 2] [--heads 12] [--head-dim 64] [--window 256] [--dilation 2]
//                           [--globals 16] [--globals-at spread|first] [--warmup 3] [--iters 20]
//                           [--dense-backend cudnn|flash|efficient|math|default]
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/version.h>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "bench/bench_common.h"
#include "core/torch_compat.h"
#include "kernels/sliding_attention/sliding_attention.h"
#include "kernels/sliding_attention/sliding_attention_bench.h"
#include "runtime/device.h"

namespace mds::kernels {

using runtime::resolve_device;

namespace {

using bench::cpu_model;
using bench::join_fixed;
using bench::torch_version;
using bench_detail::dense_attention;

struct Options {
  std::string device = "auto";
  int64_t heads = 12, batch = 2, head_dim = 64, window = 256, globals = 16;
  std::vector<int64_t> dilation{2};
  std::string json_path;  // empty = bench/results/attention_cuda.json (attention_variants_cpu.json on CPU)
  std::vector<int64_t> lengths{16384, 32768, 65536};
  std::string globals_at = "spread";
  int64_t warmup = 3, iters = 20;
  std::string dense_backend = "cudnn";
  int64_t target_len = 16384;
  double target_ms = 1.35, target_ratio = 9.0, max_growth = 2.2;
};

// ---------------------------------------------------------------------------- variants mode

struct Variant {
  std::string name;
  std::vector<int64_t> dilation;
  int64_t globals = 0;
  bool target = false;  // the pattern, which the targets apply to
};

struct Timing {
  std::string status = "not run";  // "ok", "oom", "error", "unavailable"
  std::string detail;
  double mean_ms = -1.0;            // --iters calls back to back / iters
  double median_ms = -1.0;          // median of --iters synchronised single calls
  double min_ms = -1.0;
  std::vector<double> iter_ms;
  double peak_mib = -1.0, baseline_mib = -1.0;  // CUDA allocator: peak during, allocated before
  bool ok() const { return status == "ok"; }
  double extra_mib() const { return peak_mib >= 0 && baseline_mib >= 0 ? peak_mib - baseline_mib : -1.0; }
};

nlohmann::json to_json(const Timing& t) {
  const auto num = bench::number_or_null;
  return {{"status", t.status},
          {"detail", t.detail},
          {"mean_ms", num(t.mean_ms)},
          {"median_ms", num(t.median_ms)},
          {"min_ms", num(t.min_ms)},
          {"iter_ms", t.iter_ms},
          {"peak_allocated_mib", num(t.peak_mib)},
          {"baseline_allocated_mib", num(t.baseline_mib)},
          {"extra_mib", num(t.extra_mib())}};
}

template <typename F>
Timing time_calls(const F& call, const c10::Device& device, int64_t warmup, int64_t iters) {
  Timing t;
  try {
    bench::sync(device);
    t.baseline_mib = bench::cuda_allocated_mib(device, /*peak=*/false);
    bench::reset_peak_memory(device);
    for (int64_t i = 0; i < warmup; ++i) call();
    bench::sync(device);
    const auto start = bench::Clock::now();
    for (int64_t i = 0; i < iters; ++i) call();
    bench::sync(device);
    t.mean_ms = bench::ms_since(start) / static_cast<double>(std::max<int64_t>(1, iters));
    for (int64_t i = 0; i < iters; ++i) {
      bench::sync(device);
      const auto one = bench::Clock::now();
      call();
      bench::sync(device);
      t.iter_ms.push_back(bench::ms_since(one));
    }
    t.median_ms = bench::median(t.iter_ms);
    t.min_ms = t.iter_ms.empty() ? -1.0 : *std::min_element(t.iter_ms.begin(), t.iter_ms.end());
    t.peak_mib = bench::cuda_allocated_mib(device, /*peak=*/true);
    t.status = "ok";
  } catch (const std::exception& e) {
    t.status = bench::is_oom(e) ? "oom" : "error";
    t.detail = bench::first_line(e);
    t.mean_ms = t.median_ms = t.min_ms = -1.0;
    t.iter_ms.clear();
  }
  if (!t.ok()) bench::empty_cache(device);
  return t;
}

#if MDS_TORCH_HAS_SDPA
// Restricts scaled_dot_product_attention to one backend for the scope ("default": LibTorch's own
// choice among all), then restores the process-wide flags.
class SdpaBackendScope {
 public:
  explicit SdpaBackendScope(const std::string& backend)
      : flash_(at::globalContext().userEnabledFlashSDP()),
        efficient_(at::globalContext().userEnabledMemEfficientSDP()),
        math_(at::globalContext().userEnabledMathSDP()),
        cudnn_(at::globalContext().userEnabledCuDNNSDP()) {
    if (backend == "default") return;
    auto& ctx = at::globalContext();
    ctx.setSDPUseFlash(backend == "flash");
    ctx.setSDPUseMemEfficient(backend == "efficient");
    ctx.setSDPUseMath(backend == "math");
    ctx.setSDPUseCuDNN(backend == "cudnn");
  }
  ~SdpaBackendScope() {
    auto& ctx = at::globalContext();
    ctx.setSDPUseFlash(flash_);
    ctx.setSDPUseMemEfficient(efficient_);
    ctx.setSDPUseMath(math_);
    ctx.setSDPUseCuDNN(cudnn_);
  }
  SdpaBackendScope(const SdpaBackendScope&) = delete;
  SdpaBackendScope& operator=(const SdpaBackendScope&) = delete;

 private:
  bool flash_, efficient_, math_, cudnn_;
};

// The backend scaled_dot_product_attention picks for these inputs under the current flags
// (at::_fused_sdp_choice; numbering of sdp::SDPBackend).
std::string sdpa_choice(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  try {
    const int64_t choice = at::_fused_sdp_choice(q, k, v);
    switch (choice) {
      case 0: return "math";
      case 1: return "flash";
      case 2: return "efficient";
      case 3: return "cudnn";
      case 4: return "overrideable";
      default: return "backend " + std::to_string(choice);
    }
  } catch (const std::exception& e) {
    return "none (" + bench::first_line(e) + ")";
  }
}
#endif

struct DenseResult {
  Timing timing;
  std::string method;   // "sdpa" or "torch ops"
  std::string backend;  // what SDPA ran on
  std::string note;
};

DenseResult measure_dense(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& dout,
                          const c10::Device& device, const Options& opt) {
  DenseResult r;
  auto grads = [&](const at::Tensor& out) {
    const auto g = torch::autograd::grad({out}, {q, k, v}, {dout});
    (void)g;
  };
#if MDS_TORCH_HAS_SDPA
  r.method = "sdpa";
  std::string backend = opt.dense_backend;
  for (int attempt = 0; attempt < 2; ++attempt) {
    {
      SdpaBackendScope scope(backend);
      r.backend = sdpa_choice(q, k, v);  // under the restriction: the one asked for, or "none (why)"
      r.timing = time_calls([&] { grads(at::scaled_dot_product_attention(q, k, v)); }, device, opt.warmup,
                            opt.iters);
    }
    // A backend that cannot run these inputs (not one that ran out of memory): LibTorch's choice.
    if (r.timing.status != "error" || backend == "default") break;
    r.note = "backend " + backend + " failed (" + r.timing.detail + "); measured LibTorch's default choice";
    backend = "default";
  }
#else
  // LibTorch 1.x has no scaled_dot_product_attention: the sweep's dense from torch ops (CPU smoke).
  r.method = "torch ops";
  r.backend = "matmul+softmax";
  const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
  r.timing = time_calls([&] { grads(dense_attention(q, k, v, scale)); }, device, opt.warmup, opt.iters);
#endif
  return r;
}

at::Tensor global_mask(int64_t B, int64_t L, int64_t G, const std::string& placement, const c10::Device& device) {
  at::Tensor mask_BL = at::zeros({B, L}, at::TensorOptions().dtype(at::kBool));
  G = std::min(G, L);
  for (int64_t g = 0; g < G; ++g)
    mask_BL.index_put_({at::indexing::Slice(), placement == "first" ? g : g * L / G}, true);
  return mask_BL.to(device);
}

int variants_main(const Options& opt, const c10::Device& device) {
  const at::ScalarType dtype = device.is_cuda() ? at::kBFloat16 : at::kFloat;
  const int64_t B = opt.batch, H = opt.heads, K = opt.head_dim;
  const std::vector<Variant> variants = {
      {"window", {1}, 0, false},
      {"window+dilation", opt.dilation, 0, false},
      {"window+dilation+globals", opt.dilation, opt.globals, true},
  };
  const std::string dense_desc =
      MDS_TORCH_HAS_SDPA ? "scaled_dot_product_attention, backend " + opt.dense_backend
                         : std::string("softmax(q k^T) v from torch ops (no SDPA in this LibTorch)");
  std::printf(
      "attention forward + backward on %s: B=%lld H=%lld K=%lld W=%lld d=%s G=%lld (%s) %s, "
      "%lld warm-up + %lld timed calls; dense = %s\n",
      bench::device_name(device).c_str(), static_cast<long long>(B), static_cast<long long>(H),
      static_cast<long long>(K), static_cast<long long>(opt.window),
      c10::str(c10::IntArrayRef(opt.dilation)).c_str(), static_cast<long long>(opt.globals),
      opt.globals_at.c_str(), c10::toString(dtype), static_cast<long long>(opt.warmup),
      static_cast<long long>(opt.iters), dense_desc.c_str());

  struct Row {
    int64_t L;
    const Variant* variant;
    Timing sparse;
    const DenseResult* dense;
  };
  std::vector<DenseResult> dense_by_L;
  dense_by_L.reserve(opt.lengths.size());
  std::vector<Row> rows;
  bool dense_oom = false;
  at::manual_seed(0);
  for (const int64_t L : opt.lengths) {
    const auto options = at::TensorOptions().dtype(dtype).device(device);
    at::Tensor q, k, v, dout;
    try {
      q = at::randn({B, H, L, K}, options).requires_grad_(true);
      k = at::randn({B, H, L, K}, options).requires_grad_(true);
      v = at::randn({B, H, L, K}, options).requires_grad_(true);
      dout = at::randn({B, H, L, K}, options);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "L=%lld: inputs do not fit: %s\n", static_cast<long long>(L), bench::first_line(e).c_str());
      bench::empty_cache(device);
      break;
    }
    const at::Tensor key_mask_BL = at::ones({B, L}, at::TensorOptions().dtype(at::kBool).device(device));

    DenseResult dense;
    if (dense_oom) {  // an attention that did not fit at L will not fit at 2L
      dense.timing.status = "oom";
      dense.timing.detail = "skipped: a shorter L already ran out of memory";
    } else {
      dense = measure_dense(q, k, v, dout, device, opt);
      dense_oom = dense.timing.status == "oom";
    }
    dense_by_L.push_back(dense);
    if (!dense.timing.ok())
      std::fprintf(stderr, "dense L=%lld: %s %s\n", static_cast<long long>(L), dense.timing.status.c_str(),
                   dense.timing.detail.c_str());

    for (const Variant& variant : variants) {
      const at::Tensor global_mask_BL = global_mask(B, L, variant.globals, opt.globals_at, device);
      // The facts the model passes (src/model/attention.cpp): no padding, the number of globals.
      SlidingAttentionParams params{opt.window, variant.dilation, 0.0};
      params.key_padding = 0;
      params.max_globals = variant.globals;
      Timing sparse = time_calls(
          [&] {
            const at::Tensor out = sliding_attention(q, k, v, key_mask_BL, global_mask_BL, params);
            const auto g = torch::autograd::grad({out}, {q, k, v}, {dout});
            (void)g;
          },
          device, opt.warmup, opt.iters);
      if (!sparse.ok())
        std::fprintf(stderr, "%s L=%lld: %s %s\n", variant.name.c_str(), static_cast<long long>(L),
                     sparse.status.c_str(), sparse.detail.c_str());
      rows.push_back({L, &variant, sparse, nullptr});
    }
  }
  // dense_by_L no longer grows: pointers into it are stable now.
  for (size_t i = 0; i < rows.size(); ++i) rows[i].dense = &dense_by_L[i / variants.size()];

  // Targets: the full pattern at target_len, linear growth from it at longer L.
  auto target_ms = [&](int64_t L) {
    return L >= opt.target_len ? opt.target_ms * static_cast<double>(L) / static_cast<double>(opt.target_len)
                               : -1.0;
  };
  nlohmann::json results = nlohmann::json::array();
  bool all_pass = true;
  int checked = 0;
  std::printf("\n%7s  %-24s %10s %10s %8s %11s %10s  %-22s %s\n", "L", "variant", "sparse ms", "dense ms",
              "dense/sp", "sparse MiB", "dense MiB", "target", "result");
  for (const Row& row : rows) {
    const Timing& s = row.sparse;
    const Timing& dn = row.dense->timing;
    const bool both = s.ok() && dn.ok() && s.mean_ms > 0;
    const double ratio = both ? dn.mean_ms / s.mean_ms : -1.0;
    std::string target = "-", verdict = "-";
    const double t_ms = row.variant->target ? target_ms(row.L) : -1.0;
    bool pass = true, measured = false;
    if (t_ms > 0) {
      const bool at_base = row.L == opt.target_len;
      target = "<= " + bench::fixed(t_ms) + " ms" + (at_base ? ", >= " + bench::fixed(opt.target_ratio, 0) + "x" : "");
      measured = s.ok();
      pass = s.ok() && s.mean_ms <= t_ms;
      if (at_base) {
        measured = measured && dn.ok();
        pass = pass && ratio >= opt.target_ratio;
      }
      verdict = bench::pass_fail(measured, pass);
      ++checked;
      all_pass = all_pass && measured && pass;
    }
    auto ms_cell = [](const Timing& t) { return t.ok() ? bench::fixed(t.mean_ms, 3) : t.status; };
    std::printf("%7lld  %-24s %10s %10s %8s %11s %10s  %-22s %s\n", static_cast<long long>(row.L),
                row.variant->name.c_str(), ms_cell(s).c_str(), ms_cell(dn).c_str(),
                both ? bench::fixed(ratio).c_str() : "-", bench::fixed(s.extra_mib(), 1).c_str(),
                bench::fixed(dn.extra_mib(), 1).c_str(), target.c_str(), verdict.c_str());
    nlohmann::json r = {{"L", row.L},
                        {"variant", row.variant->name},
                        {"dilation", row.variant->dilation},
                        {"globals", row.variant->globals},
                        {"sparse", to_json(s)},
                        {"dense", to_json(dn)},
                        {"dense_method", row.dense->method},
                        {"dense_backend", row.dense->backend},
                        {"dense_note", row.dense->note},
                        {"dense_over_sparse", bench::number_or_null(ratio)},
                        {"target_ms", bench::number_or_null(t_ms)},
                        {"target_dense_over_sparse",
                         bench::number_or_null(row.variant->target && row.L == opt.target_len ? opt.target_ratio : -1.0)},
                        {"result", verdict}};
    results.push_back(r);
  }
  for (const DenseResult& dense : dense_by_L)
    if (!dense.note.empty()) std::printf("note: %s\n", dense.note.c_str());
  if (!dense_by_L.empty() && MDS_TORCH_HAS_SDPA)
    std::printf("dense backend: %s\n", dense_by_L.front().backend.c_str());

  // Growth per doubling of L, per variant (and dense): 2 = linear, 4 = quadratic.
  nlohmann::json growth_json = nlohmann::json::object();
  std::printf("\ngrowth per doubling of L (2 = linear, 4 = quadratic; target <= %.1f for the full pattern):\n",
              opt.max_growth);
  auto growth_of = [&](auto time_of) {
    std::vector<double> factors;
    for (size_t i = 1; i < opt.lengths.size() && i < dense_by_L.size(); ++i) {
      if (opt.lengths[i] != 2 * opt.lengths[i - 1]) continue;
      const double a = time_of(i - 1), b = time_of(i);
      if (a > 0 && b > 0) factors.push_back(b / a);
    }
    return factors;
  };
  for (size_t vi = 0; vi < variants.size(); ++vi) {
    const auto factors = growth_of([&](size_t li) {
      const Timing& t = rows[li * variants.size() + vi].sparse;
      return t.ok() ? t.mean_ms : -1.0;
    });
    std::string verdict;
    if (variants[vi].target && !factors.empty()) {
      const bool pass = *std::max_element(factors.begin(), factors.end()) <= opt.max_growth;
      verdict = pass ? "  PASS" : "  FAIL";
      all_pass = all_pass && pass;
      ++checked;
    }
    std::printf("  %-24s %s%s\n", variants[vi].name.c_str(), join_fixed(factors).c_str(), verdict.c_str());
    growth_json[variants[vi].name] = factors;
  }
  const auto dense_factors = growth_of([&](size_t li) {
    const Timing& t = dense_by_L[li].timing;
    return t.ok() ? t.mean_ms : -1.0;
  });
  std::printf("  %-24s %s\n", "dense", join_fixed(dense_factors).c_str());
  growth_json["dense"] = dense_factors;
  std::printf("\ntargets: %s\n", checked == 0 ? "none measured" : all_pass ? "all PASS" : "some FAIL");

  nlohmann::json params = {{"batch", B},          {"heads", H},          {"head_dim", K},
                           {"window", opt.window}, {"dilation", opt.dilation}, {"globals", opt.globals},
                           {"globals_at", opt.globals_at}, {"lengths", opt.lengths}, {"warmup", opt.warmup},
                           {"iters", opt.iters},   {"dtype", c10::toString(dtype)},
                           {"dense_backend_requested", opt.dense_backend},
                           {"timing", "mean of iters calls back to back between two synchronisations; "
                                      "median_ms: of iters single synchronised calls"}};
  nlohmann::json targets = {{"length", opt.target_len}, {"sparse_ms", opt.target_ms},
                            {"dense_over_sparse", opt.target_ratio}, {"max_growth_per_doubling", opt.max_growth},
                            {"longer_lengths", "sparse_ms * L / length (linear growth)"}};
  nlohmann::json report = {{"benchmark", device.is_cuda() ? "attention_cuda" : "attention_variants_cpu"},
                           {"machine", bench::machine_json(device)},
                           {"params", params},
                           {"targets", targets},
                           {"results", results},
                           {"growth_per_doubling", growth_json},
                           {"all_targets_pass", checked > 0 && all_pass}};
  bench::write_json(opt.json_path, report);
  return 0;
}

// ---------------------------------------------------------------------------- main

int bench_main(int argc, char** argv) {
  Options opt;
  CLI::App app{"Attention forward + backward: sliding_attention's window / +dilation / +globals against "
               "scaled_dot_product_attention (bf16 on CUDA), with the issue's targets"};
  app.add_option("--device", opt.device, "auto (cuda when a GPU is visible), cpu or cuda");
  app.add_option("--heads", opt.heads, "H");
  app.add_option("--batch", opt.batch, "B");
  app.add_option("--head-dim", opt.head_dim, "K");
  app.add_option("--window", opt.window, "W, one-sided");
  app.add_option("--dilation", opt.dilation, "d, one value for every head");
  app.add_option("--globals", opt.globals, "G global tokens");
  app.add_option("--json", opt.json_path,
                 "where to write the results (default bench/results/attention_cuda.json, "
                 "attention_variants_cpu.json on CPU)");
  app.add_option("--lengths", opt.lengths, "the L measured")->delimiter(',');
  app.add_option("--globals-at", opt.globals_at, "spread (g*L/G) or first (0..G-1)")
      ->check(CLI::IsMember({"spread", "first"}));
  app.add_option("--warmup", opt.warmup, "untimed calls first");
  app.add_option("--iters", opt.iters, "timed calls (twice: back to back, and one by one)");
  app.add_option("--dense-backend", opt.dense_backend,
                 "scaled_dot_product_attention backend (cudnn, flash, efficient, math, or default = "
                 "LibTorch's choice); one that cannot run falls back to default")
      ->check(CLI::IsMember({"cudnn", "flash", "efficient", "math", "default"}));
  app.add_option("--target-len", opt.target_len, "L of the absolute targets");
  app.add_option("--target-ms", opt.target_ms, "sparse time target at --target-len");
  app.add_option("--target-ratio", opt.target_ratio, "dense/sparse target at --target-len");
  CLI11_PARSE(app, argc, argv);

  const c10::Device device = resolve_device(opt.device);
  if (opt.json_path.empty())
    opt.json_path = device.is_cuda() ? "bench/results/attention_cuda.json" : "bench/results/attention_variants_cpu.json";
  MDS_CHECK(opt.dilation.size() == 1, "--dilation takes one value (every head), got ", opt.dilation.size());
  MDS_CHECK(opt.iters >= 1 && opt.warmup >= 0, "--iters must be >= 1 and --warmup >= 0");
  return variants_main(opt, device);
}

}  // namespace
}  // namespace mds::kernels

int main(int argc, char** argv) {
  return mds::bench::guarded_main("sliding_attention_bench", [&] { return mds::kernels::bench_main(argc, argv); });
}

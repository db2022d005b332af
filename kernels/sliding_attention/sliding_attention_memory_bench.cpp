// Benchmark (not a test): attention forward + backward on the CPU, dense against sliding_attention,
// time and peak memory over L (the CUDA variants are sliding_attention_bench).
//
// Dimensions: B batch, H heads, L length, K head dim, W one-sided window, G global tokens.
//
// L = 512, 1024, ... --max-len, float32. Dense is what a dense model pays: softmax(q k^T * scale) v
// from torch ops, no mask, an L x L matrix per head. Sparse is sliding_attention (window, dilation,
// globals; CPU reference loops). Each (method, L) runs in its own fork()ed child, so that its peak
// resident memory is its own (ru_maxrss from wait4) and an out-of-memory run (capped by RLIMIT_AS)
// is reported, not fatal. The parent does no tensor work before forking: the OpenMP pool must not
// exist yet in a child.
//
//   sliding_attention_memory_bench [--max-len 16384] [--heads 4] [--head-dim 64] [--window 256]
//                                  [--dilation 2 | --dilation 1,2,3,1] [--globals 16] [--batch 1]
//                                  [--repeat 3] [--threads N] [--mem-limit-gb X] [--json PATH]
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/version.h>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <new>
#include <sstream>
#include <string>
#include <vector>

#include "bench/bench_common.h"
#include "kernels/sliding_attention/sliding_attention.h"
#include "kernels/sliding_attention/sliding_attention_bench.h"

namespace mds::kernels {
namespace {

using bench::cpu_model;
using bench::join_fixed;
using bench::torch_version;
using bench_detail::dense_attention;

struct Options {
  int64_t heads = 4, batch = 1, head_dim = 64, window = 256, globals = 16;
  std::vector<int64_t> dilation{2};
  std::string json_path = "bench/results/attention_cpu.json";
  int64_t max_len = 16384, repeat = 3;
  int threads = 0;            // 0 = all cores
  double mem_limit_gb = 0.0;  // 0 = 80% of the memory available at start
};

struct Measurement {
  std::string method;
  int64_t L = 0;
  std::string status;  // "ok", "oom" or "error"
  std::string detail;
  std::vector<double> times_ms;
  double median_ms = 0.0;
  double peak_mib = 0.0;      // child's ru_maxrss
  double baseline_mib = 0.0;  // child's resident size before any tensor work
};

// ---------------------------------------------------------------------------- machine

int64_t meminfo_kib(const std::string& field) {
  std::ifstream meminfo("/proc/meminfo");
  std::string line;
  while (std::getline(meminfo, line))
    if (line.rfind(field + ":", 0) == 0) return std::stoll(line.substr(field.size() + 1));
  return -1;
}

double resident_mib() {
  std::ifstream statm("/proc/self/statm");
  long pages_total = 0, pages_resident = 0;
  statm >> pages_total >> pages_resident;
  return static_cast<double>(pages_resident) * static_cast<double>(sysconf(_SC_PAGESIZE)) /
         (1 << 20);
}

// ---------------------------------------------------------------------------- child


// Runs one warm-up and opt.repeat timed forward + backward passes; returns "ok <baseline> <ms>...".
std::string run_child(const std::string& method, int64_t L, const Options& opt) {
  if (opt.threads > 0) at::set_num_threads(opt.threads);
  const double baseline_mib = resident_mib();
  at::manual_seed(0);
  const int64_t B = opt.batch, H = opt.heads, K = opt.head_dim;
  const auto f32 = at::TensorOptions().dtype(at::kFloat);
  const at::Tensor q = at::randn({B, H, L, K}, f32).requires_grad_(true);
  const at::Tensor k = at::randn({B, H, L, K}, f32).requires_grad_(true);
  const at::Tensor v = at::randn({B, H, L, K}, f32).requires_grad_(true);
  const at::Tensor dout = at::randn({B, H, L, K}, f32);
  const at::Tensor key_mask_BL = at::ones({B, L}, at::kBool);
  at::Tensor global_mask_BL = at::zeros({B, L}, at::kBool);
  for (int64_t g = 0; g < std::min(opt.globals, L); ++g)
    global_mask_BL.index_put_({at::indexing::Slice(), g * L / std::min(opt.globals, L)}, true);
  const SlidingAttentionParams params{opt.window, opt.dilation, 0.0};
  const double scale = 1.0 / std::sqrt(static_cast<double>(K));

  auto step = [&] {
    const at::Tensor out = method == "dense"
                               ? dense_attention(q, k, v, scale)
                               : sliding_attention(q, k, v, key_mask_BL, global_mask_BL, params);
    const auto grads = torch::autograd::grad({out}, {q, k, v}, {dout});
    (void)grads;
  };
  std::ostringstream report;
  report << "ok " << baseline_mib;
  step();  // warm-up
  for (int64_t r = 0; r < opt.repeat; ++r) {
    const auto start = std::chrono::steady_clock::now();
    step();
    report << ' '
           << std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
                  .count();
  }
  return report.str();
}

[[noreturn]] void child_main(const std::string& method, int64_t L, const Options& opt,
                             double limit_bytes, int fd) {
  std::string report;
  try {
    const rlimit limit{static_cast<rlim_t>(limit_bytes), static_cast<rlim_t>(limit_bytes)};
    setrlimit(RLIMIT_AS, &limit);
    report = run_child(method, L, opt);
  } catch (const std::bad_alloc&) {
    report = "oom std::bad_alloc";
  } catch (const c10::Error& e) {
    std::string message = e.what_without_backtrace();
    message = message.substr(0, message.find('\n'));
    const bool oom = message.find("memory") != std::string::npos;
    report = (oom ? "oom " : "error ") + message;
  } catch (const std::exception& e) {
    report = std::string("error ") + e.what();
  }
  report += '\n';
  const ssize_t written = write(fd, report.data(), report.size());
  (void)written;
  close(fd);
  _exit(0);  // no static destructors: they belong to the parent
}

// ---------------------------------------------------------------------------- parent

Measurement measure(const std::string& method, int64_t L, const Options& opt, double limit_bytes) {
  Measurement m;
  m.method = method;
  m.L = L;
  int fds[2];
  if (pipe(fds) != 0) throw std::runtime_error("pipe() failed");
  std::fflush(nullptr);
  const pid_t pid = fork();
  if (pid < 0) throw std::runtime_error("fork() failed");
  if (pid == 0) {
    close(fds[0]);
    child_main(method, L, opt, limit_bytes, fds[1]);
  }
  close(fds[1]);
  std::string report;
  char buffer[4096];
  for (ssize_t n; (n = read(fds[0], buffer, sizeof buffer)) > 0;)
    report.append(buffer, static_cast<size_t>(n));
  close(fds[0]);
  int status = 0;
  rusage usage{};
  wait4(pid, &status, 0, &usage);
  m.peak_mib = static_cast<double>(usage.ru_maxrss) / 1024.0;  // ru_maxrss is in KiB on Linux

  std::istringstream in(report);
  in >> m.status;
  if (m.status == "ok") {
    in >> m.baseline_mib;
    for (double t; in >> t;) m.times_ms.push_back(t);
    std::vector<double> sorted = m.times_ms;
    std::sort(sorted.begin(), sorted.end());
    m.median_ms = sorted.empty() ? 0.0 : sorted[sorted.size() / 2];
  } else if (m.status == "oom" || m.status == "error") {
    std::getline(in >> std::ws, m.detail);
  } else if (WIFSIGNALED(status)) {  // e.g. the kernel's OOM killer
    m.status = WTERMSIG(status) == SIGKILL ? "oom" : "error";
    m.detail = "child killed by signal " + std::to_string(WTERMSIG(status));
  } else {
    m.status = "error";
    m.detail = "child exited with status " + std::to_string(WEXITSTATUS(status)) + " and no report";
  }
  return m;
}

std::string cell(const Measurement& m, bool time) {
  char text[32];
  if (m.status != "ok") return m.status;
  std::snprintf(text, sizeof text, "%.1f", time ? m.median_ms : m.peak_mib);
  return text;
}

// t(2L) / t(L) (or the same for memory above the baseline) between consecutive lengths: about 2 for
// linear growth, 4 for quadratic.
std::vector<double> growth(const std::vector<Measurement>& runs, bool time) {
  std::vector<double> factors;
  for (size_t i = 1; i < runs.size(); ++i) {
    const Measurement &a = runs[i - 1], &b = runs[i];
    if (a.status != "ok" || b.status != "ok" || b.L != 2 * a.L) continue;
    const double x = time ? a.median_ms : a.peak_mib - a.baseline_mib;
    const double y = time ? b.median_ms : b.peak_mib - b.baseline_mib;
    factors.push_back(x > 0 ? y / x : 0.0);
  }
  return factors;
}


nlohmann::json to_json(const Measurement& m) {
  return {{"method", m.method},         {"L", m.L},
          {"status", m.status},         {"detail", m.detail},
          {"times_ms", m.times_ms},     {"median_ms", m.median_ms},
          {"peak_rss_mib", m.peak_mib}, {"baseline_rss_mib", m.baseline_mib}};
}

// ---------------------------------------------------------------------------- sweep mode

int sweep_main(const Options& opt) {
  const long nproc = sysconf(_SC_NPROCESSORS_ONLN);
  const double available_gib = static_cast<double>(meminfo_kib("MemAvailable")) / (1 << 20);
  const double total_gib = static_cast<double>(meminfo_kib("MemTotal")) / (1 << 20);
  // Of what is available, not of physical RAM: the machine may be shared.
  const double limit_gib = opt.mem_limit_gb > 0 ? opt.mem_limit_gb : 0.8 * available_gib;
  const double limit_bytes = limit_gib * (1 << 30);
  std::printf(
      "attention forward + backward on CPU: B=%lld H=%lld K=%lld W=%lld d=%s G=%lld float32, "
      "%d threads (of %ld), median of %lld after 1 warm-up, child memory limit %.1f GiB\n",
      static_cast<long long>(opt.batch), static_cast<long long>(opt.heads),
      static_cast<long long>(opt.head_dim), static_cast<long long>(opt.window),
      c10::str(c10::IntArrayRef(opt.dilation)).c_str(), static_cast<long long>(opt.globals),
      opt.threads > 0 ? opt.threads : static_cast<int>(nproc), nproc,
      static_cast<long long>(opt.repeat), limit_gib);

  std::vector<Measurement> dense, sparse;
  bool dense_failed = false;
  for (int64_t L = 512; L <= opt.max_len; L *= 2) {
    if (dense_failed) {  // an L x L matrix that did not fit will not fit at 2L
      Measurement skipped;
      skipped.method = "dense";
      skipped.L = L;
      skipped.status = "oom";
      skipped.detail = "skipped: smaller L already ran out of memory";
      dense.push_back(skipped);
    } else {
      dense.push_back(measure("dense", L, opt, limit_bytes));
      dense_failed = dense.back().status == "oom";
    }
    sparse.push_back(measure("sparse", L, opt, limit_bytes));
    for (const Measurement* m : {&dense.back(), &sparse.back()})
      if (m->status != "ok")
        std::fprintf(stderr, "%s L=%lld: %s %s\n", m->method.c_str(), static_cast<long long>(L),
                     m->status.c_str(), m->detail.c_str());
  }

  std::printf("\n%8s %12s %16s %12s %17s %14s\n", "L", "dense ms", "dense peak MiB", "sparse ms",
              "sparse peak MiB", "dense/sparse");
  for (size_t i = 0; i < dense.size(); ++i) {
    const Measurement &d = dense[i], &s = sparse[i];
    std::string ratio = "-";
    if (d.status == "ok" && s.status == "ok" && s.median_ms > 0) {
      char text[32];
      std::snprintf(text, sizeof text, "%.2f", d.median_ms / s.median_ms);
      ratio = text;
    }
    std::printf("%8lld %12s %16s %12s %17s %14s\n", static_cast<long long>(d.L),
                cell(d, true).c_str(), cell(d, false).c_str(), cell(s, true).c_str(),
                cell(s, false).c_str(), ratio.c_str());
  }
  std::printf("\ngrowth per doubling of L (2 = linear, 4 = quadratic):\n");
  std::printf("  time:   dense %s | sparse %s\n", join_fixed(growth(dense, true)).c_str(),
              join_fixed(growth(sparse, true)).c_str());
  std::printf("  memory above the child's baseline: dense %s | sparse %s\n",
              join_fixed(growth(dense, false)).c_str(), join_fixed(growth(sparse, false)).c_str());

  nlohmann::json results = nlohmann::json::array();
  for (size_t i = 0; i < dense.size(); ++i) {
    results.push_back(to_json(dense[i]));
    results.push_back(to_json(sparse[i]));
  }
  nlohmann::json machine = {{"nproc", nproc}, {"cpu", cpu_model()}, {"libtorch", torch_version()}};
  machine["mem_total_gib"] = total_gib;
  machine["mem_available_gib"] = available_gib;
  nlohmann::json params = {{"batch", opt.batch},       {"heads", opt.heads},
                           {"head_dim", opt.head_dim}, {"window", opt.window},
                           {"globals", opt.globals},   {"repeat", opt.repeat}};
  params["dilation"] = opt.dilation;
  params["threads"] = opt.threads > 0 ? opt.threads : nproc;
  params["dtype"] = "float32";
  params["mem_limit_gib"] = limit_gib;
  params["max_len"] = opt.max_len;
  nlohmann::json report = {
      {"benchmark", "attention_cpu"}, {"machine", machine}, {"params", params}};
  report["results"] = results;
  report["growth_per_doubling"] = {{"dense_time", growth(dense, true)},
                                   {"sparse_time", growth(sparse, true)},
                                   {"dense_memory", growth(dense, false)},
                                   {"sparse_memory", growth(sparse, false)}};
  bench::write_json(opt.json_path, report);
  return 0;
}

// ---------------------------------------------------------------------------- main

int bench_main(int argc, char** argv) {
  Options opt;
  CLI::App app{"Attention forward + backward on the CPU: dense vs sliding_attention over L, each in a forked "
               "child (time, peak RSS)"};
  app.add_option("--heads", opt.heads, "H");
  app.add_option("--batch", opt.batch, "B");
  app.add_option("--head-dim", opt.head_dim, "K");
  app.add_option("--window", opt.window, "W, one-sided");
  app.add_option("--dilation", opt.dilation, "d: one value or one per head (1,2,3,1)")->delimiter(',');
  app.add_option("--globals", opt.globals, "G global tokens");
  app.add_option("--json", opt.json_path, "where to write the results");
  app.add_option("--max-len", opt.max_len, "largest L (from 512, doubling)");
  app.add_option("--repeat", opt.repeat, "timed repeats after one warm-up (the median is reported)");
  app.add_option("--threads", opt.threads, "at::set_num_threads (0 = all cores)");
  app.add_option("--mem-limit-gb", opt.mem_limit_gb,
                 "address-space limit of each child in GiB (0 = 80% of MemAvailable at start)");
  CLI11_PARSE(app, argc, argv);
  return sweep_main(opt);
}

}  // namespace
}  // namespace mds::kernels

int main(int argc, char** argv) {
  return mds::bench::guarded_main("sliding_attention_memory_bench", [&] { return mds::kernels::bench_main(argc, argv); });
}

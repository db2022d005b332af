// Benchmark (not a test): the HTTP service under load on loopback. The server of `moe-diffuseq serve`
// (src/infer/http_api.h) runs in this process; --clients threads each send one request at a time,
// one source each (round-robin over --input), until --requests are answered or --max-seconds pass
// (bounded in count and time), first as plain JSON, then with "stream": true (time to the first step
// event and to the answer). Reports requests/s, p50 / p99 latency, failed requests (any answer but
// 200, any stream without its "done" event) and the peak memory of the process (and of the GPU).
//
//   serve_load_bench [--checkpoint DIR] [--input FILE.jsonl] [--clients 8] [--requests 400]
//                    [--max-seconds 60] [--set KEY=VALUE]... [--json PATH]
//
// Without --checkpoint the model is configs/tiny-cpu.toml's shape with random weights (the time of
// a request does not depend on what the weights are, only on the lengths it generates) and a
// tokenizer trained on the input; the server's configuration is the checkpoint's (serve.*,
// sample.*), changed by --set.
#include <torch/torch.h>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "bench/bench_common.h"
#include "core/config.h"
#include "core/fs.h"
#include "data/jsonl.h"
#include "data/tokenizer.h"
#include "infer/generation_service.h"
#include "infer/generator.h"
#include "infer/http_api.h"
#include "infer/httplib_abi.h"
#include "model/denoiser.h"
#include "model/model_options.h"
#include "runtime/runtime.h"

namespace mds {
namespace {

using bench::Clock;
using bench::ms_since;
using nlohmann::json;

struct Phase {
  std::string name;
  std::vector<double> latency_ms, first_event_ms;
  int64_t failed = 0;
  double seconds = 0;
};

double percentile(std::vector<double> xs, double q) {
  if (xs.empty()) return -1;
  std::sort(xs.begin(), xs.end());
  const auto i = static_cast<std::size_t>(q * static_cast<double>(xs.size() - 1) + 0.5);
  return xs[std::min(i, xs.size() - 1)];
}

double peak_rss_mib() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) / 1024.0;  // KiB on Linux
}

// One phase: `clients` threads, each a connection sending one request at a time.
Phase run_phase(const std::string& name, int port, const std::vector<std::string>& sources, int clients, int64_t requests,
                double max_seconds, bool stream) {
  Phase p;
  p.name = name;
  std::atomic<int64_t> next{0};
  std::mutex mutex;
  const auto start = Clock::now();
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&] {
      httplib::Client client("127.0.0.1", port);
      client.set_read_timeout(static_cast<time_t>(max_seconds) + 60, 0);
      for (;;) {
        const int64_t i = next++;
        if (i >= requests || ms_since(start) > 1000.0 * max_seconds) return;
        json body = {{"src", sources[static_cast<std::size_t>(i) % sources.size()]}};
        if (stream) body["stream"] = true;
        const auto t0 = Clock::now();
        double first = -1;
        bool ok = false;
        if (!stream) {
          auto res = client.Post("/v1/generate", body.dump(), "application/json");
          ok = res && res->status == 200 && res->body.find("\"prediction\"") != std::string::npos;
        } else {
          httplib::Request req;
          req.method = "POST";
          req.path = "/v1/generate";
          req.body = body.dump();
          req.set_header("Content-Type", "application/json");
          std::string received;
          req.content_receiver = [&](const char* data, std::size_t n, uint64_t, uint64_t) {
            if (first < 0) first = ms_since(t0);
            received.append(data, n);
            return true;
          };
          auto res = client.send(req);
          ok = res && res->status == 200 && received.find("event: done") != std::string::npos;
        }
        const double ms = ms_since(t0);
        std::lock_guard<std::mutex> lock(mutex);
        if (!ok) {
          ++p.failed;
          continue;
        }
        p.latency_ms.push_back(ms);
        if (first >= 0) p.first_event_ms.push_back(first);
      }
    });
  }
  for (auto& t : threads) t.join();
  p.seconds = ms_since(start) / 1000.0;
  return p;
}

int run(int argc, char** argv) {
  CLI::App app{"serve_load_bench: the HTTP service under concurrent load on loopback"};
  std::string checkpoint, input = std::string(MDS_SOURCE_DIR) + "/tests/fixtures/debian-descriptions-240.jsonl", json_path;
  int clients = 8;
  int64_t requests = 400;
  double max_seconds = 60;
  std::vector<std::string> sets;
  app.add_option("--checkpoint", checkpoint, "checkpoint directory (default: random weights, tiny-cpu shape)");
  app.add_option("--input", input, "jsonl whose sources the clients send");
  app.add_option("--clients", clients, "concurrent clients")->check(CLI::Range(1, 256));
  app.add_option("--requests", requests, "requests per phase")->check(CLI::Range(int64_t{1}, int64_t{1} << 30));
  app.add_option("--max-seconds", max_seconds, "time bound of a phase")->check(CLI::Range(1.0, 3600.0));
  app.add_option("--set", sets, "override a configuration key (serve.*, sample.*, train.device)");
  app.add_option("--json", json_path, "write the results here");
  CLI11_PARSE(app, argc, argv);

  data::JsonlOptions jo;
  jo.require_trg = false;
  std::vector<std::string> sources;
  for (const auto& e : data::read_jsonl(input, jo)) sources.push_back(e.src);
  MDS_CHECK(!sources.empty(), input, ": no sources");

  std::unique_ptr<infer::TextGenerator> generator;
  char tmp_template[] = "/tmp/serve-load-XXXXXX";
  MDS_CHECK(mkdtemp(tmp_template) != nullptr, "cannot make a temporary directory");
  const std::string tmp = tmp_template;
  if (!checkpoint.empty()) {
    generator = std::make_unique<infer::TextGenerator>(checkpoint, sets);
  } else {
    data::TokenizerTrainOptions to;
    to.inputs = {input};
    to.vocab_size = 400;
    data::Tokenizer::train(to, tmp + "/tok");
    static data::Tokenizer tokenizer = data::Tokenizer::load(tmp + "/tok");
    Config c = Config::load(std::string(MDS_SOURCE_DIR) + "/configs/tiny-cpu.toml", sets);
    const runtime::Runtime rt = runtime::resolve_runtime(c);
    model::Denoiser m(model::model_options_from_config(c, tokenizer.vocab_size()));
    m->to(rt.device);
    m->eval();
    generator = std::make_unique<infer::TextGenerator>(c, m, rt, &tokenizer);
  }
  const Config& c = generator->config();
  const c10::Device device = generator->device();
  infer::GenerationService service(*generator, infer::service_limits_from_config(c));
  infer::HttpServer server(*generator, service, infer::api_limits_from_config(c));
  const int port = server.bind("127.0.0.1", 0);
  std::thread listener([&] { server.listen(); });
  bench::reset_peak_memory(device);

  std::vector<Phase> phases;
  phases.push_back(run_phase("json", port, sources, clients, requests, max_seconds, false));
  phases.push_back(run_phase("stream", port, sources, clients, requests, max_seconds, true));
  const std::size_t batches = service.batches_run();
  server.stop();
  listener.join();

  std::printf("serve_load_bench: %s, %s, %d clients, sample.steps %lld, sample.batch_size %lld, serve.batch_window_ms %g\n",
              generator->model()->describe().c_str(), bench::device_name(device).c_str(), clients,
              static_cast<long long>(c.get_int("sample.steps")), static_cast<long long>(c.get_int("sample.batch_size")),
              c.get_float("serve.batch_window_ms"));
  std::printf("%-8s %9s %8s %10s %10s %10s %16s\n", "phase", "requests", "failed", "req/s", "p50 ms", "p99 ms",
              "first event p50");
  json report = bench::machine_json(device);
  report["benchmark"] = "serve_load";
  report["model"] = generator->model()->describe();
  report["checkpoint"] = checkpoint.empty() ? json("random weights, configs/tiny-cpu.toml") : json(checkpoint);
  report["clients"] = clients;
  report["sample_steps"] = c.get_int("sample.steps");
  report["batch_window_ms"] = c.get_float("serve.batch_window_ms");
  int64_t failed = 0;
  for (const Phase& p : phases) {
    const double n = static_cast<double>(p.latency_ms.size());
    std::printf("%-8s %9zu %8lld %10.1f %10.1f %10.1f %16s\n", p.name.c_str(), p.latency_ms.size(),
                static_cast<long long>(p.failed), n / p.seconds, percentile(p.latency_ms, 0.5),
                percentile(p.latency_ms, 0.99), bench::fixed(percentile(p.first_event_ms, 0.5), 1).c_str());
    report["phases"][p.name] = {{"requests", p.latency_ms.size()},
                                {"failed", p.failed},
                                {"seconds", p.seconds},
                                {"requests_per_s", n / p.seconds},
                                {"p50_ms", percentile(p.latency_ms, 0.5)},
                                {"p99_ms", percentile(p.latency_ms, 0.99)},
                                {"first_event_p50_ms", bench::number_or_null(percentile(p.first_event_ms, 0.5))}};
    failed += p.failed;
  }
  report["generate_calls"] = batches;
  report["peak_rss_mib"] = peak_rss_mib();
  report["peak_gpu_mib"] = bench::number_or_null(bench::cuda_allocated_mib(device, /*peak=*/true));
  std::printf("generate() calls: %zu (requests batched together count once); peak memory: %.0f MiB resident%s\n",
              batches, peak_rss_mib(),
              device.is_cuda() ? (", " + bench::fixed(bench::cuda_allocated_mib(device, true), 0) + " MiB on the GPU").c_str() : "");
  std::printf("failed requests: %lld\n", static_cast<long long>(failed));
  if (!json_path.empty()) bench::write_json(json_path, report);
  fs::remove_all(tmp);
  return failed == 0 ? 0 : 1;
}

}  // namespace
}  // namespace mds

int main(int argc, char** argv) {
  try {
    return mds::run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}

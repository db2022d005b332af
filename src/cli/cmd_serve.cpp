// `moe-diffuseq serve [--checkpoint DIR] [--run RUN_DIR] [--host 127.0.0.1] [--port 8080] [--set k=v ...]`:
// the HTTP service and pages of src/infer/http_api.h until Ctrl-C (or SIGTERM).
#include <CLI/CLI.hpp>

#include <chrono>
#include <memory>
#include <thread>

#include "cli/commands.h"
#include "core/config.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/log.h"
#include "infer/generation_service.h"
#include "infer/generator.h"
#include "infer/http_api.h"
#include "runtime/stop_signal.h"

namespace mds::cli {

namespace {
struct ServeArgs {
  std::string checkpoint, run, web_dir, host = "127.0.0.1";
  int port = 8080;
  std::vector<std::string> sets;
};
}  // namespace

void add_serve_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("serve", "serve generation over HTTP (JSON API; loopback by default)");
  auto a = std::make_shared<ServeArgs>();
  cmd->add_option("--checkpoint", a->checkpoint, "checkpoint directory (RUN/best or RUN/checkpoints/step_N): the generation API and page");
  cmd->add_option("--run", a->run, "run directory (train.out_dir) whose metrics.jsonl the page /run plots, while it trains or after");
  cmd->add_option("--web-dir", a->web_dir, "folder holding node_modules/uplot (default: $MDS_WEB_DIR, else the source tree's web/)");
  cmd->add_option("--host", a->host, "address to listen on (127.0.0.1: this machine only; 0.0.0.0: every interface)");
  cmd->add_option("--port", a->port, "port (0: any free one, printed)")->check(CLI::Range(0, 65535));
  cmd->add_option("--set", a->sets, "override a key of the checkpoint's configuration (sample.*, serve.*, train.device)");
  cmd->callback([a] {
    MDS_CHECK(!a->checkpoint.empty() || !a->run.empty(), "serve: give --checkpoint DIR (generation), --run RUN_DIR (curves), or both");
    MDS_CHECK(a->run.empty() || fs::is_directory(a->run), "serve: --run ", a->run, " is not a directory");
    MDS_CHECK(!a->checkpoint.empty() || a->sets.empty(), "serve: --set changes the checkpoint's configuration; give --checkpoint");
    std::unique_ptr<infer::TextGenerator> generator;
    std::unique_ptr<infer::GenerationService> service;
    Config c;  // serve.* defaults without a checkpoint
    if (!a->checkpoint.empty()) {
      generator = std::make_unique<infer::TextGenerator>(a->checkpoint, a->sets);
      c = generator->config();
      service = std::make_unique<infer::GenerationService>(*generator, infer::service_limits_from_config(c));
    }
    infer::HttpServer server(infer::ServeParts{generator.get(), service.get(), a->run, a->web_dir},
                             infer::api_limits_from_config(c));
    const int port = server.bind(a->host, a->port);
    const std::string url = str_cat("http://", a->host, ":", port);
    log_info("serving ", a->checkpoint.empty() ? std::string() : a->checkpoint + " ",
             a->run.empty() ? std::string() : "the curves of " + a->run + " ", "on ", url,
             generator ? str_cat(" (", generator->device().str(), ")") : std::string(), ": the page ", url,
             a->run.empty() ? "/" : "/run", "; POST /v1/generate, GET /v1/info, GET /healthz; Ctrl-C stops");
    runtime::StopSignals signals("\nstop signal: finishing the requests in progress (again to exit now)\n");
    std::thread listener([&] { server.listen(); });
    while (signals.requested() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    log_info("stopping (", runtime::StopSignals::name(signals.requested()), ")");
    server.stop();
    listener.join();
  });
}

}  // namespace mds::cli

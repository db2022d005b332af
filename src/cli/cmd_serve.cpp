// `moe-diffuseq serve --checkpoint DIR [--host 127.0.0.1] [--port 8080] [--set k=v ...]`: the HTTP
// service of src/infer/http_api.h until Ctrl-C (or SIGTERM).
#include <CLI/CLI.hpp>

#include <chrono>
#include <memory>
#include <thread>

#include "cli/commands.h"
#include "core/log.h"
#include "infer/generation_service.h"
#include "infer/generator.h"
#include "infer/http_api.h"
#include "runtime/stop_signal.h"

namespace mds::cli {

namespace {
struct ServeArgs {
  std::string checkpoint, host = "127.0.0.1";
  int port = 8080;
  std::vector<std::string> sets;
};
}  // namespace

void add_serve_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("serve", "serve generation over HTTP (JSON API; loopback by default)");
  auto a = std::make_shared<ServeArgs>();
  cmd->add_option("--checkpoint", a->checkpoint, "checkpoint directory (RUN/best or RUN/checkpoints/step_N)")
      ->required();
  cmd->add_option("--host", a->host, "address to listen on (127.0.0.1: this machine only; 0.0.0.0: every interface)");
  cmd->add_option("--port", a->port, "port (0: any free one, printed)")->check(CLI::Range(0, 65535));
  cmd->add_option("--set", a->sets, "override a key of the checkpoint's configuration (sample.*, serve.*, train.device)");
  cmd->callback([a] {
    infer::TextGenerator generator(a->checkpoint, a->sets);
    const Config& c = generator.config();
    infer::GenerationService service(generator, infer::service_limits_from_config(c));
    infer::HttpServer server(generator, service, infer::api_limits_from_config(c));
    const int port = server.bind(a->host, a->port);
    log_info("serving ", a->checkpoint, " on http://", a->host, ":", port, " (", generator.device().str(),
             "; POST /v1/generate, GET /v1/info, GET /healthz); Ctrl-C stops");
    runtime::StopSignals signals("\nstop signal: finishing the requests in progress (again to exit now)\n");
    std::thread listener([&] { server.listen(); });
    while (signals.requested() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    log_info("stopping (", runtime::StopSignals::name(signals.requested()), ")");
    server.stop();
    listener.join();
  });
}

}  // namespace mds::cli

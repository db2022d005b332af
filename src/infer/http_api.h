// The HTTP service of `moe-diffuseq serve` (cpp-httplib), loopback by default:
//   GET  /healthz       {"status": "ok"}
//   GET  /v1/info       the model, tokenizer, device, configuration and limits
//   POST /v1/generate   {"src": "..."} or {"inputs": ["...", ...]}, optional "steps", "sampler",
//                       "seed", "mbr", "mbr_source", "mbr_noise_share", "mbr_compact_share",
//                       "rewrite_threshold", "start_time", "length", "remask_rounds";
//                       answers {"prediction": "..."} or {"predictions": [...]};
//                       with "stream": true, Server-Sent Events: an "step" event with the text of the
//                       current x0 estimate after every solver step, then "done" with the answer
//                       (or "error")
//   GET  /              the page: type a source, watch the target emerge step by step (web/index.html)
//   GET  /run           the page of a run's curves (web/run.html; the npm package uplot, from WEB_DIR)
//   GET  /v1/run/metrics  {"run_dir", "rows": [metrics.jsonl records]} of serve --run RUN_DIR
// Bad JSON, a missing or mistyped field, invalid UTF-8 or a request over the limits gets a 400 that
// says which field and why; a full queue a 503. Nothing a client sends stops the server.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/error.h"
#include "infer/generation_service.h"
#include "infer/generator.h"
#include "infer/http_request.h"

namespace mds::infer {

// serve.* of the configuration: the service's queue.
ServiceLimits service_limits_from_config(const Config& config);

// What one server serves: generation (a checkpoint), a run's curves, or both.
struct ServeParts {
  TextGenerator* generator = nullptr;  // with service: the generation API; null: none (404 naming --checkpoint)
  GenerationService* service = nullptr;
  std::string run_dir;  // "": no curves (404 naming --run)
  std::string web_dir;  // holds node_modules/uplot; "": $MDS_WEB_DIR, else the source tree's web/
};

class HttpServer {
 public:
  HttpServer(ServeParts parts, ApiLimits limits);
  HttpServer(TextGenerator& generator, GenerationService& service, ApiLimits limits)
      : HttpServer(ServeParts{&generator, &service, "", ""}, limits) {}
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds HOST:PORT (port 0: any free one) and returns the port; throws when it cannot.
  int bind(const std::string& host, int port);
  void listen();  // serves until stop() (from another thread or a signal handler's thread)
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace mds::infer

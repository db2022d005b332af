#include "infer/http_api.h"

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdlib>
#include <sstream>
#include <condition_variable>
#include <deque>
#include <future>
#include <memory>
#include <mutex>
#include <exception>
#include <utility>

#include "core/fs.h"
#include "core/log.h"
#include "infer/httplib_abi.h"
#include "infer/web_pages.h"

namespace mds::infer {

using nlohmann::json;

ServiceLimits service_limits_from_config(const Config& c) {
  ServiceLimits l;
  l.max_queue = static_cast<std::size_t>(c.get_int("serve.max_queue"));
  l.batch_window_ms = c.get_float("serve.batch_window_ms");
  return l;
}

namespace {

json error_body(const std::string& message) { return json{{"error", message}}; }

// Text the model writes may hold invalid UTF-8 (a piece cut inside a character): written as U+FFFD
// rather than failing the request.
std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

std::string sse_event(const char* name, const json& data) { return str_cat("event: ", name, "\ndata: ", dump(data), "\n\n"); }

// The answer of one streamed request: events from the service's worker, written by the connection's
// thread as they come.
struct EventStream {
  std::mutex mutex;
  std::condition_variable wake;
  std::deque<std::string> events;
  std::vector<std::string> current;  // the latest text of each source
  bool single = false, done = false;
  std::size_t sources_cut = 0;  // sources longer than data.max_src_len (the "done" event says it)
  std::future<std::vector<std::string>> result;
  std::chrono::steady_clock::time_point start;

  json texts(const std::vector<std::string>& t) const { return single ? json{{"prediction", t.at(0)}} : json{{"predictions", t}}; }
  void step(const StepUpdate& u) {
    std::lock_guard<std::mutex> lock(mutex);
    for (std::size_t j = 0; j < u.rows.size(); ++j) current.at(u.rows[j]) = u.texts[j];
    json data = texts(current);
    data["step"] = u.step;
    data["steps"] = u.steps;
    data["candidate"] = u.candidate;
    events.push_back(sse_event("step", data));
    wake.notify_all();
  }
  void finish() {
    std::lock_guard<std::mutex> lock(mutex);
    done = true;
    wake.notify_all();
  }
  // Writes what is there (waiting for something); false when the client has gone.
  bool write(httplib::DataSink& sink) {
    std::unique_lock<std::mutex> lock(mutex);
    wake.wait(lock, [&] { return !events.empty() || done; });
    while (!events.empty()) {
      const std::string e = std::move(events.front());
      events.pop_front();
      lock.unlock();
      if (!sink.write(e.data(), e.size())) return false;
      lock.lock();
    }
    if (!done) return true;
    lock.unlock();
    std::string last;
    try {
      json data = texts(result.get());
      data["seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      data["sources_cut"] = sources_cut;
      last = sse_event("done", data);
    } catch (const std::exception& e) {
      last = sse_event("error", error_body(str_cat("generation failed: ", e.what())));
    }
    if (!sink.write(last.data(), last.size())) return false;
    sink.done();
    return true;
  }
};

}  // namespace

namespace {

// The metrics.jsonl records of a run, skipping a line still being written (the run goes on).
json run_metrics(const std::string& run_dir) {
  const std::string path = fs::join(run_dir, "metrics.jsonl");
  json rows = json::array();
  if (fs::exists(path)) {
    std::istringstream lines(fs::read_file(path));
    for (std::string line; std::getline(lines, line);) {
      json row = json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (row.is_object()) rows.push_back(std::move(row));
    }
  }
  return json{{"run_dir", run_dir}, {"rows", rows}};
}

std::string default_web_dir() {
  const char* env = std::getenv("MDS_WEB_DIR");
  return env && *env ? std::string(env) : std::string(MDS_DEFAULT_WEB_DIR);
}

}  // namespace

struct HttpServer::Impl {
  ServeParts parts;
  ApiLimits limits;
  httplib::Server server;
  json info;
  // What a request leaves out: the generator's options when the server is made (the checkpoint's
  // sample.* keys and --set). Not the generator's options later: the service sets them to each batch's.
  GenerateOptions defaults;
};

HttpServer::HttpServer(ServeParts parts, ApiLimits limits) : impl_(new Impl{std::move(parts), limits, {}, {}, {}}) {
  Impl& s = *impl_;
  if (s.parts.web_dir.empty()) s.parts.web_dir = default_web_dir();
  s.info = {{"model", nullptr}, {"run_dir", s.parts.run_dir.empty() ? json(nullptr) : json(s.parts.run_dir)}};
  if (TextGenerator* g = s.parts.generator) {
    s.defaults = g->options();
    s.info.update({{"model", g->model()->describe()},
                   {"vocab_size", g->tokenizer().vocab_size()},
                   {"device", g->device().str()},
                   {"precision", runtime::to_string(g->precision())},
                   {"config", g->config().to_toml(true)},
                   {"limits",
                    {{"max_inputs", limits.max_inputs},
                     {"max_source_bytes", limits.max_source_bytes},
                     {"max_body_bytes", limits.max_body_bytes},
                     {"max_steps", limits.max_steps},
                     {"max_mbr", limits.max_mbr}}}});
  }
  s.server.set_payload_max_length(limits.max_body_bytes + 1);  // the parser names the limit past it
  const auto reply = [](httplib::Response& res, int status, const json& body) {
    res.status = status;
    res.set_content(dump(body) + "\n", "application/json");
  };
  const auto page = [](const char* name) {
    return [name](const httplib::Request&, httplib::Response& res) {
      res.set_content(web_page(name), "text/html; charset=utf-8");
    };
  };
  s.server.Get("/", page("index.html"));
  s.server.Get("/run", page("run.html"));
  // The charting library of the curves, from the npm package that scripts/install-deps --web puts in
  // WEB_DIR/node_modules: only these two files, by name.
  s.server.Get(R"(/static/(uPlot\.iife\.min\.js|uPlot\.min\.css))", [this, reply](const httplib::Request& req, httplib::Response& res) {
    const std::string name = req.matches[1];
    const std::string path = fs::join(impl_->parts.web_dir, "node_modules/uplot/dist/" + name);
    if (!fs::exists(path)) {
      reply(res, 404, error_body(str_cat(path, " does not exist: the charting library (npm uplot) is not installed; "
                                         "run scripts/install-deps --web, or give serve --web-dir")));
      return;
    }
    res.set_content(fs::read_file(path), name.size() > 3 && name.substr(name.size() - 3) == ".js" ? "text/javascript" : "text/css");
  });
  s.server.Get("/healthz", [reply](const httplib::Request&, httplib::Response& res) {
    reply(res, 200, json{{"status", "ok"}});
  });
  s.server.Get("/v1/info", [this, reply](const httplib::Request&, httplib::Response& res) {
    reply(res, 200, impl_->info);
  });
  s.server.Get("/v1/run/metrics", [this, reply](const httplib::Request&, httplib::Response& res) {
    if (impl_->parts.run_dir.empty()) {
      reply(res, 404, error_body("no run to show: start serve with --run RUN_DIR"));
      return;
    }
    reply(res, 200, run_metrics(impl_->parts.run_dir));
  });
  s.server.Post("/v1/generate", [this, reply](const httplib::Request& req, httplib::Response& res) {
    Impl& s = *impl_;
    if (!s.parts.generator || !s.parts.service) {
      reply(res, 404, error_body("no model to generate with: start serve with --checkpoint DIR"));
      return;
    }
    TextGenerator& generator = *s.parts.generator;
    GenerationService& service = *s.parts.service;
    const auto start = std::chrono::steady_clock::now();
    try {
      GenerateRequest r = parse_generate_request(req.body, s.defaults, s.limits);
      try {
        generator.check_options_for_model(r.options);  // e.g. "remask_rounds" on a model without m
      } catch (const Error& e) {
        throw ApiError(400, e.what());
      }
      const std::size_t n = r.sources.size();
      const std::size_t cut = generator.sources_cut(r.sources);  // before the sources move into the queue
      if (r.stream) {
        auto stream = std::make_shared<EventStream>();
        stream->single = r.single;
        stream->current.resize(n);
        stream->start = start;
        stream->sources_cut = cut;
        stream->result = service.submit(std::move(r.sources), r.options,
                                        [stream](const StepUpdate& u) { stream->step(u); },
                                        [stream] { stream->finish(); });
        res.set_header("Cache-Control", "no-cache");
        res.set_chunked_content_provider("text/event-stream", [stream](std::size_t, httplib::DataSink& sink) {
          return stream->write(sink);
        });
        log_info("POST /v1/generate: ", n, " source(s), streamed");
        return;
      }
      std::vector<std::string> predictions = service.submit(std::move(r.sources), r.options).get();
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      json body = r.single ? json{{"prediction", predictions.at(0)}} : json{{"predictions", predictions}};
      body["seconds"] = seconds;
      body["sources_cut"] = cut;
      reply(res, 200, body);
      log_info("POST /v1/generate: ", n, " source(s) in ", seconds, " s");
    } catch (const ApiError& e) {
      reply(res, e.status(), error_body(e.what()));
    } catch (const QueueFull& e) {
      res.set_header("Retry-After", "1");
      reply(res, 503, error_body(e.what()));
    } catch (const std::exception& e) {
      log_warn("POST /v1/generate failed: ", e.what());
      reply(res, 500, error_body(str_cat("generation failed: ", e.what())));
    }
  });
  s.server.set_error_handler([reply](const httplib::Request&, httplib::Response& res) {
    if (res.body.empty()) reply(res, res.status, error_body(res.status == 404 ? "no such path" : "bad request"));
  });
}

HttpServer::~HttpServer() { stop(); }

int HttpServer::bind(const std::string& host, int port) {
  const int bound = port == 0 ? impl_->server.bind_to_any_port(host.c_str())
                              : (impl_->server.bind_to_port(host.c_str(), port) ? port : -1);
  MDS_CHECK(bound > 0, "serve: cannot listen on ", host, ":", port, " (in use, or not an address of this machine)");
  return bound;
}

void HttpServer::listen() { impl_->server.listen_after_bind(); }

void HttpServer::stop() {
  if (impl_) impl_->server.stop();
}

}  // namespace mds::infer

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
#include "core/json_integer.h"
#include "core/log.h"
#include "infer/httplib_abi.h"
#include "infer/web_pages.h"

namespace mds::infer {

using nlohmann::json;

ApiLimits api_limits_from_config(const Config& c) {
  ApiLimits l;
  l.max_inputs = static_cast<std::size_t>(c.get_int("serve.max_inputs"));
  l.max_source_bytes = static_cast<std::size_t>(c.get_int("serve.max_source_bytes"));
  l.max_body_bytes = static_cast<std::size_t>(c.get_int("serve.max_body_bytes"));
  l.max_steps = c.get_int("serve.max_steps");
  l.max_mbr = c.get_int("serve.max_mbr");
  return l;
}

ServiceLimits service_limits_from_config(const Config& c) {
  ServiceLimits l;
  l.max_queue = static_cast<std::size_t>(c.get_int("serve.max_queue"));
  l.batch_window_ms = c.get_float("serve.batch_window_ms");
  return l;
}

namespace {

[[noreturn]] void bad(const std::string& what) { throw ApiError(400, what); }

int64_t integer_field(const json& body, const char* name, int64_t lo, int64_t hi) {
  const json& v = body.at(name);
  if (!v.is_number_integer()) bad(str_cat("\"", name, "\" must be an integer, got ", v.type_name()));
  const std::optional<int64_t> x = json_integer<int64_t>(v);
  if (!x || *x < lo || *x > hi) bad(str_cat("\"", name, "\" must be in [", lo, ", ", hi, "], got ", v.dump()));
  return *x;
}

std::string source_field(const json& v, const std::string& where, const ApiLimits& limits) {
  if (!v.is_string()) bad(str_cat(where, " must be a string, got ", v.type_name()));
  std::string s = v.get<std::string>();
  if (s.size() > limits.max_source_bytes)
    bad(str_cat(where, " has ", s.size(), " bytes; the limit is ", limits.max_source_bytes, " (serve.max_source_bytes)"));
  return s;
}

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

GenerateRequest parse_generate_request(const std::string& text, const GenerateOptions& defaults, const ApiLimits& limits) {
  if (text.size() > limits.max_body_bytes)
    throw ApiError(413, str_cat("the body has ", text.size(), " bytes; the limit is ", limits.max_body_bytes,
                                " (serve.max_body_bytes)"));
  json body;
  try {
    body = json::parse(text);  // rejects invalid UTF-8 in strings
  } catch (const json::exception& e) {  // parse_error, and out_of_range for a number past double
    bad(str_cat("the body is not valid JSON: ", e.what()));
  }
  if (!body.is_object()) bad(str_cat("the body must be a JSON object, got ", body.type_name()));
  static const char* known[] = {"src", "inputs", "steps", "sampler", "seed", "mbr", "start_time", "stream"};
  for (const auto& [key, value] : body.items()) {
    bool ok = false;
    for (const char* k : known) ok = ok || key == k;
    if (!ok) bad(str_cat("unknown field \"", key, "\" (known: src, inputs, steps, sampler, seed, mbr, start_time, stream)"));
  }
  GenerateRequest r;
  const bool has_src = body.contains("src"), has_inputs = body.contains("inputs");
  if (has_src == has_inputs) bad("give either \"src\" (one source) or \"inputs\" (a list of sources)");
  if (has_src) {
    r.single = true;
    r.sources.push_back(source_field(body["src"], "\"src\"", limits));
  } else {
    const json& inputs = body["inputs"];
    if (!inputs.is_array()) bad(str_cat("\"inputs\" must be a list of strings, got ", inputs.type_name()));
    if (inputs.empty()) bad("\"inputs\" is empty");
    if (inputs.size() > limits.max_inputs)
      bad(str_cat("\"inputs\" has ", inputs.size(), " sources; the limit is ", limits.max_inputs, " (serve.max_inputs)"));
    for (std::size_t i = 0; i < inputs.size(); ++i)
      r.sources.push_back(source_field(inputs[i], str_cat("\"inputs\"[", i, "]"), limits));
  }
  r.options = defaults;
  if (body.contains("steps")) r.options.sampler.steps = integer_field(body, "steps", 1, limits.max_steps);
  if (body.contains("mbr")) r.options.mbr = integer_field(body, "mbr", 1, limits.max_mbr);
  if (body.contains("seed")) r.options.seed = static_cast<uint64_t>(integer_field(body, "seed", 0, int64_t{1} << 53));
  if (body.contains("sampler")) {
    const json& v = body["sampler"];
    if (!v.is_string()) bad(str_cat("\"sampler\" must be a string, got ", v.type_name()));
    const std::string name = v.get<std::string>();
    if (name != "dpm++2m" && name != "dpm++3m" && name != "ddim" && name != "ancestral")
      bad(str_cat("\"sampler\" must be one of dpm++2m, dpm++3m, ddim, ancestral, got \"", name, "\""));
    r.options.sampler.sampler = name;
  }
  if (body.contains("stream")) {
    const json& v = body["stream"];
    if (!v.is_boolean()) bad(str_cat("\"stream\" must be true or false, got ", v.type_name()));
    r.stream = v.get<bool>();
  }
  if (body.contains("start_time")) {
    const json& v = body["start_time"];
    if (!v.is_number()) bad(str_cat("\"start_time\" must be a number, got ", v.type_name()));
    r.options.sampler.start_time = v.get<double>();
  }
  try {
    check_generate_options(r.options);  // e.g. a start time below 1 with a sampler other than DPM-Solver++
  } catch (const Error& e) {
    bad(e.what());
  }
  return r;
}

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
};

HttpServer::HttpServer(ServeParts parts, ApiLimits limits) : impl_(new Impl{std::move(parts), limits, {}, {}}) {
  Impl& s = *impl_;
  if (s.parts.web_dir.empty()) s.parts.web_dir = default_web_dir();
  s.info = {{"model", nullptr}, {"run_dir", s.parts.run_dir.empty() ? json(nullptr) : json(s.parts.run_dir)}};
  if (TextGenerator* g = s.parts.generator) {
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
      GenerateRequest r = parse_generate_request(req.body, generator.options(), s.limits);
      const std::size_t n = r.sources.size();
      if (r.stream) {
        auto stream = std::make_shared<EventStream>();
        stream->single = r.single;
        stream->current.resize(n);
        stream->start = start;
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

// What a client sends to `serve`: the input is the raw bytes of an HTTP request (request line, headers,
// a body with Content-Length or chunked), read by cpp-httplib (Debian's library, not instrumented)
// into a server whose POST /v1/generate runs serve's parser (src/infer/http_request.*) with small limits.
// Every request must get an answer; a body the parser accepts must be within every limit and hold
// valid UTF-8; one it refuses must say so as a 400 or 413 (ApiError). Any other exception, a crash, a
// sanitizer report or a hang is a failure.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include <nlohmann/json.hpp>

#include "infer/http_request.h"
#include "infer/httplib_abi.h"

namespace {

using mds::infer::ApiError;
using mds::infer::ApiLimits;
using mds::infer::GenerateOptions;
using mds::infer::GenerateRequest;

ApiLimits small_limits() {
  ApiLimits l;
  l.max_body_bytes = 2048;
  l.max_inputs = 4;
  l.max_source_bytes = 64;
  l.max_steps = 50;
  l.max_mbr = 4;
  return l;
}

void check(bool ok) {
  if (!ok) std::abort();
}

// A server that answers requests read from a buffer instead of a socket (process_request is
// protected: a subclass may call it).
class BufferServer : public httplib::Server {
 public:
  BufferServer() {
    set_payload_max_length(limits_.max_body_bytes + 1);  // as serve sets it
    Post("/v1/generate", [this](const httplib::Request& req, httplib::Response& res) {
      try {
        const GenerateRequest r = mds::infer::parse_generate_request(req.body, defaults_, limits_);
        check(!r.sources.empty() && r.sources.size() <= limits_.max_inputs && (!r.single || r.sources.size() == 1));
        for (const std::string& s : r.sources) {
          check(s.size() <= limits_.max_source_bytes);
          nlohmann::json(s).dump();  // throws on invalid UTF-8, which the parser must have refused
        }
        check(r.options.sampler.steps >= 1 && r.options.sampler.steps <= limits_.max_steps);
        check(r.options.mbr >= 1 && r.options.mbr <= limits_.max_mbr);
        check(r.options.sampler.start_time > 0 && r.options.sampler.start_time <= 1);
        res.set_content("{}", "application/json");
      } catch (const ApiError& e) {
        check(e.status() == 400 || e.status() == 413);
        check(std::string(e.what()).size() > 0);
        res.status = e.status();
        res.set_content(e.what(), "text/plain");
      } catch (const std::exception&) {
        std::abort();  // the client would get a 500 saying generation failed
      }
    });
  }

  std::string answer(const uint8_t* data, std::size_t size) {
    httplib::detail::BufferStream stream;
    stream.write(reinterpret_cast<const char*>(data), size);
    bool closed = false;
    process_request(stream, /*close_connection=*/true, closed, [](httplib::Request&) {});
    return stream.get_buffer();
  }

 private:
  ApiLimits limits_ = small_limits();
  GenerateOptions defaults_;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  static BufferServer* server = new BufferServer;
  const std::string out = server->answer(data, size);
  // The buffer holds the request, then the answer when one was written: an answer always starts there.
  check(out.size() >= size);
  return 0;
}

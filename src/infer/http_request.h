// What a client sends to POST /v1/generate, parsed and checked: every field's type and range, the
// limits of serve.*, valid UTF-8. Apart from the server and the model (no LibTorch), so that the
// parser is fuzzed on its own (fuzz/http_request_fuzz.cpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/error.h"
#include "infer/generate_options.h"

namespace mds::infer {

struct ApiLimits {
  std::size_t max_body_bytes = 1 << 20;
  std::size_t max_inputs = 64;          // sources in one request
  std::size_t max_source_bytes = 65536; // one source
  int64_t max_steps = 200;
  int64_t max_mbr = 16;
};

// serve.* of the configuration.
ApiLimits api_limits_from_config(const Config& config);

// A client's mistake: the HTTP status to answer (400, 413) and what to tell it.
class ApiError : public Error {
 public:
  ApiError(int status, const std::string& what) : Error(what), status_(status) {}
  int status() const { return status_; }

 private:
  int status_;
};

struct GenerateRequest {
  std::vector<std::string> sources;
  bool single = false;  // given as "src": answered as "prediction"
  bool stream = false;  // answered as Server-Sent Events
  GenerateOptions options;
};

// Parses and checks a /v1/generate body; `defaults` are the checkpoint's sample.* options.
GenerateRequest parse_generate_request(const std::string& body, const GenerateOptions& defaults, const ApiLimits& limits);

}  // namespace mds::infer

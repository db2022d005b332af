// Generation for many concurrent callers (the HTTP service): requests wait in a bounded queue, and one
// worker thread runs them on the model, putting requests with the same sampling options into one
// generate() call (up to sample.batch_size sources, gathered for at most a short window), so that
// concurrent users share the device's batches. A full queue refuses at once (the server answers 503).
//
// Reproducibility: a request's seed fixes its predictions when it runs alone; batched with others, its
// rows share the batch's noise stream, like the rows of one `generate` call.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/error.h"
#include "infer/generator.h"

namespace mds::infer {

struct ServiceLimits {
  std::size_t max_queue = 64;   // requests waiting; one more is refused
  double batch_window_ms = 5;   // how long the worker waits for more requests to batch with the first
};

// The queue is full: retry later.
class QueueFull : public Error {
 public:
  using Error::Error;
};

class GenerationService {
 public:
  GenerationService(TextGenerator& generator, ServiceLimits limits);
  ~GenerationService();  // finishes the request in progress, fails the waiting ones, stops the worker
  GenerationService(const GenerationService&) = delete;
  GenerationService& operator=(const GenerationService&) = delete;

  // One prediction per source, in order, generated with `options` (sample.* of the checkpoint changed
  // by the request). Throws QueueFull when max_queue requests are waiting. `on_step` (from the worker
  // thread) sees every solver step of this request's sources, `rows` indexing `sources`; `on_done`
  // is called just before the future becomes ready (so it has run once the future is).
  std::future<std::vector<std::string>> submit(std::vector<std::string> sources, GenerateOptions options,
                                               StepObserver on_step = {}, std::function<void()> on_done = {});

  std::size_t waiting() const;
  std::size_t batches_run() const;  // generate() calls so far (requests batched together count once)

 private:
  struct Request {
    std::vector<std::string> sources;
    GenerateOptions options;
    std::promise<std::vector<std::string>> done;
    StepObserver on_step;
    std::function<void()> on_done;
  };
  // The observer of one generate() call over the sources of `batch`, in order: each update goes to
  // the requests that watch the rows it holds, their rows renumbered. Empty when none watches.
  static StepObserver split_updates(std::vector<Request>& batch);
  void run();

  TextGenerator& generator_;
  ServiceLimits limits_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Request> queue_;
  bool stopping_ = false;
  std::size_t batches_ = 0;
  std::thread worker_;
};

// Whether two option sets sample the same way (and so can share one generate() call).
bool same_sampling(const GenerateOptions& a, const GenerateOptions& b);

}  // namespace mds::infer

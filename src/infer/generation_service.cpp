#include "infer/generation_service.h"

#include <algorithm>
#include <exception>
#include <utility>

namespace mds::infer {

bool same_sampling(const GenerateOptions& a, const GenerateOptions& b) {
  const auto& x = a.sampler;
  const auto& y = b.sampler;
  return x.sampler == y.sampler && x.steps == y.steps && x.skip_type == y.skip_type &&
         x.time_mapping == y.time_mapping && x.clamp == y.clamp && x.discrete_noise == y.discrete_noise &&
         x.absorb_rate == y.absorb_rate && x.start_time == y.start_time && x.start_jumps == y.start_jumps &&
         a.seed == b.seed && a.mbr == b.mbr && a.mbr_metric == b.mbr_metric &&
         a.mbr_source == b.mbr_source && a.mbr_noise_share == b.mbr_noise_share &&
         a.mbr_compact_share == b.mbr_compact_share && a.rewrite_threshold == b.rewrite_threshold &&
         a.batch_size == b.batch_size &&
         a.length == b.length && a.remask_rounds == b.remask_rounds && a.remask_share == b.remask_share &&
         a.remask_time == b.remask_time;
}

GenerationService::GenerationService(TextGenerator& generator, ServiceLimits limits)
    : generator_(generator), limits_(limits), worker_([this] { run(); }) {}

GenerationService::~GenerationService() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  worker_.join();
  for (Request& r : queue_) {
    if (r.on_done) r.on_done();
    r.done.set_exception(std::make_exception_ptr(Error("the service stopped")));
  }
}

StepObserver GenerationService::split_updates(std::vector<Request>& batch) {
  bool watched = false;
  for (const Request& r : batch) watched = watched || static_cast<bool>(r.on_step);
  if (!watched) return {};
  // Source i of the generate() call is source local[i] of request owner[i].
  std::vector<std::size_t> owner, local;
  for (std::size_t k = 0; k < batch.size(); ++k)
    for (std::size_t i = 0; i < batch[k].sources.size(); ++i) {
      owner.push_back(k);
      local.push_back(i);
    }
  return [&batch, owner, local](const StepUpdate& u) {
    std::vector<StepUpdate> parts(batch.size());
    for (std::size_t j = 0; j < u.rows.size(); ++j) {
      const std::size_t k = owner[u.rows[j]];
      if (!batch[k].on_step) continue;
      parts[k].rows.push_back(local[u.rows[j]]);
      parts[k].texts.push_back(u.texts[j]);
    }
    for (std::size_t k = 0; k < batch.size(); ++k) {
      if (parts[k].rows.empty()) continue;
      parts[k].candidate = u.candidate;
      parts[k].step = u.step;
      parts[k].steps = u.steps;
      batch[k].on_step(parts[k]);
    }
  };
}

std::future<std::vector<std::string>> GenerationService::submit(std::vector<std::string> sources,
                                                                GenerateOptions options, StepObserver on_step,
                                                                std::function<void()> on_done) {
  check_generate_options(options);
  Request r{std::move(sources), std::move(options), {}, std::move(on_step), std::move(on_done)};
  std::future<std::vector<std::string>> result = r.done.get_future();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    MDS_CHECK(!stopping_, "the service is stopping");
    if (queue_.size() >= limits_.max_queue)
      throw QueueFull(str_cat("the queue is full (", limits_.max_queue, " requests waiting): retry later"));
    queue_.push_back(std::move(r));
  }
  wake_.notify_all();
  return result;
}

std::size_t GenerationService::waiting() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return queue_.size();
}

std::size_t GenerationService::batches_run() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return batches_;
}

void GenerationService::run() {
  for (;;) {
    std::vector<Request> batch;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
      // The first request, then for a short window the waiting ones that sample the same way, up to a
      // batch of sources.
      const auto deadline = std::chrono::steady_clock::now() +
                            std::chrono::microseconds(static_cast<int64_t>(1000.0 * limits_.batch_window_ms));
      batch.push_back(std::move(queue_.front()));
      queue_.pop_front();
      std::size_t sources = batch.front().sources.size();
      const auto capacity = static_cast<std::size_t>(std::max<int64_t>(1, batch.front().options.batch_size));
      for (;;) {
        for (auto it = queue_.begin(); it != queue_.end() && sources < capacity;) {
          if (same_sampling(it->options, batch.front().options) && sources + it->sources.size() <= capacity) {
            sources += it->sources.size();
            batch.push_back(std::move(*it));
            it = queue_.erase(it);
          } else {
            ++it;
          }
        }
        if (sources >= capacity || stopping_ ||
            wake_.wait_until(lock, deadline) == std::cv_status::timeout)
          break;
      }
      ++batches_;
    }
    std::vector<std::string> all;
    for (const Request& r : batch) all.insert(all.end(), r.sources.begin(), r.sources.end());
    std::vector<std::string> predictions;
    std::exception_ptr failure;
    try {
      generator_.options() = batch.front().options;
      predictions = generator_.generate(all, split_updates(batch));
    } catch (...) {
      failure = std::current_exception();
    }
    // on_done first: whoever holds the future knows, once it is ready, that on_done has run.
    std::size_t at = 0;
    for (Request& r : batch) {
      if (r.on_done) r.on_done();
      if (failure) {
        r.done.set_exception(failure);
        continue;
      }
      const auto from = predictions.begin() + static_cast<std::ptrdiff_t>(at);
      r.done.set_value(std::vector<std::string>(from, from + static_cast<std::ptrdiff_t>(r.sources.size())));
      at += r.sources.size();
    }
  }
}

}  // namespace mds::infer

// Weights cast to the compute dtype, kept for the life of a CastCacheScope in this thread.
//
// Generation calls the model once per solver step with the same weights. Under bf16 autocast each
// call cast every weight again: 1,472 cast kernels, 16.4 of the 215 ms of model kernels in a 10-step
// run of the default model over 100 sentences (H100, bench/results/sampling_bf16-residual_h100.json).
// Inside a scope, a cast made with grad mode off is made once and reused while its sources keep their
// storage and version counter, so an in-place update or a reload makes a new one. With grad mode on nothing is cached: training updates the weights every step, and
// its casts belong to the autograd graph.
//
// A scope also keeps autocast's own cache of cast weights (the casts inside linear and matmul) alive
// from one model call to the next: LibTorch clears it whenever the outermost autocast scope ends.
#pragma once

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>

#include <functional>
#include <initializer_list>
#include <map>
#include <string>
#include <tuple>
#include <vector>

namespace mds::core {

namespace detail {

struct CastCacheEntry {
  std::vector<at::Tensor> sources;  // kept so that a freed source's address is never reused by another
  std::vector<int64_t> versions;
  at::Tensor value;
};

struct CastCacheState {
  int depth = 0;  // nested scopes
  std::map<std::tuple<std::string, std::vector<const void*>, int>, CastCacheEntry> entries;
};

inline CastCacheState& cast_cache_state() {
  static thread_local CastCacheState state;
  return state;
}

}  // namespace detail

// Turns the cache on for this thread until it ends (nested scopes share one cache; the outermost
// clears it). enabled = false does nothing: every cast is made where it is asked for.
class CastCacheScope {
 public:
  explicit CastCacheScope(bool enabled = true) : enabled_(enabled) {
    if (!enabled_) return;
    ++detail::cast_cache_state().depth;
    at::autocast::increment_nesting();
  }
  ~CastCacheScope() {
    if (!enabled_) return;
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    auto& s = detail::cast_cache_state();
    if (--s.depth == 0) s.entries.clear();
  }
  CastCacheScope(const CastCacheScope&) = delete;
  CastCacheScope& operator=(const CastCacheScope&) = delete;

 private:
  bool enabled_;
};

// Whether a scope is alive in this thread.
inline bool cast_cache_active() { return detail::cast_cache_state().depth > 0; }

// Entries held (tests).
inline std::size_t cast_cache_size() { return detail::cast_cache_state().entries.size(); }

// make(), a function of `sources` named `what` for `dtype`, made once per scope while the sources are
// unchanged; outside a scope, or with grad mode on, simply make().
inline at::Tensor cached_derived(const char* what, std::initializer_list<at::Tensor> sources, at::ScalarType dtype,
                                 const std::function<at::Tensor()>& make) {
  auto& s = detail::cast_cache_state();
  if (s.depth == 0 || at::GradMode::is_enabled()) return make();
  std::vector<const void*> impls;
  std::vector<int64_t> versions;
  for (const at::Tensor& t : sources) {
    if (!t.defined()) return make();
    impls.push_back(t.unsafeGetTensorImpl());
    versions.push_back(static_cast<int64_t>(t._version()));
  }
  auto key = std::make_tuple(std::string(what), std::move(impls), static_cast<int>(dtype));
  auto it = s.entries.find(key);
  if (it != s.entries.end() && it->second.versions == versions) return it->second.value;
  detail::CastCacheEntry e{std::vector<at::Tensor>(sources), versions, make()};
  at::Tensor value = e.value;
  s.entries[std::move(key)] = std::move(e);
  return value;
}

// w.to(dtype), cached as cached_derived says.
inline at::Tensor cast_weight(const at::Tensor& w, at::ScalarType dtype) {
  if (!w.defined() || w.scalar_type() == dtype) return w;
  return cached_derived("to", {w}, dtype, [&] { return w.to(dtype); });
}

}  // namespace mds::core

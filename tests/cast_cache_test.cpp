// The cast cache of generation (core/cast_cache.h): a cast is made once per scope with grad mode off,
// made again once its source changes, and never kept with grad mode on or outside a scope. That sampling
// gives the same result with it and without is tested in precision_test.cpp.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <torch/torch.h>

#include "core/cast_cache.h"

namespace mds {
namespace {

using core::CastCacheScope;
using core::cast_cache_active;
using core::cast_cache_size;
using core::cast_weight;
using core::cached_derived;

TEST(CastCache, CastsOncePerScopeWhileTheWeightIsUnchanged) {
  const at::Tensor w = torch::randn({4, 3}).requires_grad_(true);
  torch::NoGradGuard no_grad;
  EXPECT_FALSE(cast_cache_active());
  EXPECT_FALSE(cast_weight(w, at::kDouble).is_same(cast_weight(w, at::kDouble)));  // no scope: a new cast each time
  {
    const CastCacheScope scope;
    EXPECT_TRUE(cast_cache_active());
    const at::Tensor a = cast_weight(w, at::kDouble);
    EXPECT_TRUE(a.is_same(cast_weight(w, at::kDouble)));
    EXPECT_TRUE(at::equal(a, w.to(at::kDouble)));
    EXPECT_EQ(cast_cache_size(), 1u);
    EXPECT_TRUE(cast_weight(w, at::kFloat).is_same(w));  // its own dtype: no cast, no entry
    EXPECT_EQ(cast_cache_size(), 1u);
    {
      const CastCacheScope inner;  // nested scopes share the cache
      EXPECT_TRUE(a.is_same(cast_weight(w, at::kDouble)));
    }
    EXPECT_EQ(cast_cache_size(), 1u);
    w.add_(1.0);  // an in-place update (an optimizer step, a reload) bumps the version
    const at::Tensor b = cast_weight(w, at::kDouble);
    EXPECT_FALSE(b.is_same(a));
    EXPECT_TRUE(at::equal(b, w.to(at::kDouble)));
    EXPECT_FALSE(at::equal(b, a));
    EXPECT_EQ(cast_cache_size(), 1u);  // the entry was replaced
  }
  EXPECT_FALSE(cast_cache_active());
  EXPECT_EQ(cast_cache_size(), 0u);  // the outermost scope clears it
}

TEST(CastCache, KeepsNothingWithGradModeOnOrWhenOff) {
  const at::Tensor w = torch::randn({4, 3}).requires_grad_(true);
  {
    const CastCacheScope scope;
    const at::Tensor a = cast_weight(w, at::kDouble);  // training: the cast is part of the graph
    EXPECT_TRUE(a.requires_grad());
    EXPECT_FALSE(a.is_same(cast_weight(w, at::kDouble)));
    EXPECT_EQ(cast_cache_size(), 0u);
  }
  torch::NoGradGuard no_grad;
  const CastCacheScope off(false);
  EXPECT_FALSE(cast_cache_active());
  EXPECT_FALSE(cast_weight(w, at::kDouble).is_same(cast_weight(w, at::kDouble)));
}

TEST(CastCache, DerivedValuesAreKeyedByNameSourcesAndDtype) {
  const at::Tensor w = torch::randn({2, 3}), b = torch::randn({2});
  torch::NoGradGuard no_grad;
  const CastCacheScope scope;
  int made = 0;
  auto stack = [&](at::ScalarType dtype) {
    return cached_derived("stack", {w, b}, dtype, [&] {
      ++made;
      return at::cat({w, b.unsqueeze(1)}, 1).to(dtype);
    });
  };
  const at::Tensor x = stack(at::kDouble);
  EXPECT_TRUE(stack(at::kDouble).is_same(x));
  EXPECT_EQ(made, 1);
  stack(at::kFloat);  // another dtype: another entry
  EXPECT_EQ(made, 2);
  cached_derived("other", {w, b}, at::kDouble, [&] { return ++made, w.clone(); });  // another name too
  EXPECT_EQ(made, 3);
  b.mul_(2.0);  // either source changing makes it again
  const at::Tensor y = stack(at::kDouble);
  EXPECT_EQ(made, 4);
  EXPECT_TRUE(at::equal(y.select(1, 3), b.to(at::kDouble)));
}

}  // namespace
}  // namespace mds

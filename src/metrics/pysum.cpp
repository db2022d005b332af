#include "metrics/pysum.h"

#include <algorithm>
#include <array>
#include <cstdint>
#include <limits>

namespace mds::metrics {

double numpy_pairwise_sum(const double* a, std::size_t n) {
  if (n < 8) {
    double res = 0.0;
    for (std::size_t i = 0; i < n; ++i) res += a[i];
    return res;
  }
  if (n <= 128) {
    double r[8];
    for (std::size_t k = 0; k < 8; ++k) r[k] = a[k];
    std::size_t i = 8;
    for (; i < n - (n % 8); i += 8) {
      for (std::size_t k = 0; k < 8; ++k) r[k] += a[i + k];
    }
    double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; ++i) res += a[i];
    return res;
  }
  std::size_t n2 = n / 2;
  n2 -= n2 % 8;
  return numpy_pairwise_sum(a, n2) + numpy_pairwise_sum(a + n2, n - n2);
}

double numpy_sum(const std::vector<double>& values) {
  return 0.0 + numpy_pairwise_sum(values.data(), values.size());
}

double numpy_mean(const std::vector<double>& values) {
  if (values.empty()) return std::numeric_limits<double>::quiet_NaN();
  return numpy_sum(values) / static_cast<double>(values.size());
}

namespace {

constexpr int64_t kLanes = 8;  // Vectorized<float> with AVX2
constexpr int64_t kIlp = 4;    // row_sum's ilp_factor

// c10::utils::CeilLog2
int64_t ceil_log2(int64_t x) {
  if (x <= 2) return 1;
  int64_t bits = 0;
  for (uint64_t v = static_cast<uint64_t>(x) - 1; v != 0; v >>= 1) ++bits;
  return bits;
}

// An accumulator of `width` floats (1: a scalar, kLanes: a vector), added lane-wise.
struct Acc {
  std::array<float, kLanes> v{};
  void add(const Acc& o, int64_t width) {
    for (int64_t l = 0; l < width; ++l) v[l] += o.v[l];
  }
};

// multi_row_sum<acc_t, nrows = 4>: element (row i, column k) is unit i * 4 + k, where a unit is
// `width` consecutive floats.
std::array<Acc, kIlp> multi_row_sum(const float* data, int64_t width, int64_t size) {
  constexpr int64_t kLevels = 4;
  const int64_t level_power = std::max<int64_t>(4, ceil_log2(size) / kLevels);
  const int64_t level_step = int64_t{1} << level_power;
  const int64_t level_mask = level_step - 1;
  Acc acc[kLevels][kIlp];
  auto load = [&](int64_t i, int64_t k) {
    Acc a;
    for (int64_t l = 0; l < width; ++l) a.v[l] = data[(i * kIlp + k) * width + l];
    return a;
  };
  int64_t i = 0;
  while (i + level_step <= size) {
    for (int64_t j = 0; j < level_step; ++j, ++i) {
      for (int64_t k = 0; k < kIlp; ++k) acc[0][k].add(load(i, k), width);
    }
    for (int64_t j = 1; j < kLevels; ++j) {
      for (int64_t k = 0; k < kIlp; ++k) {
        acc[j][k].add(acc[j - 1][k], width);
        acc[j - 1][k] = Acc{};
      }
      if ((i & (level_mask << (j * level_power))) != 0) break;
    }
  }
  for (; i < size; ++i) {
    for (int64_t k = 0; k < kIlp; ++k) acc[0][k].add(load(i, k), width);
  }
  for (int64_t j = 1; j < kLevels; ++j) {
    for (int64_t k = 0; k < kIlp; ++k) acc[0][k].add(acc[j][k], width);
  }
  return {acc[0][0], acc[0][1], acc[0][2], acc[0][3]};
}

// row_sum: `size` units of `width` floats.
Acc row_sum(const float* data, int64_t width, int64_t size) {
  const int64_t size_ilp = size / kIlp;
  std::array<Acc, kIlp> partial = multi_row_sum(data, width, size_ilp);
  for (int64_t i = size_ilp * kIlp; i < size; ++i) {
    Acc a;
    for (int64_t l = 0; l < width; ++l) a.v[l] = data[i * width + l];
    partial[0].add(a, width);
  }
  for (int64_t k = 1; k < kIlp; ++k) partial[0].add(partial[k], width);
  return partial[0];
}

}  // namespace

float torch_cpu_sum(const std::vector<float>& values) {
  const auto n = static_cast<int64_t>(values.size());
  if (n < kLanes) return 0.0f + row_sum(values.data(), 1, n).v[0];  // scalar_inner_sum
  // vectorized_inner_sum
  const int64_t vec_size = n / kLanes;
  const Acc vec_acc = row_sum(values.data(), kLanes, vec_size);
  float final_acc = 0.0f;
  for (int64_t k = vec_size * kLanes; k < n; ++k) final_acc += values[static_cast<std::size_t>(k)];
  for (int64_t l = 0; l < kLanes; ++l) final_acc += vec_acc.v[l];
  return 0.0f + final_acc;  // the output starts at 0 and the store accumulates
}

float torch_cpu_mean(const std::vector<float>& values) {
  if (values.empty()) return std::numeric_limits<float>::quiet_NaN();
  return torch_cpu_sum(values) / static_cast<float>(values.size());
}

}  // namespace mds::metrics

// The summation orders of numpy (float64) and torch (float32 on CPU), so that averages agree with
// numpy.mean and torch's Tensor.mean to the last bit.
#pragma once

#include <cstddef>
#include <vector>

namespace mds::metrics {

// numpy's pairwise_sum for float64 (numpy 1.24, loops_utils.h): below 8 values a plain loop;
// up to 128 values eight interleaved accumulators combined as ((r0+r1)+(r2+r3))+((r4+r5)+(r6+r7))
// and then the remainder; above, split at n/2 rounded down to a multiple of 8 and recurse.
double numpy_pairwise_sum(const double* values, std::size_t n);

// numpy.sum of a 1-D float64 array: the reduction starts from the identity 0.0.
double numpy_sum(const std::vector<double>& values);

// numpy.mean: numpy_sum / n (NaN for an empty array, as numpy gives with a warning).
double numpy_mean(const std::vector<double>& values);

// torch.tensor(values).sum() for float32 on CPU (torch 1.13 SumKernel.cpp, cascade_sum with
// 8-lane AVX2 vectors): float accumulators; fewer than 8 values go through the scalar row_sum
// (4 interleaved partial sums); otherwise the 8-float vectors are summed by row_sum (4
// interleaved vector accumulators, 4 cascade levels of 16), then the leftover scalars and the 8
// lanes are added in order. Inputs above torch's 32768-element grain may be split across threads
// by torch, which this does not model.
float torch_cpu_sum(const std::vector<float>& values);

// torch.tensor(values).mean(): torch_cpu_sum / n in float32 (NaN when empty).
float torch_cpu_mean(const std::vector<float>& values);

}  // namespace mds::metrics

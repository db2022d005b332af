// Tests of sliding_attention (CPU reference) against the dense specification built from torch ops.
//
// Dimensions: B batch, H heads, L length, K head dim, W one-sided window, G global tokens.
//
// The dense side (sliding_attention_mask + dense_masked_attention) checks the window, dilation,
// global and padding semantics (docs/math.md eq. A1-A3) independently of the loops; the mask itself
// is checked by hand on a tiny case. Gradients are checked against dense autograd and against
// central finite differences in float64. Inputs are fresh random numbers on every run: the seed is
// printed, and MDS_TEST_SEED=<n> replays one.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/cuda.h>

#include "test_util.h"
#include "core/error.h"
#include "kernels/sliding_attention/sliding_attention.h"
#include "kernels/sliding_attention/sliding_attention_split.h"

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <random>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace mds::kernels {
namespace {

using test::error_of;

// ---------------------------------------------------------------------------- seed

class SeedEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    const char* env = std::getenv("MDS_TEST_SEED");
    const uint64_t seed = env ? std::strtoull(env, nullptr, 10) : std::random_device{}();
    std::printf("sliding_attention_test: seed %llu (set MDS_TEST_SEED to replay)\n",
                static_cast<unsigned long long>(seed));
    at::manual_seed(seed);
  }
};
const auto* const kSeedEnvironment = ::testing::AddGlobalTestEnvironment(new SeedEnvironment);

// ---------------------------------------------------------------------------- helpers

// One string per batch row, one character per position: '1' = true. {"1100", "1000"} -> [2, 4].
at::Tensor bool_rows(const std::vector<std::string>& rows) {
  const int64_t B = static_cast<int64_t>(rows.size());
  const int64_t L = B > 0 ? static_cast<int64_t>(rows[0].size()) : 0;
  at::Tensor mask_BL = at::zeros({B, L}, at::kBool);
  auto acc = mask_BL.accessor<bool, 2>();
  for (int64_t b = 0; b < B; ++b) {
    EXPECT_EQ(static_cast<int64_t>(rows[b].size()), L) << "ragged mask rows";
    for (int64_t i = 0; i < L; ++i) acc[b][i] = rows[b][i] == '1';
  }
  return mask_BL;
}

std::string ones(int64_t L) { return std::string(L, '1'); }
std::string zeros(int64_t L) { return std::string(L, '0'); }
std::string set_at(std::string row, const std::vector<int64_t>& positions, char c) {
  for (const int64_t p : positions) row[p] = c;
  return row;
}
std::vector<int64_t> range(int64_t begin, int64_t end) {
  std::vector<int64_t> r;
  for (int64_t i = begin; i < end; ++i) r.push_back(i);
  return r;
}

struct Case {
  std::string name;
  int64_t H = 2, K = 8, W = 2;
  std::vector<int64_t> dilation;         // empty = 1
  std::vector<std::string> key_rows;     // B rows of L characters, '0' = padding key
  std::vector<std::string> global_rows;  // '1' = global token
  double scale = 0.0;

  int64_t B() const { return static_cast<int64_t>(key_rows.size()); }
  int64_t L() const { return static_cast<int64_t>(key_rows[0].size()); }
  SlidingAttentionParams params() const { return {W, dilation, scale}; }
};

std::ostream& operator<<(std::ostream& os, const Case& c) { return os << c.name; }

Case make_case(std::string name, int64_t H, int64_t K, int64_t W, std::vector<int64_t> dilation,
               std::vector<std::string> key_rows, std::vector<std::string> global_rows,
               double scale = 0.0) {
  Case c;
  c.name = std::move(name);
  c.H = H;
  c.K = K;
  c.W = W;
  c.dilation = std::move(dilation);
  c.key_rows = std::move(key_rows);
  c.global_rows = std::move(global_rows);
  c.scale = scale;
  return c;
}

struct Inputs {
  at::Tensor q_BHLK, k_BHLK, v_BHLK, dout_BHLK, key_mask_BL, global_mask_BL;
};

Inputs random_inputs(const Case& c, at::ScalarType dtype) {
  const auto opts = at::TensorOptions().dtype(dtype);
  const std::vector<int64_t> shape{c.B(), c.H, c.L(), c.K};
  return {at::randn(shape, opts), at::randn(shape, opts), at::randn(shape, opts),
          at::randn(shape, opts), bool_rows(c.key_rows), bool_rows(c.global_rows)};
}

struct Outputs {
  at::Tensor out_BHLK, dq_BHLK, dk_BHLK, dv_BHLK;
};

using AttentionFn =
    std::function<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&)>;

// Output and the gradients of sum(out * dout) with respect to q, k and v.
Outputs run_with_grads(const AttentionFn& fn, const Inputs& in) {
  at::Tensor q = in.q_BHLK.detach().clone().requires_grad_(true);
  at::Tensor k = in.k_BHLK.detach().clone().requires_grad_(true);
  at::Tensor v = in.v_BHLK.detach().clone().requires_grad_(true);
  at::Tensor out = fn(q, k, v);
  const auto grads = torch::autograd::grad({out}, {q, k, v}, {in.dout_BHLK});
  return {out.detach(), grads[0], grads[1], grads[2]};
}

Outputs run_sparse(const Inputs& in, const SlidingAttentionParams& params) {
  return run_with_grads(
      [&](const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
        return sliding_attention(q, k, v, in.key_mask_BL, in.global_mask_BL, params);
      },
      in);
}

Outputs run_dense(const Inputs& in, const at::Tensor& mask_BHLL, double scale) {
  return run_with_grads(
      [&](const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
        return dense_masked_attention(q, k, v, mask_BHLL, scale);
      },
      in);
}

// max |a - b| / max(1, max |b|): relative to the tensor's scale, absolute near zero.
double max_rel_diff(const at::Tensor& a, const at::Tensor& b) {
  if (a.numel() == 0) return 0.0;
  const double diff = (a.cpu().to(at::kDouble) - b.cpu().to(at::kDouble)).abs().max().item<double>();
  const double scale = std::max(1.0, b.to(at::kDouble).abs().max().item<double>());
  return diff / scale;
}

// Output within out_tol and gradients within grad_tol (relative, max_rel_diff); with same_dtype the
// dtypes must match too (off for a bf16 or CUDA result against a float64 CPU reference).
void expect_close(const Outputs& got, const Outputs& want, double out_tol, double grad_tol, bool same_dtype = true) {
  const std::pair<const char*, std::pair<at::Tensor, at::Tensor>> pairs[] = {
      {"out", {got.out_BHLK, want.out_BHLK}},
      {"dq", {got.dq_BHLK, want.dq_BHLK}},
      {"dk", {got.dk_BHLK, want.dk_BHLK}},
      {"dv", {got.dv_BHLK, want.dv_BHLK}}};
  for (const auto& [name, t] : pairs) {
    ASSERT_TRUE(t.first.defined()) << name << " undefined";
    EXPECT_EQ(t.first.sizes(), t.second.sizes()) << name;
    if (same_dtype) {
      EXPECT_EQ(t.first.scalar_type(), t.second.scalar_type()) << name;
    }
    EXPECT_TRUE(t.first.isfinite().all().item<bool>()) << name << " has NaN or inf";
    EXPECT_LE(max_rel_diff(t.first, t.second), std::string(name) == "out" ? out_tol : grad_tol) << name;
  }
}

void expect_close(const Outputs& got, const Outputs& want, double tol) { expect_close(got, want, tol, tol); }

double tolerance(at::ScalarType dtype) { return dtype == at::kDouble ? 1e-10 : 1e-5; }

#define EXPECT_ERROR_HAS(statement, substring)                          \
  do {                                                                  \
    const std::string message_ = error_of([&] { (void)(statement); });  \
    EXPECT_NE(message_.find(substring), std::string::npos) << message_; \
  } while (0)

// ---------------------------------------------------------------------------- the mask by hand

TEST(SlidingAttentionMask, MatchesHandWrittenTinyCase) {
  // L = 6, W = 1; head 0 has d = 2, head 1 has d = 1; position 3 is global, position 5 is padding.
  const at::Tensor key_mask_BL = bool_rows({"111110"});
  const at::Tensor global_mask_BL = bool_rows({"000100"});
  const at::Tensor mask_BHLL =
      sliding_attention_mask(key_mask_BL, global_mask_BL, 2, {1, {2, 1}, 0.0});
  ASSERT_EQ(mask_BHLL.sizes(), at::IntArrayRef({1, 2, 6, 6}));
  // Row i lists the keys query i sees. d = 2: {i - 2, i, i + 2} + global 3, minus padding 5; the
  // global query 3 sees every non-padding key; padding query 5 still sees its keys.
  const std::vector<std::string> d2 = {"101100",   // 0: 0, 2, (g) 3
                                       "010100",   // 1: 1, 3
                                       "101110",   // 2: 0, 2, 4, (g) 3
                                       "111110",   // 3: global
                                       "001110",   // 4: 2, 4, (g) 3
                                       "000100"};  // 5: 3 (5 is padding)
  // d = 1: {i - 1, i, i + 1} + global 3, minus padding 5.
  const std::vector<std::string> d1 = {"110100",   // 0: 0, 1, (g) 3
                                       "111100",   // 1: 0, 1, 2, (g) 3
                                       "011100",   // 2: 1, 2, 3
                                       "111110",   // 3: global
                                       "000110",   // 4: 3, 4 (5 is padding)
                                       "000110"};  // 5: 4, (g) 3
  EXPECT_TRUE(at::equal(mask_BHLL[0][0], bool_rows(d2)));
  EXPECT_TRUE(at::equal(mask_BHLL[0][1], bool_rows(d1)));
}

TEST(SlidingAttentionMask, WindowCoveringSequenceIsKeyPaddingOnly) {
  const at::Tensor key_mask_BL = bool_rows({"1101111100", "0000000000"});
  const at::Tensor global_mask_BL = bool_rows({"0100000010", "1000000000"});
  for (const int64_t W : {10, 11, 1000}) {
    const at::Tensor mask_BHLL =
        sliding_attention_mask(key_mask_BL, global_mask_BL, 3, {W, {1}, 0.0});
    EXPECT_TRUE(at::equal(mask_BHLL, key_mask_BL.view({2, 1, 1, 10}).expand({2, 3, 10, 10})))
        << "W = " << W;
  }
}

// ---------------------------------------------------------------------------- against dense

TEST(SlidingAttention, WindowCoveringSequenceEqualsPlainDenseAttention) {
  // W >= L with d = 1: every query sees every non-padding key, whatever the globals.
  const Case c = make_case("w_ge_l", 3, 8, 16, {1}, {"1111111111011", "1111111110000"},
                           {"0010000000000", "0000000000000"});
  for (const at::ScalarType dtype : {at::kDouble, at::kFloat}) {
    const Inputs in = random_inputs(c, dtype);
    const at::Tensor mask_BHLL =
        in.key_mask_BL.view({c.B(), 1, 1, c.L()}).expand({c.B(), c.H, c.L(), c.L()});
    expect_close(run_sparse(in, c.params()), run_dense(in, mask_BHLL, 0.0), tolerance(dtype));
  }
}

std::vector<Case> dense_cases() {
  const int64_t L = 37;
  const std::vector<std::string> keys37 = {ones(L), set_at(ones(L), range(30, L), '0')};
  const std::vector<std::string> globals37 = {set_at(zeros(L), {0}, '1'),
                                              set_at(zeros(L), {0, 17}, '1')};
  std::vector<Case> cases = {
      make_case("d1_L37_W5", 2, 8, 5, {1}, keys37, globals37),
      make_case("d2_L37_W5", 2, 8, 5, {2}, keys37, globals37),
      make_case("d3_L37_W5", 2, 8, 5, {3}, keys37, globals37),
      make_case("per_head_dilation_1231", 4, 8, 5, {1, 2, 3, 1}, keys37, globals37),
      make_case("no_globals", 2, 8, 3, {2}, {ones(29), set_at(ones(29), range(25, 29), '0')},
                {zeros(29), zeros(29)}),
      make_case("all_global", 2, 8, 2, {1}, {set_at(ones(15), {3, 14}, '0'), ones(15)},
                {ones(15), ones(15)}),
      make_case("padding_only_row", 2, 8, 3, {1, 2},
                {set_at(ones(21), range(17, 21), '0'), zeros(21), ones(21)},
                {set_at(zeros(21), {4}, '1'), set_at(zeros(21), {0, 9}, '1'), zeros(21)}),
      make_case("padding_middle_and_end", 2, 8, 3, {2},
                {"11110011111111110111000", "11111111111111111111111"},
                {"00000000001000000000000", "10000000000000000000001"}),
      make_case("globals_that_are_padding", 2, 8, 2, {1, 3},
                {"1111111110011110000", "0111111111111111111"},
                {"0000000001000000010", "1000010000000000000"}),
      make_case("L1", 2, 8, 2, {1}, {"1", "0"}, {"0", "1"}),
      make_case("L7", 2, 8, 2, {1, 2}, {"1111111", "1111100"}, {"0001000", "0000000"}),
      make_case("batch1", 3, 8, 3, {2}, {"1111111111111111110"}, {"0100000000000000000"}),
      make_case("batch3", 2, 8, 3, {1, 3},
                {"1111111111111111111", "1111111111110000000", "1011111111111111111"},
                {"0000000001000000000", "1000000000000000000", "0000000000000000000"}),
      make_case("window_covers_L_d2", 2, 8, 13, {2}, {ones(13), set_at(ones(13), {12}, '0')},
                {zeros(13), set_at(zeros(13), {6}, '1')}),
      make_case("window0", 2, 8, 0, {1}, {ones(11), set_at(ones(11), {2, 3}, '0')},
                {set_at(zeros(11), {5}, '1'), zeros(11)}),
      make_case("head_dim1", 2, 1, 2, {1}, {ones(9), ones(9)},
                {set_at(zeros(9), {0}, '1'), zeros(9)}),
  };
  cases.push_back(make_case("explicit_scale", 2, 8, 4, {2}, keys37, globals37, 0.37));
  return cases;
}

// One ctest entry per case, both dtypes inside: each entry pays LibTorch's start-up once.
class SlidingAttentionVsDense : public ::testing::TestWithParam<Case> {};

TEST_P(SlidingAttentionVsDense, ForwardAndGradientsMatchInFloat64AndFloat32) {
  const Case& c = GetParam();
  for (const at::ScalarType dtype : {at::kDouble, at::kFloat}) {
    SCOPED_TRACE(dtype);
    const Inputs in = random_inputs(c, dtype);
    const at::Tensor mask_BHLL =
        sliding_attention_mask(in.key_mask_BL, in.global_mask_BL, c.H, c.params());
    expect_close(run_sparse(in, c.params()), run_dense(in, mask_BHLL, c.scale), tolerance(dtype));
  }
}

std::string case_name(const ::testing::TestParamInfo<Case>& info) { return info.param.name; }

INSTANTIATE_TEST_SUITE_P(Cases, SlidingAttentionVsDense, ::testing::ValuesIn(dense_cases()),
                         case_name);

// ---------------------------------------------------------------------------- the split path

// The split path (window pass + global passes merged through the LSE, sliding_attention_split.h) with
// the CPU window kernel in place of FlashAttention: the relayout for dilation, the masking column,
// the merge and its backward are tested here in CI; only the window kernel differs on the GPU.
detail::SlidingBand resolved_band(const Case& c) {
  detail::SlidingBand band;
  band.window = c.W;
  band.dilation_H.assign(c.H, c.dilation.empty() ? 1 : c.dilation[0]);
  if (static_cast<int64_t>(c.dilation.size()) == c.H) band.dilation_H = c.dilation;
  band.scale = c.scale != 0.0 ? c.scale : 1.0 / std::sqrt(static_cast<double>(c.K));
  return band;
}

Outputs run_split(const Inputs& in, const Case& c) {
  return run_with_grads(
      [&](const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
        return detail::sliding_attention_split(q, k, v, in.key_mask_BL, in.global_mask_BL, resolved_band(c));
      },
      in);
}

class SlidingAttentionSplitVsReference : public ::testing::TestWithParam<Case> {};

TEST_P(SlidingAttentionSplitVsReference, ForwardAndGradientsMatchInFloat64AndFloat32) {
  const Case& c = GetParam();
  for (const at::ScalarType dtype : {at::kDouble, at::kFloat}) {
    SCOPED_TRACE(dtype);
    const Inputs in = random_inputs(c, dtype);
    expect_close(run_split(in, c), run_sparse(in, c.params()), tolerance(dtype));
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, SlidingAttentionSplitVsReference, ::testing::ValuesIn(dense_cases()), case_name);

TEST(SlidingAttentionSplit, HintsGiveTheSameResultAsTheMasks) {
  const Case c = make_case("hints", 2, 8, 3, {2}, {"11110011111111110111000", ones(23)},
                           {"00000000001000000000000", "10000000000000000000001"});
  const Inputs in = random_inputs(c, at::kDouble);
  const Outputs want = run_split(in, c);
  const Outputs got = run_with_grads(
      [&](const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
        return detail::sliding_attention_split(q, k, v, in.key_mask_BL, in.global_mask_BL, resolved_band(c),
                                               {/*max_globals=*/2, /*key_padding=*/1});
      },
      in);
  expect_close(got, want, 0.0);
}

// ---------------------------------------------------------------------------- CUDA

// bf16 against the float64 reference on the same (bf16-rounded) inputs. FlashAttention keeps P in
// bf16 for P.V and dS for the gradient products (8 bits of mantissa, relative 2^-8 = 0.4%): outputs
// are convex combinations and stay within ~1% of their scale; gradients sum more such terms.
constexpr double kBf16OutTol = 2e-2, kBf16GradTol = 5e-2;

void expect_close_bf16(const Outputs& got, const Outputs& want) {
  expect_close(got, want, kBf16OutTol, kBf16GradTol, /*same_dtype=*/false);
}

Inputs to_device(const Inputs& in, at::ScalarType dtype) {
  auto cuda = [&](const at::Tensor& t) { return t.to(at::kCUDA, t.is_floating_point() ? dtype : t.scalar_type()); };
  return {cuda(in.q_BHLK), cuda(in.k_BHLK), cuda(in.v_BHLK), cuda(in.dout_BHLK), cuda(in.key_mask_BL),
          cuda(in.global_mask_BL)};
}

Inputs round_to(const Inputs& in, at::ScalarType dtype) {
  auto r = [&](const at::Tensor& t) { return t.to(dtype).to(at::kDouble); };
  return {r(in.q_BHLK), r(in.k_BHLK), r(in.v_BHLK), r(in.dout_BHLK), in.key_mask_BL, in.global_mask_BL};
}

class SlidingAttentionCuda : public ::testing::TestWithParam<Case> {};

// Every edge case of the CPU suite, at head dims 64 and 128, in bf16 (FlashAttention split path) and
// float32 (dense specification), against the CPU reference in float64.
TEST_P(SlidingAttentionCuda, Bf16AndFloat32MatchTheCpuReference) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  for (const int64_t K : {int64_t{64}, int64_t{128}}) {
    Case c = GetParam();
    c.K = K;
    SCOPED_TRACE("K=" + std::to_string(K));
    const Inputs in = random_inputs(c, at::kDouble);
    {
      SCOPED_TRACE("bf16");
      const Inputs rounded = round_to(in, at::kBFloat16);
      expect_close_bf16(run_sparse(to_device(rounded, at::kBFloat16), c.params()), run_sparse(rounded, c.params()));
    }
    {
      SCOPED_TRACE("float32");
      expect_close(run_sparse(to_device(in, at::kFloat), c.params()), run_sparse(in, c.params()), 1e-5, 1e-5,
                   /*same_dtype=*/false);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, SlidingAttentionCuda, ::testing::ValuesIn(dense_cases()), case_name);

// A model-sized case: the batcher's layout (BOS, source, source padding, SEP, target), BOS and SEP
// global, per-head dilation 1/2/2/4, L not a multiple of 4, window 64.
TEST(SlidingAttentionCudaLong, ModelLayoutMatchesTheCpuReference) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const int64_t L = 1001, S = 700, T = L - S - 2;
  std::string keys0 = ones(L), keys1 = set_at(ones(L), range(1 + 450, 1 + S), '0');
  std::string glob = set_at(zeros(L), {0, S + 1}, '1');
  (void)T;
  const Case c = make_case("model_layout", 4, 64, 64, {1, 2, 2, 4}, {keys0, keys1}, {glob, glob});
  const Inputs rounded = round_to(random_inputs(c, at::kDouble), at::kBFloat16);
  expect_close_bf16(run_sparse(to_device(rounded, at::kBFloat16), c.params()), run_sparse(rounded, c.params()));
}

// ---------------------------------------------------------------------------- dense with key padding

Outputs run_padded(const Inputs& in, bool any_padding, bool any_empty_row = true) {
  return run_with_grads(
      [&](const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
        return dense_padded_attention(q, k, v, in.key_mask_BL, any_padding, any_empty_row);
      },
      in);
}

// Rows: no padding, padding at the end (the batcher's), padding inside, padding only (unless
// `empty_row` is false).
Inputs padded_inputs(int64_t L, int64_t K, bool with_padding, at::ScalarType dtype, bool empty_row = true) {
  std::vector<std::string> rows{ones(L), set_at(ones(L), range(L - 7, L), '0'),
                                set_at(ones(L), range(3, 9), '0'), zeros(L)};
  if (!empty_row) rows.pop_back();
  if (!with_padding) rows = {ones(L), ones(L)};
  const Case c = make_case("padded", 3, K, L, {1, 1, 1}, rows, std::vector<std::string>(rows.size(), zeros(L)));
  return random_inputs(c, dtype);
}

// The reference the CUDA path is held to: the expanded key mask through dense_masked_attention.
Outputs run_padded_reference(const Inputs& in) {
  const int64_t B = in.key_mask_BL.size(0), H = in.q_BHLK.size(1), L = in.key_mask_BL.size(1);
  return run_dense(in, in.key_mask_BL.view({B, 1, 1, L}).expand({B, H, L, L}), 0.0);
}

TEST(DensePaddedAttention, CpuIsTheMaskedReferenceAndAPaddingRowGivesZeros) {
  const Inputs in = padded_inputs(21, 8, /*with_padding=*/true, at::kDouble);
  const Outputs got = run_padded(in, true), want = run_padded_reference(in);
  expect_close(got, want, 0.0);
  EXPECT_EQ(got.out_BHLK[3].abs().max().item<double>(), 0.0);
  EXPECT_EQ(got.dq_BHLK[3].abs().max().item<double>(), 0.0);
  EXPECT_ERROR_HAS(dense_padded_attention(in.q_BHLK, in.k_BHLK, in.v_BHLK, in.key_mask_BL.narrow(0, 0, 2)),
                   "key_mask_BL must have shape");
}

// The fused path (scaled_dot_product_attention) against the float64 CPU reference, in bf16 and
// float32, at the QQP race's length and a longer one, with and without padding.
TEST(DensePaddedAttentionCuda, FusedPathMatchesTheCpuReference) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  for (const int64_t L : {int64_t{130}, int64_t{515}}) {
    for (const bool with_padding : {true, false}) {
      SCOPED_TRACE("L=" + std::to_string(L) + (with_padding ? " padded" : " no padding"));
      const Inputs in = padded_inputs(L, 64, with_padding, at::kDouble);
      const Inputs rounded = round_to(in, at::kBFloat16);
      {
        SCOPED_TRACE("bf16");
        expect_close_bf16(run_padded(to_device(rounded, at::kBFloat16), with_padding), run_padded_reference(rounded));
      }
      {
        SCOPED_TRACE("float32");
        expect_close(run_padded(to_device(in, at::kFloat), with_padding), run_padded_reference(in), 1e-5, 1e-5,
                     /*same_dtype=*/false);
      }
    }
    // Padding, and the promise that every row has a key (MaskFacts::empty_rows = 0): the mask goes
    // to the kernel as it is, without the zeros of an empty row.
    SCOPED_TRACE("L=" + std::to_string(L) + " padded, no empty row");
    const Inputs rounded = round_to(padded_inputs(L, 64, true, at::kDouble, /*empty_row=*/false), at::kBFloat16);
    expect_close_bf16(run_padded(to_device(rounded, at::kBFloat16), true, /*any_empty_row=*/false),
                      run_padded_reference(rounded));
  }
}

TEST(SlidingAttention, PaddingOnlyRowGivesZerosAndZeroGrads) {
  const Case c = make_case("pad_row", 2, 8, 2, {1, 2}, {"1111111", "0000000", "1110111"},
                           {"0100000", "1001000", "0000000"});
  for (const at::ScalarType dtype : {at::kDouble, at::kFloat}) {
    const Inputs in = random_inputs(c, dtype);
    const Outputs got = run_sparse(in, c.params());
    for (const at::Tensor& t : {got.out_BHLK, got.dq_BHLK, got.dk_BHLK, got.dv_BHLK}) {
      EXPECT_TRUE(t.isfinite().all().item<bool>());
      EXPECT_EQ(t[1].abs().max().item<double>(), 0.0);  // batch row 1 is all padding
      EXPECT_GT(t[0].abs().max().item<double>(), 0.0);
    }
  }
}

// ---------------------------------------------------------------------------- finite differences

TEST(SlidingAttention, GradientsMatchFiniteDifferences) {
  const Case c = make_case("fd", 2, 4, 2, {1, 2}, {"11111111101", "11111110000"},
                           {"00010000000", "10000000000"});
  const Inputs in = random_inputs(c, at::kDouble);
  const SlidingAttentionParams params = c.params();
  const Outputs analytic = run_sparse(in, params);
  // loss = sum(out * dout), whose gradients run_sparse computed.
  auto loss = [&](const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
    at::Tensor out = sliding_attention(q, k, v, in.key_mask_BL, in.global_mask_BL, params);
    return (out * in.dout_BHLK).sum().item<double>();
  };
  const double eps = 1e-6;
  const int64_t numel = in.q_BHLK.numel();
  const char* names[3] = {"q", "k", "v"};
  const at::Tensor grads[3] = {analytic.dq_BHLK, analytic.dk_BHLK, analytic.dv_BHLK};
  std::mt19937_64 pick(at::randint(1 << 30, {1}, at::kLong).item<int64_t>());
  double worst = 0.0;
  for (int which = 0; which < 3; ++which) {
    for (int trial = 0; trial < 12; ++trial) {  // 36 entries in all
      const int64_t n = static_cast<int64_t>(pick() % static_cast<uint64_t>(numel));
      at::Tensor x[3] = {in.q_BHLK.clone(), in.k_BHLK.clone(), in.v_BHLK.clone()};
      double* entry = x[which].data_ptr<double>() + n;
      const double saved = *entry;
      *entry = saved + eps;
      const double up = loss(x[0], x[1], x[2]);
      *entry = saved - eps;
      const double down = loss(x[0], x[1], x[2]);
      const double numeric = (up - down) / (2 * eps);
      const double exact = grads[which].view(-1)[n].item<double>();
      // Relative error, measured against 1 for gradients smaller than 1.
      const double error = std::abs(numeric - exact) / std::max(1.0, std::abs(exact));
      worst = std::max(worst, error);
      EXPECT_LT(error, 1e-6) << "d loss / d " << names[which] << "[" << n
                             << "]: finite difference " << numeric << ", autograd " << exact;
    }
  }
  std::printf("largest relative error of 36 finite differences: %.2e\n", worst);
}

// ---------------------------------------------------------------------------- layouts and modes

TEST(SlidingAttention, NonContiguousInputsGiveTheSameResult) {
  const int64_t B = 2, L = 12, H = 3, K = 4;
  const at::Tensor q_BLHK = at::randn({B, L, H, K}, at::kDouble);
  const at::Tensor k_BLHK = at::randn({B, L, H, K}, at::kDouble);
  const at::Tensor v_BLHK = at::randn({B, L, H, K}, at::kDouble);
  const at::Tensor key_mask_BL = bool_rows({"111111111110", "111111111111"});
  const at::Tensor global_mask_BL = bool_rows({"100000000000", "000000100000"});
  const SlidingAttentionParams params{2, {1, 2, 3}, 0.0};
  // The model's layout: projections are [B, L, H, K], viewed as [B, H, L, K] without a copy.
  const at::Tensor strided =
      sliding_attention(q_BLHK.transpose(1, 2), k_BLHK.transpose(1, 2), v_BLHK.transpose(1, 2),
                        key_mask_BL, global_mask_BL, params);
  const at::Tensor packed =
      sliding_attention(q_BLHK.transpose(1, 2).contiguous(), k_BLHK.transpose(1, 2).contiguous(),
                        v_BLHK.transpose(1, 2).contiguous(), key_mask_BL, global_mask_BL, params);
  EXPECT_TRUE(at::equal(strided, packed));
}

TEST(SlidingAttention, GradientOnlyWhereRequested) {
  const Case c = make_case("q_only", 2, 4, 2, {1}, {"111111111"}, {"010000000"});
  const Inputs in = random_inputs(c, at::kDouble);
  const at::Tensor q = in.q_BHLK.clone().requires_grad_(true);
  const at::Tensor out =
      sliding_attention(q, in.k_BHLK, in.v_BHLK, in.key_mask_BL, in.global_mask_BL, c.params());
  EXPECT_TRUE(out.requires_grad());
  const at::Tensor dq = torch::autograd::grad({out}, {q}, {in.dout_BHLK})[0];
  const Outputs full = run_sparse(in, c.params());
  EXPECT_TRUE(at::equal(dq, full.dq_BHLK));

  const at::Tensor plain = sliding_attention(in.q_BHLK, in.k_BHLK, in.v_BHLK, in.key_mask_BL,
                                             in.global_mask_BL, c.params());
  EXPECT_FALSE(plain.requires_grad());
  EXPECT_TRUE(at::equal(plain, full.out_BHLK));
}

// ---------------------------------------------------------------------------- long sequence

// Linux: writing 5 to /proc/self/clear_refs resets the peak resident size (VmHWM) to the current.
bool reset_peak_rss() {
  std::ofstream clear("/proc/self/clear_refs");
  if (!clear) return false;
  clear << "5";
  clear.flush();
  return clear.good();
}

int64_t proc_status_kib(const std::string& field) {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind(field + ":", 0) == 0) return std::stoll(line.substr(field.size() + 1));
  return -1;
}

TEST(SlidingAttention, LongSequenceIsFastAndNeverBuildsAnLxLMatrix) {
  const int64_t L = 4096, W = 4, K = 8, H = 2;
  const at::Tensor q = at::randn({1, H, L, K}, at::kDouble).requires_grad_(true);
  const at::Tensor k = at::randn({1, H, L, K}, at::kDouble).requires_grad_(true);
  const at::Tensor v = at::randn({1, H, L, K}, at::kDouble).requires_grad_(true);
  const at::Tensor dout = at::randn({1, H, L, K}, at::kDouble);
  const at::Tensor key_mask_BL = at::ones({1, L}, at::kBool);
  at::Tensor global_mask_BL = at::zeros({1, L}, at::kBool);
  global_mask_BL.index_put_({0, at::arange(0, L, L / 4)}, true);  // G = 4
  const bool peak_known = reset_peak_rss();
  const int64_t rss_before_kib = proc_status_kib("VmRSS");

  const auto start = std::chrono::steady_clock::now();
  const at::Tensor out = sliding_attention(q, k, v, key_mask_BL, global_mask_BL, {W, {1, 3}, 0.0});
  const auto grads = torch::autograd::grad({out}, {q, k, v}, {dout});
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  EXPECT_TRUE(out.isfinite().all().item<bool>());
  for (const at::Tensor& g : grads) EXPECT_TRUE(g.isfinite().all().item<bool>());
  EXPECT_LT(seconds, 2.0);
  // One L x L float64 matrix would be 128 MiB; everything this call needs is O(L * K).
  const int64_t lxl_kib = L * L * 8 / 1024;
  if (peak_known && rss_before_kib > 0) {
    const int64_t growth_kib = proc_status_kib("VmHWM") - rss_before_kib;
    EXPECT_LT(growth_kib, lxl_kib / 4) << "peak resident memory grew by " << growth_kib << " KiB";
    std::printf("L = %lld: %.3f s forward + backward, peak RSS growth %lld KiB (L x L: %lld KiB)\n",
                static_cast<long long>(L), seconds, static_cast<long long>(growth_kib),
                static_cast<long long>(lxl_kib));
  } else {
    std::printf("L = %lld: %.3f s; /proc/self/clear_refs not writable, peak memory not checked\n",
                static_cast<long long>(L), seconds);
  }
}

// ---------------------------------------------------------------------------- errors

TEST(SlidingAttention, RejectsBadShapes) {
  const auto f = at::TensorOptions().dtype(at::kFloat);
  const at::Tensor q = at::randn({2, 2, 5, 8}, f);
  const at::Tensor keys = at::ones({2, 5}, at::kBool), globals = at::zeros({2, 5}, at::kBool);
  const SlidingAttentionParams p{2, {1}, 0.0};
  EXPECT_ERROR_HAS(sliding_attention(at::randn({2, 5, 8}, f), q, q, keys, globals, p),
                   "q_BHLK must have shape [B, H, L, K], got [2, 5, 8]");
  EXPECT_ERROR_HAS(sliding_attention(q, at::randn({2, 2, 6, 8}, f), q, keys, globals, p),
                   "k_BHLK must have the shape of q_BHLK [2, 2, 5, 8], got [2, 2, 6, 8]");
  EXPECT_ERROR_HAS(sliding_attention(q, q, at::randn({2, 2, 5, 4}, f), keys, globals, p),
                   "v_BHLK must have the shape of q_BHLK [2, 2, 5, 8], got [2, 2, 5, 4]");
  EXPECT_ERROR_HAS(sliding_attention(q, q, q, at::ones({2, 4}, at::kBool), globals, p),
                   "key_mask_BL must have shape [B, L] = [2, 5], got [2, 4]");
  EXPECT_ERROR_HAS(sliding_attention(q, q, q, keys, at::zeros({5}, at::kBool), p),
                   "global_mask_BL must have shape [B, L] = [2, 5], got [5]");
  EXPECT_ERROR_HAS(dense_masked_attention(q, q, q, at::ones({2, 2, 5, 4}, at::kBool)),
                   "mask_BHLL must have shape [B, H, L, L] = [2, 2, 5, 5], got [2, 2, 5, 4]");
}

TEST(SlidingAttention, RejectsBadDtypesAndDevices) {
  const at::Tensor keys = at::ones({1, 4}, at::kBool), globals = at::zeros({1, 4}, at::kBool);
  const SlidingAttentionParams p{2, {1}, 0.0};
  const at::Tensor q_long = at::ones({1, 1, 4, 2}, at::kLong);
  EXPECT_ERROR_HAS(sliding_attention(q_long, q_long, q_long, keys, globals, p),
                   "q_BHLK on CPU must be float32 or float64, got Long");
  const at::Tensor q_half = at::ones({1, 1, 4, 2}, at::kHalf);
  EXPECT_ERROR_HAS(sliding_attention(q_half, q_half, q_half, keys, globals, p), "got Half");
  const at::Tensor q_float = at::randn({1, 1, 4, 2}, at::kFloat);
  const at::Tensor q_double = at::randn({1, 1, 4, 2}, at::kDouble);
  EXPECT_ERROR_HAS(sliding_attention(q_float, q_double, q_float, keys, globals, p),
                   "must have one dtype, got Float, Double, Float");
  EXPECT_ERROR_HAS(sliding_attention(q_float, q_float, q_float, keys.to(at::kFloat), globals, p),
                   "key_mask_BL must be bool, got Float");
  const at::Tensor q_meta =
      at::empty({1, 1, 4, 2}, at::TensorOptions().dtype(at::kFloat).device(at::kMeta));
  EXPECT_ERROR_HAS(sliding_attention(q_meta, q_meta, q_meta, keys, globals, p),
                   "q_BHLK is on meta");
}

TEST(SlidingAttention, RejectsBadParams) {
  const at::Tensor q = at::randn({1, 2, 4, 2}, at::kDouble);
  const at::Tensor keys = at::ones({1, 4}, at::kBool), globals = at::zeros({1, 4}, at::kBool);
  EXPECT_ERROR_HAS(sliding_attention(q, q, q, keys, globals, {-1, {1}, 0.0}),
                   "window must be >= 0, got -1");
  EXPECT_ERROR_HAS(sliding_attention(q, q, q, keys, globals, {2, {1, 2, 3}, 0.0}),
                   "dilation must have 1 or H = 2 entries, got 3");
  EXPECT_ERROR_HAS(sliding_attention(q, q, q, keys, globals, {2, {1, 0}, 0.0}),
                   "dilation must be >= 1, got 0 for head 1");
  EXPECT_ERROR_HAS(sliding_attention(q, q, q, keys, globals, {2, {1}, std::nan("")}),
                   "scale must be finite");
  EXPECT_ERROR_HAS(sliding_attention_mask(keys, globals, 0, {2, {1}, 0.0}),
                   "heads must be >= 1, got 0");
}

}  // namespace
}  // namespace mds::kernels

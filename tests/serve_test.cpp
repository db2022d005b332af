// The HTTP service: request parsing (every error named), the batching queue (one generate() call for
// concurrent requests that sample alike, the same predictions as one direct call; a full queue
// refused), and the server end to end on loopback (values checked against direct generation).
#include <gtest/gtest.h>

#include <torch/torch.h>

#include <algorithm>
#include <future>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/config.h"
#include "core/error.h"
#include "data/tokenizer.h"
#include "infer/generation_service.h"
#include "infer/generator.h"
#include "infer/http_api.h"
#include "infer/httplib_abi.h"
#include "metrics/mbr.h"
#include "model/denoiser.h"
#include "model/model_options.h"
#include "test_util.h"

namespace mds {

using infer::ApiError;
using infer::ApiLimits;
using infer::GenerateOptions;
using infer::GenerationService;
using infer::HttpServer;
using infer::QueueFull;
using infer::ServiceLimits;
using infer::TextGenerator;
using infer::parse_generate_request;
using nlohmann::json;

namespace {

// An untrained tiny model and a tokenizer trained on the fixture: deterministic text for a seed.
class ServeTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new test::TempDir();
    data::TokenizerTrainOptions o;
    o.inputs = {test::source_path("tests/fixtures/debian-descriptions-240.jsonl")};
    o.vocab_size = 400;
    o.threads = 1;
    data::Tokenizer::train(o, dir_->file("tok"));
  }
  static void TearDownTestSuite() { delete dir_; }

  void SetUp() override {
    torch::manual_seed(11);
    tokenizer_ = std::make_unique<data::Tokenizer>(data::Tokenizer::load(dir_->file("tok")));
    config_ = Config::load("", {"data.max_src_len=24", "data.max_trg_len=8", "model.embed_dim=8", "model.dim=32",
                                "model.layers=1", "model.heads=2", "model.ffn_dim=32", "model.time_embed_dim=16",
                                "moe.experts=1", "attention.type=dense", "sample.steps=2", "sample.batch_size=16",
                                "train.threads=1"});
    model::Denoiser m(model::model_options_from_config(config_, tokenizer_->vocab_size()));
    m->eval();
    generator_ = std::make_unique<TextGenerator>(config_, m, runtime::Runtime{}, tokenizer_.get());
    defaults_ = generator_->options();
  }

  // Direct generation of `sources` with `options`: what the service must return.
  std::vector<std::string> direct(const std::vector<std::string>& sources, const GenerateOptions& options) {
    generator_->options() = options;
    std::vector<std::string> out = generator_->generate(sources);
    generator_->options() = defaults_;
    return out;
  }

  static test::TempDir* dir_;
  Config config_;
  std::unique_ptr<data::Tokenizer> tokenizer_;
  std::unique_ptr<TextGenerator> generator_;
  GenerateOptions defaults_;
};
test::TempDir* ServeTest::dir_ = nullptr;

// The status and message of a request that parse_generate_request refuses.
std::pair<int, std::string> refused(const std::string& body, const ApiLimits& limits = {}) {
  try {
    parse_generate_request(body, GenerateOptions(), limits);
  } catch (const ApiError& e) {
    return {e.status(), e.what()};
  }
  return {0, "accepted"};
}

TEST(ServeApi, ParsesRequestsAndNamesEveryError) {
  const infer::GenerateRequest one = parse_generate_request(R"({"src": "hello", "steps": 4, "seed": 9, "mbr": 2,
      "sampler": "dpm++3m", "start_time": 0.5, "length": "source", "remask_rounds": 2, "mbr_source": true, "mbr_noise_share": 0.25,
      "mbr_compact_share": 0.5, "rewrite_threshold": 0.8})", GenerateOptions(), {});
  EXPECT_TRUE(one.single);
  EXPECT_EQ(one.sources, std::vector<std::string>{"hello"});
  EXPECT_EQ(one.options.sampler.steps, 4);
  EXPECT_EQ(one.options.seed, 9u);
  EXPECT_EQ(one.options.mbr, 2);
  EXPECT_TRUE(one.options.mbr_source);
  EXPECT_DOUBLE_EQ(one.options.mbr_noise_share, 0.25);
  EXPECT_DOUBLE_EQ(one.options.mbr_compact_share, 0.5);
  EXPECT_DOUBLE_EQ(one.options.rewrite_threshold, 0.8);
  EXPECT_EQ(one.options.sampler.sampler, "dpm++3m");
  EXPECT_DOUBLE_EQ(one.options.sampler.start_time, 0.5);
  EXPECT_EQ(one.options.length, "source");
  EXPECT_EQ(one.options.remask_rounds, 2);
  const infer::GenerateRequest many = parse_generate_request(R"({"inputs": ["a", "b"]})", GenerateOptions(), {});
  EXPECT_FALSE(many.single);
  EXPECT_EQ(many.sources.size(), 2u);

  ApiLimits small;
  small.max_inputs = 2;
  small.max_source_bytes = 5;
  small.max_body_bytes = 100;
  small.max_steps = 10;
  const struct {
    std::string body;
    int status;
    std::string says;
  } cases[] = {
      {"{\"src\": ", 400, "not valid JSON"},
      {"[1, 2]", 400, "must be a JSON object, got array"},
      {R"({"source": "x"})", 400,
       "unknown field \"source\" (known: src, inputs, steps, sampler, seed, mbr, mbr_source, mbr_noise_share, "
       "mbr_compact_share, start_time, length, "
       "remask_rounds, rewrite_threshold, stream)"},
      {R"({})", 400, "either \"src\""},
      {R"({"src": "a", "inputs": ["b"]})", 400, "either \"src\""},
      {R"({"src": 3})", 400, "\"src\" must be a string, got number"},
      {R"({"inputs": "a"})", 400, "\"inputs\" must be a list of strings, got string"},
      {R"({"inputs": []})", 400, "\"inputs\" is empty"},
      {R"({"inputs": ["a", 7]})", 400, "\"inputs\"[1] must be a string"},
      {R"({"inputs": ["a", "b", "c"]})", 400, "the limit is 2 (serve.max_inputs)"},
      {R"({"src": "abcdef"})", 400, "\"src\" has 6 bytes; the limit is 5"},
      {R"({"src": "a", "steps": "4"})", 400, "\"steps\" must be an integer, got string"},
      {R"({"src": "a", "steps": 11})", 400, "\"steps\" must be in [1, 10], got 11"},
      {R"({"src": "a", "steps": 0})", 400, "\"steps\" must be in [1, 10], got 0"},
      {R"({"src": "a", "seed": -1})", 400, "\"seed\" must be in [0, "},
      {R"({"src": "a", "sampler": "euler"})", 400, "\"sampler\" must be one of"},
      {R"({"src": "a", "sampler": "ddim", "start_time": 0.5})", 400, "DPM-Solver++"},
      {R"({"src": "a", "length": "long"})", 400, "\"length\" must be \"predict\" or \"source\", got \"long\""},
      {R"({"src": "a", "length": 3})", 400, "\"length\" must be \"predict\" or \"source\", got 3"},
      {R"({"src": "a", "remask_rounds": 17})", 400, "\"remask_rounds\" must be in [0, 16], got 17"},
      {R"({"src": "a", "remask_rounds": 1, "sampler": "ancestral"})", 400, "remask"},
      {R"({"src": "a", "mbr_source": 1})", 400, "\"mbr_source\" must be true or false, got number"},
      {R"({"src": "a", "mbr_noise_share": "half"})", 400, "\"mbr_noise_share\" must be a number, got string"},
      {R"({"src": "a", "mbr_noise_share": 2})", 400, "sample.mbr_noise_share) must be in [0, 1], got 2"},
      {R"({"src": "a", "rewrite_threshold": 1.5})", 400, "sample.rewrite_threshold) must be in [0, 1], got 1.5"},
      {R"({"src": "a", "rewrite_threshold": "high"})", 400, "\"rewrite_threshold\" must be a number"},
      {"{\"src\": \"\xff\xfe\"}", 400, "not valid JSON"},  // invalid UTF-8
      {R"({"src": "a", "seed": 1e999})", 400, "not valid JSON"},  // past a double
      {R"({"src": "a", "seed": 1e300})", 400, "\"seed\" must be an integer, got number"},
      {R"({"src": "a", "steps": 18446744073709551615})", 400, "\"steps\" must be in [1, 10], got 18446744073709551615"},
      {R"({"src": "a", "steps": -9223372036854775808})", 400, "\"steps\" must be in [1, 10], got -9223372036854775808"},
      {std::string(101, ' '), 413, "the limit is 100 (serve.max_body_bytes)"},
  };
  for (const auto& c : cases) {
    const auto [status, message] = refused(c.body, small);
    EXPECT_EQ(status, c.status) << c.body;
    EXPECT_NE(message.find(c.says), std::string::npos) << c.body << " -> " << message;
  }
}

TEST_F(ServeTest, ConcurrentRequestsShareOneBatchAndGetTheirOwnPredictions) {
  ServiceLimits limits;
  limits.batch_window_ms = 300;  // long enough for all three to arrive
  GenerationService service(*generator_, limits);
  GenerateOptions o = defaults_;
  o.seed = 5;
  const std::vector<std::vector<std::string>> requests = {
      {"a tool to manage packages"}, {"library for parsing", "fonts for the console"}, {"a game of chess"}};
  std::vector<std::future<std::vector<std::string>>> futures;
  for (const auto& r : requests) futures.push_back(service.submit(r, o));
  std::vector<std::vector<std::string>> got;
  for (auto& f : futures) got.push_back(f.get());
  EXPECT_EQ(service.batches_run(), 1u);
  // The batch is one generate() call over the requests' sources in order.
  const std::vector<std::string> all = direct({requests[0][0], requests[1][0], requests[1][1], requests[2][0]}, o);
  EXPECT_EQ(got[0], std::vector<std::string>({all[0]}));
  EXPECT_EQ(got[1], std::vector<std::string>({all[1], all[2]}));
  EXPECT_EQ(got[2], std::vector<std::string>({all[3]}));

  // Other sampling options are another batch.
  GenerateOptions other = o;
  other.sampler.steps = 3;
  auto f1 = service.submit({"x"}, o);
  auto f2 = service.submit({"y"}, other);
  f1.get();
  EXPECT_EQ(f2.get(), direct({"y"}, other));
  EXPECT_EQ(service.batches_run(), 3u);
}

// MBR with the source (sample.mbr_source): each output is the source text itself or the candidate
// mbr_select_or_source picks among the seeds' generations, which are those of seed, seed + 1, ...
// Each source cut to its output's length: the whole text as given where the output may be as long
// (sample.length = "source" gives a row min(source tokens, 7): the target region of 8 less its EOS),
// else its first tokens.
TEST_F(ServeTest, StartTextsAreTheSourcesCutToTheirOutputsLengths) {
  const std::vector<std::string> sources = {"chess", "a chess game", "fonts for the console"};
  std::vector<std::vector<int32_t>> tokens;
  for (const auto& s : sources) tokens.push_back(tokenizer_->encode(s));
  ASSERT_LE(tokens[0].size(), 7u);   // whole ...
  ASSERT_GT(tokens[2].size(), 7u);   // ... and cut at 7 tokens, of a source
  ASSERT_LE(tokens[2].size(), 24u);  // the model reads whole
  const auto cut = [&](std::size_t i, int64_t n) {
    return n >= static_cast<int64_t>(tokens[i].size())
               ? sources[i]
               : tokenizer_->decode(std::vector<int32_t>(tokens[i].begin(), tokens[i].begin() + n));
  };
  GenerateOptions o = defaults_;
  o.length = "source";
  generator_->options() = o;
  std::vector<std::string> starts = generator_->start_texts(sources);
  for (std::size_t i = 0; i < sources.size(); ++i)
    EXPECT_EQ(starts[i], cut(i, std::min<int64_t>(static_cast<int64_t>(tokens[i].size()), 7))) << i;
  EXPECT_EQ(starts[0], sources[0]);
  EXPECT_NE(starts[2], sources[2]);
  // The length head's lengths (an untrained head: whatever it predicts), read from a batch of all three.
  generator_->options() = defaults_;
  data::InMemorySource packed;
  for (const auto& t : tokens) packed.add(t, {});
  const data::Batch batch = data::pack_batch(packed, {0, 1, 2}, generator_->pack_options());
  const torch::Tensor n_B = generator_->output_lengths(batch, model::to_tensors(batch, generator_->device()));
  ASSERT_TRUE(n_B.defined());
  starts = generator_->start_texts(sources);
  for (std::size_t i = 0; i < sources.size(); ++i) EXPECT_EQ(starts[i], cut(i, n_B[static_cast<int64_t>(i)].item<int64_t>())) << i;
  EXPECT_NE(starts[2], sources[2]);  // no prediction exceeds the region's 7 tokens
}

TEST_F(ServeTest, MbrWithTheSourceChoosesAmongTheSeedsAndTheSourceText) {
  // The last source is longer than its output may be: its candidate is its start (start_texts).
  const std::vector<std::string> sources = {"a tool to manage packages", "chess", "a chess game",
                                            "fonts for the console"};
  const std::vector<std::string> starts = generator_->start_texts(sources);
  EXPECT_NE(starts.back(), sources.back());
  GenerateOptions o = defaults_;
  o.sampler.steps = 3;
  o.seed = 11;
  std::vector<std::vector<std::string>> seeds;
  for (uint64_t k = 0; k < 3; ++k) {
    GenerateOptions one = o;
    one.seed = o.seed + k;
    seeds.push_back(direct(sources, one));
  }
  o.mbr = 3;
  o.mbr_source = true;
  const std::vector<std::string> out = direct(sources, o);
  ASSERT_EQ(out.size(), sources.size());
  for (std::size_t i = 0; i < sources.size(); ++i) {
    const std::vector<std::string> candidates = {seeds[0][i], seeds[1][i], seeds[2][i]};
    const std::size_t pick = mbr_select_or_source(candidates, "bleu", starts[i]);
    EXPECT_EQ(out[i], pick < 3 ? candidates[pick] : starts[i]) << sources[i];
  }
  // Without the source among the candidates: the plain MBR pick.
  o.mbr_source = false;
  const std::vector<std::string> plain = direct(sources, o);
  for (std::size_t i = 0; i < sources.size(); ++i)
    EXPECT_EQ(plain[i], seeds[mbr_select({seeds[0][i], seeds[1][i], seeds[2][i]}, "bleu")][i]);
  // One sample has no others to agree with: the option does nothing (a checkpoint that sets it still
  // answers --mbr 1).
  o.mbr = 1;
  o.mbr_source = true;
  EXPECT_EQ(direct(sources, o), seeds[0]);
}

// sample.mbr_noise_share: the last round(share * mbr) candidates are the generations of their seeds
// from noise, the others those from sample.start_time; MBR chooses among them as before.
TEST_F(ServeTest, MbrCandidatesFromNoiseAreTheSeedsGenerationsFromNoise) {
  GenerateOptions o = defaults_;
  o.sampler.start_time = 0.3;
  o.mbr = 4;
  o.mbr_noise_share = 0.5;
  EXPECT_EQ(infer::mbr_noise_candidates(o), 2);
  for (int64_t k = 0; k < 4; ++k) EXPECT_EQ(infer::candidate_sampler(o, k).start_time, k < 2 ? 0.3 : 1.0) << k;
  o.mbr_noise_share = 0.3;  // 1.2 candidates: one
  EXPECT_EQ(infer::mbr_noise_candidates(o), 1);
  o.mbr = 1;  // no MBR: the one sample starts where sample.start_time says
  o.mbr_noise_share = 1.0;
  EXPECT_EQ(infer::mbr_noise_candidates(o), 0);
  EXPECT_EQ(infer::candidate_sampler(o, 0).start_time, 0.3);
  o.mbr_noise_share = 1.5;
  EXPECT_THROW(infer::check_generate_options(o), Error);
  // sample.mbr_compact_share: the candidates just before the noise ones start compact (a canvas
  // model's rewrites); the two shares cannot ask for more than every candidate.
  o.mbr = 8;
  o.mbr_noise_share = 0.25;
  o.mbr_compact_share = 0.5;
  EXPECT_EQ(infer::mbr_compact_candidates(o), 4);
  for (int64_t k = 0; k < 8; ++k) {
    const auto s = infer::candidate_sampler(o, k);
    EXPECT_EQ(s.start_time, k < 6 ? 0.3 : 1.0) << k;
    EXPECT_EQ(s.compact_start, k >= 2 && k < 6) << k;
  }
  infer::check_generate_options(o);
  // MBR chooses within the kind the model is surer of: the compact candidates 2..5 here.
  const std::vector<double> surer_compact = {0.5, 0.6, 0.9, 0.8, 0.7, 0.9, 0.99, 0.4};
  EXPECT_EQ(infer::surer_kind(o, surer_compact), (std::vector<std::size_t>{2, 3, 4, 5}));
  const std::vector<double> surer_canvas = {0.9, 0.8, 0.5, 0.6, 0.7, 0.5, 0.7, 0.9};
  EXPECT_EQ(infer::surer_kind(o, surer_canvas), (std::vector<std::size_t>{0, 1, 6, 7}));
  const std::vector<double> tie(8, 0.5);  // a tie keeps the others
  EXPECT_EQ(infer::surer_kind(o, tie), (std::vector<std::size_t>{0, 1, 6, 7}));
  EXPECT_THROW(infer::surer_kind(o, {0.5}), Error);
  o.mbr_compact_share = 0.0;  // one kind: every candidate
  EXPECT_EQ(infer::surer_kind(o, tie).size(), 8u);
  o.mbr_compact_share = 0.8;
  EXPECT_THROW(infer::check_generate_options(o), Error);

  const std::vector<std::string> sources = {"a tool to manage packages", "chess", "a chess game",
                                            "fonts for the console"};
  o = defaults_;
  o.sampler.steps = 3;
  o.sampler.start_time = 0.3;
  o.seed = 5;
  std::vector<std::vector<std::string>> from_source, from_noise;
  for (uint64_t k = 0; k < 4; ++k) {
    GenerateOptions one = o;
    one.seed = o.seed + k;
    from_source.push_back(direct(sources, one));
    one.sampler.start_time = 1.0;
    from_noise.push_back(direct(sources, one));
  }
  o.mbr = 4;
  o.mbr_noise_share = 0.5;
  const std::vector<std::string> out = direct(sources, o);
  ASSERT_EQ(out.size(), sources.size());
  std::size_t differ = 0;  // sources whose choice changes with the noise candidates (the test can fail)
  for (std::size_t i = 0; i < sources.size(); ++i) {
    const std::vector<std::string> mixed = {from_source[0][i], from_source[1][i], from_noise[2][i], from_noise[3][i]};
    const std::vector<std::string> same = {from_source[0][i], from_source[1][i], from_source[2][i], from_source[3][i]};
    EXPECT_EQ(out[i], mixed[mbr_select(mixed, "bleu")]) << sources[i];
    differ += mixed[mbr_select(mixed, "bleu")] != same[mbr_select(same, "bleu")];
  }
  EXPECT_GT(differ, 0u);
}

// The steps of the denoising: every model call of every candidate reports the text of each source
// once, in order; the last candidate's texts are what the generator reads at that step.
TEST_F(ServeTest, GenerationReportsEveryStepOfEverySource) {
  GenerateOptions o = defaults_;
  o.sampler.steps = 3;
  o.mbr = 2;
  o.batch_size = 2;  // two batches: the updates of each batch name their rows
  generator_->options() = o;
  const std::vector<std::string> sources = {"a tool to manage packages", "fonts", "a chess game"};
  std::vector<infer::StepUpdate> updates;
  const std::vector<std::string> out = generator_->generate(sources, [&](const infer::StepUpdate& u) { updates.push_back(u); });
  generator_->options() = defaults_;
  EXPECT_EQ(out, direct(sources, o));  // watching changes nothing
  ASSERT_EQ(updates.size(), 2u * 2u * 3u);  // candidates x batches x steps
  std::vector<std::vector<int>> seen(2, std::vector<int>(3 * 3, 0));  // [candidate][step * 3 + row]
  for (const auto& u : updates) {
    EXPECT_EQ(u.steps, 3);
    ASSERT_GE(u.step, 1);
    ASSERT_LE(u.step, 3);
    ASSERT_EQ(u.rows.size(), u.texts.size());
    for (std::size_t r : u.rows) ++seen.at(static_cast<std::size_t>(u.candidate)).at(static_cast<std::size_t>(u.step - 1) * 3 + r);
  }
  for (const auto& c : seen)
    for (int n : c) EXPECT_EQ(n, 1);
  EXPECT_EQ(updates.front().step, 1);
  EXPECT_EQ(updates.back().step, 3);
  EXPECT_EQ(updates.back().candidate, 1);
}

// Streaming requests batched together each see only their own sources' steps, numbered as they
// sent them, with the texts a lone generate() reports.
TEST_F(ServeTest, BatchedRequestsEachSeeTheirOwnSteps) {
  GenerateOptions o = defaults_;
  o.seed = 4;
  std::vector<infer::StepUpdate> alone;
  generator_->options() = o;
  generator_->generate({"library for parsing", "a game of chess", "fonts"}, [&](const infer::StepUpdate& u) { alone.push_back(u); });
  generator_->options() = defaults_;

  ServiceLimits limits;
  limits.batch_window_ms = 300;
  GenerationService service(*generator_, limits);
  std::vector<infer::StepUpdate> first, second;
  int done = 0;
  auto f1 = service.submit({"library for parsing"}, o, [&](const infer::StepUpdate& u) { first.push_back(u); }, [&] { ++done; });
  auto f2 = service.submit({"a game of chess", "fonts"}, o, [&](const infer::StepUpdate& u) { second.push_back(u); }, [&] { ++done; });
  f1.get();
  f2.get();
  EXPECT_EQ(service.batches_run(), 1u);
  ASSERT_EQ(first.size(), alone.size());
  ASSERT_EQ(second.size(), alone.size());
  for (std::size_t i = 0; i < alone.size(); ++i) {
    // The batch sorts its sources by length; each update's rows map back to the request's own order.
    std::map<std::size_t, std::string> whole;
    for (std::size_t j = 0; j < alone[i].rows.size(); ++j) whole[alone[i].rows[j]] = alone[i].texts[j];
    ASSERT_EQ(first[i].rows, std::vector<std::size_t>({0}));
    EXPECT_EQ(first[i].texts.at(0), whole.at(0));
    EXPECT_EQ(first[i].step, alone[i].step);
    ASSERT_EQ(second[i].rows.size(), 2u);
    for (std::size_t j = 0; j < 2; ++j) EXPECT_EQ(second[i].texts[j], whole.at(1 + second[i].rows[j]));
  }
  // on_done ran once each, before its future became ready.
  EXPECT_EQ(done, 2);
}

TEST_F(ServeTest, AFullQueueRefusesAtOnce) {
  ServiceLimits limits;
  limits.max_queue = 0;
  GenerationService service(*generator_, limits);
  EXPECT_THROW(service.submit({"x"}, defaults_), QueueFull);
}

TEST_F(ServeTest, ServesTheApiOnLoopback) {
  GenerationService service(*generator_, ServiceLimits{});
  HttpServer server(*generator_, service, ApiLimits{});
  const int port = server.bind("127.0.0.1", 0);
  std::thread listener([&] { server.listen(); });
  httplib::Client client("127.0.0.1", port);
  client.set_read_timeout(120, 0);

  auto health = client.Get("/healthz");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  EXPECT_EQ(json::parse(health->body)["status"], "ok");

  auto info = client.Get("/v1/info");
  ASSERT_TRUE(info);
  EXPECT_EQ(json::parse(info->body)["vocab_size"], tokenizer_->vocab_size());

  GenerateOptions o = defaults_;
  o.seed = 3;
  auto one = client.Post("/v1/generate", R"({"src": "a tool to manage packages", "seed": 3})", "application/json");
  ASSERT_TRUE(one);
  EXPECT_EQ(one->status, 200) << one->body;
  EXPECT_EQ(json::parse(one->body)["prediction"], direct({"a tool to manage packages"}, o).at(0));
  EXPECT_EQ(json::parse(one->body)["sources_cut"], 0);

  auto many = client.Post("/v1/generate", R"({"inputs": ["fonts", "a chess game"], "seed": 3})", "application/json");
  ASSERT_TRUE(many);
  EXPECT_EQ(json::parse(many->body)["predictions"], json(direct({"fonts", "a chess game"}, o)));
  // A source longer than data.max_src_len tokens is counted: the model reads only its beginning.
  std::string long_source;
  for (int i = 0; i <= generator_->pack_options().max_src_len; ++i) long_source += "packages ";
  auto cut = client.Post("/v1/generate", json{{"inputs", {long_source, "fonts"}}, {"steps", 2}}.dump(), "application/json");
  ASSERT_TRUE(cut);
  EXPECT_EQ(cut->status, 200) << cut->body;
  EXPECT_EQ(json::parse(cut->body)["sources_cut"], 1);

  auto broken = client.Post("/v1/generate", R"({"inputs": [1]})", "application/json");
  ASSERT_TRUE(broken);
  EXPECT_EQ(broken->status, 400);
  EXPECT_NE(json::parse(broken->body)["error"].get<std::string>().find("\"inputs\"[0] must be a string"),
            std::string::npos);

  // "stream": true: Server-Sent Events, a "step" event per solver step, then "done" with the answer.
  auto streamed = client.Post("/v1/generate", R"({"src": "a tool to manage packages", "seed": 3, "steps": 4, "stream": true})",
                              "application/json");
  ASSERT_TRUE(streamed);
  EXPECT_EQ(streamed->status, 200);
  EXPECT_EQ(streamed->get_header_value("Content-Type"), "text/event-stream");
  std::vector<std::pair<std::string, json>> events;
  for (std::size_t at = 0; at < streamed->body.size();) {
    const std::size_t end = streamed->body.find("\n\n", at);
    ASSERT_NE(end, std::string::npos) << streamed->body;
    const std::string e = streamed->body.substr(at, end - at);
    const std::size_t data = e.find("\ndata: ");
    ASSERT_EQ(e.rfind("event: ", 0), 0u) << e;
    ASSERT_NE(data, std::string::npos) << e;
    events.emplace_back(e.substr(7, data - 7), json::parse(e.substr(data + 7)));
    at = end + 2;
  }
  ASSERT_EQ(events.size(), 5u) << streamed->body;
  for (int k = 0; k < 4; ++k) {
    EXPECT_EQ(events[k].first, "step");
    EXPECT_EQ(events[k].second["step"], k + 1);
    EXPECT_EQ(events[k].second["steps"], 4);
    EXPECT_TRUE(events[k].second["prediction"].is_string());
  }
  GenerateOptions four = o;
  four.sampler.steps = 4;
  EXPECT_EQ(events[4].first, "done");
  EXPECT_EQ(events[4].second["prediction"], direct({"a tool to manage packages"}, four).at(0));
  EXPECT_EQ(events[4].second["sources_cut"], 0);
  auto not_bool = client.Post("/v1/generate", R"({"src": "a", "stream": 1})", "application/json");
  ASSERT_TRUE(not_bool);
  EXPECT_EQ(not_bool->status, 400);

  // "remask_rounds": mask-predict rounds after the solver, as `generate --remask-rounds` runs them.
  auto rounds = client.Post("/v1/generate", R"({"src": "a tool to manage packages", "seed": 3, "remask_rounds": 1})",
                            "application/json");
  ASSERT_TRUE(rounds);
  EXPECT_EQ(rounds->status, 200) << rounds->body;
  // The next request, without the field, gets the checkpoint's setting, not the request before's
  // (the service leaves the generator with the options of the last batch it ran).
  auto after = client.Post("/v1/generate", R"({"src": "a tool to manage packages", "seed": 3})", "application/json");
  ASSERT_TRUE(after);
  GenerateOptions one_round = o;
  one_round.remask_rounds = 1;
  const std::string with_round = direct({"a tool to manage packages"}, one_round).at(0);
  EXPECT_EQ(json::parse(rounds->body)["prediction"], with_round);
  const std::string without = direct({"a tool to manage packages"}, o).at(0);
  ASSERT_NE(with_round, without) << "the test needs the round to change the text";
  EXPECT_EQ(json::parse(after->body)["prediction"], without);

  auto missing = client.Get("/nowhere");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404);

  // Still serving after the bad requests.
  auto again = client.Get("/healthz");
  ASSERT_TRUE(again);
  EXPECT_EQ(again->status, 200);
  server.stop();
  listener.join();
}

// A request for what the model cannot do is the client's error (400), named, not a failed generation.
TEST_F(ServeTest, RoundsOnAModelWithoutTheAbsorbingStateAreRefusedWith400) {
  const Config c = Config::load("", {"data.max_src_len=24", "data.max_trg_len=8", "model.embed_dim=8",
                                     "model.dim=32", "model.layers=1", "model.heads=2", "model.ffn_dim=32",
                                     "model.time_embed_dim=16", "moe.experts=1", "attention.type=dense",
                                     "sample.steps=2", "diffusion.soft_absorbing=false", "train.threads=1"});
  model::Denoiser m(model::model_options_from_config(c, tokenizer_->vocab_size()));
  m->eval();
  TextGenerator generator(c, m, runtime::Runtime{}, tokenizer_.get());
  GenerationService service(generator, ServiceLimits{});
  HttpServer server(generator, service, ApiLimits{});
  const int port = server.bind("127.0.0.1", 0);
  std::thread listener([&] { server.listen(); });
  httplib::Client client("127.0.0.1", port);
  client.set_read_timeout(120, 0);
  auto refused_rounds = client.Post("/v1/generate", R"({"src": "fonts", "remask_rounds": 1})", "application/json");
  ASSERT_TRUE(refused_rounds);
  EXPECT_EQ(refused_rounds->status, 400);
  EXPECT_NE(json::parse(refused_rounds->body)["error"].get<std::string>().find("absorbing state m"),
            std::string::npos)
      << refused_rounds->body;
  auto plain = client.Post("/v1/generate", R"({"src": "fonts"})", "application/json");
  ASSERT_TRUE(plain);
  EXPECT_EQ(plain->status, 200) << plain->body;
  server.stop();
  listener.join();
}

}  // namespace
}  // namespace mds

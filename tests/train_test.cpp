// End-to-end training tests on the CPU: exact resume, and overfitting 8 real pairs until generation
// reproduces them.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <signal.h>

#include <algorithm>
#include <csignal>
#include <cmath>
#include <sstream>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/error.h"
#include "core/fs.h"
#include "data/jsonl.h"
#include "data/tokenizer.h"
#include "infer/generator.h"
#include "io/safetensors.h"
#include "test_util.h"
#include "train/metrics_log.h"
#include "train/trainer.h"

namespace mds {

using data::Tokenizer;
using data::TokenizerTrainOptions;
using data::json_quote;
using data::read_jsonl;
using infer::TextGenerator;
using train::TrainOptions;
using train::TrainResult;

namespace {

const std::string kPairs = "tests/fixtures/debian-descriptions-240.jsonl";

// A tokenizer trained once on the fixture, shared by the tests of this file.
class TrainTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new test::TempDir();
    TokenizerTrainOptions o;
    o.inputs = {test::source_path(kPairs)};
    o.vocab_size = 400;
    o.threads = 1;
    Tokenizer::train(o, dir_->file("tok"));
    // The first 8 pairs, the overfitting set.
    auto all = read_jsonl(test::source_path(kPairs));
    std::string eight;
    for (std::size_t i = 0; i < 8; ++i)
      eight += "{\"src\": " + json_quote(all[i].src) + ", \"trg\": " + json_quote(all[i].trg) + "}\n";
    test::write_file(dir_->file("eight.jsonl"), eight);
  }
  static void TearDownTestSuite() { delete dir_; }

  static std::vector<std::string> tiny(const std::string& run, std::vector<std::string> extra = {}) {
    std::vector<std::string> sets = {
        "data.train=" + dir_->file("eight.jsonl"), "data.tokenizer=" + dir_->file("tok"),
        "train.out_dir=" + dir_->file(run), "data.max_src_len=64", "data.max_trg_len=40",
        "data.batch_tokens=1200", "model.embed_dim=16", "model.dim=64", "model.layers=2", "model.heads=4",
        "model.ffn_dim=128", "model.time_embed_dim=32", "moe.experts=2", "attention.window=8",
        "train.log_every=1000", "train.eval_every=0", "train.save_every=0", "train.threads=1",
        "train.device=cpu"};
    sets.insert(sets.end(), extra.begin(), extra.end());
    return sets;
  }
  static test::TempDir* dir_;
};
test::TempDir* TrainTest::dir_ = nullptr;

TEST_F(TrainTest, ResumeGivesTheSameLossesAsAnUninterruptedRun) {
  const std::vector<std::string> common = {"train.steps=8", "train.warmup_steps=2", "train.lr=1e-3",
                                           "train.save_every=4", "train.grad_accum=2", "data.max_batch_size=4"};
  auto sets = [&](const std::string& run) {
    auto s = tiny(run, common);
    return Config::load("", s);
  };
  TrainResult whole = train::train(sets("whole"), {});
  ASSERT_EQ(whole.losses.size(), 8u);

  TrainOptions first;
  first.stop_after = 4;
  TrainResult part1 = train::train(sets("split"), first);
  ASSERT_EQ(part1.step, 4);
  EXPECT_EQ(part1.stop_reason, "stopped after 4 steps");
  TrainOptions again;
  again.resume = true;
  TrainResult part2 = train::train(sets("split"), again);
  ASSERT_EQ(part2.losses.size(), 4u);
  for (std::size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(part1.losses[i], whole.losses[i]) << "step " << i + 1;
    EXPECT_EQ(part2.losses[i], whole.losses[i + 4]) << "step " << i + 5;  // bit for bit
  }
  // A second run into the same directory without --resume is refused.
  EXPECT_THROW(train::train(sets("split"), {}), Error);
}

// Ctrl-C (SIGINT) in the middle of a run: the step finishes, a checkpoint is written, train() returns;
// --resume then continues exactly as if nothing had happened.
TEST_F(TrainTest, InterruptedRunCheckpointsAndResumesExactly) {
  auto sets = [&](const std::string& run) {
    return Config::load("", tiny(run, {"train.steps=7", "train.warmup_steps=2", "train.lr=1e-3"}));
  };
  const TrainResult whole = train::train(sets("uninterrupted"), {});
  ASSERT_EQ(whole.losses.size(), 7u);

  TrainOptions interrupted;
  interrupted.on_step = [](int64_t step) {
    if (step == 3) std::raise(SIGINT);
  };
  const TrainResult part1 = train::train(sets("interrupted"), interrupted);
  EXPECT_EQ(part1.stop_reason, "interrupted by SIGINT");
  EXPECT_EQ(part1.step, 3);
  EXPECT_TRUE(fs::exists(fs::join(dir_->file("interrupted"), "checkpoints/step_3/trainer_state.json")));
  // The handler is gone with the run: SIGINT is back to its default disposition.
  struct sigaction now {};
  sigaction(SIGINT, nullptr, &now);
  EXPECT_EQ(now.sa_handler, SIG_DFL);

  TrainOptions again;
  again.resume = true;
  const TrainResult part2 = train::train(sets("interrupted"), again);
  EXPECT_EQ(part2.stop_reason, "finished");
  ASSERT_EQ(part2.losses.size(), 4u);
  for (std::size_t i = 0; i < 3; ++i) EXPECT_EQ(part1.losses[i], whole.losses[i]) << "step " << i + 1;
  for (std::size_t i = 0; i < 4; ++i) EXPECT_EQ(part2.losses[i], whole.losses[i + 3]) << "step " << i + 4;
}

// A second stop signal ends the process at once (exit status 128 + SIGINT), without waiting for the
// step or writing a checkpoint.
TEST_F(TrainTest, ASecondSignalExitsAtOnce) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  Config c = Config::load("", tiny("twice", {"train.steps=50"}));
  TrainOptions twice;
  twice.on_step = [](int64_t step) {
    if (step == 2) {
      std::raise(SIGINT);
      std::raise(SIGINT);
    }
  };
  EXPECT_EXIT(train::train(c, twice), ::testing::ExitedWithCode(128 + SIGINT), "second stop signal");
}

// A run on a time budget stops when the budget is spent, with a checkpoint, and says why.
TEST_F(TrainTest, TimeBudgetStopsTheRunWithACheckpoint) {
  // 6e-8 minutes (3.6 microseconds): spent by the first step, whatever the machine.
  Config c = Config::load("", tiny("budget", {"train.steps=100", "train.max_minutes=6e-8",
                                              "data.valid=" + dir_->file("eight.jsonl"), "train.eval_every=1000"}));
  const TrainResult r = train::train(c, {});
  EXPECT_EQ(r.step, 1);
  EXPECT_NE(r.stop_reason.find("time budget of"), std::string::npos) << r.stop_reason;
  EXPECT_GT(r.train_seconds, 0.0);
  const std::string state = test::read_file(fs::join(dir_->file("budget"), "checkpoints/step_1/trainer_state.json"));
  EXPECT_NE(state.find("\"train_seconds\""), std::string::npos) << state;
  // The last step is validated although it is not a multiple of train.eval_every: best/ weighs it.
  const std::string metrics = test::read_file(fs::join(dir_->file("budget"), "metrics.jsonl"));
  EXPECT_NE(metrics.find("\"valid_loss\""), std::string::npos) << metrics;
  EXPECT_TRUE(fs::exists(fs::join(dir_->file("budget"), "best/trainer_state.json")));
}

// Two trainings into one train.out_dir: the second is refused while the first runs.
TEST_F(TrainTest, ASecondTrainingIntoTheRunDirectoryIsRefused) {
  Config c = Config::load("", tiny("locked", {"train.steps=2"}));
  fs::create_directories(dir_->file("locked"));
  {
    fs::ExclusiveLock running(fs::join(dir_->file("locked"), ".lock"), "another training");
    const std::string message = test::error_of([&] { train::train(c, {}); });
    EXPECT_NE(message.find("(train.out_dir) is in use by process"), std::string::npos) << message;
    EXPECT_FALSE(fs::exists(fs::join(dir_->file("locked"), "checkpoints")));
  }
  EXPECT_EQ(train::train(c, {}).step, 2);  // once the first has ended
}

TEST_F(TrainTest, ValidationGeneratesScoresAndStopsEarly) {
  Config c = Config::load("", tiny("validated", {"train.steps=50", "data.valid=" + dir_->file("eight.jsonl"),
                                                 "train.eval_every=2", "train.eval_samples=3", "sample.steps=2",
                                                 "train.early_stop_metric=rougeL", "train.early_stop_patience=1"}));
  TrainResult r = train::train(c, {});
  // rougeL of a barely trained model does not keep rising at every validation: with a patience of 1
  // the run stops long before its 50 steps.
  EXPECT_EQ(r.stop_reason, "early stopping");
  EXPECT_LT(r.step, 50);
  const std::string metrics = test::read_file(fs::join(dir_->file("validated"), "metrics.jsonl"));
  EXPECT_NE(metrics.find("\"valid_bleu\""), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("\"valid_rougeL\""), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("\"valid_loss\""), std::string::npos) << metrics;
  const std::string samples = test::read_file(fs::join(dir_->file("validated"), "samples/step_2.jsonl"));
  EXPECT_EQ(std::count(samples.begin(), samples.end(), '\n'), 3);
  EXPECT_TRUE(fs::exists(fs::join(dir_->file("validated"), "best/model.safetensors")));
  // A metric that does not exist is refused before training starts.
  EXPECT_THROW(train::train(Config::load("", tiny("bad-metric", {"data.valid=" + dir_->file("eight.jsonl"),
                                                         "train.eval_samples=3",
                                                         "train.early_stop_metric=blue"})), {}),
               Error);
}

// train.best_metric picks best/ by a metric of the generated samples: best/ holds the step whose
// validation scored highest (the first of equals), and the training goes on to its last step.
TEST_F(TrainTest, BestCheckpointIsTheHighestScoringValidation) {
  Config c = Config::load("", tiny("best-f1", {"train.steps=8", "data.valid=" + dir_->file("eight.jsonl"),
                                               "train.eval_every=2", "train.eval_samples=4", "sample.steps=2",
                                               "train.best_metric=f1"}));
  const TrainResult r = train::train(c, {});
  EXPECT_EQ(r.step, 8);
  int64_t best_step = -1;
  double best = -1.0;
  int validations = 0;
  std::istringstream lines(test::read_file(fs::join(dir_->file("best-f1"), "metrics.jsonl")));
  for (std::string line; std::getline(lines, line);) {
    const auto row = nlohmann::json::parse(line);
    if (!row.contains("valid_f1")) continue;
    ++validations;
    const double f1 = row.at("valid_f1").get<double>();
    if (f1 > best) {
      best = f1;
      best_step = row.at("step").get<int64_t>();
    }
    EXPECT_DOUBLE_EQ(row.at("best_valid_f1").get<double>(), best);
  }
  EXPECT_EQ(validations, 4);
  const auto state = nlohmann::json::parse(
      test::read_file(fs::join(dir_->file("best-f1"), "best/trainer_state.json")));
  EXPECT_EQ(state.at("step").get<int64_t>(), best_step);
  EXPECT_DOUBLE_EQ(r.best_valid, -best);  // kept negated: lower is better inside the loop
  // best_metric and early_stop_metric must not disagree; a count, not a quality, is refused.
  const std::string valid = "data.valid=" + dir_->file("eight.jsonl");
  EXPECT_THROW(train::train(Config::load("", tiny("disagree", {valid, "train.eval_samples=2",
                                                               "train.best_metric=f1",
                                                               "train.early_stop_metric=bleu"})), {}),
               Error);
  EXPECT_THROW(train::train(Config::load("", tiny("by-len", {valid, "train.eval_samples=2",
                                                             "train.best_metric=len"})), {}),
               Error);
  EXPECT_NE(test::error_of([&] {
              train::train(Config::load("", tiny("no-valid", {"train.eval_samples=2", "train.best_metric=f1"})), {});
            }).find("train.best_metric = \"f1\" needs data.valid"),
            std::string::npos);
}

TEST_F(TrainTest, NonFiniteLossesAreSkippedThenStopTheRun) {
  // An absurd weight decay multiplies every weight by about -1e15 per step: within a few steps the
  // forward pass overflows, and every later loss is inf or NaN.
  Config c = Config::load("", tiny("exploding", {"train.steps=20", "train.lr=1e-3", "train.warmup_steps=0",
                                                 "train.weight_decay=1e18", "train.max_bad_steps=3"}));
  std::string message;
  try {
    train::train(c, {});
  } catch (const Error& e) {
    message = e.what();
  }
  EXPECT_NE(message.find("3 steps in a row had a NaN or inf loss"), std::string::npos) << message;
  EXPECT_NE(message.find("no checkpoint was written"), std::string::npos) << message;
  EXPECT_FALSE(fs::exists(fs::join(dir_->file("exploding"), "checkpoints")) &&
               !fs::list_directory(fs::join(dir_->file("exploding"), "checkpoints")).empty());
}

// A checkpoint that lost a file, or whose weights hold NaN, is refused by generation with what is
// wrong, before any text is made; so is an output directory that does not exist.
TEST_F(TrainTest, GenerationRefusesABrokenCheckpointSayingWhy) {
  Config c = Config::load("", tiny("broken", {"train.steps=2"}));
  train::train(c, {});
  const std::string good = fs::join(dir_->file("broken"), "checkpoints/step_2");
  // Copies without `file` and without trainer_state.json (whose sizes and checksums would report the
  // damage first: a model put together by hand has none).
  const auto copy_without = [&](const std::string& name, const char* file, bool keep_state = false) {
    const std::string d = dir_->file(name);
    fs::create_directories(d);
    for (const std::string& f : fs::list_directory(good))
      if (f != file && (keep_state || f != "trainer_state.json"))
        test::write_file(fs::join(d, f), test::read_file(fs::join(good, f)));
    return d;
  };
  const std::string lost_tok = copy_without("lost-tok", "tokenizer.model", true);
  EXPECT_NE(test::error_of([&] { TextGenerator g(lost_tok); }).find("tokenizer.model is missing, but the save wrote it"),
            std::string::npos);
  const std::string no_tok = copy_without("no-tok", "tokenizer.model");
  EXPECT_NE(test::error_of([&] { TextGenerator g(no_tok); }).find("has no tokenizer.model"), std::string::npos);
  const std::string no_cfg = copy_without("no-cfg", "config.toml");
  EXPECT_NE(test::error_of([&] { TextGenerator g(no_cfg); }).find("has no config.toml"), std::string::npos);
  const std::string nan = copy_without("nan", "");
  io::TensorMap weights = io::load_safetensors(fs::join(nan, "model.safetensors"));
  weights.begin()->second.view({-1})[0] = std::nanf("");
  io::save_safetensors(fs::join(nan, "model.safetensors"), weights);
  const std::string message = test::error_of([&] { TextGenerator g(nan); });
  EXPECT_NE(message.find("model.safetensors: tensor \"" + weights.begin()->first + "\" holds NaN or inf"),
            std::string::npos) << message;

  TextGenerator generator(good);
  test::write_file(dir_->file("in.jsonl"), "{\"src\": \"a tool\"}\n");
  const std::string out = dir_->file("missing-dir/out.jsonl");
  EXPECT_NE(test::error_of([&] { infer::generate_file(generator, dir_->file("in.jsonl"), out); })
                .find("--output " + out + ": the directory " + dir_->file("missing-dir") + " does not exist"),
            std::string::npos);
}

TEST_F(TrainTest, OverfitsEightRealPairs) {
  Config c = Config::load("", tiny("overfit", {"train.steps=1500", "train.lr=2e-3", "train.warmup_steps=50",
                                               "train.ema_decay=0", "model.dropout=0", "diffusion.t_sampler=uniform"}));
  TrainResult r = train::train(c, {});
  ASSERT_TRUE(std::isfinite(r.losses.back()));
  EXPECT_LT(r.losses.back(), r.losses.front());

  TextGenerator gen(fs::join(dir_->file("overfit"), "checkpoints/step_1500"));
  gen.options().sampler.sampler = "dpm++2m";
  gen.options().sampler.steps = 10;
  auto pairs = read_jsonl(dir_->file("eight.jsonl"));
  std::vector<std::string> sources;
  for (const auto& p : pairs) sources.push_back(p.src);
  auto predictions = gen.generate(sources);
  int exact = 0;
  for (std::size_t i = 0; i < pairs.size(); ++i) {
    exact += predictions[i] == pairs[i].trg;
    std::printf("  want: %s\n  got:  %s\n", pairs[i].trg.c_str(), predictions[i].c_str());
  }
  EXPECT_GE(exact, 7);
}

// data.target_canvas = "source": a word inserted after the first word of each of 8 synopses is
// learnt and written in place, sampled from the source, with the rest of the words where they were.
TEST_F(TrainTest, ACanvasLearnsToInsertWords) {
  auto all = read_jsonl(test::source_path(kPairs));
  std::string pairs;
  std::vector<std::string> sources, targets;
  for (std::size_t i = 0; i < 8; ++i) {
    const std::string& s = all[i].trg;
    const std::size_t space = s.find(' ');
    ASSERT_NE(space, std::string::npos) << s;
    sources.push_back(s);
    targets.push_back(s.substr(0, space) + " new" + s.substr(space));
    pairs += "{\"src\": " + json_quote(sources.back()) + ", \"trg\": " + json_quote(targets.back()) + "}\n";
  }
  test::write_file(dir_->file("insert.jsonl"), pairs);
  Config c = Config::load("", tiny("canvas", {"data.train=" + dir_->file("insert.jsonl"), "data.max_src_len=24",
                                              "data.max_trg_len=73", "data.target_canvas=source", "data.canvas_slots=2",
                                              "train.source_start_prob=1", "train.source_start_time=0.3",
                                              "sample.start_time=0.3", "sample.start_jumps=false", "model.x0=softmax",
                                              "loss.x0_ce_weight=1", "train.steps=1200", "train.lr=2e-3",
                                              "train.warmup_steps=50", "train.ema_decay=0", "model.dropout=0"}));
  train::train(c, {});
  TextGenerator gen(fs::join(dir_->file("canvas"), "checkpoints/step_1200"));
  const std::vector<std::string> predictions = gen.generate(sources);
  int exact = 0;
  for (std::size_t i = 0; i < targets.size(); ++i) {
    exact += predictions[i] == targets[i];
    std::printf("  want: %s\n  got:  %s\n", targets[i].c_str(), predictions[i].c_str());
  }
  EXPECT_GE(exact, 7);
}

// metrics.jsonl of a run that resumes at step 4: the records of later steps (written before a kill
// lost their checkpoint) and a line cut short go; earlier ones stay, and new records follow them.
TEST(MetricsLogTest, ResumingDropsTheRecordsItWillWriteAgain) {
  test::TempDir tmp;
  const std::string path = tmp.file("metrics.jsonl");
  test::write_file(path,
                   "{\"step\":2,\"loss\":3.0}\n{\"step\":4,\"valid_loss\":2.5}\n{\"step\":6,\"loss\":2.0}\n"
                   "{\"step\":8,\"lo");
  {
    train::MetricsLog log(path, 4);
    log.write({{"step", 5}, {"loss", 1.5}});
  }
  EXPECT_EQ(test::read_file(path), "{\"step\":2,\"loss\":3.0}\n{\"step\":4,\"valid_loss\":2.5}\n{\"loss\":1.5,\"step\":5}\n");
  {
    train::MetricsLog nothing_later(path, 5);  // nothing to drop: the file is left as it is
  }
  EXPECT_EQ(test::read_file(path), "{\"step\":2,\"loss\":3.0}\n{\"step\":4,\"valid_loss\":2.5}\n{\"loss\":1.5,\"step\":5}\n");
  {
    train::MetricsLog fresh(path, 0);  // a new run (no checkpoint): the records of a run killed before one
  }
  EXPECT_EQ(test::read_file(path), "");
}

}  // namespace
}  // namespace mds

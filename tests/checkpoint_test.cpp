// Checkpoints: round trip of every part, atomic replacement without leftovers, refusal of NaN/inf
// (writing nothing), reading a copy that an interrupted replacement left, and list/prune/latest
// among incomplete and leftover directories.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/fs.h"
#include "test_util.h"
#include "io/checkpoint.h"
#include "io/checkpoint_writer.h"

namespace mds {

using io::CheckpointContent;
using io::TensorMap;
using io::latest_checkpoint;
using io::list_checkpoints;
using io::prune_checkpoints;
using io::read_checkpoint;
using io::remove_checkpoint_leftovers;
using io::write_checkpoint;

namespace {

using test::error_of;
using test::TempDir;

using Names = std::vector<std::string>;

CheckpointContent full_content(float seed) {
  CheckpointContent c;
  c.model["block0.qkv.weight"] = at::full({4, 3}, seed, at::kFloat);
  c.model["embed.weight"] = at::full({5, 2}, seed, at::kBFloat16);
  c.raw["block0.qkv.weight"] = at::full({4, 3}, seed + 1, at::kFloat);
  c.optimizer["block0.qkv.weight.exp_avg"] = at::full({4, 3}, seed / 10, at::kFloat);
  c.optimizer["block0.qkv.weight.step"] = at::scalar_tensor(7, at::kLong);
  c.sampler["history"] = at::arange(6, at::kDouble).reshape({2, 3});
  c.sampler["counts"] = at::ones({2}, at::kLong);
  c.trainer_state = {
      {"step", 10}, {"epoch", 1}, {"rng", {{"cpu", "abc"}}}, {"best", 2.5}, {"seed", seed}};
  c.tokenizer_model = std::string("tok\0en\xff bytes", 13);
  c.config_toml = "[train]\nlr = 0.001\n";
  return c;
}

// Only the parts a step needs to be listed: a model and a trainer state.
CheckpointContent small_content(int64_t step) {
  CheckpointContent c;
  c.model["w"] = at::full({2}, static_cast<double>(step), at::kFloat);
  c.trainer_state = {{"step", step}};
  return c;
}

void expect_same_tensors(const TensorMap& expected, const TensorMap& actual) {
  ASSERT_EQ(actual.size(), expected.size());
  for (const auto& [name, tensor] : expected) {
    ASSERT_EQ(actual.count(name), 1u) << name;
    const at::Tensor& t = actual.at(name);
    EXPECT_EQ(t.scalar_type(), tensor.scalar_type()) << name;
    EXPECT_TRUE(at::equal(t, tensor)) << name;
  }
}

void expect_same(const CheckpointContent& expected, const CheckpointContent& actual) {
  expect_same_tensors(expected.model, actual.model);
  expect_same_tensors(expected.raw, actual.raw);
  expect_same_tensors(expected.optimizer, actual.optimizer);
  expect_same_tensors(expected.sampler, actual.sampler);
  EXPECT_EQ(actual.trainer_state, expected.trainer_state);
  EXPECT_EQ(actual.tokenizer_model, expected.tokenizer_model);
  EXPECT_EQ(actual.config_toml, expected.config_toml);
}

void expect_in(const std::string& message, const std::string& part) {
  EXPECT_NE(message.find(part), std::string::npos) << "\"" << part << "\" not in: " << message;
}

TEST(Checkpoint, RoundTripsEveryPart) {
  TempDir tmp;
  const std::string dir = fs::join(tmp.path(), "run/checkpoints/step_10");
  const CheckpointContent content = full_content(0.5f);
  write_checkpoint(dir, content);

  EXPECT_EQ(fs::list_directory(dir),
            (Names{"config.toml", "model.safetensors", "optimizer.safetensors", "raw.safetensors",
                   "sampler.safetensors", "tokenizer.model", "trainer_state.json"}));
  EXPECT_EQ(fs::list_directory(fs::parent_path(dir)), Names{"step_10"});
  // Pretty-printed, for people reading it.
  expect_in(test::read_file(fs::join(dir, "trainer_state.json")), "{\n  \"best\": 2.5,\n");
  EXPECT_EQ(test::read_file(fs::join(dir, "config.toml")), content.config_toml);
  EXPECT_EQ(test::read_file(fs::join(dir, "tokenizer.model")), content.tokenizer_model);

  expect_same(content, read_checkpoint(dir));
  // A trailing slash names the same directory.
  expect_same(content, read_checkpoint(dir + "/"));
}

TEST(Checkpoint, ReadsOnlyWhatGenerationNeeds) {
  TempDir tmp;
  const std::string dir = tmp.file("best");
  const CheckpointContent content = full_content(1.5f);
  write_checkpoint(dir, content);
  const CheckpointContent read = read_checkpoint(dir, /*with_training_state=*/false);
  expect_same_tensors(content.model, read.model);
  EXPECT_EQ(read.config_toml, content.config_toml);
  EXPECT_EQ(read.tokenizer_model, content.tokenizer_model);
  EXPECT_TRUE(read.raw.empty());
  EXPECT_TRUE(read.optimizer.empty());
  EXPECT_TRUE(read.sampler.empty());
  EXPECT_TRUE(read.trainer_state.is_null());

  // A model exported without training state still serves generation, not resumption.
  fs::remove_file(fs::join(dir, "trainer_state.json"));
  expect_same_tensors(content.model, read_checkpoint(dir, false).model);
  const std::string message = error_of([&] { read_checkpoint(dir); });
  expect_in(message, dir);
  expect_in(message, "trainer_state.json is missing");
}

TEST(Checkpoint, OmitsEmptyParts) {
  TempDir tmp;
  const std::string dir = tmp.file("step_1");
  const CheckpointContent content = small_content(1);
  write_checkpoint(dir, content);
  EXPECT_EQ(fs::list_directory(dir), (Names{"model.safetensors", "trainer_state.json"}));
  expect_same(content, read_checkpoint(dir));
}

TEST(Checkpoint, ReplacesAnExistingCheckpointLeavingNoLeftovers) {
  TempDir tmp;
  const std::string dir = tmp.file("best");
  write_checkpoint(dir, full_content(1.0f));
  const CheckpointContent second = small_content(2);
  write_checkpoint(dir, second);
  EXPECT_EQ(fs::list_directory(tmp.path()), Names{"best"});
  // The old files do not linger in the new directory.
  EXPECT_EQ(fs::list_directory(dir), (Names{"model.safetensors", "trainer_state.json"}));
  expect_same(second, read_checkpoint(dir));

  const CheckpointContent third = full_content(3.0f);
  write_checkpoint(dir, third);
  EXPECT_EQ(fs::list_directory(tmp.path()), Names{"best"});
  expect_same(third, read_checkpoint(dir));
}

TEST(Checkpoint, RefusesNanAndInfAndWritesNothing) {
  TempDir tmp;
  const std::string dir = tmp.file("run/checkpoints/step_5");
  CheckpointContent content = full_content(1.0f);
  content.model["block0.qkv.weight"][1][2] = std::numeric_limits<float>::quiet_NaN();
  std::string message = error_of([&] { write_checkpoint(dir, content); });
  expect_in(message,
            "refusing to write a checkpoint: model tensor \"block0.qkv.weight\" holds NaN");
  EXPECT_FALSE(fs::exists(tmp.file("run")));

  content = full_content(1.0f);
  content.optimizer["block0.qkv.weight.exp_avg"][0][0] = -std::numeric_limits<float>::infinity();
  message = error_of([&] { write_checkpoint(dir, content); });
  expect_in(message, "optimizer tensor \"block0.qkv.weight.exp_avg\" holds inf");

  content = full_content(1.0f);
  content.raw["block0.qkv.weight"] =
      at::full({2}, std::numeric_limits<double>::infinity(), at::kBFloat16);
  expect_in(error_of([&] { write_checkpoint(dir, content); }), "raw tensor");
  EXPECT_FALSE(fs::exists(tmp.file("run")));

  // A refused replacement leaves the previous checkpoint as it was.
  const CheckpointContent good = full_content(2.0f);
  write_checkpoint(dir, good);
  content = full_content(1.0f);
  content.model["embed.weight"][0][0] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THROW(write_checkpoint(dir, content), Error);
  EXPECT_EQ(fs::list_directory(fs::parent_path(dir)), Names{"step_5"});
  expect_same(good, read_checkpoint(dir));
}

TEST(Checkpoint, ErrorsNameTheDirectoryAndTheFile) {
  TempDir tmp;
  const std::string dir = tmp.file("ckpt");
  expect_in(error_of([&] { read_checkpoint(dir); }), dir);

  write_checkpoint(dir, full_content(1.0f));
  fs::remove_file(fs::join(dir, "model.safetensors"));
  std::string message = error_of([&] { read_checkpoint(dir); });
  expect_in(message, dir);
  expect_in(message, "model.safetensors is missing");

  write_checkpoint(dir, full_content(1.0f));
  test::write_file(fs::join(dir, "optimizer.safetensors"), "junk");
  message = error_of([&] { read_checkpoint(dir); });
  expect_in(message, fs::join(dir, "optimizer.safetensors"));

  write_checkpoint(dir, full_content(1.0f));
  test::write_file(fs::join(dir, "trainer_state.json"), "{\"step\": ");
  message = error_of([&] { read_checkpoint(dir); });
  expect_in(message, fs::join(dir, "trainer_state.json"));
}

// Every file of a checkpoint cut short or with one bit flipped: an error naming the file and what is
// wrong, for generation's reading (model, tokenizer, config) and for resuming's (all of them).
TEST(Checkpoint, DamagedFilesAreFoundByTheirSizeAndChecksum) {
  TempDir tmp;
  const std::string dir = tmp.file("ckpt");
  const std::vector<std::string> files = {"model.safetensors", "raw.safetensors", "optimizer.safetensors",
                                          "sampler.safetensors", "tokenizer.model", "config.toml"};
  for (const std::string& name : files) {
    const bool for_generation = name == "model.safetensors" || name == "tokenizer.model" || name == "config.toml";
    const std::string path = fs::join(dir, name);
    // Cut short by one byte.
    write_checkpoint(dir, full_content(1.0f));
    std::string bytes = test::read_file(path);
    test::write_file(path, bytes.substr(0, bytes.size() - 1));
    std::string message = error_of([&] { read_checkpoint(dir); });
    expect_in(message, path + " is " + std::to_string(bytes.size() - 1) + " bytes, but the save wrote " +
                           std::to_string(bytes.size()));
    if (for_generation) expect_in(error_of([&] { read_checkpoint(dir, false); }), path);
    // One bit flipped in the last byte (tensor data, not the header a reader would check anyway).
    write_checkpoint(dir, full_content(1.0f));
    bytes.back() = static_cast<char>(bytes.back() ^ 0x10);
    test::write_file(path, bytes);
    message = error_of([&] { read_checkpoint(dir); });
    expect_in(message, path + ": its checksum (crc32 ");
    expect_in(message, "the file is damaged");
  }
  // A file the save wrote, gone.
  write_checkpoint(dir, full_content(1.0f));
  fs::remove_file(fs::join(dir, "sampler.safetensors"));
  expect_in(error_of([&] { read_checkpoint(dir); }), "sampler.safetensors is missing, but the save wrote it");
  // A recorded size that is no integer (converting it was undefined behaviour).
  write_checkpoint(dir, full_content(1.0f));
  const std::string state_path = fs::join(dir, "trainer_state.json");
  nlohmann::json state = nlohmann::json::parse(test::read_file(state_path));
  state["files"]["model.safetensors"]["bytes"] = 1e300;
  test::write_file(state_path, state.dump());
  expect_in(error_of([&] { read_checkpoint(dir); }), state_path + ": \"bytes\" must be an integer");
  state["files"]["model.safetensors"] = {{"bytes", 1}};
  test::write_file(state_path, state.dump());
  expect_in(error_of([&] { read_checkpoint(dir); }), state_path + ": \"files\".\"model.safetensors\" must hold");
  // The sums stay inside the checkpoint: the trainer state read back is the one given.
  write_checkpoint(dir, full_content(1.0f));
  EXPECT_EQ(read_checkpoint(dir).trainer_state, full_content(1.0f).trainer_state);
  EXPECT_NE(test::read_file(fs::join(dir, "trainer_state.json")).find("\"crc32\""), std::string::npos);
}

TEST(Checkpoint, ReadsTheCopyAnInterruptedReplacementLeft) {
  TempDir tmp;
  const std::string run = tmp.path();
  const std::string dir = fs::join(run, "checkpoints/step_7");
  const CheckpointContent content = small_content(7);
  write_checkpoint(dir, content);
  // A crash between "DIR -> DIR.old-<pid>" and "DIR.tmp-<pid> -> DIR".
  fs::rename(dir, dir + ".old-4242");
  fs::create_directories(dir + ".tmp-4242");
  expect_same(content, read_checkpoint(dir));
  ASSERT_EQ(list_checkpoints(run).size(), 1u);
  EXPECT_EQ(list_checkpoints(run)[0], std::make_pair(int64_t{7}, dir + ".old-4242"));

  // Once DIR is back and complete, the old copy is a leftover and ignored.
  write_checkpoint(dir, small_content(8));
  EXPECT_EQ(read_checkpoint(dir).trainer_state["step"], 8);
  EXPECT_EQ(latest_checkpoint(run), dir);
}

TEST(Checkpoint, ListPruneLatest) {
  TempDir tmp;
  const std::string run = tmp.file("run");
  EXPECT_TRUE(list_checkpoints(run).empty());
  EXPECT_EQ(latest_checkpoint(run), "");
  prune_checkpoints(run, 1);  // nothing to prune, no error

  const std::string root = fs::join(run, "checkpoints");
  for (int64_t step : {2, 10, 1, 3})
    write_checkpoint(fs::join(root, "step_" + std::to_string(step)), small_content(step));
  // Incomplete (no trainer_state.json), leftovers and strangers, all to be ignored.
  fs::create_directories(fs::join(root, "step_20"));
  test::write_file(fs::join(root, "step_20/model.safetensors"), "");
  write_checkpoint(fs::join(root, "step_30.tmp-999"), small_content(30));
  write_checkpoint(fs::join(root, "step_2.old-999"), small_content(2));
  write_checkpoint(fs::join(root, "step_040"), small_content(40));
  write_checkpoint(fs::join(root, "other_50"), small_content(50));
  fs::create_directories(fs::join(root, "step_x"));
  test::write_file(fs::join(root, "step_60"), "a file, not a directory");
  write_checkpoint(fs::join(run, "best"), small_content(3));

  const std::vector<std::pair<int64_t, std::string>> expected{{1, fs::join(root, "step_1")},
                                                              {2, fs::join(root, "step_2")},
                                                              {3, fs::join(root, "step_3")},
                                                              {10, fs::join(root, "step_10")}};
  EXPECT_EQ(list_checkpoints(run), expected);
  EXPECT_EQ(latest_checkpoint(run), fs::join(root, "step_10"));

  prune_checkpoints(run, 2);
  EXPECT_EQ(list_checkpoints(run),
            (std::vector<std::pair<int64_t, std::string>>{{3, fs::join(root, "step_3")},
                                                          {10, fs::join(root, "step_10")}}));
  // step_2.old-999 went with step 2: alone, it would have stood in for it.
  EXPECT_EQ(fs::list_directory(root), (Names{"other_50", "step_040", "step_10", "step_20", "step_3",
                                             "step_30.tmp-999", "step_60", "step_x"}));
  EXPECT_TRUE(fs::is_directory(fs::join(run, "best")));
  prune_checkpoints(run, 5);
  EXPECT_EQ(list_checkpoints(run).size(), 2u);

  EXPECT_THROW(prune_checkpoints(run, -1), Error);
  prune_checkpoints(run, 0);
  EXPECT_TRUE(list_checkpoints(run).empty());
  EXPECT_EQ(latest_checkpoint(run), "");
}

// What interrupted saves leave: unfinished step_N.tmp-P and best.tmp-P go, so does step_N.old-P beside
// a complete step_N; a stranded step_N.old-P (step_N missing) is the checkpoint and stays, and so
// does everything else. An unfinished directory given to a reader gets an error that says what it is.
TEST(Checkpoint, LeftoversOfInterruptedSavesAreRemovedAndNamed) {
  TempDir tmp;
  const std::string run = tmp.file("run");
  const std::string root = fs::join(run, "checkpoints");
  write_checkpoint(fs::join(root, "step_2"), small_content(2));
  write_checkpoint(fs::join(root, "step_2.old-77"), small_content(2));
  write_checkpoint(fs::join(root, "step_4.old-78"), small_content(4));
  fs::create_directories(fs::join(root, "step_6.tmp-79"));
  test::write_file(fs::join(root, "step_6.tmp-79/model.safetensors"), "partial");
  fs::create_directories(fs::join(run, "best.tmp-80"));
  fs::create_directories(fs::join(root, "notes.tmp-x"));

  const std::string message = test::error_of([&] { read_checkpoint(fs::join(root, "step_6.tmp-79"), false); });
  EXPECT_NE(message.find("step_6.tmp-79 is an unfinished checkpoint (the run stopped while saving it)"),
            std::string::npos) << message;

  const std::vector<std::string> removed = remove_checkpoint_leftovers(run);
  EXPECT_EQ(removed, (std::vector<std::string>{fs::join(root, "step_2.old-77"), fs::join(root, "step_6.tmp-79"),
                                               fs::join(run, "best.tmp-80")}));
  EXPECT_EQ(fs::list_directory(root), (Names{"notes.tmp-x", "step_2", "step_4.old-78"}));
  EXPECT_EQ(latest_checkpoint(run), fs::join(root, "step_4.old-78"));
  EXPECT_TRUE(remove_checkpoint_leftovers(run).empty());
}

// The background writer writes what the tensors held when write() returned (the caller goes on
// changing them), runs `after` once the checkpoint is in place, one write at a time, and hands a
// failure back at the next wait().
TEST(CheckpointWriter, WritesACopyInTheBackgroundAndReportsFailures) {
  TempDir tmp;
  CheckpointContent content = full_content(1.0f);
  const CheckpointContent expected = io::owned_copy(content);
  io::CheckpointWriter writer;
  bool complete_when_after_ran = false;
  const std::string dir = tmp.file("run/checkpoints/step_1");
  writer.write(dir, content, [&] { complete_when_after_ran = fs::exists(fs::join(dir, "trainer_state.json")); });
  content.model["block0.qkv.weight"].fill_(42.0f);  // training goes on
  content.optimizer["block0.qkv.weight.exp_avg"].fill_(42.0f);
  writer.wait();
  EXPECT_TRUE(complete_when_after_ran);
  expect_same(expected, read_checkpoint(dir));

  // A second write waits for the first; both land.
  writer.write(tmp.file("run/checkpoints/step_2"), small_content(2));
  writer.write(tmp.file("run/checkpoints/step_3"), small_content(3));
  writer.wait();
  EXPECT_EQ(list_checkpoints(tmp.file("run")).size(), 3u);

  CheckpointContent bad = full_content(1.0f);
  bad.raw["block0.qkv.weight"][0][0] = std::numeric_limits<float>::quiet_NaN();
  writer.write(tmp.file("run/checkpoints/step_4"), bad);
  expect_in(error_of([&] { writer.wait(); }), "raw tensor \"block0.qkv.weight\" holds NaN");
  EXPECT_FALSE(fs::exists(tmp.file("run/checkpoints/step_4")));
  EXPECT_NO_THROW(writer.wait());  // reported once
}

}  // namespace
}  // namespace mds
